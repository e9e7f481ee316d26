"""The whole tutorial on flowers-small with the mouse and keyboard, in Chromium:
create a project, upload 200 photos labeled by folder (a progress bar), add
unlabeled photos and label them with number keys, split off a test set, train
with a short budget and watch it progress, read the evaluation (per-label
metrics, assumed thresholds, confusion matrix, a threshold what-if), filter the
test results, start the model, try a photo, copy the snippets, stop it.
Everything the pages did is checked through boto3 as well."""
from __future__ import annotations

import json
import shutil
import time

import pytest
from customlabels.config import DEV_SECRET_KEY

from tests.browser.conftest import page_data, shot, wait_page_status
from tests.support.server import DATASETS
from tests.support.training import wait_version

FLOWERS = DATASETS / "flowers-small"
LABELS = sorted(p.name for p in FLOWERS.iterdir() if p.is_dir())
BUDGET_SECONDS = 15


def wait_datasets(rekognition, project: str, timeout: float = 120) -> dict:
    """The project's datasets once none is in progress: {TRAIN: description, TEST: ...}."""
    deadline = time.monotonic() + timeout
    while True:
        arns = {d["DatasetType"]: d["DatasetArn"] for d in
                rekognition.describe_projects(ProjectNames=[project])["ProjectDescriptions"][0].get("Datasets", [])}
        found = {kind: rekognition.describe_dataset(DatasetArn=arn)["DatasetDescription"] for kind, arn in arns.items()}
        if all(not d["Status"].endswith("_IN_PROGRESS") for d in found.values()):
            return {kind: {**d, "DatasetArn": arns[kind]} for kind, d in found.items()}
        assert time.monotonic() < deadline, f"datasets still busy: {found}"
        time.sleep(0.2)


def entries(rekognition, arn: str, **filters) -> list[dict]:
    found, token = [], None
    while True:
        page = rekognition.list_dataset_entries(DatasetArn=arn, **filters, **({"NextToken": token} if token else {}))
        found += [json.loads(line) for line in page["DatasetEntries"]]
        token = page.get("NextToken")
        if not token:
            return found


