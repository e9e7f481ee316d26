"""The ``customlabels`` CLI as a user runs it: a real subprocess against a live server.

The ``server`` fixture (tests/conftest.py) starts one server for the session;
``server.env`` points a child process's CUSTOMLABELS_ENDPOINT and credentials at it.
Each test works in its own project and bucket, named uniquely.
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import uuid
from collections import Counter
from pathlib import Path

import pytest

from tests.support.coco import raccoon_as_coco

REPO = Path(__file__).resolve().parents[2]
DATASETS = REPO.parent / "shared" / "datasets"
RACCOON = DATASETS / "raccoon"
CLI = [sys.executable, "-m", "services.cli.main"]
COMMANDS = ["upload", "import-folder", "import-voc", "import-coco", "serve"]


def run_cli(*args: str, env: dict | None = None, timeout: float = 280) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*CLI, *map(str, args)], env=env, cwd=REPO, capture_output=True, text=True, timeout=timeout
    )


def unique_name() -> str:
    return f"cli{uuid.uuid4().hex[:10]}"


def stats(stdout: str) -> dict[str, str]:
    """The ``Name: value`` lines an import prints at the end."""
    return dict(line.split(": ", 1) for line in stdout.splitlines() if ": " in line)


def assert_one_clean_error(result: subprocess.CompletedProcess, code: str, exit_code: int = 1) -> None:
    assert result.returncode == exit_code, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith(f"{code}: "), result.stderr


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def list_entries(rekognition, dataset_arn: str) -> list[dict]:
    entries, token = [], None
    while True:
        page = rekognition.list_dataset_entries(DatasetArn=dataset_arn, **({"NextToken": token} if token else {}))
        entries += [json.loads(entry) for entry in page["DatasetEntries"]]
        token = page.get("NextToken")
        if not token:
            return entries


def project_datasets(rekognition, name: str) -> dict[str, str]:
    projects = rekognition.describe_projects(ProjectNames=[name])["ProjectDescriptions"]
    assert len(projects) == 1
    return {d["DatasetType"]: d["DatasetArn"] for d in projects[0]["Datasets"]}


# --- help and usage (no server needed) -----------------------------------------------------


@pytest.mark.parametrize("command", [None, *COMMANDS])
def test_help_exits_0_and_shows_an_example(command):
    result = run_cli(*([command] if command else []), "--help")

    assert result.returncode == 0, result.stderr
    assert "Example" in result.stdout
    assert "customlabels " in result.stdout.split("Example", 1)[1]


def test_bad_usage_exits_2(tmp_path):
    assert run_cli("import-folder", tmp_path).returncode == 2  # --project missing
    missing = run_cli("import-folder", tmp_path / "nope", "--project", "p")
    assert missing.returncode == 2 and "nope is not a folder" in missing.stderr
    split = run_cli("import-voc", DATASETS / "bccd", "--split", "holdout", "--project", "p")
    assert split.returncode == 2 and "no split 'holdout'" in split.stderr


def test_dry_run_prints_the_manifest_without_a_server():
    env = {**os.environ, "CUSTOMLABELS_ENDPOINT": f"http://127.0.0.1:{closed_port()}"}
    result = run_cli("import-voc", DATASETS / "raccoon", "--project", "r", "--dry-run", env=env)

    assert result.returncode == 0, result.stderr
    assert len(result.stdout.splitlines()) == 200
    assert '"source-ref":"s3://customlabels-images/r/train/images/' in result.stdout


def test_unreachable_endpoint_is_one_clean_line_and_exit_1():
    env = {**os.environ, "CUSTOMLABELS_ENDPOINT": f"http://127.0.0.1:{closed_port()}"}

    imported = run_cli("import-folder", DATASETS / "flowers-small", "--project", "p", env=env)
    uploaded = run_cli("upload", DATASETS / "raccoon" / "images" / "raccoon-1.jpg", "--bucket", "b", env=env)

    assert_one_clean_error(imported, "EndpointConnectionError")
    assert_one_clean_error(uploaded, "EndpointConnectionError")


# --- against the live server ---------------------------------------------------------------


def test_import_folder_of_flowers_into_a_new_project(server):
    project = unique_name()

    result = run_cli(
        "import-folder", DATASETS / "flowers-small", "--project", project, "--create-project", env=server.env
    )

    assert result.returncode == 0, result.stderr
    assert stats(result.stdout) | {"Dataset": ""} == {
        "Dataset": "", "Status": "CREATE_COMPLETE",
        "TotalEntries": "200", "LabeledEntries": "200", "TotalLabels": "5", "ErrorEntries": "0",
    }
    rekognition = server.rekognition()
    datasets = project_datasets(rekognition, project)
    assert set(datasets) == {"TRAIN"}
    labels = rekognition.list_dataset_labels(DatasetArn=datasets["TRAIN"])["DatasetLabelDescriptions"]
    assert sorted(l["LabelName"] for l in labels) == ["daisy", "dandelion", "roses", "sunflowers", "tulips"]
    entries = list_entries(rekognition, datasets["TRAIN"])
    assert len(entries) == 200
    assert all(e["source-ref"].startswith(f"s3://customlabels-images/{project}/train/") for e in entries)


def test_import_voc_of_microcontroller_creates_then_updates_the_dataset(server):
    project = unique_name()
    micro = DATASETS / "microcontroller"

    first = run_cli(
        "import-voc", micro, "--split", "train", "--project", project, "--create-project", env=server.env
    )
    assert first.returncode == 0, first.stderr
    assert stats(first.stdout)["Status"] == "CREATE_COMPLETE"
    assert stats(first.stdout)["TotalEntries"] == "142"
    assert stats(first.stdout)["TotalLabels"] == "4"

    # The project now has a training dataset: the test split is added to it.
    second = run_cli("import-voc", micro, "--split", "test", "--project", project, env=server.env)
    assert second.returncode == 0, second.stderr
    assert stats(second.stdout)["Status"] == "UPDATE_COMPLETE"
    assert stats(second.stdout)["TotalEntries"] == "149"
    assert stats(second.stdout)["ErrorEntries"] == "0"

    # The boxes arrived intact: the README's per-class totals over both splits.
    rekognition = server.rekognition()
    boxes = Counter()
    for entry in list_entries(rekognition, project_datasets(rekognition, project)["TRAIN"]):
        names = entry["bounding-box-metadata"]["class-map"]
        boxes.update(names[str(a["class_id"])] for a in entry["bounding-box"]["annotations"])
    assert boxes == {"ESP8266": 47, "Heltec_ESP32_Lora": 44, "Raspberry_Pi_3": 43, "Arduino_Nano": 43}


def test_import_coco_of_raccoons_keeps_every_box(server, tmp_path):
    """A COCO file (raccoon, converted independently) through ``import-coco`` into a live server: each
    image an entry of the TRAIN dataset with exactly the file's boxes; ``--as-labels`` an image-level label."""
    project, as_labels = unique_name(), unique_name()
    coco = json.loads(raccoon_as_coco(tmp_path / "instances.json", limit=30).read_text())
    boxes = Counter(a["image_id"] for a in coco["annotations"])

    result = run_cli("import-coco", tmp_path / "instances.json", "--images", RACCOON / "images",
                     "--project", project, "--create-project", env=server.env)
    assert result.returncode == 0, result.stderr
    assert stats(result.stdout) | {"Dataset": ""} == {
        "Dataset": "", "Status": "CREATE_COMPLETE",
        "TotalEntries": "30", "LabeledEntries": "30", "TotalLabels": "1", "ErrorEntries": "0",
    }
    rekognition = server.rekognition()
    (label,) = rekognition.list_dataset_labels(DatasetArn=project_datasets(rekognition, project)["TRAIN"])["DatasetLabelDescriptions"]
    assert label == {"LabelName": "raccoon", "LabelStats": {"EntryCount": 30, "BoundingBoxCount": sum(boxes.values())}}
    by_file = {image["file_name"]: image for image in coco["images"]}
    entries = list_entries(rekognition, project_datasets(rekognition, project)["TRAIN"])
    assert sorted(e["source-ref"].rsplit("/", 1)[1] for e in entries) == sorted(by_file)
    for entry in entries:
        image = by_file[entry["source-ref"].rsplit("/", 1)[1]]
        expected = [a["bbox"] for a in coco["annotations"] if a["image_id"] == image["id"]]
        annotations = entry["bounding-box"]["annotations"]
        assert [[a["left"], a["top"], a["width"], a["height"]] for a in annotations] == expected, image["file_name"]
        assert entry["bounding-box"]["image_size"][0] | {"depth": 3} == {"width": image["width"], "height": image["height"], "depth": 3}
        assert entry["bounding-box-metadata"]["class-map"] == {str(annotations[0]["class_id"]): "raccoon"}

    labels = run_cli("import-coco", tmp_path / "instances.json", "--images", RACCOON / "images",
                     "--project", as_labels, "--create-project", "--as-labels", env=server.env)
    assert labels.returncode == 0, labels.stderr
    assert (stats(labels.stdout)["LabeledEntries"], stats(labels.stdout)["TotalLabels"]) == ("30", "1")
    (label,) = rekognition.list_dataset_labels(DatasetArn=project_datasets(rekognition, as_labels)["TRAIN"])["DatasetLabelDescriptions"]
    assert label == {"LabelName": "raccoon", "LabelStats": {"EntryCount": 30, "BoundingBoxCount": 0}}


