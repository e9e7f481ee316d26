"""Hosting through the real API: a trained model started, asked, scaled, killed and stopped.

One server of its own (``hosting_server``: short autoscaling periods and
queue bound) and one version trained on it through the API, started and
stopped by each test. The inference units are real processes; the tests look
at them through /proc and /metrics.
"""
from __future__ import annotations

import argparse
import io
import json
import os
import signal
import struct
import threading
import time
import zlib
from collections import Counter

import pytest
from botocore.exceptions import ClientError, WaiterError
from PIL import Image

from customlabels.ml.runtime.artifact import MODELS_BUCKET, ONNX_NAME, artifact_prefix

from services.cli import hosting_commands
from tests.support.api import error_code
from tests.support.evaluation import listed
from tests.support.models import (
    HOSTING_ENV,
    SCALE_TO_ZERO_TAG,
    SignedDetect,
    UNIT_CAPACITY,
    TrainedVersion,
    alive,
    client,
    flower_photos,
    metric,
    start,
    stop,
    train_flowers,
    unit_pids,
    wait_for,
    wait_status,
)
from tests.support.server import ServerProcess
from tests.support.training import cli, readme_snippet

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def hosting_server(tmp_path_factory):
    """A server of its own: short autoscaling periods and queue bound (``HOSTING_ENV``)."""
    process = ServerProcess(tmp_path_factory.mktemp("hosting") / "data", extra_env=HOSTING_ENV).start()
    yield process
    process.stop()


@pytest.fixture(scope="module")
def flowers_model(hosting_server) -> TrainedVersion:
    """flowers-small trained on it through the API, once (10 s budget)."""
    return train_flowers(hosting_server)


def labels_of(answer: dict) -> list[tuple[str, float]]:
    return [(label["Name"], label["Confidence"]) for label in answer["CustomLabels"]]


@pytest.fixture
def stopped_after(flowers_model):
    """Whatever a test leaves running is stopped (and its units checked gone) afterwards."""
    yield flowers_model
    if flowers_model.describe()["Status"] in ("STARTING", "RUNNING"):
        stop(flowers_model)
    wait_for(lambda: not unit_pids(flowers_model.server), 15, "the units to exit")


class Load:
    """``threads`` callers sending DetectCustomLabels (lean signed HTTP, no client retries) until stopped."""

    def __init__(self, server, version_arn: str, photos: list[tuple[str, bytes]], threads: int,
                 expected: dict[int, list] | None = None) -> None:
        self.bodies = [SignedDetect.body(version_arn, data, MinConfidence=0) for _, data in photos]
        self.expected = expected or {}
        self.server = server
        self.results: Counter = Counter()
        self.wrong: list[str] = []
        self.latest_throttle = 0.0
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(n,), daemon=True) for n in range(threads)]

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(60)

    def _run(self, n: int) -> None:
        caller = SignedDetect(self.server.endpoint)
        i = n
        while not self._stop.is_set():
            index = i % len(self.bodies)
            i += 7
            try:
                status, answer = caller.call(self.bodies[index])
            except OSError as exc:
                self.results[f"connection: {exc}"] += 1
                continue
            outcome = "ok" if status == 200 else answer.get("__type", str(status))
            self.results[outcome] += 1
            if outcome == "ok" and index in self.expected and labels_of(answer) != self.expected[index]:
                self.wrong.append(f"image {index}: {labels_of(answer)} != {self.expected[index]}")
            if outcome == "ThrottlingException":
                self.latest_throttle = time.monotonic()
                time.sleep(0.02)  # a client's backoff, briefly
        caller.close()


def expected_answers(rek, version_arn: str, photos) -> dict[int, list]:
    """Each photo's answer with MinConfidence=0 (every label's score), asked one at a time."""
    return {i: labels_of(rek.detect_custom_labels(ProjectVersionArn=version_arn, Image={"Bytes": data},
                                                  MinConfidence=0))
            for i, (_, data) in enumerate(photos)}


