"""Bad input in the console's forms: each gets a clear answer in the API's own
terms and changes nothing; user text is always shown as text."""
from __future__ import annotations

import io
import json
import time

import pytest
from PIL import Image

from tests.browser.conftest import problem_text, shot
from tests.support.server import DATASETS

NO_BROWSER_CHECKS = "for (const i of document.querySelectorAll('input')) { i.removeAttribute('required'); i.removeAttribute('pattern'); }"
MARKUP = '<img src=x onerror="window.__pwned=1">'


def project_names(rekognition) -> set[str]:
    return {p["ProjectArn"].split(":project/")[1].split("/")[0]
            for p in rekognition.describe_projects()["ProjectDescriptions"]}


def create_project(page, name: str) -> None:
    page.goto("/console/projects")
    page.fill("#name", name)
    page.click("text=Create project")
    page.wait_for_load_state()


def test_project_names_empty_duplicate_or_invalid_are_refused(page, server, unique):
    rekognition = server.rekognition()
    page.goto("/console/projects")
    page.click("text=Create project")  # empty: the browser itself asks for a name
    assert page.evaluate("document.getElementById('name').validity.valueMissing")
    assert page.url.endswith("/console/projects")

    create_project(page, unique)
    assert unique in project_names(rekognition)
    create_project(page, unique)
    assert "ResourceInUseException" in problem_text(page) and unique in problem_text(page)

    # What the browser would refuse, sent anyway: the API's own validation answers.
    before = project_names(rekognition)
    page.goto("/console/projects")
    for name in ("bad name/!", ""):
        page.evaluate(NO_BROWSER_CHECKS)
        page.fill("#name", name)
        page.click("text=Create project")
        if name:
            assert "InvalidParameterException" in problem_text(page)
    assert problem_text(page) == "Enter a project name."
    assert project_names(rekognition) == before
    shot(page, "projects-refused")


def jpeg(size=(320, 240), color=(200, 40, 40)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, "JPEG")
    return buffer.getvalue()


def test_dropped_files_that_are_not_usable_images_are_reported_and_skipped(page, server, unique, tmp_path):
    rekognition = server.rekognition()
    create_project(page, unique)
    drop = tmp_path / "drop"
    drop.mkdir()
    (drop / "good.jpg").write_bytes(jpeg())
    (drop / "notes.pdf").write_bytes(b"%PDF-1.4 not an image")
    (drop / "fake.jpg").write_bytes(b"<html><script>alert(1)</script></html>")  # an image by name only
    (drop / "tiny.png").write_bytes(_png((20, 20)))  # under 64 px
    big = drop / "huge.jpg"
    big.write_bytes(jpeg() + b"\0" * (30 * 1024 * 1024))  # 30 MB
    page.goto(f"/console/projects/{unique}/datasets/new?kind=train")
    page.set_input_files("#pick-files", [str(p) for p in sorted(drop.iterdir())])
    page.click("#start-upload")
    page.wait_for_selector("#open-dataset")
    problems = page.inner_text("#file-problems")
    assert "notes.pdf: not a PNG or JPEG image" in problems
    assert "huge.jpg: 30.0 MB; the limit is 15 MB" in problems
    assert "fake.jpg" in problems and "is not a PNG or JPEG image" in problems
    assert "tiny.png" in problems and "64" in problems
    shot(page, "upload-refused")
    arn = rekognition.describe_projects(ProjectNames=[unique])["ProjectDescriptions"][0]["Datasets"][0]["DatasetArn"]
    lines = [json.loads(line) for line in rekognition.list_dataset_entries(DatasetArn=arn)["DatasetEntries"]]
    assert [line["source-ref"].rsplit("/", 1)[1] for line in lines] == ["good.jpg"]

    # The server refuses the 30 MB body by its length, whatever the page does.
    status, answer = page.evaluate("""async () => {
        const response = await fetch('/console/uploads/%s/train/direct.jpg', {method: 'PUT',
            headers: {'X-CSRF-Token': document.querySelector('meta[name=csrf-token]').content, 'Accept': 'application/json'},
            body: new Uint8Array(30 * 1024 * 1024)});
        return [response.status, await response.json()];
    }""" % unique)
    assert status == 400 and answer["code"] == "ImageTooLargeException" and "30.0 MB" in answer["message"]


def _png(size) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, (10, 200, 10)).save(buffer, "PNG")
    return buffer.getvalue()


def test_markup_in_labels_and_file_names_is_shown_as_text(page, server, unique, tmp_path):
    rekognition = server.rekognition()
    create_project(page, unique)
    folder = tmp_path / MARKUP.replace("/", "")  # a label folder named with markup
    folder.mkdir()
    photo = sorted((DATASETS / "flowers-small" / "daisy").glob("*.jpg"))[0]
    (folder / f"{MARKUP.replace('/', '')}.jpg").write_bytes(photo.read_bytes())
    (folder / "plain.jpg").write_bytes(photo.read_bytes())
    page.goto(f"/console/projects/{unique}/datasets/new?kind=train")
    page.check("input[value=folders]")
    page.set_input_files("#pick-folder", str(folder.parent))
    page.click("#start-upload")
    page.wait_for_selector("#open-dataset")
    page.click("#open-dataset")
    label = MARKUP.replace("/", "")
    assert page.locator(".tile").count() == 2
    assert page.locator(".labelbar button").first.inner_text() == f"1 {label}"
    assert page.locator(".tile .badge").first.inner_text() == label
    assert page.locator("main img[src='x']").count() == 0
    assert not page.evaluate("window.__pwned === 1")

    # A label typed in the Labels dialog, given to an image with its key.
    page.keyboard.press("l")
    page.fill("#new-label", "</script><b>bold</b>")
    page.click("#add-label button")
    page.keyboard.press("Escape")
    page.locator(".tile").first.focus()
    page.keyboard.press("Shift+1")  # the new label sorts first ('</' before '<i'): added, keeping the other
    page.wait_for_selector("body[data-save-state='All changes saved']")
    page.reload()
    assert page.locator("main b", has_text="bold").count() == 0 and not page.evaluate("window.__pwned === 1")
    assert "</script><b>bold</b>" in page.inner_text("#labelbar")
    shot(page, "grid-markup")
    arn = rekognition.describe_projects(ProjectNames=[unique])["ProjectDescriptions"][0]["Datasets"][0]["DatasetArn"]
    labels = {d["LabelName"] for d in rekognition.list_dataset_labels(DatasetArn=arn)["DatasetLabelDescriptions"]}
    assert labels == {label, "</script><b>bold</b>"}

    # Renamed in the Labels dialog: every entry carrying it changes, in the dataset itself.
    page.keyboard.press("l")
    page.select_option("#rename-from", label)
    page.fill("#rename-to", "daisy")
    page.click("#rename-label button")
    page.wait_for_selector("body[data-renamed='2']")
    page.wait_for_selector("#labelbar button:has-text('daisy')")  # the page reloads itself
    while rekognition.describe_dataset(DatasetArn=arn)["DatasetDescription"]["Status"].endswith("_IN_PROGRESS"):
        time.sleep(0.1)
    labels = {d["LabelName"] for d in rekognition.list_dataset_labels(DatasetArn=arn)["DatasetLabelDescriptions"]}
    assert labels == {"daisy", "</script><b>bold</b>"}
