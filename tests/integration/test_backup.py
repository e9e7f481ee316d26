"""``customlabels backup`` / ``restore``: a copy taken while the server works restores to a server that
serves the same projects, entries and model, and finishes what was in flight.

One server trains a small flowers model and runs it; the backup is taken the
moment an import of more images is in flight (UPDATE_IN_PROGRESS); the
restored folder is served by a second server on another port.
"""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from services.cli.backup import BACKUP_FILE, backup
from tests.support.api import all_entries, wait_dataset, wait_for
from tests.support.server import DATASETS, REPO, ServerProcess
from tests.support.training import BUDGET_TAG, OUTPUT, cli

pytestmark = pytest.mark.slow

FLOWERS = DATASETS / "flowers-small"
LABELS = ("daisy", "roses", "tulips")
PHOTO = sorted((FLOWERS / "roses").glob("*.jpg"))[-1]


def flowers_folder(root, first: int, count: int):
    """A folder of ``count`` photos per label (from the ``first``-th), one sub-folder per label, as links."""
    for label in LABELS:
        (root / label).mkdir(parents=True)
        for photo in sorted((FLOWERS / label).glob("*.jpg"))[first:first + count]:
            (root / label / photo.name).symlink_to(photo)
    return root


def entries(client, project: str) -> dict[str, set[str]]:
    """Every entry of each of the project's datasets, as canonical JSON lines."""
    datasets = client.describe_projects(ProjectNames=[project])["ProjectDescriptions"][0]["Datasets"]
    return {d["DatasetType"]: {json.dumps(e, sort_keys=True) for e in all_entries(client, d["DatasetArn"])}
            for d in datasets}


def customlabels(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "services.cli.main", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=300, env=env)


def test_a_backup_taken_mid_import_restores_to_the_same_projects_entries_and_model(tmp_path):
    source = ServerProcess(tmp_path / "data").start()
    try:
        client = source.rekognition()
        imported = cli(source, "import-folder", str(flowers_folder(tmp_path / "first", 0, 8)),
                       "--project", "kept", "--create-project")
        assert imported.returncode == 0, imported.stderr
        project = client.describe_projects(ProjectNames=["kept"])["ProjectDescriptions"][0]
        train_arn = project["Datasets"][0]["DatasetArn"]
        version = client.create_project_version(ProjectArn=project["ProjectArn"], VersionName="v1", OutputConfig=OUTPUT,
                                                Tags={BUDGET_TAG: "10"})["ProjectVersionArn"]
        client.get_waiter("project_version_training_completed").wait(
            ProjectArn=project["ProjectArn"], VersionNames=["v1"], WaiterConfig={"Delay": 2, "MaxAttempts": 150})
        client.start_project_version(ProjectVersionArn=version, MinInferenceUnits=1)
        client.get_waiter("project_version_running").wait(ProjectArn=project["ProjectArn"], VersionNames=["v1"],
                                                          WaiterConfig={"Delay": 1, "MaxAttempts": 120})
        answer = client.detect_custom_labels(ProjectVersionArn=version, Image={"Bytes": PHOTO.read_bytes()},
                                             MinConfidence=0)["CustomLabels"]

        # More images, and the backup taken while the server checks them.
        more = subprocess.Popen([sys.executable, "-m", "services.cli.main", "import-folder",
                                 str(flowers_folder(tmp_path / "more", 8, 12)), "--project", "kept"],
                                cwd=REPO, env=source.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        wait_for(lambda: more.poll() is not None or client.describe_dataset(DatasetArn=train_arn)[
            "DatasetDescription"]["Status"] == "UPDATE_IN_PROGRESS", 120, "the second import to be in flight",
            interval=0.02)
        assert more.poll() is None, "the import finished before the backup: nothing was in flight"
        summary = backup(tmp_path / "data", tmp_path / "backup")
        assert more.wait(300) == 0, more.stderr.read()
        wait_dataset(client, train_arn)
        expected = entries(client, "kept")
        assert len(expected["TRAIN"]) == 20 * len(LABELS)
    finally:
        source.stop()
    assert summary["objects"] > 0 and (tmp_path / "backup" / BACKUP_FILE).is_file()

    restored = customlabels("restore", str(tmp_path / "backup"), "--data", str(tmp_path / "restored"))
    assert restored.returncode == 0, restored.stderr
    copy = ServerProcess(tmp_path / "restored").start()
    try:
        client = copy.rekognition()
        wait_dataset(client, train_arn)  # an import the backup caught in flight finishes here
        assert entries(client, "kept") == expected
        described = client.describe_project_versions(ProjectArn=project["ProjectArn"], VersionNames=["v1"])
        assert described["ProjectVersionDescriptions"][0]["ProjectVersionArn"] == version
        # RUNNING when the copy was taken: the restored server brings it back, from the copied model files
        client.get_waiter("project_version_running").wait(ProjectArn=project["ProjectArn"], VersionNames=["v1"],
                                                          WaiterConfig={"Delay": 1, "MaxAttempts": 120})
        assert client.detect_custom_labels(ProjectVersionArn=version, Image={"Bytes": PHOTO.read_bytes()},
                                           MinConfidence=0)["CustomLabels"] == answer
    finally:
        copy.stop()


def test_backup_and_restore_refuse_what_they_must_not_touch(tmp_path):
    server = ServerProcess(tmp_path / "data").start()
    try:
        server.rekognition().create_project(ProjectName="one")
        occupied = tmp_path / "occupied"
        occupied.mkdir()
        (occupied / "mine.txt").write_text("keep me")
        env = {"PATH": "/usr/bin:/bin", "CUSTOMLABELS_DATA": str(tmp_path / "data")}

        refused = customlabels("backup", "--to", str(occupied), env=env)
        assert refused.returncode == 1 and "not empty" in refused.stderr
        assert [p.name for p in occupied.iterdir()] == ["mine.txt"]

        distributed = customlabels("backup", "--to", str(tmp_path / "b"), env={**env, "CUSTOMLABELS_MONGODB_URI": "mongodb://x"})
        assert distributed.returncode == 2 and "CUSTOMLABELS_MONGODB_URI" in distributed.stderr

        taken = customlabels("backup", "--to", str(tmp_path / "b"), env=env)
        assert taken.returncode == 0, taken.stderr
    finally:
        server.stop()
    not_a_backup = customlabels("restore", str(occupied), "--data", str(tmp_path / "new"))
    assert not_a_backup.returncode == 1 and "not a complete customlabels backup" in not_a_backup.stderr
    into_occupied = customlabels("restore", str(tmp_path / "b"), "--data", str(occupied))
    assert into_occupied.returncode == 1 and "not empty" in into_occupied.stderr
    assert [p.name for p in occupied.iterdir()] == ["mine.txt"]
    assert not (tmp_path / "new").exists()
    assert not [p for p in tmp_path.iterdir() if ".partial-" in p.name], "no half-written folder is left"
