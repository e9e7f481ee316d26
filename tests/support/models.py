"""Trained models for hosting tests and benchmarks, and the tools to drive them.

``train_flowers(server)`` makes a real model version the way a user does:
flowers-small imported with the CLI, ``create_project_version`` with a short
training budget, the ``project_version_training_completed`` waiter; the
version's evaluation manifest snapshot comes with it (what hosting must
reproduce).

``HOSTING_ENV`` sets up a server for hosting tests: the autoscaler's periods
shortened (scale out after 1 s of queueing, in after 3 idle seconds) and the
queue bound at its floor, so scaling and throttling show within seconds, at a
capacity the tests know: ``UNIT_CAPACITY`` requests in flight per inference
unit, whatever the speed of the CPU (a bound in seconds of work would let a
fast CPU take every request a test sends, and never throttle).

``SignedDetect`` sends DetectCustomLabels the way boto3 does (JSON 1.1,
base64 image, SigV4 over the body) from one keep-alive connection, at a
fraction of boto3's CPU per call: a load generator that leaves the server
the cores.
"""
from __future__ import annotations

import base64
import http.client
import json
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials

from customlabels.tags import SCALE_TO_ZERO_AFTER_SECONDS as SCALE_TO_ZERO_TAG  # noqa: F401 (the tests import it from here)
from customlabels.config import DEV_ACCESS_KEY, DEV_SECRET_KEY
from services.hosting.pool import MIN_QUEUE_PER_UNIT
from tests.support.api import wait_for  # noqa: F401 (the hosting tests import it from here too)
from tests.support.server import DATASETS, ServerProcess
from tests.support.training import BUDGET_TAG, OUTPUT, import_flowers, project_arn

FLOWERS = DATASETS / "flowers-small"
UNIT_CAPACITY = MIN_QUEUE_PER_UNIT  # requests in flight per unit: beyond units x this, ThrottlingException
HOSTING_ENV = {
    "CUSTOMLABELS_HOSTING_SCALE_OUT_SECONDS": "1",
    "CUSTOMLABELS_HOSTING_SCALE_IN_SECONDS": "3",
    # A unit takes max(MIN_QUEUE_PER_UNIT, queue seconds / its seconds per image) requests: with
    # a thousandth of a second, the floor on any CPU.
    "CUSTOMLABELS_HOSTING_QUEUE_SECONDS": "0.001",
}


@dataclass
class TrainedVersion:
    server: ServerProcess
    project_arn: str
    version_arn: str
    version_name: str
    description: dict
    snapshot: list[dict] = field(default_factory=list)  # the evaluation manifest snapshot's lines

    def describe(self) -> dict:
        found = self.server.rekognition().describe_project_versions(
            ProjectArn=self.project_arn, VersionNames=[self.version_name])
        return found["ProjectVersionDescriptions"][0]


def train_flowers(server: ServerProcess, project: str = "hostflowers", version: str = "v1",
                  budget: str = "10") -> TrainedVersion:
    """flowers-small trained through the API (about 15 s with a 10 s budget on 2 cores)."""
    client = server.rekognition()
    import_flowers(server, project)
    arn = project_arn(client, project)
    deadline = time.monotonic() + 60
    while True:  # the projects service may not have heard that the dataset is complete yet
        try:
            version_arn = client.create_project_version(
                ProjectArn=arn, VersionName=version, OutputConfig=OUTPUT, Tags={BUDGET_TAG: budget})["ProjectVersionArn"]
            break
        except client.exceptions.ResourceInUseException:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    client.get_waiter("project_version_training_completed").wait(
        ProjectArn=arn, VersionNames=[version], WaiterConfig={"Delay": 1, "MaxAttempts": 600})
    trained = TrainedVersion(server, arn, version_arn, version, {})
    trained.description = trained.describe()
    output = trained.description["TestingDataResult"]["Output"]["Assets"][0]["GroundTruthManifest"]["S3Object"]
    raw = server.objects().get(output["Bucket"], output["Name"])
    trained.snapshot = [json.loads(line) for line in raw.splitlines() if line.strip()]
    return trained


# --- running a version ------------------------------------------------------------------
def client(server: ServerProcess, *, attempts: int = 10, pool: int = 10):
    """A boto3 client; ``attempts=1`` sees every ThrottlingException, the default retries them as the SDK does."""
    import boto3

    return boto3.client(
        "rekognition", endpoint_url=server.endpoint, region_name="us-east-1",
        aws_access_key_id=DEV_ACCESS_KEY, aws_secret_access_key=DEV_SECRET_KEY,
        config=Config(retries={"max_attempts": attempts, "mode": "standard"}, max_pool_connections=pool),
    )