# --- the full cycle ---------------------------------------------------------------------------
def test_start_detect_stop_with_boto3(stopped_after, hosting_server):
    version = stopped_after
    rek = hosting_server.rekognition()
    assert version.describe()["Status"] == "TRAINING_COMPLETED"
    assert rek.start_project_version(ProjectVersionArn=version.version_arn, MinInferenceUnits=1,
                                     MaxInferenceUnits=3)["Status"] == "STARTING"
    rek.get_waiter("project_version_running").wait(ProjectArn=version.project_arn, VersionNames=["v1"],
                                                   WaiterConfig={"Delay": 0.25, "MaxAttempts": 240})
    description = version.describe()
    assert (description["Status"], description["MinInferenceUnits"], description["MaxInferenceUnits"]) == \
        ("RUNNING", 1, 3)
    units = unit_pids(hosting_server)
    assert len(units) == 1  # a real process, up and health-checked before RUNNING

    photos = flower_photos(per_label=2)
    for label, data in photos:
        answer = rek.detect_custom_labels(ProjectVersionArn=version.version_arn, Image={"Bytes": data})
        found = answer["CustomLabels"]
        assert all(set(item) == {"Name", "Confidence"} for item in found)  # no Geometry: a classifier
        assert [item["Confidence"] for item in found] == sorted((item["Confidence"] for item in found), reverse=True)
    everything = rek.detect_custom_labels(ProjectVersionArn=version.version_arn, Image={"Bytes": photos[0][1]},
                                          MinConfidence=0)["CustomLabels"]
    assert sorted(item["Name"] for item in everything) == ["daisy", "dandelion", "roses", "sunflowers", "tulips"]
    assert sum(item["Confidence"] for item in everything) == pytest.approx(100, abs=0.01)  # softmax
    top = everything[0]
    assert labels_of({"CustomLabels": everything[:2]}) == labels_of(rek.detect_custom_labels(
        ProjectVersionArn=version.version_arn, Image={"Bytes": photos[0][1]}, MinConfidence=0, MaxResults=2))
    above = rek.detect_custom_labels(ProjectVersionArn=version.version_arn, Image={"Bytes": photos[0][1]},
                                     MinConfidence=top["Confidence"])["CustomLabels"]
    assert above == [top]
    # the same image from the blob store
    hosting_server.objects().put("hosting-images", "flower.jpg", photos[0][1])
    from_s3 = rek.detect_custom_labels(ProjectVersionArn=version.version_arn, MinConfidence=0,
                                       Image={"S3Object": {"Bucket": "hosting-images", "Name": "flower.jpg"}})
    assert from_s3["CustomLabels"] == everything

    assert rek.stop_project_version(ProjectVersionArn=version.version_arn)["Status"] == "STOPPING"
    assert wait_status(version, "STOPPED")["Status"] == "STOPPED"
    wait_for(lambda: not any(alive(pid) for pid in units), 10, "the unit process to exit")
    with pytest.raises(rek.exceptions.ResourceNotReadyException):
        rek.detect_custom_labels(ProjectVersionArn=version.version_arn, Image={"Bytes": photos[0][1]})


def assert_answers_as_evaluated(rek, version_arn: str, snapshot: list[dict]) -> None:
    """Each test image of the evaluation ``snapshot`` gets, from ``version_arn``, the evaluation's answer exactly:
    its reported labels and confidences, and (MinConfidence=0) the score of every label the line lists."""
    assert snapshot
    for line in snapshot:
        bucket, _, key = line["source-ref"].removeprefix("s3://").partition("/")
        predictions = listed(line)
        reported = sorted(((p.label, round(100 * p.confidence, 3)) for p in predictions if p.reported),
                          key=lambda item: -item[1])
        image = {"S3Object": {"Bucket": bucket, "Name": key}}
        answer = rek.detect_custom_labels(ProjectVersionArn=version_arn, Image=image)
        assert labels_of(answer) == reported, line["source-ref"]
        every = dict(labels_of(rek.detect_custom_labels(ProjectVersionArn=version_arn, Image=image, MinConfidence=0)))
        for p in predictions:  # false negatives too: the score under the threshold
            assert every[p.label] == round(100 * p.confidence, 3), line["source-ref"]


