"""The feedback loop's pages in Chromium.

Flowers: a weak trained version bound (from the console) to a flow definition
built with the condition builder; DetectCustomLabels through boto3 captures
loops; a reviewer answers them from the queue with single keys (accept, the
right label's number, none, skip); the answers are entries of the TRAIN
dataset through boto3's ListDatasetEntries; the retraining they trigger is
compared, and the comparison, the promotion and two versions side by side
show what the report and DescribeProjectVersions say.

Microcontrollers: a loop started through the A2I API on a detection flow;
the reviewer corrects the boxes in the box editor (draw one, nudge one) and
exactly those boxes, in pixels, are in ListDatasetEntries. Bad answers get
the API's refusal and change nothing; markup in a reviewer's name is text.
"""
from __future__ import annotations

import hashlib
import json

import pytest
from customlabels.client import ObjectStoreError
from customlabels.manifests import converters

from tests.browser.conftest import page_data, problem_text, shot
from tests.support.api import all_entries, classification_line, create_from_manifest, wait_dataset
from tests.support.feedback import client, flower_split, review, wait_for
from tests.support.server import DATASETS
from tests.support.training import BUDGET_TAG, OUTPUT, wait_version

MICRO = DATASETS / "microcontroller" / "train"
FLOW_TAG = "customlabels:flow-definition"
NO_BROWSER_CHECKS = "for (const i of document.querySelectorAll('input')) { i.removeAttribute('required'); i.removeAttribute('pattern'); i.removeAttribute('min'); }"
MARKUP = '<img src=x onerror="window.__pwned=1">'


def post_answer(page, name: str, body: dict) -> dict:
    """POST an answer the way the queue's script does (same session, CSRF header): {status, body}."""
    return page.evaluate("""async ([name, body]) => {
        const token = document.querySelector('meta[name="csrf-token"]').content;
        const response = await fetch(`/console/review/tasks/${name}/answer`, {method: "POST", body: JSON.stringify(body),
            headers: {"Content-Type": "application/json", "Accept": "application/json", "X-CSRF-Token": token}});
        return {status: response.status, body: await response.json()};
    }""", [name, body])


def set_reviewer(page, name: str) -> None:
    page.fill("#reviewer", name)
    page.locator("#reviewer").dispatch_event("change")


def create_flow_in_console(page, name: str, *, rows: list[dict] = (), **fields: str) -> None:
    """The new-flow form: ``rows`` of the condition builder ({kind, label, op, value, min}), then ``fields`` by id."""
    page.goto("/console/flows/new")
    page.fill("#name", name)
    for index in range(page.locator("#condition-rows tr").count()):
        page.select_option(f"#c{index}_kind", "")
    for index, row in enumerate(rows):
        if index >= page.locator("#condition-rows tr").count():
            page.click("#add-condition")
        page.select_option(f"#c{index}_kind", row["kind"])
        page.fill(f"#c{index}_label", row.get("label", ""))
        if row.get("op"):
            page.select_option(f"#c{index}_op", row["op"] if row["kind"] != "count" else {"label": f"count {row['op_words']}"})
        page.fill(f"#c{index}_value", str(row.get("value", "")))
        page.fill(f"#c{index}_min", str(row.get("min", "")))
    for field, value in fields.items():
        if page.locator(f"#{field}").evaluate("e => e.tagName") == "SELECT":
            page.select_option(f"#{field}", value)
        else:
            page.fill(f"#{field}", value)
    page.click("#create-flow")
    page.wait_for_load_state()


# --- detection: a loop from the A2I API, corrected in the box editor --------------------------------
@pytest.fixture
def chips(server, unique):
    """A project whose TRAIN dataset holds 3 microcontroller photos with their VOC boxes."""
    rekognition, objects = server.rekognition(), server.objects()
    bucket = f"chips-{unique}"
    conversion = converters.voc_detection(MICRO, bucket=bucket, prefix="train/")
    entries = conversion.entries[:3]
    objects.put_many(bucket, [(e.key, e.image.read_bytes()) for e in entries])
    project = rekognition.create_project(ProjectName=bucket)["ProjectArn"]
    arn = create_from_manifest(rekognition, objects, project, bucket, [e.line for e in entries])
    assert wait_dataset(rekognition, arn)["Status"] == "CREATE_COMPLETE"
    return {"project": project, "name": bucket, "bucket": bucket, "dataset": arn, "entries": entries}


