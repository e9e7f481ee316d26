"""Projects, their policies and tags, DeleteProject's refusals and its DELETING path: the projects service in process."""
from __future__ import annotations

import json

import pytest

from customlabels import errors
from tests.support.embedded import all_pages, dataset_statuses, tags_of, wait_gone, wait_until, wait_version
from tests.support.training import OUTPUT

ARN_PREFIX = "arn:aws:rekognition:us-east-1:000000000000:project/"
POLICY = json.dumps({
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::111111111111:root"},
                   "Action": "rekognition:CopyProjectVersion", "Resource": "*"}],
})


async def describe(api, name: str) -> list[dict]:
    return (await api.call("DescribeProjects", {"ProjectNames": [name]}))["ProjectDescriptions"]


async def test_create_describe_delete(api, unique):
    arn = (await api.call("CreateProject", {"ProjectName": unique}))["ProjectArn"]
    assert arn.startswith(f"{ARN_PREFIX}{unique}/")
    (project,) = await describe(api, unique)
    assert (project["ProjectArn"], project["Status"], project["Datasets"]) == (arn, "CREATED", [])

    assert (await api.call("DeleteProject", {"ProjectArn": arn}))["Status"] == "DELETING"
    assert await describe(api, unique) == []
    with pytest.raises(errors.ResourceNotFound):
        await api.call("DeleteProject", {"ProjectArn": arn})


async def test_a_duplicate_name_is_refused_and_changes_nothing(api, project, unique):
    with pytest.raises(errors.ResourceInUse, match=unique):
        await api.call("CreateProject", {"ProjectName": unique})
    assert [p["ProjectArn"] for p in await describe(api, unique)] == [project]


@pytest.mark.parametrize("name, constraint", [
    ("has space", "regular expression pattern"),
    ("x" * 256, "length less than or equal to 255"),
    ("", "length greater than or equal to 1"),
])
async def test_a_name_the_model_refuses_never_reaches_the_service(api, name, constraint):
    with pytest.raises(errors.InvalidParameter, match=constraint) as refused:
        await api.call("CreateProject", {"ProjectName": name})
    assert "projectName" in refused.value.message


async def test_only_custom_labels_projects(api, unique):
    with pytest.raises(errors.InvalidParameter, match="CUSTOM_LABELS"):
        await api.call("CreateProject", {"ProjectName": unique, "Feature": "CONTENT_MODERATION"})
    assert await describe(api, unique) == []
    await api.call("CreateProject", {"ProjectName": unique})
    other = await api.call("DescribeProjects", {"ProjectNames": [unique], "Features": ["CONTENT_MODERATION"]})
    assert other["ProjectDescriptions"] == []


async def test_describe_pages_newest_first_and_refuses_foreign_tokens(api, unique):
    for i in range(5):
        await api.call("CreateProject", {"ProjectName": f"{unique}-{i}"})
    pages = await all_pages(api, "DescribeProjects", {"MaxResults": 2})
    assert max(len(page["ProjectDescriptions"]) for page in pages) == 2
    seen = [p["ProjectArn"] for page in pages for p in page["ProjectDescriptions"]]
    assert len(seen) == len(set(seen))
    ours = [arn.split("/")[1] for arn in seen if f"/{unique}-" in arn]
    assert ours == [f"{unique}-{i}" for i in reversed(range(5))]

    with pytest.raises(errors.InvalidPaginationToken):
        await api.call("DescribeProjects", {"NextToken": "not-a-token"})
    first = (await api.call("DescribeProjects", {"MaxResults": 1}))["NextToken"]
    tampered = first[:-2] + ("AA" if not first.endswith("AA") else "BB")
    with pytest.raises(errors.InvalidPaginationToken):
        await api.call("DescribeProjects", {"MaxResults": 1, "NextToken": tampered})


async def test_an_unknown_project(api):
    with pytest.raises(errors.ResourceNotFound):
        await api.call("DeleteProject", {"ProjectArn": f"{ARN_PREFIX}nope/1234567890123"})
    with pytest.raises(errors.ResourceNotFound):
        await api.call("TagResource", {"ResourceArn": f"{ARN_PREFIX}nope/1", "Tags": {"a": "b"}})
    with pytest.raises(errors.ResourceNotFound):
        await api.call("PutProjectPolicy", {"ProjectArn": f"{ARN_PREFIX}nope/1", "PolicyName": "p",
                                            "PolicyDocument": POLICY})


async def test_tags_on_a_project(api, unique):
    arn = (await api.call("CreateProject", {"ProjectName": unique, "Tags": {"team": "vision"}}))["ProjectArn"]

    async def tags():
        return (await api.call("ListTagsForResource", {"ResourceArn": arn}))["Tags"]

    assert await tags() == {"team": "vision"}
    await api.call("TagResource", {"ResourceArn": arn, "Tags": {"cost-center": "42", "team": "ml"}})
    assert await tags() == {"team": "ml", "cost-center": "42"}
    await api.call("UntagResource", {"ResourceArn": arn, "TagKeys": ["team"]})
    assert await tags() == {"cost-center": "42"}
    with pytest.raises(errors.ServiceQuotaExceeded):  # 50 tags at most, counting those it has
        await api.call("TagResource", {"ResourceArn": arn, "Tags": {f"k{i}": "v" for i in range(50)}})
    assert await tags() == {"cost-center": "42"}
    await api.call("TagResource", {"ResourceArn": arn, "Tags": {f"k{i}": "v" for i in range(49)}})
    assert len(await tags()) == 50