def start(version: TrainedVersion, min_units: int = 1, max_units: int | None = None, timeout: float = 120) -> dict:
    """StartProjectVersion, then the project_version_running waiter; the description once RUNNING."""
    rek = version.server.rekognition()
    params = {"ProjectVersionArn": version.version_arn, "MinInferenceUnits": min_units}
    if max_units is not None:
        params["MaxInferenceUnits"] = max_units
    assert rek.start_project_version(**params)["Status"] == "STARTING"
    rek.get_waiter("project_version_running").wait(
        ProjectArn=version.project_arn, VersionNames=[version.version_name],
        WaiterConfig={"Delay": 0.25, "MaxAttempts": int(timeout * 4)})
    return version.describe()


def stop(version: TrainedVersion, timeout: float = 60) -> dict:
    """StopProjectVersion, then wait for STOPPED; the description."""
    rek = version.server.rekognition()
    assert rek.stop_project_version(ProjectVersionArn=version.version_arn)["Status"] == "STOPPING"
    return wait_status(version, "STOPPED", timeout)


def wait_status(version: TrainedVersion, status: str, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        description = version.describe()
        if description["Status"] == status:
            return description
        if time.monotonic() > deadline:
            raise AssertionError(f"still {description['Status']} ({description.get('StatusMessage')}), not {status}")
        time.sleep(0.1)


# --- processes and metrics ----------------------------------------------------------------
def unit_pids(server: ServerProcess) -> set[int]:
    """The server's inference unit processes (its children running services.hosting.unit_server)."""
    if server.process is None:
        return set()
    parent = server.process.pid
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            if ppid == parent and b"services.hosting.unit_server" in (entry / "cmdline").read_bytes():
                found.add(int(entry.name))
        except (OSError, ValueError, IndexError):
            continue
    return found


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, dead but not yet reaped by its parent, counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


_SAMPLE = re.compile(r'^(?P<name>[a-zA-Z_:][\w:]*)(?:\{(?P<labels>.*)\})? (?P<value>\S+)$')


def metrics(server: ServerProcess) -> list[tuple[str, dict[str, str], float]]:
    """Every sample of ``GET /metrics`` (signed: the public port serves metrics to its keys only): (name, labels, value)."""
    request = AWSRequest(method="GET", url=server.endpoint + "/metrics", data=b"")
    SigV4Auth(Credentials(DEV_ACCESS_KEY, DEV_SECRET_KEY), "metrics", "us-east-1").add_auth(request)
    connection = _http(server)
    try:
        connection.request("GET", "/metrics", headers=dict(request.headers.items()))
        text = connection.getresponse().read().decode()
    finally:
        connection.close()
    samples = []
    for line in text.splitlines():
        match = _SAMPLE.match(line)
        if match and not line.startswith("#"):
            labels = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', match["labels"] or ""))
            samples.append((match["name"], labels, float(match["value"])))
    return samples


def metric(server: ServerProcess, name: str, **labels: str) -> float:
    """The sum of ``name``'s samples whose labels include ``labels`` (0 when there is none)."""
    return sum(value for n, have, value in metrics(server) if n == name and labels.items() <= have.items())


def _http(server: ServerProcess) -> http.client.HTTPConnection:
    host, port = server.endpoint.removeprefix("http://").split(":")
    return http.client.HTTPConnection(host, int(port), timeout=60)


# --- images ------------------------------------------------------------------------------
def flower_photos(per_label: int = 4) -> list[tuple[str, bytes]]:
    """(label, JPEG bytes) for the first ``per_label`` photos of each flowers-small label."""
    return [(label.name, photo.read_bytes())
            for label in sorted(p for p in FLOWERS.iterdir() if p.is_dir())
            for photo in sorted(label.glob("*.jpg"))[:per_label]]


# --- a lean signed client ------------------------------------------------------------------
class SignedDetect:
    """DetectCustomLabels over one keep-alive HTTP connection, signed as boto3 signs it."""

    def __init__(self, endpoint: str, region: str = "us-east-1") -> None:
        self.endpoint = endpoint.rstrip("/")
        host, port = self.endpoint.removeprefix("http://").split(":")
        self.connection = http.client.HTTPConnection(host, int(port), timeout=120)
        self.auth = SigV4Auth(Credentials(DEV_ACCESS_KEY, DEV_SECRET_KEY), "rekognition", region)

    @staticmethod
    def body(version_arn: str, image: bytes, **params) -> bytes:
        """The request body: build it once per image, send it many times."""
        return json.dumps({"ProjectVersionArn": version_arn, "Image": {"Bytes": base64.b64encode(image).decode()},
                           **params}).encode()

    def call(self, body: bytes) -> tuple[int, dict]:
        request = AWSRequest(method="POST", url=self.endpoint + "/", data=body, headers={
            "Content-Type": "application/x-amz-json-1.1",
            "X-Amz-Target": "RekognitionService.DetectCustomLabels",
        })
        self.auth.add_auth(request)
        headers = dict(request.headers.items())
        try:
            self.connection.request("POST", "/", body=body, headers=headers)
            response = self.connection.getresponse()
            return response.status, json.loads(response.read() or b"{}")
        except (http.client.HTTPException, OSError):
            self.connection.close()  # reconnects on the next request
            raise

    def close(self) -> None:
        self.connection.close()


def cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1