def ratio_box(line: dict, index: int) -> dict:
    annotation = line["bounding-box"]["annotations"][index]
    width, height = line["bounding-box"]["image_size"][0]["width"], line["bounding-box"]["image_size"][0]["height"]
    return {"Left": annotation["left"] / width, "Top": annotation["top"] / height,
            "Width": annotation["width"] / width, "Height": annotation["height"] / height}


@pytest.mark.slow
def test_boxes_corrected_in_the_queue_become_the_entry(page, server, chips, unique):
    a2i, reviews, rekognition = client(server.endpoint, "sagemaker-a2i-runtime"), review(server.endpoint), server.rekognition()
    flow = f"boxes-{unique}"
    create_flow_in_console(page, flow, ui="detection", title="Are the chips boxed right?", task_count="1")
    assert page.url.endswith(f"/console/flows/{flow}"), problem_text(page) if page.locator(".problem").count() else page.url
    assert "every prediction" in page.inner_text("#sentences")
    flow_arn = client(server.endpoint, "sagemaker").describe_flow_definition(FlowDefinitionName=flow)["FlowDefinitionArn"]

    # Two loops started by the user's own code: the model's boxes are the first two of each photo's truth.
    loops = []
    for number, entry in enumerate(chips["entries"][:2]):
        line, labels = entry.line, entry.line["bounding-box-metadata"]["class-map"]
        predictions = [{"Name": labels[str(line["bounding-box"]["annotations"][i]["class_id"])], "Confidence": confidence,
                        "Geometry": {"BoundingBox": ratio_box(line, i)}}
                       for i, confidence in ((0, 90.0), (1, 30.0)) if i < len(line["bounding-box"]["annotations"])]
        name = f"chips-{unique}-{number}"
        a2i.start_human_loop(HumanLoopName=name, FlowDefinitionArn=flow_arn, HumanLoopInput={"InputContent": json.dumps({
            "taskObject": line["source-ref"], "projectArn": chips["project"], "taskType": "detection",
            "customLabels": predictions})})
        loops.append({"name": name, "line": line, "predictions": predictions})

    # The reviewer's name is set while the first list (for the default name) is still on its way, as on a slow
    # server: the keys must still answer, not type into the name field.
    reviewer, held = f"rev-{unique}", []
    page.route("**/console/review/tasks.json?*", lambda route: held.append(route) if not held else route.continue_())
    page.goto(f"/console/review?flow={flow}")
    wait_for(lambda: page.wait_for_timeout(50) or held, bool, "the first list's request", 10)
    set_reviewer(page, reviewer)
    held[0].continue_()
    page.unroute("**/console/review/tasks.json?*")
    page.wait_for_selector("body[data-task]")  # equal confidences: either loop may come first
    shown = page.evaluate("document.body.dataset.task")
    first, other = sorted(loops, key=lambda loop: loop["name"] != shown)
    assert "✓" in page.inner_text("#predictions")  # the 90 % box is what the model reported
    labels = reviews.get_review_task(HumanLoopName=first["name"])["ReviewTask"]["Labels"]

    # C: the reported box becomes editable; label 2, draw a box; select the first one and nudge it.
    page.keyboard.press("c")
    assert page.locator("#box-rows tr").count() == 1
    page.keyboard.press("2")
    stage = page.locator("#stage").bounding_box()
    start = (stage["x"] + stage["width"] * 0.60, stage["y"] + stage["height"] * 0.60)
    end = (stage["x"] + stage["width"] * 0.75, stage["y"] + stage["height"] * 0.80)
    page.mouse.move(*start)
    page.mouse.down()
    page.mouse.move(*end, steps=6)
    page.mouse.up()
    assert page.locator("#box-rows tr").count() == 2
    drawn = [float(page.locator("#box-rows tr").nth(1).locator("input").nth(i).input_value()) for i in range(4)]
    page.keyboard.press("Escape")
    page.keyboard.press("Tab")
    page.keyboard.press("ArrowRight")
    kept = [float(page.locator("#box-rows tr").nth(0).locator("input").nth(i).input_value()) for i in range(4)]
    shot(page, "review-correcting")
    page.keyboard.press("Control+Enter")
    page.wait_for_selector(f"body[data-task='{other['name']}']")

    # The loop is complete and its answer is the TRAIN entry of that photo, boxes in pixels.
    done = wait_for(lambda: reviews.get_review_task(HumanLoopName=first["name"])["ReviewTask"],
                    lambda t: t["Status"] == "Completed" and (t.get("Entry") or {}).get("Written"), "the loop's entry")
    assert [a["WorkerId"] for a in done["Answers"]] == [reviewer] and done["Answers"][0]["Verdict"] == "CORRECT"
    entry = next(json.loads(line) for line in rekognition.list_dataset_entries(
        DatasetArn=chips["dataset"], SourceRefContains=first["line"]["source-ref"].rsplit("/", 1)[1])["DatasetEntries"])
    meta = entry["reviewed-boxes-metadata"]
    assert meta["job-name"] == f"a2i/{flow}" and meta["human-annotated"] == "yes"
    assert meta["customlabels-review"]["reviewers"] == [reviewer]
    boxes = sorted(((meta["class-map"][str(a["class_id"])], a["left"], a["top"], a["width"], a["height"])
                    for a in entry["reviewed-boxes"]["annotations"]), key=lambda b: b[1])
    reported = first["predictions"][0]
    expected = sorted([(reported["Name"], *kept), (labels[1], *drawn)], key=lambda b: b[1])
    for (label, *got), (want_label, *want) in zip(boxes, expected, strict=True):
        assert label == want_label
        assert got == pytest.approx(want, abs=1.01)  # the entry keeps whole pixels
    assert kept[0] == pytest.approx(reported["Geometry"]["BoundingBox"]["Left"] * entry["reviewed-boxes"]["image_size"][0]["width"] + 1, abs=1.01)

    # Bad answers: the API's refusal, shown as it words it, and nothing changed.
    again = post_answer(page, first["name"], {"verdict": "ACCEPT", "worker": "someone-else"})
    assert again["status"] == 409 and "Completed" in again["body"]["message"], again
    second = other["name"]
    unknown = post_answer(page, second, {"verdict": "CORRECT", "labels": [MARKUP]})
    assert unknown["status"] == 400 and "not in the project" in unknown["body"]["message"], unknown
    outside = post_answer(page, second, {"verdict": "CORRECT", "boxes": [{"label": labels[0], "left": 60, "top": 10, "width": 60, "height": 10}],
                                         "size": [100, 100]})
    assert outside["status"] == 400 and "outside the image" in outside["body"]["message"], outside
    assert reviews.get_review_task(HumanLoopName=second)["ReviewTask"]["AnswerCount"] == 0

    # N on the second photo: a negative detection answer keeps the photo with no box.
    page.keyboard.press("n")
    page.wait_for_selector("body[data-queue='empty']")
    page.wait_for_selector("body[data-pending='0']")
    negative = wait_for(lambda: reviews.get_review_task(HumanLoopName=second)["ReviewTask"],
                        lambda t: (t.get("Entry") or {}).get("Written"), "the negative answer's entry")
    assert negative["Answers"][0]["Verdict"] == "NEGATIVE"
    line = next(e for e in all_entries(rekognition, chips["dataset"]) if e["source-ref"] == other["line"]["source-ref"])
    assert line["reviewed-boxes"]["annotations"] == []

    # A reviewer's name with markup is only ever text.
    set_reviewer(page, MARKUP)
    page.wait_for_selector("body[data-queue='empty']")
    assert page.inner_text("#empty-who") == MARKUP
    assert page.evaluate("window.__pwned") is None


