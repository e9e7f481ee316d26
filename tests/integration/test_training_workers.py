"""Training workers that die or are stopped mid-training, on a real server process.

The README promises: a worker that dies is replaced by one that resumes from
the last finished stage; after three lost workers the version fails instead of
staying in progress; a worker stopped on purpose (SIGTERM) hands its job back
without it counting as lost, and the next worker resumes from the job's
snapshot. Each test has a server of its own (it kills it) and a small project
(16 flowers, two labels) trained with the shortest budget.

Where the job stood when its worker died is read from the version document the
dead process left (``tests.support.peek``): the API shows no attempt count.
"""
from __future__ import annotations

import os
import signal
import time

import pytest

from services.training.records import VERSIONS
from services.training.worker import MAX_ATTEMPTS
from tests.support.api import wait_for
from tests.support.peek import documents
from tests.support.server import DATASETS, ServerProcess
from tests.support.training import BUDGET_TAG, OUTPUT, cli, import_flowers, project_arn, wait_version

pytestmark = pytest.mark.slow
LABELS = ("daisy", "tulips")


@pytest.fixture
def own_server(tmp_path):
    process = ServerProcess(tmp_path / "data").start()
    yield process
    process.stop()


def small_project(server, tmp_path, name: str) -> str:
    """A project whose TRAIN dataset is 8 photos of each of two flowers (its ARN)."""
    folder = tmp_path / "flowers"
    for label in LABELS:
        (folder / label).mkdir(parents=True)
        for photo in sorted((DATASETS / "flowers-small" / label).glob("*.jpg"))[:8]:
            (folder / label / photo.name).symlink_to(photo)
    done = cli(server, "import-folder", str(folder), "--project", name, "--create-project")
    assert done.returncode == 0, done.stderr
    return project_arn(server.rekognition(), name)


def version_doc(server, arn: str) -> dict:
    (doc,) = [d for d in documents(server.data_dir, f"training.{VERSIONS}") if d["_id"] == arn]
    return doc


def wait_training_by(server, arn: str, attempt: int) -> dict:
    """The version document once the worker of ``attempt`` reports training progress.

    A restarted server still shows the last worker's "Training (...)" message, so
    the new worker is known by its attempt count, and its own progress by a write
    after the one that counted it (each write bumps ``_version``)."""
    counted = wait_for(lambda: (d := version_doc(server, arn))["job"]["attempts"] == attempt and d, 120,
                       f"worker {attempt} to take the job")
    return wait_for(lambda: (d := version_doc(server, arn))["_version"] > counted["_version"] + 1
                    and d["status_message"].startswith("Training (") and d, 120,
                    f"worker {attempt} to report training progress")


def start_training(server, tmp_path, name: str) -> tuple[str, str]:
    """(project ARN, version ARN) of version v1, training with a 10 s budget."""
    project = small_project(server, tmp_path, name)
    version = server.rekognition().create_project_version(
        ProjectArn=project, VersionName="v1", OutputConfig=OUTPUT, Tags={BUDGET_TAG: "10"})["ProjectVersionArn"]
    return project, version


def test_three_lost_workers_fail_the_version_with_the_reason(own_server, tmp_path):
    project, version = start_training(own_server, tmp_path, "lost")
    for attempt in range(1, MAX_ATTEMPTS + 1):
        wait_training_by(own_server, version, attempt)
        own_server.kill()  # kill -9 mid-training: the worker is lost
        assert version_doc(own_server, version)["job"]["attempts"] == attempt  # it counted, and nothing gave it back
        own_server.start()

    description = wait_version(own_server.rekognition(), project, "v1", timeout=120)
    assert description["Status"] == "TRAINING_FAILED"
    assert description["StatusMessage"].startswith(f"the training worker stopped {MAX_ATTEMPTS} times while training")
    assert "smaller budget" in description["StatusMessage"]  # what the user can do about it


def test_a_worker_stopped_by_sigterm_hands_the_job_back_and_the_next_resumes_from_the_snapshot(own_server, tmp_path):
    project, version = start_training(own_server, tmp_path, "handed")
    first_stop = None
    for _ in range(MAX_ATTEMPTS):  # as many stops as would fail the version if they counted as lost workers
        wait_training_by(own_server, version, 1)
        first_stop = first_stop or time.time()
        own_server.process.send_signal(signal.SIGTERM)
        assert own_server.process.wait(60) == 0, own_server.log_tail()  # a clean shutdown, not a kill
        own_server.process = None
        assert version_doc(own_server, version)["job"]["attempts"] == 0  # handed back: the attempt is not counted
        own_server.start()

    client = own_server.rekognition()
    description = wait_version(client, project, "v1", timeout=300)
    assert description["Status"] == "TRAINING_COMPLETED", description["StatusMessage"]
    assert len(client.describe_project_versions(ProjectArn=project)["ProjectVersionDescriptions"]) == 1
    # trained from the snapshot the first worker took, not from a new one
    snapshot = description["TrainingDataResult"]["Input"]["Assets"][0]["GroundTruthManifest"]["S3Object"]
    written = os.stat(own_server.data_dir / "objects" / snapshot["Bucket"] / snapshot["Name"]).st_mtime
    assert written < first_stop, f"the snapshot was written again after the first stop ({written} >= {first_stop})"


def test_a_sigterm_also_hands_back_the_job_queued_behind_the_running_one(own_server, tmp_path):
    """Two versions of a long budget: one trains, the other waits for the training slot. A SIGTERM
    ends the process at once, neither job run to its budget, and neither counts as a lost worker."""
    project = small_project(own_server, tmp_path, "queued")
    client = own_server.rekognition()
    versions = [client.create_project_version(ProjectArn=project, VersionName=name, OutputConfig=OUTPUT,
                                              Tags={BUDGET_TAG: "300"})["ProjectVersionArn"] for name in ("v1", "v2")]
    wait_for(lambda: [version_doc(own_server, v).get("job", {}).get("attempts") for v in versions].count(1) == 1,
             120, "one of the two versions training")
    own_server.process.send_signal(signal.SIGTERM)
    stopping = time.monotonic()
    assert own_server.process.wait(60) == 0, own_server.log_tail()
    assert time.monotonic() - stopping < 60
    own_server.process = None
    assert [version_doc(own_server, v).get("job", {}).get("attempts", 0) for v in versions] == [0, 0]


def test_a_killed_worker_is_replaced_and_the_version_completes(own_server):
    """kill -9 during training; the restarted process resumes the job from its snapshot."""
    client = own_server.rekognition()
    import_flowers(own_server, "killed")
    arn = project_arn(client, "killed")
    version = client.create_project_version(ProjectArn=arn, VersionName="v1", OutputConfig=OUTPUT,
                                            Tags={BUDGET_TAG: "30"})["ProjectVersionArn"]
    wait_training_by(own_server, version, 1)
    own_server.kill()
    own_server.start()
    description = wait_version(own_server.rekognition(), arn, "v1")
    assert description["Status"] == "TRAINING_COMPLETED", description["StatusMessage"]
    assert description["EvaluationResult"]["F1Score"] > 0.5
    assert len(own_server.rekognition().describe_project_versions(ProjectArn=arn)["ProjectVersionDescriptions"]) == 1