def wait_status(rekognition, project_arn: str, status: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while True:
        found = rekognition.describe_project_versions(ProjectArn=project_arn, VersionNames=["v1"])["ProjectVersionDescriptions"][0]
        if found["Status"] == status:
            return
        assert time.monotonic() < deadline, f"v1 is {found['Status']}, not {status}"
        time.sleep(0.25)


def image_labels(line: dict) -> list[str]:
    return sorted(v["class-name"] for k, v in line.items()
                  if k.endswith("-metadata") and isinstance(v, dict) and v.get("type") == "groundtruth/image-classification")


@pytest.mark.slow
def test_the_tutorial_on_flowers(page, server, unique, tmp_path):
    rekognition = server.rekognition()
    project = f"flowers-{unique}"

    # Create the project.
    page.goto("/console/projects")
    page.fill("#name", project)
    page.click("text=Create project")
    page.wait_for_url(f"**/console/projects/{project}")
    shot(page, "project-new")

    # 200 photos, labeled by their folders, dropped in as a folder.
    page.click("text=Create the train dataset")
    page.check("input[value=folders]")
    page.set_input_files("#pick-folder", str(FLOWERS))
    assert "200 image(s)" in page.inner_text("#picked")
    page.click("#start-upload")
    page.wait_for_selector("#open-dataset", timeout=180_000)
    assert page.get_attribute("#progress", "value") == "1"
    assert "LICENSE.txt: not a PNG or JPEG image" in page.inner_text("#file-problems")
    shot(page, "upload")
    datasets = wait_datasets(rekognition, project)
    assert datasets["TRAIN"]["DatasetStats"]["TotalEntries"] == 200
    assert datasets["TRAIN"]["DatasetStats"]["LabeledEntries"] == 200

    # Six more photos, unlabeled, then labeled from the keyboard in the grid.
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    truth = {}
    for label in LABELS[:3]:
        for n, photo in enumerate(sorted((FLOWERS / label).glob("*.jpg"))[:2]):
            name = f"new-{label}-{n}.jpg"
            shutil.copy(photo, inbox / name)
            truth[name] = label
    page.goto(f"/console/projects/{project}/datasets/new?kind=train")
    page.set_input_files("#pick-files", [str(p) for p in sorted(inbox.iterdir())])
    page.click("#start-upload")
    page.wait_for_selector("#open-dataset")
    page.click("#open-dataset")
    page.select_option("#f-state", "unlabeled")
    page.click("text=Filter")
    tiles = page.locator(".tile")
    assert tiles.count() == 6
    shot(page, "grid-unlabeled")
    tiles.first.focus()
    for i in range(6):
        name = tiles.nth(i).get_attribute("aria-label")
        page.keyboard.press(str(LABELS.index(truth[name]) + 1))  # labels the focused image, moves to the next
    page.wait_for_selector("body[data-save-state='All changes saved']")
    assert float(page.get_attribute("body", "data-last-save-ms")) < 1000
    train_arn = wait_datasets(rekognition, project)["TRAIN"]["DatasetArn"]
    saved = {line["source-ref"].rsplit("/", 1)[1]: image_labels(line) for line in entries(rekognition, train_arn, SourceRefContains="new-")}
    assert saved == {name: [label] for name, label in truth.items()}
    page.goto(f"/console/projects/{project}/datasets/train")
    shot(page, "grid", phone=True)

    # Split off a test set (20 %, stratified by label).
    page.goto(f"/console/projects/{project}")
    page.click("text=Split off 20 % for testing")
    datasets = wait_datasets(rekognition, project)
    assert datasets["TEST"]["DatasetStats"]["TotalEntries"] == pytest.approx(41, abs=3)
    assert datasets["TRAIN"]["DatasetStats"]["TotalEntries"] + datasets["TEST"]["DatasetStats"]["TotalEntries"] == 206

    # Train with a short budget and watch it progress.
    page.goto(f"/console/projects/{project}/train")
    page.fill("#version", "v1")
    page.fill("#budget", str(BUDGET_SECONDS))
    page.click("#train")
    page.wait_for_url(f"**/models/v1**")
    assert "TRAINING_IN_PROGRESS" in page.inner_text("#status-line")
    shot(page, "model-training")
    project_arn = rekognition.describe_projects(ProjectNames=[project])["ProjectDescriptions"][0]["ProjectArn"]
    description = wait_version(rekognition, project_arn, "v1", timeout=900)
    assert description["Status"] == "TRAINING_COMPLETED", description.get("StatusMessage")
    page.wait_for_selector("#label-metrics", timeout=30_000)  # the page reloads itself when training ends

    # The evaluation: aggregate figures, one row per label with its assumed threshold, the confusion matrix.
    rows = page.locator("#label-metrics tbody tr")
    assert rows.count() == 5
    assert f"{description['EvaluationResult']['F1Score']:.3f}" in page.inner_text(".stats")
    assert page.locator("#confusion tbody tr").count() == 5
    before = page.inner_text("#label-metrics")
    page.locator("#threshold").fill("0.99")
    assert page.inner_text("#threshold-value") == "0.99"
    assert page.inner_text("#label-metrics") != before  # recomputed from the test predictions
    page.click("#threshold-reset")
    assert page.inner_text("#label-metrics") == before
    shot(page, "model-evaluation", phone=True)

    page.click("text=Test results")
    tests = page_data(page)["tests"]
    assert page.inner_text("#results-count") == f"{len(tests)} of {len(tests)} test images"
    assert len(tests) == datasets["TEST"]["DatasetStats"]["TotalEntries"]
    page.select_option("#r-outcome", "TP")
    assert page.locator(".result").count() > 0
    assert page.locator(".result .tp").count() >= page.locator(".result").count()
    shot(page, "model-test-results", phone=True)

    # Start it, try a photo, read the code, stop it.
    page.click("text=Use model")
    page.fill("#min-units", "1")
    page.fill("#max-units", "1")
    page.click("#start")
    wait_status(rekognition, project_arn, "RUNNING")
    wait_page_status(page, "RUNNING")  # the page follows the status there, and reloads once it is
    photo = sorted((FLOWERS / "roses").glob("*.jpg"))[-1]
    page.set_input_files("#try-file", str(photo))
    page.wait_for_selector("body[data-detected]")
    page.locator("#min-confidence").fill("0")
    assert "roses" in page.inner_text("#try-labels")
    python, cli = page.inner_text("#snippet-python"), page.inner_text("#snippet-cli")
    assert description["ProjectVersionArn"] in python and description["ProjectVersionArn"] in cli
    assert "detect_custom_labels" in python and "detect-custom-labels" in cli
    assert DEV_SECRET_KEY not in page.content()
    shot(page, "model-use")
    page.fill("#confirm-stop", "stop")
    page.click("#stop")
    wait_status(rekognition, project_arn, "STOPPED")
    wait_page_status(page, "STOPPED")
    assert page.locator("#start").is_visible()

    # The project page shows the model; the feedback loop's pages (test_tour_feedback.py) know the project.
    page.goto(f"/console/projects/{project}")
    assert "v1" in page.inner_text("#versions")
    shot(page, "project", phone=True)
    page.goto("/console/promotions")
    assert "v1" in page.inner_text(f"section[data-project='{project}'] [data-target]")  # it ran: the stable ARN answers with it