def test_answers_reproduce_the_evaluation_snapshot(stopped_after, hosting_server):
    """One artifact, one answer: each test image's labels and confidences are the evaluation's, exactly."""
    version = stopped_after
    start(version)
    assert len(version.snapshot) == 40
    assert_answers_as_evaluated(hosting_server.rekognition(), version.version_arn, version.snapshot)


def test_a_copied_version_runs_and_answers_as_its_source(flowers_model, hosting_server, unique):
    """CopyProjectVersion into another project; the copy, started, gives the source's evaluated answers."""
    rek = hosting_server.rekognition()
    destination = rek.create_project(ProjectName=unique)["ProjectArn"]
    arn = rek.copy_project_version(
        SourceProjectArn=flowers_model.project_arn, SourceProjectVersionArn=flowers_model.version_arn,
        DestinationProjectArn=destination, VersionName="copy",
        OutputConfig={"S3Bucket": "customlabels-output", "S3KeyPrefix": "copies/"})["ProjectVersionArn"]
    copy = TrainedVersion(hosting_server, destination, arn, "copy", {})
    wait_status(copy, "COPYING_COMPLETED")
    try:
        start(copy)
        assert_answers_as_evaluated(rek, arn, flowers_model.snapshot)
    finally:
        if copy.describe()["Status"] in ("STARTING", "RUNNING"):
            stop(copy)
    wait_for(lambda: not unit_pids(hosting_server), 15, "the copy's unit to exit")


def test_the_readme_classify_agrees_with_detect_custom_labels(stopped_after, hosting_server, tmp_path):
    """The README's plain-onnxruntime ``classify()`` on the exported model, thresholds included, gives
    DetectCustomLabels' answer: the same labels, each with its Confidence divided by 100."""
    version = stopped_after
    exported = cli(hosting_server, "export", "--project", "hostflowers", "--version", "v1", "-o", str(tmp_path / "model"))
    assert exported.returncode == 0, exported.stderr
    classify = readme_snippet(tmp_path)["classify"]
    thresholds = json.loads((tmp_path / "model" / "model.json").read_text())["thresholds"]
    start(version)
    rek = hosting_server.rekognition()
    for n, (label, data) in enumerate(flower_photos(per_label=4)):
        path = tmp_path / f"{label}-{n}.jpg"
        path.write_bytes(data)
        every = dict(labels_of(rek.detect_custom_labels(ProjectVersionArn=version.version_arn, Image={"Bytes": data},
                                                        MinConfidence=0)))
        shown = dict(labels_of(rek.detect_custom_labels(ProjectVersionArn=version.version_arn, Image={"Bytes": data})))
        mine = classify(str(path))
        # a score within float noise of its threshold could go either way (the threshold is one of the scores)
        clear = {name for name, confidence in every.items() if abs(confidence / 100 - thresholds[name]) > 1e-4}
        assert set(mine) & clear == set(shown) & clear, path.name
        for name, score in mine.items():
            assert 100 * score == pytest.approx(every[name], abs=1e-3), (path.name, name)


