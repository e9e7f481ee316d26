"""The feedback service's rules, in process: caps, expiry, paging, the review queue, boxes, retraining.

Calls go through the in-process router (``embedded.system.router``), which
validates each request against its API's model (sagemaker, A2I runtime,
customlabels-review) exactly as the gateway does.
"""
from __future__ import annotations

import asyncio
import json

import pytest

from customlabels import errors
from tests.support.api import classification_line, jpeg
from tests.support.embedded import all_entries, create_ready_dataset, wait_until

ROLE = "arn:aws:iam::000000000000:role/unused"
UI = "arn:aws:sagemaker:us-east-1:000000000000:human-task-ui/customlabels-classification"
TEAM = "arn:aws:sagemaker:us-east-1:000000000000:workteam/private-crowd/unused"


@pytest.fixture
def router(embedded):
    return embedded.system.router


async def flow(router, name: str, *, tags: dict | None = None, loop_config: dict | None = None) -> str:
    params = {"FlowDefinitionName": name, "RoleArn": ROLE, "OutputConfig": {"S3OutputPath": f"s3://customlabels-output/{name}"},
              "Tags": [{"Key": k, "Value": v} for k, v in (tags or {}).items()]}
    if loop_config:
        params["HumanLoopConfig"] = {"WorkteamArn": TEAM, "HumanTaskUiArn": UI, "TaskTitle": "t", "TaskDescription": "d",
                                     "TaskCount": 1, **loop_config}
    return (await router.call("CreateFlowDefinition", params))["FlowDefinitionArn"]


async def start(router, name: str, flow_arn: str, **content) -> str:
    return (await router.call("StartHumanLoop", {"HumanLoopName": name, "FlowDefinitionArn": flow_arn,
                                                 "HumanLoopInput": {"InputContent": json.dumps(content)}}))["HumanLoopArn"]


async def test_a_flow_opens_no_more_loops_than_its_cap(router, unique):
    arn = await flow(router, unique, tags={"customlabels:max-loops-per-hour": "2"})
    await start(router, f"{unique}-1", arn)
    await start(router, f"{unique}-2", arn)
    with pytest.raises(errors.ServiceQuotaExceeded) as capped:
        await start(router, f"{unique}-3", arn)
    assert capped.value.code == "ServiceQuotaExceededException" and "max-loops-per-hour" in capped.value.message
    listed = await router.call("ListHumanLoops", {"FlowDefinitionArn": arn})
    assert sorted(s["HumanLoopName"] for s in listed["HumanLoopSummaries"]) == [f"{unique}-1", f"{unique}-2"]
    await start(router, f"{unique}-1", arn)  # the same request again is no new loop, cap or not


async def test_a_loop_nobody_finishes_in_time_fails_as_expired(router, unique):
    arn = await flow(router, unique, loop_config={"TaskAvailabilityLifetimeInSeconds": 1})
    await start(router, unique, arn)
    described = await wait_until(lambda: router.call("DescribeHumanLoop", {"HumanLoopName": unique}),
                                 lambda d: d["HumanLoopStatus"] != "InProgress", "the loop to expire", timeout=10)
    assert (described["HumanLoopStatus"], described["FailureCode"]) == ("Failed", "Expired")
    with pytest.raises(errors.Conflict):
        await router.call("AnswerReviewTask", {"HumanLoopName": unique, "WorkerId": "late", "Verdict": "NEGATIVE"})


async def test_tokens_belong_to_their_query(router, unique):
    arn = await flow(router, unique)
    for i in range(3):
        await start(router, f"{unique}-{i}", arn)
    first = await router.call("ListHumanLoops", {"FlowDefinitionArn": arn, "MaxResults": 1})
    assert first["NextToken"]
    with pytest.raises(errors.InvalidParameter) as other_query:
        await router.call("ListHumanLoops", {"FlowDefinitionArn": arn, "MaxResults": 1, "SortOrder": "Ascending",
                                              "NextToken": first["NextToken"]})
    assert other_query.value.code == "ValidationException"
    with pytest.raises(errors.InvalidParameter):
        await router.call("ListFlowDefinitions", {"NextToken": "forged.token"})
    with pytest.raises(errors.InvalidParameter) as unknown:
        await start(router, f"{unique}-x", arn.replace(unique, unique + "nope"))
    assert "does not exist" in unknown.value.message


