"""The web console's pure parts and its sessions (on the real SQLite document
store): how a page's edit becomes a manifest line, and what a session is worth."""
from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from customlabels import activation, errors
from customlabels.adapters.sqlite_documents import SqliteDocumentStore
from customlabels.manifests import ParsedLine, parse_line, validate_line
from customlabels.ports.blobs import RESERVED_BUCKET_PREFIX, InvalidKey, ReservedBucket, check_user_address
from customlabels.ports.documents import ScopedStore

from services.console import comparison, evaluation, flow_form, labeling, review
from services.console.imports import Batch
from services.console.records import COLLECTIONS, THUMBNAILS_BUCKET, id_hash
from services.console.security import is_trustworthy
from services.console.sessions import IDLE_SECONDS, MAX_AGE_SECONDS, Sessions, credentials_match, csrf_matches

REF = "s3://imgs/p/train/a.jpg"


def folder_line(label: str = "daisy") -> dict:
    return {"source-ref": REF, label: 1, f"{label}-metadata": {
        "class-name": label, "confidence": 1, "type": "groundtruth/image-classification", "human-annotated": "yes",
        "creation-date": "2024-01-01T00:00:00", "job-name": f"labeling-job/{label}"}}


def box_line() -> dict:
    return {"source-ref": REF, "bounding-box": {"image_size": [{"width": 800, "height": 600, "depth": 3}],
                                                 "annotations": [{"class_id": 0, "left": 10, "top": 20, "width": 30, "height": 40}]},
            "bounding-box-metadata": {"objects": [{"confidence": 1}], "class-map": {"0": "chip"},
                                      "type": "groundtruth/object-detection", "human-annotated": "yes",
                                      "creation-date": "2024-01-01T00:00:00", "job-name": "j"}}


def entry(line: dict):
    parsed = parse_line(json.dumps(line), 1)
    assert isinstance(parsed, ParsedLine)
    return validate_line(parsed)


def test_relabel_replaces_image_labels_and_keeps_boxes():
    line = {**box_line(), **{k: v for k, v in folder_line().items() if k != "source-ref"}}
    relabeled = labeling.relabel(line, ["tulips", "<b>x</b>", "a-metadata"])
    checked = entry(relabeled)
    assert not checked.has_errors
    assert sorted(checked.image_labels) == ["<b>x</b>", "a-metadata", "tulips"]
    assert checked.boxes == (("chip", 10, 20, 30, 40),)
    assert all(k == "source-ref" or k.startswith(("bounding-box", labeling.LABEL_ATTRIBUTE_PREFIX)) for k in relabeled)
    assert entry(labeling.relabel(relabeled, [])).labeled is True  # the boxes still label it


def test_rebox_replaces_boxes_keeps_labels_and_writes_nothing_here_when_emptied():
    line = {**box_line(), **{k: v for k, v in folder_line().items() if k != "source-ref"}}
    reboxed = labeling.rebox(line, [{"label": "a", "left": 1.5, "top": 2, "width": 3, "height": 4},
                                    {"label": "b", "left": 5, "top": 6, "width": 7, "height": 8}], [800, 600])
    checked = entry(reboxed)
    assert not checked.has_errors
    assert checked.boxes == (("a", 1.5, 2, 3, 4), ("b", 5, 6, 7, 8))
    assert checked.image_labels == ("daisy",)
    emptied = labeling.rebox(reboxed, [], [800, 600])
    assert emptied["bounding-box"]["annotations"] == []  # a human looked: nothing here
    assert "bounding-box" not in labeling.rebox(folder_line(), [], [800, 600])


def test_the_lines_the_service_returned_go_back_without_their_reports():
    line = box_line()
    line["bounding-box"]["annotations"][0]["errors"] = [{"code": "ERROR_X", "message": "m"}]
    line["errors"] = [{"code": "ERROR_INVALID_IMAGE", "message": "missing"}]
    view = labeling.entry_view(line)
    assert view["problems"] == ["image: ERROR_INVALID_IMAGE: missing", "bounding-box box 1: ERROR_X: m"]
    assert view["boxes"][0]["error"] is True
    again = labeling.relabel(line, ["x"])
    assert "errors" not in again and "errors" not in again["bounding-box"]["annotations"][0]


@pytest.mark.parametrize("bad", [None, {"no": "source-ref"}, {"source-ref": "http://x/y"}])
def test_a_change_without_a_manifest_line_is_refused(bad):
    with pytest.raises(labeling.LineProblem):
        labeling.relabel(bad, ["a"])
    with pytest.raises(labeling.LineProblem):
        labeling.rebox(folder_line(), [{"label": "a"}], [1, 1])


