"""Prometheus metrics of the hosting service (prometheus-client's default registry).

The gateway serves the registry at ``GET /metrics`` in the text format, so in
embedded mode one scrape shows everything. Labels carry the model version's
ARN; a deployment hosts few models at a time, so the series stay few.
"""
from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.002, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

REQUESTS = Counter(
    "customlabels_detect_requests_total",
    "DetectCustomLabels requests by model version and outcome (ok or the error's __type)",
    ["version", "outcome"],
)
LATENCY = Histogram(
    "customlabels_detect_latency_seconds",
    "DetectCustomLabels time inside the hosting service, from the validated request to the answer",
    ["version"],
    buckets=LATENCY_BUCKETS,
)
BATCH_SIZE = Histogram(
    "customlabels_inference_batch_size",
    "Images per onnxruntime run in the inference units",
    ["version"],
    buckets=(1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64),
)
QUEUE_DEPTH = Gauge(
    "customlabels_detect_in_flight",
    "Requests inside the hosting service for a model version (queued or being served)",
    ["version"],
)
UNITS = Gauge("customlabels_inference_units", "Inference units serving a model version", ["version"])
UNITS_DESIRED = Gauge("customlabels_inference_units_desired", "Inference units the autoscaler wants", ["version"])
UNIT_EXITS = Counter(
    "customlabels_inference_unit_failures_total",
    "Inference units that died while serving (replaced by the service)",
    ["version"],
)
RETRIES = Counter(
    "customlabels_detect_retries_total",
    "Requests sent again to another unit because theirs died before answering",
    ["version"],
)
UNIT_START = Histogram(
    "customlabels_inference_unit_start_seconds",
    "From spawning a unit to its first health check answered (model load, warm-up included)",
    ["version", "reason"],  # reason: start, scale-out, replace, cold-start
    buckets=(0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0),
)
COLD_START = Histogram(
    "customlabels_cold_start_seconds",
    "Time a request waited for a scaled-to-zero model to get a unit again",
    ["version"],
    buckets=(0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0),
)


def forget(version: str) -> None:
    """Drop a stopped version's gauges (counters and histograms keep their history)."""
    for gauge in (QUEUE_DEPTH, UNITS, UNITS_DESIRED):
        try:
            gauge.remove(version)
        except KeyError:
            pass


CAPTURES = Counter(
    "customlabels_captures_total",
    "DetectCustomLabels answers that met a bound flow definition's conditions: captured (PredictionCaptured "
    "committed), repeated (an image this flow already took), dropped (the capture queue was full), failed",
    ["outcome"],
)
