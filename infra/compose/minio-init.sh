#!/bin/sh
# One-shot setup of the development MinIO, run by docker-compose.yml's
# `minio-init` job (minio/mc image). Safe to run again: every step is idempotent.
#
#  1. the buckets customlabels uses (customlabels-internal: the services' own
#     files; customlabels-images: what users upload; customlabels-inference:
#     images the feedback service answers with the project's live model);
#  2. a Kafka notification target (notify_kafka:primary), so that every object
#     PUT into the NOTIFY_BUCKETS is published to the Kafka topic
#     customlabels.objects, where the datasets service turns it into an
#     ImageUploaded event (an image that arrives straight in MinIO is then
#     treated like one uploaded through the gateway; that consumer comes with
#     the event, until then the messages wait in the topic);
#  3. MinIO restarted, so the new target is loaded, and the bucket's
#     notification rule (object PUTs -> that target) added.
set -eu

: "${MINIO_URL:?}" "${MINIO_ROOT_USER:?}" "${MINIO_ROOT_PASSWORD:?}"
: "${KAFKA_BROKERS:?}" "${KAFKA_TOPIC:?}" "${BUCKETS:?}" "${NOTIFY_BUCKETS:?}"
TARGET=primary
ARN="arn:minio:sqs::${TARGET}:kafka"   # MinIO's ARN for notify_kafka:<TARGET>, no region set

wait_ready() {  # MinIO answers its readiness check (at most 60 s)
    tries=0
    until mc ready local >/dev/null 2>&1; do
        tries=$((tries + 1))
        [ "$tries" -lt 60 ] || { echo "minio-init: MinIO is not ready after 60 s" >&2; exit 1; }
        sleep 1
    done
}

mc alias set local "$MINIO_URL" "$MINIO_ROOT_USER" "$MINIO_ROOT_PASSWORD"
wait_ready

for bucket in $BUCKETS; do
    mc mb --ignore-existing "local/$bucket"
done

# queue_dir: MinIO keeps events there while Kafka is unreachable and replays
# them later (a volume on the minio service), so no upload goes unannounced.
mc admin config set local "notify_kafka:${TARGET}" \
    brokers="$KAFKA_BROKERS" topic="$KAFKA_TOPIC" \
    queue_dir=/notify-queue queue_limit=100000
mc admin service restart local
wait_ready

for bucket in $NOTIFY_BUCKETS; do
    mc event add "local/$bucket" "$ARN" --event put --ignore-existing
    mc event list "local/$bucket"
done
echo "minio-init: buckets ($BUCKETS) ready; PUTs in $NOTIFY_BUCKETS -> Kafka topic $KAFKA_TOPIC"