# --- errors ----------------------------------------------------------------------------------------
def _png_header_only(width: int, height: int) -> bytes:
    """A PNG that claims ``width`` x ``height`` pixels (a decompression bomb's header)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack("!I", len(data)) + kind + data + struct.pack("!I", zlib.crc32(kind + data))
    ihdr = struct.pack("!IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def test_errors_of_a_version_that_is_not_running(flowers_model, hosting_server):
    rek = hosting_server.rekognition()
    arn = flowers_model.version_arn
    photo = flower_photos(1)[0][1]
    before = flowers_model.describe()["Status"]
    assert before in ("TRAINING_COMPLETED", "STOPPED")
    with pytest.raises(rek.exceptions.ResourceNotReadyException):
        rek.detect_custom_labels(ProjectVersionArn=arn, Image={"Bytes": photo})
    missing = arn.replace("/version/v1/", "/version/nope/")
    with pytest.raises(rek.exceptions.ResourceNotFoundException):
        rek.detect_custom_labels(ProjectVersionArn=missing, Image={"Bytes": photo})
    with pytest.raises(rek.exceptions.ResourceNotFoundException):
        rek.start_project_version(ProjectVersionArn=missing, MinInferenceUnits=1)
    with pytest.raises(rek.exceptions.InvalidParameterException):
        rek.start_project_version(ProjectVersionArn=arn, MinInferenceUnits=3, MaxInferenceUnits=2)
    with pytest.raises(rek.exceptions.LimitExceededException):
        rek.start_project_version(ProjectVersionArn=arn, MinInferenceUnits=1, MaxInferenceUnits=1000)
    with pytest.raises(rek.exceptions.ResourceInUseException):
        rek.stop_project_version(ProjectVersionArn=arn)
    assert flowers_model.describe()["Status"] == before


def test_errors_of_a_running_version(stopped_after, hosting_server):
    version = stopped_after
    start(version)
    rek = client(hosting_server, attempts=1)
    arn = version.version_arn
    with pytest.raises(rek.exceptions.ResourceInUseException):
        rek.start_project_version(ProjectVersionArn=arn, MinInferenceUnits=1)

    def refused(image: dict, **params) -> str:
        with pytest.raises(ClientError) as caught:
            rek.detect_custom_labels(ProjectVersionArn=arn, Image=image, **params)
        assert caught.value.response["Error"]["Message"]
        return error_code(caught)

    photo = flower_photos(1)[0][1]
    before = rek.detect_custom_labels(ProjectVersionArn=arn, Image={"Bytes": photo}, MinConfidence=0)["CustomLabels"]
    assert refused({"Bytes": photo + b"\0" * (4 * 1024 * 1024)}) == "ImageTooLargeException"  # over 4 MB
    assert refused({"Bytes": _png_header_only(20000, 20000)}) == "ImageTooLargeException"  # a bomb, seen in the unit
    assert refused({"Bytes": b"GIF89a" + b"\0" * 100}) == "InvalidImageFormatException"
    assert refused({"Bytes": photo[:3] + b"garbage" * 20}) == "InvalidImageFormatException"  # a JPEG in name only
    assert refused({"S3Object": {"Bucket": "hosting-images", "Name": "no-such.jpg"}}) == "InvalidS3ObjectException"
    assert refused({"S3Object": {"Bucket": "no-such-bucket", "Name": "a.jpg"}}) == "InvalidS3ObjectException"
    assert refused({}) == "InvalidParameterException"
    assert refused({"Bytes": photo, "S3Object": {"Bucket": "hosting-images", "Name": "a.jpg"}}) == \
        "InvalidParameterException"
    # the model is unharmed: the same answer as before, from the same one unit
    assert rek.detect_custom_labels(ProjectVersionArn=arn, Image={"Bytes": photo}, MinConfidence=0)["CustomLabels"] == before
    assert len(unit_pids(hosting_server)) == 1


def test_a_model_whose_units_cannot_start_is_failed_with_the_reason(flowers_model, hosting_server):
    rek = hosting_server.rekognition()
    copy = rek.copy_project_version(
        SourceProjectArn=flowers_model.project_arn, SourceProjectVersionArn=flowers_model.version_arn,
        DestinationProjectArn=flowers_model.project_arn, VersionName="broken",
        OutputConfig={"S3Bucket": "customlabels-output", "S3KeyPrefix": "broken/"})["ProjectVersionArn"]
    broken = TrainedVersion(hosting_server, flowers_model.project_arn, copy, "broken", {})
    wait_status(broken, "COPYING_COMPLETED")
    # The models bucket is read-only through the API: damage the file where the embedded blob store keeps it.
    (hosting_server.data_dir / "objects" / MODELS_BUCKET / (artifact_prefix(copy) + ONNX_NAME)).write_bytes(b"not an onnx file")
    rek.start_project_version(ProjectVersionArn=copy, MinInferenceUnits=1)
    with pytest.raises(WaiterError):
        rek.get_waiter("project_version_running").wait(ProjectArn=broken.project_arn, VersionNames=["broken"],
                                                       WaiterConfig={"Delay": 0.25, "MaxAttempts": 240})
    description = broken.describe()
    assert description["Status"] == "FAILED"
    assert "could not start" in description["StatusMessage"]
    assert not unit_pids(hosting_server)
    with pytest.raises(rek.exceptions.ResourceNotReadyException):
        rek.detect_custom_labels(ProjectVersionArn=copy, Image={"Bytes": flower_photos(1)[0][1]})
    assert stop(broken)["Status"] == "STOPPED"
    rek.delete_project_version(ProjectVersionArn=copy)


# --- concurrency, scaling, failures ---------------------------------------------------------------
def test_dozens_of_parallel_callers_each_get_their_own_answer(stopped_after, hosting_server):
    version = stopped_after
    start(version, min_units=2)
    callers = 2 * UNIT_CAPACITY  # as many as the two units take in flight: none is throttled
    rek = client(hosting_server, pool=callers)
    photos = flower_photos(per_label=4)
    expected = expected_answers(rek, version.version_arn, photos)
    assert len({tuple(answer) for answer in expected.values()}) == len(photos)  # every photo answers differently
    batches_before = metric(hosting_server, "customlabels_inference_batch_size_count", version=version.version_arn)
    wrong, done = [], Counter()

    def caller(n: int) -> None:
        for k in range(6):
            index = (n * 7 + k) % len(photos)
            answer = rek.detect_custom_labels(ProjectVersionArn=version.version_arn, MinConfidence=0,
                                              Image={"Bytes": photos[index][1]})
            done[n] += 1
            if labels_of(answer) != expected[index]:
                wrong.append((index, labels_of(answer)))

    threads = [threading.Thread(target=caller, args=(n,)) for n in range(callers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert sum(done.values()) == callers * 6 and not wrong
    batches = metric(hosting_server, "customlabels_inference_batch_size_count", version=version.version_arn)
    assert batches > batches_before


def test_scales_out_to_the_maximum_throttles_beyond_it_and_scales_back_in(stopped_after, hosting_server):
    """Capacity is explicit (``UNIT_CAPACITY`` requests in flight per unit, see ``HOSTING_ENV``): twice what
    the maximum of two units takes keeps callers waiting on any CPU, so the throttling does not depend on speed."""
    version = stopped_after
    start(version, min_units=1, max_units=2)
    def units() -> float:
        return metric(hosting_server, "customlabels_inference_units", version=version.version_arn)

    def in_flight() -> float:
        return metric(hosting_server, "customlabels_detect_in_flight", version=version.version_arn)

    photos = flower_photos(per_label=2)
    expected = expected_answers(hosting_server.rekognition(), version.version_arn, photos)
    assert units() == 1
    seen, most_in_flight = set(), 0.0
    with Load(hosting_server, version.version_arn, photos, threads=4 * UNIT_CAPACITY, expected=expected) as load:
        wait_for(lambda: units() == 2, 30, "a second unit under load")
        reached = time.monotonic()
        deadline = reached + 30
        while time.monotonic() < deadline and load.latest_throttle < reached + 0.5:
            seen.add(units())
            most_in_flight = max(most_in_flight, in_flight())
            time.sleep(0.1)
    assert seen <= {2}, f"units outside [1, 2]: {seen}"
    assert load.latest_throttle > reached, "no ThrottlingException at the maximum"
    assert 0 < most_in_flight <= 2 * UNIT_CAPACITY, f"{most_in_flight} requests in flight on 2 units"
    assert not load.wrong
    assert set(load.results) == {"ok", "ThrottlingException"}, load.results
    assert load.results["ok"] >= 20
    # idle: back to the minimum, never below
    wait_for(lambda: units() == 1, 20, "scale in to one unit")
    wait_for(lambda: len(unit_pids(hosting_server)) == 1, 10, "the retired unit's process to exit")
    time.sleep(4)  # longer than the scale-in period: still one
    assert units() == 1


def test_a_killed_unit_is_replaced_and_its_requests_are_retried(stopped_after, hosting_server):
    version = stopped_after
    start(version, min_units=1)
    photos = flower_photos(per_label=2)
    expected = expected_answers(hosting_server.rekognition(), version.version_arn, photos)
    (victim,) = unit_pids(hosting_server)
    failures = metric(hosting_server, "customlabels_inference_unit_failures_total", version=version.version_arn)
    with Load(hosting_server, version.version_arn, photos, threads=8, expected=expected) as load:
        time.sleep(1.0)
        os.kill(victim, signal.SIGKILL)
        replacement = wait_for(lambda: unit_pids(hosting_server) - {victim}, 30, "a replacement unit")
        time.sleep(1.0)
    assert set(load.results) == {"ok"}, load.results  # nothing lost, nothing refused
    assert not load.wrong
    assert not alive(victim) and len(replacement) == 1
    assert metric(hosting_server, "customlabels_inference_unit_failures_total",
                  version=version.version_arn) == failures + 1
    assert metric(hosting_server, "customlabels_detect_retries_total", version=version.version_arn) >= 1
    assert version.describe()["Status"] == "RUNNING"


def test_stop_during_load_refuses_politely_and_frees_every_unit(stopped_after, hosting_server):
    version = stopped_after
    start(version, min_units=2)
    photos = flower_photos(per_label=2)
    expected = expected_answers(hosting_server.rekognition(), version.version_arn, photos)
    units = unit_pids(hosting_server)
    assert len(units) == 2
    with Load(hosting_server, version.version_arn, photos, threads=12, expected=expected) as load:
        time.sleep(1.0)
        hosting_server.rekognition().stop_project_version(ProjectVersionArn=version.version_arn)
        wait_status(version, "STOPPED")
        time.sleep(0.5)
    assert set(load.results) == {"ok", "ResourceNotReadyException"}, load.results
    assert not load.wrong
    wait_for(lambda: not any(alive(pid) for pid in units), 10, "every unit to exit")
    assert metric(hosting_server, "customlabels_inference_units", version=version.version_arn) == 0


def test_scale_to_zero_after_idle_seconds_and_cold_start(stopped_after, hosting_server):
    version = stopped_after
    rek = hosting_server.rekognition()
    rek.tag_resource(ResourceArn=version.version_arn, Tags={SCALE_TO_ZERO_TAG: "2"})
    try:
        start(version, min_units=1)
        photo = flower_photos(1)[0][1]
        warm = rek.detect_custom_labels(ProjectVersionArn=version.version_arn, Image={"Bytes": photo})
        wait_for(lambda: not unit_pids(hosting_server), 15, "every unit to go when idle")
        assert version.describe()["Status"] == "RUNNING"  # still RUNNING: the next request brings a unit
        started = time.perf_counter()
        cold = rek.detect_custom_labels(ProjectVersionArn=version.version_arn, Image={"Bytes": photo})
        cold_seconds = time.perf_counter() - started
        assert cold["CustomLabels"] == warm["CustomLabels"]
        assert len(unit_pids(hosting_server)) == 1
        assert cold_seconds < 10
        print(f"cold start: {cold_seconds:.2f} s for the first request after scaling to zero")
        assert metric(hosting_server, "customlabels_cold_start_seconds_count", version=version.version_arn) >= 1
    finally:
        rek.untag_resource(ResourceArn=version.version_arn, TagKeys=[SCALE_TO_ZERO_TAG])


# --- observability and the CLI ---------------------------------------------------------------------
def test_metrics_are_served_in_prometheus_format(stopped_after, hosting_server):
    version = stopped_after
    start(version)
    hosting_server.rekognition().detect_custom_labels(ProjectVersionArn=version.version_arn,
                                                      Image={"Bytes": flower_photos(1)[0][1]})
    arn = version.version_arn
    assert metric(hosting_server, "customlabels_detect_requests_total", version=arn, outcome="ok") >= 1
    assert metric(hosting_server, "customlabels_detect_latency_seconds_count", version=arn) >= 1
    assert metric(hosting_server, "customlabels_detect_latency_seconds_bucket", version=arn, le="+Inf") >= 1
    assert metric(hosting_server, "customlabels_inference_units", version=arn) == 1
    assert metric(hosting_server, "customlabels_inference_unit_start_seconds_count", version=arn) >= 1
    assert metric(hosting_server, "customlabels_detect_in_flight", version=arn) == 0


def _cli(server, *argv: str) -> int:
    parser = argparse.ArgumentParser(prog="customlabels")
    commands = parser.add_subparsers()
    def connection(default):
        return argparse.ArgumentParser(add_help=False)

    hosting_commands.add_commands(commands, connection, argparse.RawDescriptionHelpFormatter,
                                  lambda args: server.rekognition())
    args = parser.parse_args(argv)
    return args.handler(args)


def test_cli_start_detect_draw_stop(stopped_after, hosting_server, tmp_path, capsys):
    version = stopped_after
    names = ("--project", "hostflowers", "--version", "v1")
    assert _cli(hosting_server, "start", *names, "--max-units", "2", "--wait") == 0
    assert "RUNNING (1-2 inference units)" in capsys.readouterr().out
    photos = flower_photos(per_label=1)[:2]
    paths = []
    for n, (label, data) in enumerate(photos):
        paths.append(tmp_path / f"{label}-{n}.jpg")
        paths[-1].write_bytes(data)
    assert _cli(hosting_server, "detect", *map(str, paths), *names, "--min-confidence", "0",
                "--output", str(tmp_path / "drawn")) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 10 and all(line.count("\t") == 2 for line in lines)
    for path in paths:
        drawn = Image.open(io.BytesIO((tmp_path / "drawn" / f"{path.stem}-labels.jpg").read_bytes()))
        assert drawn.size == Image.open(path).size
    assert _cli(hosting_server, "detect", str(paths[0]), "--version-arn", version.version_arn, "--json") == 0
    assert '"CustomLabels"' in capsys.readouterr().out
    assert _cli(hosting_server, "stop", *names, "--wait") == 0
    assert capsys.readouterr().out.split() == ["STOPPING", "STOPPED"]


# --- the service going away --------------------------------------------------------------------------
def test_units_die_with_a_killed_service_and_come_back_with_it(flowers_model, hosting_server):
    """kill -9 of the server leaves no unit behind; restarted, it brings the RUNNING version's units back."""
    start(flowers_model, min_units=1)
    photo = flower_photos(1)[0][1]
    before = hosting_server.rekognition().detect_custom_labels(
        ProjectVersionArn=flowers_model.version_arn, Image={"Bytes": photo}, MinConfidence=0)["CustomLabels"]
    units = unit_pids(hosting_server)
    hosting_server.kill()
    wait_for(lambda: not any(alive(pid) for pid in units), 10, "the orphaned units to exit")
    hosting_server.start()
    assert flowers_model.describe()["Status"] == "RUNNING"
    answer = hosting_server.rekognition().detect_custom_labels(
        ProjectVersionArn=flowers_model.version_arn, Image={"Bytes": photo}, MinConfidence=0)
    assert answer["CustomLabels"] == before  # the same model, answering as before the kill
    assert len(unit_pids(hosting_server)) == 1
    stop(flowers_model)
    wait_for(lambda: not unit_pids(hosting_server), 10, "the units to exit")
