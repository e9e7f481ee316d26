"""SIGKILL at random moments, service after service, in the multi-process cluster (issue 12 item 5).

Every service its own OS process over Kafka (Tansu), MongoDB (SecantusDB) and
S3 (SeaweedFS), as deployed. Each round runs a mixed workload through the
gateway with stock clients (uploads into the watched bucket, an import, a
training, a start or a stop, DetectCustomLabels with a flow definition bound,
so feedback opens a loop per new image) and, at a moment drawn from the seeded
generator, SIGKILLs one process (gateway and services in turn) and starts it
again. Every request is repeated until it is acknowledged, as a client does.
After every round, within bounded waits:

* nothing lost or duplicated: each acknowledged upload is one entry, each
  import has its manifest's lines once each, each version name exists once;
* every job and version terminal (imports complete, versions
  TRAINING_COMPLETED, the started or stopped version RUNNING or STOPPED as last
  asked), none left in progress;
* no orphan inference unit: every unit process is a child of the running
  hosting process, as many as the running versions have units;
* every acknowledged request's effect present: the projects, datasets,
  versions, entries and statuses above, and a human loop for each new image an
  answered DetectCustomLabels showed while hosting was not the one killed
  (hosting keeps captures queued in memory for a moment: a kill may lose those).

Beside the loop, on the same cluster: a training stopped mid-way by a
rebalance goes on with the budget it has left.

``make test`` runs two rounds (victims drawn by the seed); ``make test-faults``
runs rounds for ``CUSTOMLABELS_FAULT_SECONDS`` (600 there), every process in
turn, with ``CUSTOMLABELS_FAULT_SEED`` (default 1) choosing the moments.
"""
from __future__ import annotations

import hashlib
import os
import random
import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pytest

from services.feedback.loops import capture_loop_name
from tests.integration.test_multiprocess import distributed_env
from tests.support.api import (
    all_entries,
    classification_line,
    create_from_manifest,
    manifest,
    wait_dataset,
)
from tests.support.cluster import EVERY_SERVICE, Cluster
from tests.support.feedback import client as stock_client
from tests.support.feedback import create_flow
from tests.support.procfs import unit_processes
from tests.support.server import DATASETS
from tests.support.training import BUDGET_TAG, OUTPUT

pytestmark = pytest.mark.slow

SECONDS = float(os.environ.get("CUSTOMLABELS_FAULT_SECONDS") or 0)  # 0: the short run of make test
SEED = int(os.environ.get("CUSTOMLABELS_FAULT_SEED") or 1)
SHORT_ROUNDS = 2
VICTIMS = ("gateway", *EVERY_SERVICE)
ACK_SECONDS = 240  # how long a request is repeated before the test gives up on it
SETTLE_SECONDS = 300  # how long a round may take to reach its checked state
LABELS = ("daisy", "sunflowers")
IMPORT_LINES = 40
BUCKET = "faults"
PROJECT = "faults"


def photos(label: str) -> list[Path]:
    return sorted((DATASETS / "flowers-small" / label).glob("*.jpg"))


def until_acknowledged(call, accept_codes: tuple[str, ...] = ()):
    """``call()`` again until it answers (or answers one of ``accept_codes``: the effect is there already,
    a repeat of an earlier attempt that was done but not answered); the answer, or the code."""
    deadline = time.monotonic() + ACK_SECONDS
    while True:
        try:
            return call()
        except Exception as error:  # noqa: BLE001 - a killed process shows as anything from a reset to a 5xx
            code = getattr(error, "response", {}).get("Error", {}).get("Code")
            if code in accept_codes:
                return code
            if time.monotonic() > deadline:
                raise AssertionError(f"not acknowledged in {ACK_SECONDS} s: {error!r}") from error
            time.sleep(0.5)