def test_importing_into_a_missing_project_is_refused(server):
    result = run_cli("import-folder", DATASETS / "flowers-small", "--project", unique_name(), env=server.env)

    assert_one_clean_error(result, "ResourceNotFoundException")
    assert "--create-project" in result.stderr


def test_wrong_secret_is_refused_cleanly(server):
    env = {**server.env, "AWS_SECRET_ACCESS_KEY": "not-the-secret"}

    result = run_cli("import-folder", DATASETS / "flowers-small", "--project", unique_name(), env=env)

    assert_one_clean_error(result, "InvalidSignatureException")


def test_upload_stores_files_that_read_back(server, tmp_path):
    bucket = unique_name()
    (tmp_path / "a dir").mkdir()
    (tmp_path / "a dir" / "naïve photo+1.jpg").write_bytes(b"first")
    (tmp_path / "a dir" / "sub").mkdir()
    (tmp_path / "a dir" / "sub" / "b.png").write_bytes(b"second")
    (tmp_path / "c.jpg").write_bytes(b"third")

    result = run_cli("upload", tmp_path / "a dir", tmp_path / "c.jpg", "--bucket", bucket, "--prefix", "in/",
                     env=server.env)

    assert result.returncode == 0, result.stderr
    assert sorted(result.stdout.split("\n")[:-1]) == [
        f"s3://{bucket}/in/c.jpg", f"s3://{bucket}/in/naïve photo+1.jpg", f"s3://{bucket}/in/sub/b.png",
    ]
    objects = server.objects()
    assert objects.get(bucket, "in/naïve photo+1.jpg") == b"first"
    assert objects.get(bucket, "in/sub/b.png") == b"second"
    assert objects.get(bucket, "in/c.jpg") == b"third"