# --- flowers: flow, capture, queue, entries, retraining, comparison, promotion ----------------------
def weak_flowers(server, name: str) -> dict:
    """flowers-small: 3 photos per label to train v1 on (10 s), 4 per label to test; the rest a stream."""
    rekognition, objects = server.rekognition(), server.objects()
    split = flower_split(test_per_label=4, seed_per_label=3)
    project = rekognition.create_project(ProjectName=name)["ProjectArn"]
    for dataset_type, items in (("TRAIN", split.seed), ("TEST", split.test)):
        objects.put_many(name, [(f"{label}/{path.name}", path.read_bytes()) for label, path in items])
        lines = [classification_line(name, f"{label}/{path.name}", label) for label, path in items]
        assert wait_dataset(rekognition, create_from_manifest(rekognition, objects, project, name, lines, dataset_type))["Status"] == "CREATE_COMPLETE"

    def create():
        try:
            return rekognition.create_project_version(ProjectArn=project, VersionName="v1", OutputConfig=OUTPUT, Tags={BUDGET_TAG: "10"})
        except rekognition.exceptions.ResourceInUseException:
            return None  # the projects service has not heard that the datasets are complete yet

    v1 = wait_for(create, bool, "CreateProjectVersion to be accepted", 60)["ProjectVersionArn"]
    trained = wait_version(rekognition, project, "v1", timeout=300)
    assert trained["Status"] == "TRAINING_COMPLETED", trained.get("StatusMessage")
    return {"project": project, "v1": v1, "split": split}


