"""A detection set in Chromium: drop microcontroller's images with their Pascal
VOC files, open an image in the editor, draw a box with a number-key label,
nudge it with the arrow keys, save with Ctrl+S, and find exactly that box,
in original-image pixels, in ListDatasetEntries through boto3; then undo,
delete and redraw on the next image, and save by moving on (Ctrl+Enter)."""
from __future__ import annotations

import json
import time
import xml.etree.ElementTree as ET

import pytest

from tests.browser.conftest import shot
from tests.support.server import DATASETS

MICRO = DATASETS / "microcontroller" / "train"
IMAGES = sorted(MICRO.glob("*.jpg"))
CLASSES = sorted({o.findtext("name") for x in MICRO.glob("*.xml") for o in ET.parse(x).getroot().iter("object")})


def dataset_arn(rekognition, project: str) -> str:
    datasets = rekognition.describe_projects(ProjectNames=[project])["ProjectDescriptions"][0]["Datasets"]
    return next(d["DatasetArn"] for d in datasets if d["DatasetType"] == "TRAIN")


def line_of(rekognition, arn: str, name: str, timeout: float = 60) -> dict:
    """The entry of image ``name`` once the dataset has applied every update."""
    deadline = time.monotonic() + timeout
    while rekognition.describe_dataset(DatasetArn=arn)["DatasetDescription"]["Status"].endswith("_IN_PROGRESS"):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    found = rekognition.list_dataset_entries(DatasetArn=arn, SourceRefContains=name)["DatasetEntries"]
    lines = [json.loads(line) for line in found if json.loads(line)["source-ref"].endswith("/" + name)]
    assert len(lines) == 1, found
    return lines[0]


def boxes(line: dict) -> list[tuple[str, float, float, float, float]]:
    value, meta = line["bounding-box"], line["bounding-box-metadata"]
    return [(meta["class-map"][str(a["class_id"])], a["left"], a["top"], a["width"], a["height"]) for a in value["annotations"]]


def screen_to_image(page, x: float, y: float, size=(800, 600)) -> tuple[float, float]:
    """Where a point of the stage lands on the image (the editor fits the image, centred)."""
    stage = page.locator("#stage").bounding_box()
    scale = min(stage["width"] / size[0], stage["height"] / size[1])
    ox, oy = (stage["width"] - size[0] * scale) / 2, (stage["height"] - size[1] * scale) / 2
    return (x - stage["x"] - ox) / scale, (y - stage["y"] - oy) / scale


@pytest.mark.slow
def test_draw_a_box_and_find_it_through_boto3(page, server, unique):
    rekognition = server.rekognition()
    project = f"chips-{unique}"
    page.goto("/console/projects")
    page.fill("#name", project)
    page.click("text=Create project")
    page.click("text=Create the train dataset")
    page.check("input[value=voc]")
    page.set_input_files("#pick-folder", str(MICRO))
    page.click("#start-upload")
    page.wait_for_selector("#open-dataset", timeout=180_000)
    arn = dataset_arn(rekognition, project)
    stats = rekognition.describe_dataset(DatasetArn=arn)["DatasetDescription"]["DatasetStats"]
    assert stats["TotalEntries"] == len(IMAGES) and stats["LabeledEntries"] == len(IMAGES)

    # The editor on the image the name filter finds.
    first = IMAGES[0].name
    page.click("#open-dataset")
    page.fill("#f-q", first)
    page.click("text=Filter")
    page.locator(".tile").first.focus()
    page.keyboard.press("Enter")
    page.wait_for_selector(f"body[data-ready$='/{first}']")
    before = boxes(line_of(rekognition, arn, first))
    assert page.locator("#box-rows tr").count() == len(before)

    # Label 2, then drag a box; nudge it right with the arrow key.
    stage = page.locator("#stage").bounding_box()
    start = (stage["x"] + stage["width"] * 0.20, stage["y"] + stage["height"] * 0.25)
    end = (stage["x"] + stage["width"] * 0.35, stage["y"] + stage["height"] * 0.45)
    page.keyboard.press("2")
    page.mouse.move(*start)
    page.mouse.down()
    page.mouse.move(*end, steps=6)
    page.mouse.up()
    assert page.locator("#box-rows tr").count() == len(before) + 1
    page.keyboard.press("ArrowRight")  # a box is selected: it moves 1 px
    shot(page, "editor-detection")
    page.keyboard.press("Control+s")
    page.wait_for_selector("body[data-save-state='All changes saved']")
    (x0, y0), (x1, y1) = screen_to_image(page, *start), screen_to_image(page, *end)
    after = boxes(line_of(rekognition, arn, first))
    assert after[: len(before)] == before  # the imported boxes are kept as they were
    label, left, top, width, height = after[-1]
    assert label == CLASSES[1]
    assert left == pytest.approx(x0 + 1, abs=1.5) and top == pytest.approx(y0, abs=1.5)
    assert width == pytest.approx(x1 - x0, abs=1.5) and height == pytest.approx(y1 - y0, abs=1.5)

    # Next image: draw, undo, redraw with label 1, delete one imported box, save by moving on.
    page.keyboard.press("Escape")
    page.keyboard.press("f")
    second = IMAGES[1].name if IMAGES[1].name != first else IMAGES[2].name
    page.goto(f"/console/projects/{project}/datasets/train?q={second}")
    page.locator(".tile").first.focus()
    page.keyboard.press("Enter")
    page.wait_for_selector(f"body[data-ready$='/{second}']")
    imported = boxes(line_of(rekognition, arn, second))
    page.keyboard.press("1")
    page.mouse.move(*start)
    page.mouse.down()
    page.mouse.move(*end, steps=6)
    page.mouse.up()
    page.keyboard.press("Control+z")
    assert page.locator("#box-rows tr").count() == len(imported)
    page.keyboard.press("Control+Shift+z")
    assert page.locator("#box-rows tr").count() == len(imported) + 1
    page.locator("#stage").focus()
    page.keyboard.press("Escape")
    page.keyboard.press("Tab")  # selects the first box
    page.keyboard.press("Delete")
    assert page.locator("#box-rows tr").count() == len(imported)
    page.keyboard.press("Control+Enter")
    page.wait_for_selector("body[data-save-state='All changes saved']")
    saved = boxes(line_of(rekognition, arn, second))
    assert saved[:-1] == imported[1:] and saved[-1][0] == CLASSES[0]