def settle(check, what: str, cluster: Cluster, timeout: float = SETTLE_SECONDS):
    """``check()`` until it returns without an AssertionError; past ``timeout``, its error and the logs."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return check()
        except AssertionError as error:
            if time.monotonic() > deadline:
                raise AssertionError(f"{what}: {error}\n{cluster.logs(20)}") from error
        except Exception as error:  # noqa: BLE001 - a service still coming back
            if time.monotonic() > deadline:
                raise AssertionError(f"{what}: {error!r}\n{cluster.logs(20)}") from error
        time.sleep(1)


@dataclass
class Ledger:
    """What the cluster acknowledged, round by round: the effects that must be present."""

    uploads: list[str] = field(default_factory=list)  # source-refs in the watched bucket
    imports: dict[str, str] = field(default_factory=dict)  # project name -> dataset ARN
    versions: list[str] = field(default_factory=list)
    detected: dict[str, int] = field(default_factory=dict)  # a new image's key -> the round it was answered in
    cycled: str = "STOPPED"  # what the start/stop version was last asked to become
    lock: threading.Lock = field(default_factory=threading.Lock)


class World:
    """The cluster and what the rounds share: the trained project, the served and the cycled versions."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.ledger = Ledger()
        self.rek = cluster.gateway.rekognition()
        self.objects = cluster.gateway.objects()
        self.endpoint = cluster.gateway.endpoint
        self.rng = random.Random(SEED)

    def client(self):
        return self.cluster.gateway.rekognition()

    # --- set-up ---------------------------------------------------------------------------------
    def set_up(self) -> None:
        train = [(label, path) for label in LABELS for path in photos(label)[:IMPORT_LINES // 2]]
        self.objects.put_many(BUCKET, [(f"{label}/{path.name}", path.read_bytes()) for label, path in train])
        self.import_lines = [classification_line(BUCKET, f"{label}/{path.name}", label) for label, path in train]
        self.objects.put(BUCKET, "import.manifest", manifest(self.import_lines))
        self.project = self.rek.create_project(ProjectName=PROJECT)["ProjectArn"]
        self.train_dataset = create_from_manifest(self.rek, self.objects, self.project, BUCKET, self.import_lines)
        assert wait_dataset(self.rek, self.train_dataset)["Status"] == "CREATE_COMPLETE"
        settle(lambda: self._project_sees_dataset(), "the projects service hearing of the dataset", self.cluster, 60)
        self.served = self.train("v0")
        self.wait_status("v0", "TRAINING_COMPLETED")
        arn = self.rek.copy_project_version(
            SourceProjectArn=self.project, SourceProjectVersionArn=self.served, DestinationProjectArn=self.project,
            VersionName="cycled", OutputConfig=OUTPUT)["ProjectVersionArn"]
        self.cycled = arn
        self.wait_status("cycled", "COPYING_COMPLETED")
        sagemaker = stock_client(self.endpoint, "sagemaker")
        self.flow = create_flow(sagemaker, "every-answer")  # no conditions: every new image opens a loop
        self.rek.tag_resource(ResourceArn=self.served, Tags={"customlabels:flow-definition": self.flow})
        self.rek.start_project_version(ProjectVersionArn=self.served, MinInferenceUnits=1)
        self.wait_status("v0", "RUNNING")
        self.fresh_images = [path.read_bytes() for label in LABELS for path in photos(label)[IMPORT_LINES // 2:]]
        self.rng.shuffle(self.fresh_images)

    def _project_sees_dataset(self) -> None:
        (project,) = self.rek.describe_projects(ProjectNames=[PROJECT])["ProjectDescriptions"]
        assert project["Datasets"] and project["Datasets"][0]["Status"] == "CREATE_COMPLETE"

    def train(self, name: str) -> str:
        answer = until_acknowledged(lambda: self.client().create_project_version(
            ProjectArn=self.project, VersionName=name, OutputConfig=OUTPUT, Tags={BUDGET_TAG: "10"}),
            ("ResourceAlreadyExistsException",))
        if isinstance(answer, str):
            return self.describe(name)["ProjectVersionArn"]
        return answer["ProjectVersionArn"]

    def describe(self, name: str) -> dict:
        found = self.client().describe_project_versions(ProjectArn=self.project, VersionNames=[name])
        (description,) = found["ProjectVersionDescriptions"]
        return description

    def wait_status(self, name: str, wanted: str) -> None:
        def check() -> None:
            description = self.describe(name)
            if description["Status"].endswith("FAILED"):
                pytest.fail(f"{name}: {description['Status']} {description.get('StatusMessage')}\n{self.cluster.logs(20)}")
            assert description["Status"] == wanted, description["Status"]

        settle(check, f"{name} {wanted}", self.cluster)

    # --- the workload of one round ----------------------------------------------------------------
    def workload(self, round_: int, errors: list[str]) -> list[threading.Thread]:
        """The round's requests, one thread per kind; what went wrong goes to ``errors``."""

        def run(job) -> None:
            try:
                job(round_)
            except Exception as error:  # noqa: BLE001 - reported by the test
                errors.append(f"{job.__name__}: {error!r}")

        jobs = [self.uploads, self.an_import, self.a_training, self.start_or_stop, self.detects]
        return [threading.Thread(target=run, args=(job,), name=f"{job.__name__}-{round_}") for job in jobs]

    def uploads(self, round_: int) -> None:
        image = photos("daisy")[-1].read_bytes()
        for n in range(4):
            key = f"{PROJECT}/train/r{round_}-{n}.jpg"
            until_acknowledged(lambda: self.objects.put("customlabels-images", key, image))
            with self.ledger.lock:
                self.ledger.uploads.append(f"s3://customlabels-images/{key}")
            time.sleep(self.rng.uniform(0.5, 2.0))

    def an_import(self, round_: int) -> None:
        name = f"import-r{round_}"
        rek = self.client()
        answer = until_acknowledged(lambda: rek.create_project(ProjectName=name), ("ResourceAlreadyExistsException",))
        project = answer["ProjectArn"] if isinstance(answer, dict) else \
            rek.describe_projects(ProjectNames=[name])["ProjectDescriptions"][0]["ProjectArn"]
        source = {"GroundTruthManifest": {"S3Object": {"Bucket": BUCKET, "Name": "import.manifest"}}}
        answer = until_acknowledged(lambda: rek.create_dataset(ProjectArn=project, DatasetType="TRAIN",
                                                               DatasetSource=source),
                                    ("ResourceAlreadyExistsException",))
        dataset = answer["DatasetArn"] if isinstance(answer, dict) else \
            rek.describe_projects(ProjectNames=[name])["ProjectDescriptions"][0]["Datasets"][0]["DatasetArn"]
        with self.ledger.lock:
            self.ledger.imports[name] = dataset

    def a_training(self, round_: int) -> None:
        self.train(f"r{round_}")
        with self.ledger.lock:
            self.ledger.versions.append(f"r{round_}")

    def start_or_stop(self, round_: int) -> None:
        rek = self.client()
        if round_ % 2 == 0:
            until_acknowledged(lambda: rek.start_project_version(ProjectVersionArn=self.cycled, MinInferenceUnits=1),
                               ("ResourceInUseException",))
            wanted = "RUNNING"
        else:
            until_acknowledged(lambda: rek.stop_project_version(ProjectVersionArn=self.cycled),
                               ("ResourceInUseException",))
            wanted = "STOPPED"
        with self.ledger.lock:
            self.ledger.cycled = wanted

    def detects(self, round_: int) -> None:
        rek = self.client()
        for _ in range(3):
            if not self.fresh_images:
                return
            image = self.fresh_images.pop()
            until_acknowledged(lambda: rek.detect_custom_labels(ProjectVersionArn=self.served, Image={"Bytes": image}))
            with self.ledger.lock:
                self.ledger.detected[_digest(image)] = round_
            time.sleep(self.rng.uniform(0.5, 2.0))

    # --- the checks after a round ---------------------------------------------------------------
    def check(self, round_: int, hosting_killed: set[int]) -> None:
        rek = self.client()
        ledger = self.ledger
        # uploads: each acknowledged one is an entry of the project's TRAIN dataset, once
        entries = [e["source-ref"] for e in all_entries(rek, self.train_dataset)]
        assert len(entries) == len(set(entries)), "a duplicated entry"
        assert set(ledger.uploads) <= set(entries), f"uploads missing: {sorted(set(ledger.uploads) - set(entries))}"
        assert len(entries) == IMPORT_LINES + len(ledger.uploads)
        # imports: complete, every line once
        for name, dataset in ledger.imports.items():
            description = rek.describe_dataset(DatasetArn=dataset)["DatasetDescription"]
            assert description["Status"] == "CREATE_COMPLETE", (name, description["Status"], description.get("StatusMessage"))
            assert description["DatasetStats"]["TotalEntries"] == IMPORT_LINES
            refs = [e["source-ref"] for e in all_entries(rek, dataset)]
            assert sorted(refs) == sorted(line["source-ref"] for line in self.import_lines), name
        projects = [p["ProjectArn"].split("/")[-2] for p in rek.describe_projects()["ProjectDescriptions"]]
        assert sorted(projects) == sorted({PROJECT, *ledger.imports}), projects
        # versions: each once, every training done, the cycled one as last asked
        described = rek.describe_project_versions(ProjectArn=self.project)["ProjectVersionDescriptions"]
        names = [d["ProjectVersionArn"].split("/")[-2] for d in described]
        assert sorted(names) == sorted({"v0", "cycled", *ledger.versions}), names
        by_name = {d["ProjectVersionArn"].split("/")[-2]: d for d in described}
        for name in ledger.versions:
            assert by_name[name]["Status"] == "TRAINING_COMPLETED", (name, by_name[name]["Status"],
                                                                      by_name[name].get("StatusMessage"))
        assert by_name["v0"]["Status"] == "RUNNING", by_name["v0"]
        assert by_name["cycled"]["Status"] == ledger.cycled, by_name["cycled"]
        # inference units: children of the running hosting process only, one per running version
        hosting = self.cluster.processes["hosting"].process.pid
        units = unit_processes(self.cluster.data_dir)
        orphans = {pid: parent for pid, parent in units.items() if parent != hosting}
        assert not orphans, f"orphan inference units (pid: parent): {orphans}"
        assert len(units) == 1 + (ledger.cycled == "RUNNING"), units
        # feedback: a loop for each new image answered in a round where hosting was not killed
        loops = stock_client(self.endpoint, "sagemaker-a2i-runtime").list_human_loops(
            FlowDefinitionArn=self.flow, MaxResults=100)["HumanLoopSummaries"]
        names = [loop["HumanLoopName"] for loop in loops]
        assert len(names) == len(set(names))
        expected = {capture_loop_name(self.flow, digest) for digest, r in ledger.detected.items() if r not in hosting_killed}
        assert expected <= set(names), f"{len(expected - set(names))} answered images without a loop"


def _digest(image: bytes) -> str:
    return hashlib.sha256(image).hexdigest()


@pytest.fixture(scope="module")
def world(request, tmp_path_factory):
    """Every service its own process over Kafka, MongoDB and S3, set up (``World.set_up``) once for the module."""
    unique = f"t{uuid.uuid4().hex[:10]}"
    cluster = Cluster(tmp_path_factory.mktemp("faults") / "data", env=distributed_env(request, unique),
                      services=EVERY_SERVICE).start()
    cluster.s3 = request.getfixturevalue("seaweedfs_server")
    try:
        world = World(cluster)
        world.set_up()
        yield world
    finally:
        cluster.stop()


RESUME_BUDGET = 30
STOP_AT = 15  # percent of the budget trained, at least, when the training process is stopped


@pytest.mark.timeout(900)  # the cluster and its set-up (a trained version) come with the first test
def test_a_training_handed_back_by_a_rebalance_resumes_with_the_budget_it_has_left(world):
    """The training process stopped mid-training (SIGTERM: it hands the job back and leaves its consumer
    group, which rebalances) and started again: the new member resumes the job from its checkpoint (the
    snapshot of the datasets taken before, not a new one) with what is left of the budget (the seconds
    trained were committed with the progress reports): its progress goes on from where it was, never
    from 0 % as when a resumed job started its training over with the whole budget."""
    rek, cluster = world.client(), world.cluster
    until_acknowledged(lambda: rek.create_project_version(
        ProjectArn=world.project, VersionName="resumed", OutputConfig=OUTPUT, Tags={BUDGET_TAG: str(RESUME_BUDGET)}))
    with world.ledger.lock:
        world.ledger.versions.append("resumed")

    def progress() -> tuple[str, int | None]:
        found = world.describe("resumed")
        share = re.match(r"Training \((\d+)% of the", found.get("StatusMessage") or "")
        return found["Status"], int(share[1]) if share else None

    deadline, trained = time.monotonic() + 180, 0
    while trained < STOP_AT:
        status, percent = progress()
        assert status == "TRAINING_IN_PROGRESS", (status, cluster.logs(20))
        trained = percent or 0
        assert time.monotonic() < deadline, f"training never reached {STOP_AT} %"
        time.sleep(0.1)
    stopped_at = datetime.now(UTC)
    cluster.processes["training"].stop()  # SIGTERM
    restarted = time.monotonic()
    cluster.processes["training"].start()
    after: list[int] = []  # the shares of the budget reported once training goes on
    while (state := progress())[0] == "TRAINING_IN_PROGRESS":
        if state[1] is not None and (not after or after[-1] != state[1]):
            after.append(state[1])
        assert time.monotonic() - restarted < SETTLE_SECONDS, cluster.logs(20)
        time.sleep(0.1)
    description = world.describe("resumed")
    assert description["Status"] == "TRAINING_COMPLETED", (description["StatusMessage"], cluster.logs(20))
    billable = description["BillableTrainingTimeInSeconds"]
    print(f"stopped at {trained} % of {RESUME_BUDGET} s, went on from {after[:1]} %; billable {billable} s; "
          f"{time.monotonic() - restarted:.0f} s from the restart to TRAINING_COMPLETED")
    assert after and min(after) >= trained, after
    assert RESUME_BUDGET * trained / 100 <= billable <= RESUME_BUDGET + 8, billable
    snapshot = description["TrainingDataResult"]["Input"]["Assets"][0]["GroundTruthManifest"]["S3Object"]
    assert cluster.s3.client().stat_object(snapshot["Bucket"], snapshot["Name"]).last_modified < stopped_at


@pytest.mark.timeout(SECONDS + 900)
def test_a_seeded_kill_loop_over_every_service_loses_nothing(world):
    rng = world.rng
    order = list(VICTIMS)
    rng.shuffle(order)
    started, round_ = time.monotonic(), 0
    hosting_killed: set[int] = set()
    while True:
        if SECONDS == 0 and round_ == SHORT_ROUNDS:
            break
        if SECONDS and round_ and time.monotonic() - started > SECONDS:
            break
        victim = order[round_ % len(order)]
        moment = rng.uniform(0.5, 8.0)
        print(f"round {round_}: SIGKILL {victim} at {moment:.1f} s (seed {SEED})", flush=True)
        errors: list[str] = []
        threads = world.workload(round_, errors)
        for thread in threads:
            thread.start()
        time.sleep(moment)
        process = world.cluster.processes[victim]
        process.kill()  # SIGKILL
        if victim == "hosting":
            hosting_killed.add(round_)
        process.start(world.cluster.start_timeout)
        for thread in threads:
            thread.join(ACK_SECONDS + 60)
            assert not thread.is_alive(), f"{thread.name} never finished"
        assert not errors, f"round {round_} ({victim} killed): {errors}\n{world.cluster.logs(20)}"
        settle(lambda: world.check(round_, hosting_killed), f"the checks after round {round_} ({victim} killed)",
               world.cluster)
        print(f"round {round_}: checked ({time.monotonic() - started:.0f} s in)", flush=True)
        round_ += 1