async def test_the_queue_shows_the_least_confident_first_and_what_a_reviewer_has_left(embedded, router, unique):
    project = (await embedded.api.call("CreateProject", {"ProjectName": unique}))["ProjectArn"]
    await embedded.put_object(unique, "t/a.jpg", jpeg())
    await create_ready_dataset(embedded, project, [classification_line(unique, "t/a.jpg", "cat")])
    arn = await flow(router, unique)
    for i, top in enumerate((80.0, 20.0, 50.0)):
        await embedded.put_object(unique, f"q/{i}.jpg", jpeg(color=(i * 50, 0, 0)))
        await start(router, f"{unique}-{i}", arn, taskObject=f"s3://{unique}/q/{i}.jpg", projectArn=project,
                    customLabels=[{"Name": "cat", "Confidence": top}])
    queue = (await router.call("ListReviewTasks", {"ProjectName": unique}))["ReviewTasks"]
    assert [t["HumanLoopName"] for t in queue] == [f"{unique}-1", f"{unique}-2", f"{unique}-0"]
    await router.call("AnswerReviewTask", {"HumanLoopName": f"{unique}-1", "WorkerId": "ann", "Verdict": "SKIP"})
    skipped = await router.call("GetReviewTask", {"HumanLoopName": f"{unique}-1"})
    assert (skipped["ReviewTask"]["Status"], skipped["ReviewTask"]["AnswerCount"], skipped["ReviewTask"]["Skips"]) == ("InProgress", 0, ["ann"])
    left = (await router.call("ListReviewTasks", {"ProjectName": unique, "WorkerId": "ann"}))["ReviewTasks"]
    assert [t["HumanLoopName"] for t in left] == [f"{unique}-2", f"{unique}-0"]
    by_flow = (await router.call("ListReviewTasks", {"FlowDefinitionName": unique, "MaxResults": 2}))
    assert len(by_flow["ReviewTasks"]) == 2 and by_flow["NextToken"]
    with pytest.raises(errors.ResourceNotFound):
        await router.call("ListReviewTasks", {"FlowDefinitionName": unique + "-none"})


async def test_boxes_are_checked_against_the_image_and_stored_in_pixels(embedded, router, unique):
    project = (await embedded.api.call("CreateProject", {"ProjectName": unique}))["ProjectArn"]
    await embedded.put_object(unique, "t/a.jpg", jpeg(200, 100))
    train = await create_ready_dataset(embedded, project, [classification_line(unique, "t/a.jpg", "dent")])
    arn = await flow(router, unique)
    await embedded.put_object(unique, "q.jpg", jpeg(200, 100))
    await start(router, unique, arn, taskObject=f"s3://{unique}/q.jpg", projectArn=project, taskType="detection")
    outside = {"Name": "dent", "BoundingBox": {"Left": 0.8, "Top": 0.1, "Width": 0.3, "Height": 0.3}}
    with pytest.raises(errors.InvalidParameter) as refused:
        await router.call("AnswerReviewTask", {"HumanLoopName": unique, "WorkerId": "w", "Verdict": "CORRECT", "Labels": [outside]})
    assert refused.value.code == "ValidationException" and "outside the image" in refused.value.message
    inside = {"Name": "dent", "BoundingBox": {"Left": 0.25, "Top": 0.5, "Width": 0.5, "Height": 0.25}}
    await router.call("AnswerReviewTask", {"HumanLoopName": unique, "WorkerId": "w", "Verdict": "CORRECT", "Labels": [inside]})
    entries = await wait_until(lambda: all_entries(embedded.api, train), lambda e: len(e) == 2, "the reviewed entry")
    (reviewed,) = [e for e in entries if e["source-ref"].endswith("q.jpg")]
    assert reviewed["reviewed-boxes"]["annotations"] == [{"class_id": 0, "left": 50, "top": 50, "width": 100, "height": 25}]


async def test_reviewed_entries_trigger_one_retraining_and_a_failure_waits_for_new_ones(embedded, router, unique):
    """N reviewed entries (bulk imports don't count) -> CreateProjectVersion by the feedback service;
    a version that fails (one label: nothing to learn) is not retried until new reviewed entries come."""
    project = (await embedded.api.call("CreateProject", {"ProjectName": unique}))["ProjectArn"]
    await embedded.put_object(unique, "t/a.jpg", jpeg())
    await embedded.put_object(unique, "t/b.jpg", jpeg(color=(1, 1, 1)))
    await create_ready_dataset(embedded, project, [classification_line(unique, "t/a.jpg", "cat"),
                                                   classification_line(unique, "t/b.jpg", "cat")])
    await embedded.api.call("TagResource", {"ResourceArn": project, "Tags": {
        "customlabels:retrain-after-entries": "2", "customlabels:retrain-debounce-seconds": "0"}})
    arn = await flow(router, unique)

    async def versions():
        found = await embedded.api.call("DescribeProjectVersions", {"ProjectArn": project})
        return found["ProjectVersionDescriptions"]

    async def review(i: int) -> None:
        await embedded.put_object(unique, f"q/{i}.jpg", jpeg(color=(i * 30, 9, 9)))
        await start(router, f"{unique}-{i}", arn, taskObject=f"s3://{unique}/q/{i}.jpg", projectArn=project, taskType="classification")
        await router.call("AnswerReviewTask", {"HumanLoopName": f"{unique}-{i}", "WorkerId": "w", "Verdict": "CORRECT",
                                               "Labels": [{"Name": "cat"}]})

    await review(0)
    await asyncio.sleep(2.5)  # ticks pass: one reviewed entry is not enough
    assert await versions() == []
    await review(1)
    (version,) = await wait_until(versions, lambda v: len(v) == 1 and v[0]["Status"] == "TRAINING_FAILED",
                                  "the retrained version to fail", timeout=30)
    assert version["ProjectVersionArn"].split("/")[-2].startswith("feedback-")
    tags = (await embedded.api.call("ListTagsForResource", {"ResourceArn": version["ProjectVersionArn"]}))["Tags"]
    assert tags["customlabels:requested-by"] == "feedback"
    await asyncio.sleep(2.5)
    assert len(await versions()) == 1  # no retry without new reviewed entries