def test_import_batches_are_checked_before_anything_is_read():
    batch = Batch.from_request("p", "train", {"mode": "voc", "paths": ["a/1.jpg", "a/1.xml", "a/1.jpg"]})
    assert batch.paths == ("a/1.jpg", "a/1.xml") and batch.prefix == "p/train/"
    for body in ({"mode": "tiff", "paths": ["a.jpg"]}, {"mode": "voc", "paths": []}, {"mode": "voc", "paths": ["../x.jpg"]}, []):
        with pytest.raises(errors.ApiError):
            Batch.from_request("p", "train", body)


def test_credentials_and_origins():
    credentials = {"AK": "secret"}
    assert credentials_match(credentials, "AK", "secret")
    assert not credentials_match(credentials, "AK", "secreT")
    assert not credentials_match(credentials, "OTHER", "secret")
    assert not credentials_match(credentials, "AK", "")
    assert is_trustworthy("http://127.0.0.1:8080") and is_trustworthy("http://localhost:1") and is_trustworthy("https://a.example")
    assert not is_trustworthy("http://192.168.1.5:8080")


async def test_sessions_rotate_expire_and_stay_on_their_origin(tmp_path):
    store = SqliteDocumentStore(tmp_path / "documents.sqlite")
    scoped = ScopedStore(store, "console")
    await store.start(scoped.collections(COLLECTIONS))
    clock = [1000.0]
    sessions = Sessions(scoped, {"AK": "secret"}, now=lambda: clock[0])
    origin = "http://127.0.0.1:8080"
    assert await sessions.sign_in("AK", "wrong", origin) is None
    cookie, session = await sessions.sign_in("AK", "secret", origin)
    other_cookie, _ = await sessions.sign_in("AK", "secret", origin)
    assert cookie != other_cookie
    stored = await scoped.get("sessions", id_hash(cookie))
    assert stored is not None and cookie not in json.dumps(stored)  # only the hash is kept
    assert (await sessions.find(cookie, origin)) == session
    assert await sessions.find(cookie, "http://localhost:8080") is None  # carried to another origin
    assert csrf_matches(session, session.csrf) and not csrf_matches(session, session.csrf[:-1]) and not csrf_matches(session, None)
    clock[0] += IDLE_SECONDS - 1
    assert await sessions.find(cookie, origin) is not None  # and touched: idle time starts again
    clock[0] += IDLE_SECONDS - 1
    assert await sessions.find(cookie, origin) is not None
    clock[0] += IDLE_SECONDS + 1
    assert await sessions.find(cookie, origin) is None  # idle too long: gone
    assert await scoped.get("sessions", id_hash(cookie)) is None
    cookie, session = await sessions.sign_in("AK", "secret", origin)
    for _ in range(MAX_AGE_SECONDS // (IDLE_SECONDS - 1) + 1):
        clock[0] += IDLE_SECONDS - 1
        found = await sessions.find(cookie, origin)
    assert found is None  # never longer than MAX_AGE_SECONDS, however active
    await sessions.end(session)
    abandoned, _ = await sessions.sign_in("AK", "secret", origin)
    clock[0] += MAX_AGE_SECONDS + 1
    await sessions.sign_in("AK", "secret", origin)  # sweeps the abandoned one away
    assert await scoped.get("sessions", id_hash(abandoned)) is None
    assert await scoped.count("sessions") == 1
    await store.close()


# --- the feedback loop's pages: the flow form, the review queue, comparisons -----------------------
def test_the_condition_builder_writes_documents_the_api_accepts_and_reads_them_back():
    form = {"name": "low", "c0_kind": "confidence", "c0_label": "", "c0_op": "lt", "c0_value": "70",
            "c1_kind": "count", "c1_label": "cat", "c1_op": "eq", "c1_value": "0", "c1_min": "50",
            "c2_kind": "sampling", "c2_value": "2.5", "c3_kind": "", "c3_label": "ignored"}
    rows = flow_form.rows_from_form(form)
    for combine in ("any", "all"):
        document = flow_form.document(rows, combine)
        parsed = activation.parse(json.dumps(document))  # the API's own check
        assert not parsed.audit and parsed.samples
    assert flow_form.document(rows, "any")["Conditions"][0] == {
        "ConditionType": "CustomLabelConfidenceCheck", "ConditionParameters": {"LabelName": "*", "ConfidenceLessThan": 70}}
    assert flow_form.sentences(json.dumps(flow_form.document(rows, "any"))) == [
        "any label predicted with a confidence under 70 %", "exactly 0 prediction(s) of label cat at 50 % or more",
        "a random 2.5 % of the images"]
    assert flow_form.sentences(json.dumps(flow_form.document(rows, "all")))[0].startswith("all of: (any label")
    assert activation.parse(json.dumps(flow_form.document(rows[2:], "any"))).audit  # sampling alone: an audit flow
    assert flow_form.document([{"kind": ""}], "any") is None
    assert flow_form.sentences(None) == ["every prediction of a bound model (no activation conditions)"]
    for bad in ({"kind": "confidence", "op": "lt", "value": "lots"}, {"kind": "count", "op": "eq", "value": "1.5"},
                {"kind": "confidence", "op": "", "value": "3"}, {"kind": "tiff"}):
        with pytest.raises(flow_form.BuilderProblem, match="Condition 1"):
            flow_form.document([bad], "any")


def test_the_flow_form_becomes_create_flow_definition():
    params = flow_form.create_params({"name": "low", "c0_kind": "sampling", "c0_value": "5", "cap_hour": "40",
                                      "ui": "detection", "task_count": "2", "lifetime": "3600"},
                                     region="eu-west-1", account="123456789012")
    assert params["FlowDefinitionName"] == "low" and params["OutputConfig"] == {"S3OutputPath": flow_form.DEFAULT_OUTPUT}
    assert params["RoleArn"] == "arn:aws:iam::123456789012:role/customlabels-console-unused"
    assert params["Tags"] == [{"Key": "customlabels:max-loops-per-hour", "Value": "40"}]
    config = params["HumanLoopConfig"]
    assert config["HumanTaskUiArn"] == "arn:aws:sagemaker:eu-west-1:123456789012:human-task-ui/customlabels-detection"
    assert (config["TaskCount"], config["TaskAvailabilityLifetimeInSeconds"]) == (2, 3600)
    typed = '{"Conditions": [{"ConditionType": "Sampling", "ConditionParameters": {"RandomSamplingPercentage": 1}}]}'
    plain = flow_form.create_params({"name": "x", "c0_kind": "sampling", "c0_value": "9", "json": typed}, region="r", account="1")
    assert plain["HumanLoopActivationConfig"]["HumanLoopActivationConditionsConfig"]["HumanLoopActivationConditions"] == typed
    assert "HumanLoopConfig" not in plain and "Tags" not in plain
    for bad in ({"name": "x", "task_count": "2"}, {"name": "x", "title": "t"}, {"name": "x", "ui": "audio"},
                {"name": "x", "ui": "detection", "task_count": "two"}):
        with pytest.raises(flow_form.BuilderProblem):
            flow_form.create_params(bad, region="r", account="1")


def review_task(kind: str = "DETECTION") -> dict:
    box = {"Left": 0.1, "Top": 0.2, "Width": 0.3, "Height": 0.4}
    return {"HumanLoopName": "dcl-1", "FlowDefinitionArn": "arn:aws:sagemaker:us-east-1:000000000000:flow-definition/low",
            "ProjectArn": "arn:aws:rekognition:us-east-1:000000000000:project/p/1",
            "ProjectVersionArn": "arn:aws:rekognition:us-east-1:000000000000:project/p/version/v1/2",
            "Status": "InProgress", "CreationTime": datetime(2025, 1, 2, tzinfo=UTC), "TaskType": kind,
            "AnswerCount": 0, "TaskCount": 1, "Labels": ["a", "b"],
            "Image": {"S3Object": {"Bucket": "customlabels-reviews", "Name": "x/1.jpg"}, "Width": 200, "Height": 100},
            # Reported as the review API marks it (services/feedback/records.reported_predictions)
            "Predictions": [{"Name": "a", "Confidence": 40.0, "BoundingBox": box, "Reported": False},
                            {"Name": "b", "Confidence": 90.0, "BoundingBox": box, "Reported": True},
                            {"Name": "a", "Confidence": 70.0, "BoundingBox": box, "Reported": kind != "CLASSIFICATION"}],
            "Thresholds": [{"Name": "a", "Confidence": 60.0}]}


def test_a_review_task_shows_what_the_model_reported():
    view = review.task_view(review_task(), "/console/objects/customlabels-reviews/x/1.jpg?v=1")
    assert (view["project"], view["version"], view["flow"]) == ("p", "v1", "low")
    assert [(p["label"], p["confidence"], p["threshold"], p["reported"]) for p in view["predictions"]] == [
        ("b", 90.0, 50.0, True), ("a", 70.0, 60.0, True), ("a", 40.0, 60.0, False)]
    assert view["predictions"][0]["box"] == {"left": 0.1, "top": 0.2, "width": 0.3, "height": 0.4}
    single = review.task_view(review_task("CLASSIFICATION"), None)
    assert [p["reported"] for p in single["predictions"]] == [True, False, False]  # as the API says: the best only


def test_answers_become_answer_review_task_requests():
    params = review.answer_params("dcl-1", {"verdict": "CORRECT", "boxes": [{"label": "a", "left": 20, "top": 10, "width": 100, "height": 50}],
                                            "size": [200, 100], "worker": " ann ", "seconds": 2.5}, "AKID")
    assert params == {"HumanLoopName": "dcl-1", "Verdict": "CORRECT", "WorkerId": "ann", "TimeSpentInSeconds": 2.5,
                      "Labels": [{"Name": "a", "BoundingBox": {"Left": 0.1, "Top": 0.1, "Width": 0.5, "Height": 0.5}}]}
    assert review.answer_params("dcl-1", {"verdict": "SKIP", "seconds": float("nan")}, "AKID") == {
        "HumanLoopName": "dcl-1", "Verdict": "SKIP", "WorkerId": "AKID"}
    assert review.answer_params("dcl-1", {"verdict": "CORRECT", "labels": ["<b>"]}, "AKID")["Labels"] == [{"Name": "<b>"}]
    for bad in ([], {"verdict": "MAYBE"}, {"verdict": "CORRECT"}, {"verdict": "CORRECT", "labels": [""]},
                {"verdict": "CORRECT", "boxes": [{"label": "a"}], "size": [1, 1]}, {"verdict": "CORRECT", "boxes": [], "size": [0, 1]},
                {"verdict": "ACCEPT", "worker": "w" * 129}):
        with pytest.raises(review.AnswerProblem):
            review.answer_params("dcl-1", bad, "AKID")


def test_comparison_reports_and_evaluations_side_by_side():
    report = {"LiveVersionArn": "arn:aws:rekognition:us-east-1:000000000000:project/p/version/v1/1",
              "ChallengerVersionArn": "arn:aws:rekognition:us-east-1:000000000000:project/p/version/feedback-9/9",
              "Overall": {"LiveF1": 0.5, "ChallengerF1": 0.6, "Delta": 0.1}, "Tolerance": 0.05,
              "Labels": [{"Label": "a", "Delta": 0.2}, {"Label": "b", "Delta": -0.1}], "Verdict": "worse",
              "McNemar": {"PValue": 0.2}, "Promote": False, "Report": {"bucket": "o", "key": "p/feedback-9/comparison.json"}}
    view = comparison.report_view(report)
    assert (view["live"], view["challenger"], view["uri"]) == ("v1", "feedback-9", "s3://o/p/feedback-9/comparison.json")
    assert [(row["label"], row["dropped"]) for row in view["labels"]] == [("b", True), ("a", False)]  # worst first
    assert comparison.report_key({"S3Bucket": "o", "S3KeyPrefix": "p/"}, "feedback-9") == ("o", "p/feedback-9/comparison.json")
    assert comparison.report_key({}, "v") is None
    a = {"f1": 0.5, "training_images": 10, "labels": [{"label": "x", "f1score": 0.5}, {"label": "y", "f1score": 0.25}]}
    b = {"f1": 0.75, "training_images": 13, "labels": [{"label": "x", "f1score": 1.0}]}
    table = evaluation.side_by_side(a, b)
    assert [(r["title"], r["delta"]) for r in table["overall"]] == [("F1", 0.25), ("Training images", 3)]
    assert [(r["label"], r["delta"]) for r in table["labels"]] == [("x", 0.5), ("y", None)]


def test_the_console_names_objects_by_the_gateways_rule():
    for bucket, key in (("customlabels-internal", "jobs/x.manifest"), ("customlabels-internal-console", "thumbs/a.jpg")):
        with pytest.raises(ReservedBucket):
            check_user_address(bucket, key)
    for bucket, key in (("Bad_Bucket", "a.jpg"), ("imgs", "../a.jpg"), ("imgs", "")):
        with pytest.raises(InvalidKey):
            check_user_address(bucket, key)
    assert check_user_address("imgs", "a/b.jpg") == ("imgs", "a/b.jpg") and check_user_address("imgs") == ("imgs", None)
    assert THUMBNAILS_BUCKET.startswith(RESERVED_BUCKET_PREFIX)  # the console's own bucket is one users cannot name