async def test_policy_revisions(api, project):
    async def put(**params):
        return (await api.call("PutProjectPolicy", {"ProjectArn": project, "PolicyName": "copy",
                                                    "PolicyDocument": POLICY, **params}))["PolicyRevisionId"]

    revision = await put()
    (policy,) = (await api.call("ListProjectPolicies", {"ProjectArn": project}))["ProjectPolicies"]
    assert (policy["PolicyName"], policy["PolicyRevisionId"], policy["PolicyDocument"]) == ("copy", revision, POLICY)

    with pytest.raises(errors.ResourceAlreadyExists):  # replacing needs the revision
        await put()
    with pytest.raises(errors.InvalidPolicyRevisionId):
        await put(PolicyRevisionId="abc123")
    newer = await put(PolicyRevisionId=revision)
    assert newer != revision
    with pytest.raises(errors.InvalidPolicyRevisionId):  # the old revision is spent
        await put(PolicyRevisionId=revision)
    with pytest.raises(errors.MalformedPolicyDocument):
        await api.call("PutProjectPolicy", {"ProjectArn": project, "PolicyName": "bad", "PolicyDocument": "{not json"})

    with pytest.raises(errors.InvalidPolicyRevisionId):
        await api.call("DeleteProjectPolicy", {"ProjectArn": project, "PolicyName": "copy", "PolicyRevisionId": revision})
    (policy,) = (await api.call("ListProjectPolicies", {"ProjectArn": project}))["ProjectPolicies"]
    assert policy["PolicyRevisionId"] == newer
    await api.call("DeleteProjectPolicy", {"ProjectArn": project, "PolicyName": "copy", "PolicyRevisionId": newer})
    assert (await api.call("ListProjectPolicies", {"ProjectArn": project}))["ProjectPolicies"] == []
    with pytest.raises(errors.ResourceNotFound):
        await api.call("DeleteProjectPolicy", {"ProjectArn": project, "PolicyName": "copy"})


async def test_five_policies_at_most_listed_by_name_in_pages(api, project):
    for i in range(5):
        await api.call("PutProjectPolicy", {"ProjectArn": project, "PolicyName": f"p{i}", "PolicyDocument": POLICY})
    with pytest.raises(errors.LimitExceeded):
        await api.call("PutProjectPolicy", {"ProjectArn": project, "PolicyName": "p5", "PolicyDocument": POLICY})
    pages = await all_pages(api, "ListProjectPolicies", {"ProjectArn": project, "MaxResults": 2})
    assert [[p["PolicyName"] for p in page["ProjectPolicies"]] for page in pages] == [["p0", "p1"], ["p2", "p3"], ["p4"]]


async def test_delete_project_is_refused_while_it_has_versions(api, project, unique, one_label):
    version = (await api.call("CreateProjectVersion", {"ProjectArn": project, "VersionName": "v1",
                                                       "OutputConfig": OUTPUT}))["ProjectVersionArn"]
    # The projects service hears of the version by an event (its tags come with it); from then on it refuses.
    await wait_until(lambda: tags_of(api, version), lambda tags: tags is not None,
                     "the projects service to know the version")
    with pytest.raises(errors.ResourceInUse, match="DeleteProjectVersion"):
        await api.call("DeleteProject", {"ProjectArn": project})
    (still,) = await describe(api, unique)
    assert still["Status"] == "CREATED"

    await wait_version(api, project, "v1")  # one label: it fails at once
    await api.call("DeleteProjectVersion", {"ProjectVersionArn": version})
    await wait_until(lambda: _delete_refusal(api, project), lambda message: message == "",
                     "DeleteProject to be accepted once the version is gone")
    await wait_gone(api, "DescribeDataset", {"DatasetArn": one_label})
    await wait_gone(api, "ListTagsForResource", {"ResourceArn": project})


async def _delete_refusal(api, project: str) -> str:
    """DeleteProject's ResourceInUse message, or "" once it is accepted."""
    try:
        await api.call("DeleteProject", {"ProjectArn": project})
    except errors.ResourceInUse as refused:
        return refused.message
    return ""


async def test_delete_project_with_datasets_goes_through_deleting(api, project, unique):
    train = (await api.call("CreateDataset", {"ProjectArn": project, "DatasetType": "TRAIN"}))["DatasetArn"]
    test = (await api.call("CreateDataset", {"ProjectArn": project, "DatasetType": "TEST"}))["DatasetArn"]
    await wait_until(lambda: dataset_statuses(api, project), lambda found: len(found) == 2,
                     "DescribeProjects to list both datasets")
    assert (await api.call("DeleteProject", {"ProjectArn": project}))["Status"] == "DELETING"
    # The datasets service deletes the datasets; the project stays DELETING until the last is gone.
    (deleting,) = await describe(api, unique)
    assert deleting["Status"] == "DELETING"
    with pytest.raises(errors.ResourceInUse, match="DELETING"):
        await api.call("CreateDataset", {"ProjectArn": project, "DatasetType": "TRAIN"})
    for dataset in (train, test):
        await wait_gone(api, "DescribeDataset", {"DatasetArn": dataset})
    await wait_gone(api, "ListTagsForResource", {"ResourceArn": project})
    assert await describe(api, unique) == []
    # the name is free again
    again = (await api.call("CreateProject", {"ProjectName": unique}))["ProjectArn"]
    assert again != project