def version_status(rekognition, project: str, name: str) -> dict:
    return rekognition.describe_project_versions(ProjectArn=project, VersionNames=[name])["ProjectVersionDescriptions"][0]


def stop_running(rekognition, project: str) -> None:
    for version in rekognition.describe_project_versions(ProjectArn=project)["ProjectVersionDescriptions"]:
        if version["Status"] in ("RUNNING", "STARTING"):
            rekognition.stop_project_version(ProjectVersionArn=version["ProjectVersionArn"])


@pytest.mark.slow
def test_the_feedback_loop_in_the_console(page, server, unique):
    rekognition, objects = server.rekognition(), server.objects()
    sagemaker, reviews = client(server.endpoint, "sagemaker"), review(server.endpoint)
    name = f"fb-{unique}"
    flowers = weak_flowers(server, name)
    project, v1 = flowers["project"], flowers["v1"]
    try:
        _tour(page, server, rekognition, objects, sagemaker, reviews, name, project, v1, flowers["split"], unique)
    finally:
        stop_running(rekognition, project)


def _tour(page, server, rekognition, objects, sagemaker, reviews, name, project, v1, split, unique):
    flow = f"low-{unique}"
    flows_named = lambda: {f["FlowDefinitionName"] for f in sagemaker.list_flow_definitions()["FlowDefinitionSummaries"]}  # noqa: E731

    # Refusals of the form, in the API's words; nothing is created.
    create_flow_in_console(page, flow, rows=[{"kind": "sampling", "value": "0"}])
    assert "RandomSamplingPercentage" in problem_text(page) and flow not in flows_named()
    assert page.input_value("#name") == flow  # what was typed stays
    page.goto("/console/flows/new")
    page.evaluate(NO_BROWSER_CHECKS)
    page.fill("#name", "Not_A_Flow!")
    page.click("#create-flow")
    assert "Not_A_Flow!" not in flows_named() and page.locator(".problem").count() == 1

    # The flow of the issue: any label under 100 % (every weak answer), at most 50 loops an hour.
    create_flow_in_console(page, flow, rows=[{"kind": "confidence", "label": "*", "op": "lt", "value": "100"}], cap_hour="50")
    assert page.url.endswith(f"/console/flows/{flow}"), problem_text(page)
    assert page.inner_text("#sentences") == "any label predicted with a confidence under 100 %"
    create_flow_in_console(page, flow, rows=[{"kind": "sampling", "value": "5"}])
    assert "ResourceInUse" in problem_text(page) and flow in problem_text(page)

    # Bound to the project from the flow's page: the project's tag names it.
    page.goto(f"/console/flows/{flow}")
    page.select_option("#bind-project", name)
    page.click("#bind")
    flow_arn = sagemaker.describe_flow_definition(FlowDefinitionName=flow)["FlowDefinitionArn"]
    assert rekognition.list_tags_for_resource(ResourceArn=project)["Tags"][FLOW_TAG] == flow_arn
    assert name in page.inner_text("#bindings")

    # The retraining policy (project tags), then v1 serves and four photos are captured for review.
    rekognition.tag_resource(ResourceArn=project, Tags={
        "customlabels:retrain-after-entries": "3", "customlabels:retrain-debounce-seconds": "1",
        "customlabels:auto-promote": "true", "customlabels:promote-max-label-f1-drop": "1", BUDGET_TAG: "10"})
    rekognition.start_project_version(ProjectVersionArn=v1, MinInferenceUnits=1)
    rekognition.get_waiter("project_version_running").wait(ProjectArn=project, VersionNames=["v1"],
                                                            WaiterConfig={"Delay": 0.5, "MaxAttempts": 240})
    labels_of = {}
    for label in sorted({label for label, _ in split.stream})[:4]:
        path = next(p for l, p in split.stream if l == label)
        labels_of[hashlib.sha256(path.read_bytes()).hexdigest()] = label
        rekognition.detect_custom_labels(ProjectVersionArn=v1, Image={"Bytes": path.read_bytes()})
    wait_for(lambda: reviews.list_review_tasks(ProjectName=name)["ReviewTasks"], lambda t: len(t) == 4, "4 captured loops")

    page.goto("/console/flows")
    row = page.locator(f"tr[data-flow='{flow}']")
    assert name in row.locator("td").nth(2).text_content() and row.locator("td.num").inner_text() == "4"
    shot(page, "flows", phone=True)
    page.goto(f"/console/flows/{flow}")
    page.click("text=Delete this flow definition…")
    page.fill("#confirm-flow", flow)
    page.click("#confirm-flow ~ button")
    assert "in progress" in problem_text(page) and flow in flows_named()
    shot(page, "flow", phone=True)

    # The queue: accept, the right label's number, none, skip: one key each.
    reviewer = f"ann-{unique}"
    page.goto(f"/console/review?project={name}")
    set_reviewer(page, reviewer)
    answered = []
    for number, key in enumerate(("a", "digit", "n", "s")):
        page.wait_for_selector("body[data-task]")
        loop = page.evaluate("document.body.dataset.task")
        task = reviews.get_review_task(HumanLoopName=loop)["ReviewTask"]
        truth = labels_of[hashlib.sha256(objects.get(task["Image"]["S3Object"]["Bucket"], task["Image"]["S3Object"]["Name"])).hexdigest()]
        reported = max(task["Predictions"], key=lambda p: p["Confidence"])["Name"]
        if number == 0:
            shot(page, "review-queue")
        page.keyboard.press(str(task["Labels"].index(truth) + 1) if key == "digit" else key)
        verdict = {"a": "ACCEPT", "digit": "ACCEPT" if truth == reported else "CORRECT", "n": "NEGATIVE", "s": None}[key]
        answered.append({"loop": loop, "verdict": verdict, "truth": truth, "reported": reported})
        page.wait_for_selector(f"body:not([data-task='{loop}'])")
    page.wait_for_selector("body[data-queue='empty']")
    page.wait_for_selector("body[data-pending='0']")
    assert page.inner_text("#progress-text").startswith("3 answered · 1 skipped · 0 waiting")

    # Each answer, through the API; the three answered ones are TRAIN entries with their provenance.
    train = next(d["DatasetArn"] for d in rekognition.describe_projects(ProjectNames=[name])["ProjectDescriptions"][0]["Datasets"]
                 if d["DatasetType"] == "TRAIN")
    for item in answered:
        task = reviews.get_review_task(HumanLoopName=item["loop"])["ReviewTask"]
        if item["verdict"] is None:
            assert task["Status"] == "InProgress" and task["Skips"] == [reviewer] and not task["Answers"]
            continue
        task = wait_for(lambda: reviews.get_review_task(HumanLoopName=item["loop"])["ReviewTask"],
                        lambda t: (t.get("Entry") or {}).get("Written"), f"loop {item['loop']}'s entry")
        assert [(a["WorkerId"], a["Verdict"]) for a in task["Answers"]] == [(reviewer, item["verdict"])]
        line = next(e for e in all_entries(rekognition, train) if e["source-ref"] == task["Entry"]["SourceRef"])
        if item["verdict"] == "NEGATIVE":
            assert set(line) == {"source-ref"}  # kept, unlabeled
            continue
        meta = line["reviewed-label-metadata"]
        assert meta["class-name"] == (item["reported"] if item["verdict"] == "ACCEPT" else item["truth"])
        assert meta["job-name"] == f"a2i/{flow}" and meta["customlabels-review"]["reviewers"] == [reviewer]

    # Three reviewed entries: v2 trains, is compared with v1 on the same test images, and the pages say what the report says.
    v2 = wait_for(lambda: [v for v in rekognition.describe_project_versions(ProjectArn=project)["ProjectVersionDescriptions"]
                           if v["ProjectVersionArn"] != v1 and v["Status"] == "TRAINING_COMPLETED"], bool,
                  "the version the answers trained", 300)[0]
    v2_name = v2["ProjectVersionArn"].split("/version/")[1].split("/")[0]
    key = f"{OUTPUT['S3KeyPrefix']}{v2_name}/comparison.json"
    report = json.loads(wait_for(lambda: _get(objects, OUTPUT["S3Bucket"], key), bool, "the comparison report", 120))

    page.goto(f"/console/comparisons?project={name}")
    row = page.locator(f"tr[data-challenger='{v2_name}']")
    assert report["Verdict"] in row.inner_text() and f"{report['Overall']['Delta']:+.3f}" == row.locator("[data-delta]").inner_text()
    shot(page, "comparisons", phone=True)
    row.locator("a").first.click()
    assert page.inner_text("#reason") == report["Reason"]
    assert page.inner_text("[data-p]") == f"{report['McNemar']['PValue']:.4f}"
    for label in report["Labels"]:
        assert page.locator(f"tr[data-label='{label['Label']}'] [data-delta]").inner_text() == f"{label['Delta']:+.3f}"
    shot(page, "comparison", phone=True)

    # Side by side: each version's own evaluation, per label.
    page.click("text=Their evaluations side by side")
    for version in (v1, v2["ProjectVersionArn"]):
        summary_location = version_status(rekognition, project, version.split("/version/")[1].split("/")[0])["EvaluationResult"]["Summary"]["S3Object"]
        summary = json.loads(objects.get(summary_location["Bucket"], summary_location["Name"]))
        for row_data in summary["LabelEvaluationResults"]:
            cells = page.locator(f"#per-label tr[data-label='{row_data['Label']}'] td").all_inner_texts()
            column = 0 if version == v1 else 4
            assert cells[column] == f"{row_data['Metrics']['F1Score']:.3f}"
    shot(page, "compare", phone=True)

    # Promotions: where the stable ARN points, now and after the promotion the report decided.
    if report["Promote"]:
        wait_for(lambda: version_status(rekognition, project, "live").get("SourceProjectVersionArn"),
                 lambda arn: arn == v2["ProjectVersionArn"], "the stable ARN to move to v2", 180)
    live = version_status(rekognition, project, "live")
    page.goto("/console/promotions")
    card = page.locator(f"section[data-project='{name}']")
    assert card.locator("[data-target]").inner_text() == live["SourceProjectVersionArn"].split("/version/")[1].split("/")[0]
    assert live["ProjectVersionArn"] in card.inner_text()
    history = card.locator(f"tr[data-challenger='{v2_name}']").inner_text()
    assert ("promote" if report["Promote"] else "keep v1") in history and report["PromoteReason"] in history
    shot(page, "promotions", phone=True)


def _get(objects, bucket: str, key: str) -> bytes | None:
    try:
        return objects.get(bucket, key)
    except ObjectStoreError as error:
        if error.code != "NoSuchKey":
            raise
        return None  # not written yet
