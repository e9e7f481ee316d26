"""Projects, tags and policies through the stock boto3 client over real HTTP."""
from __future__ import annotations

import json

import pytest
from botocore.exceptions import ClientError

from tests.support.api import error_code, wait_gone

ARN_PREFIX = "arn:aws:rekognition:us-east-1:000000000000:project/"


def test_create_describe_delete_project(rekognition, unique):
    arn = rekognition.create_project(ProjectName=unique)["ProjectArn"]
    assert arn.startswith(f"{ARN_PREFIX}{unique}/")

    (project,) = rekognition.describe_projects(ProjectNames=[unique])["ProjectDescriptions"]
    assert project["ProjectArn"] == arn
    assert project["Status"] == "CREATED"
    assert project["Datasets"] == []
    assert project["CreationTimestamp"].year >= 2026

    assert rekognition.delete_project(ProjectArn=arn)["Status"] == "DELETING"
    assert rekognition.describe_projects(ProjectNames=[unique])["ProjectDescriptions"] == []
    with pytest.raises(ClientError) as e:
        rekognition.delete_project(ProjectArn=arn)
    assert error_code(e) == "ResourceNotFoundException"


def test_duplicate_name_is_refused_and_changes_nothing(rekognition, unique):
    arn = rekognition.create_project(ProjectName=unique)["ProjectArn"]
    with pytest.raises(rekognition.exceptions.ResourceInUseException) as e:
        rekognition.create_project(ProjectName=unique)
    assert unique in str(e.value)
    (project,) = rekognition.describe_projects(ProjectNames=[unique])["ProjectDescriptions"]
    assert project["ProjectArn"] == arn


@pytest.mark.parametrize(
    "name, constraint",
    [("has space", "regular expression pattern"), ("x" * 256, "length less than or equal to 255"), ("", "length greater than or equal to 1")],
)
def test_invalid_project_name_names_the_field(server, name, constraint):
    """With boto3's own checks off, the server's model-derived checks answer."""
    client = server.rekognition(parameter_validation=False)
    with pytest.raises(client.exceptions.InvalidParameterException) as e:
        client.create_project(ProjectName=name)
    assert "projectName" in str(e.value) and constraint in str(e.value)


def test_describe_projects_pages_and_rejects_bad_tokens(rekognition, unique):
    for i in range(5):
        rekognition.create_project(ProjectName=f"{unique}-{i}")
    seen, token = [], None
    while True:
        page = rekognition.describe_projects(MaxResults=2, **({"NextToken": token} if token else {}))
        assert len(page["ProjectDescriptions"]) <= 2
        seen += [p["ProjectArn"] for p in page["ProjectDescriptions"]]
        token = page.get("NextToken")
        if not token:
            break
    ours = [arn for arn in seen if f"/{unique}-" in arn]
    assert len(ours) == 5 and len(set(seen)) == len(seen)
    # newest first
    assert [arn.split("/")[1] for arn in ours] == [f"{unique}-{i}" for i in reversed(range(5))]

    with pytest.raises(rekognition.exceptions.InvalidPaginationTokenException):
        rekognition.describe_projects(NextToken="not-a-token")
    first = rekognition.describe_projects(MaxResults=1)
    tampered = first["NextToken"][:-2] + ("AA" if not first["NextToken"].endswith("AA") else "BB")
    with pytest.raises(rekognition.exceptions.InvalidPaginationTokenException):
        rekognition.describe_projects(MaxResults=1, NextToken=tampered)


def test_paginator_and_filters(rekognition, unique):
    rekognition.create_project(ProjectName=unique)
    names = [p["ProjectArn"] for page in rekognition.get_paginator("describe_projects").paginate(PaginationConfig={"PageSize": 3})
             for p in page["ProjectDescriptions"]]
    assert any(f"/{unique}/" in n for n in names)
    assert rekognition.describe_projects(ProjectNames=[unique], Features=["CONTENT_MODERATION"])["ProjectDescriptions"] == []
    with pytest.raises(rekognition.exceptions.InvalidParameterException):
        rekognition.create_project(ProjectName=unique + "x", Feature="CONTENT_MODERATION")


def test_unknown_project_arn(rekognition):
    with pytest.raises(rekognition.exceptions.ResourceNotFoundException):
        rekognition.delete_project(ProjectArn=f"{ARN_PREFIX}nope/1234567890123")


def test_tags_on_projects(rekognition, unique):
    arn = rekognition.create_project(ProjectName=unique, Tags={"team": "vision"})["ProjectArn"]
    assert rekognition.list_tags_for_resource(ResourceArn=arn)["Tags"] == {"team": "vision"}
    rekognition.tag_resource(ResourceArn=arn, Tags={"cost-center": "42", "team": "ml"})
    assert rekognition.list_tags_for_resource(ResourceArn=arn)["Tags"] == {"team": "ml", "cost-center": "42"}
    rekognition.untag_resource(ResourceArn=arn, TagKeys=["team"])
    assert rekognition.list_tags_for_resource(ResourceArn=arn)["Tags"] == {"cost-center": "42"}
    with pytest.raises(rekognition.exceptions.ServiceQuotaExceededException):
        rekognition.tag_resource(ResourceArn=arn, Tags={f"k{i}": "v" for i in range(60)})
    assert rekognition.list_tags_for_resource(ResourceArn=arn)["Tags"] == {"cost-center": "42"}
    with pytest.raises(rekognition.exceptions.ResourceNotFoundException):
        rekognition.tag_resource(ResourceArn=f"{ARN_PREFIX}nope/1", Tags={"a": "b"})


POLICY = json.dumps({
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::111111111111:root"},
                   "Action": "rekognition:CopyProjectVersion", "Resource": "*"}],
})


def test_project_policies_with_revisions(rekognition, unique):
    arn = rekognition.create_project(ProjectName=unique)["ProjectArn"]
    revision = rekognition.put_project_policy(ProjectArn=arn, PolicyName="copy", PolicyDocument=POLICY)["PolicyRevisionId"]
    (policy,) = rekognition.list_project_policies(ProjectArn=arn)["ProjectPolicies"]
    assert policy["PolicyRevisionId"] == revision and policy["PolicyDocument"] == POLICY

    with pytest.raises(rekognition.exceptions.ResourceAlreadyExistsException):
        rekognition.put_project_policy(ProjectArn=arn, PolicyName="copy", PolicyDocument=POLICY)
    with pytest.raises(rekognition.exceptions.InvalidPolicyRevisionIdException):
        rekognition.put_project_policy(ProjectArn=arn, PolicyName="copy", PolicyDocument=POLICY, PolicyRevisionId="abc123")
    newer = rekognition.put_project_policy(ProjectArn=arn, PolicyName="copy", PolicyDocument=POLICY, PolicyRevisionId=revision)["PolicyRevisionId"]
    assert newer != revision
    with pytest.raises(rekognition.exceptions.MalformedPolicyDocumentException):
        rekognition.put_project_policy(ProjectArn=arn, PolicyName="bad", PolicyDocument="{not json")
    with pytest.raises(rekognition.exceptions.InvalidPolicyRevisionIdException):
        rekognition.delete_project_policy(ProjectArn=arn, PolicyName="copy", PolicyRevisionId=revision)
    rekognition.delete_project_policy(ProjectArn=arn, PolicyName="copy", PolicyRevisionId=newer)
    assert rekognition.list_project_policies(ProjectArn=arn)["ProjectPolicies"] == []
    with pytest.raises(rekognition.exceptions.ResourceNotFoundException):
        rekognition.delete_project_policy(ProjectArn=arn, PolicyName="copy")


def test_policy_limit(rekognition, unique):
    arn = rekognition.create_project(ProjectName=unique)["ProjectArn"]
    for i in range(5):
        rekognition.put_project_policy(ProjectArn=arn, PolicyName=f"p{i}", PolicyDocument=POLICY)
    with pytest.raises(rekognition.exceptions.LimitExceededException):
        rekognition.put_project_policy(ProjectArn=arn, PolicyName="p5", PolicyDocument=POLICY)
    page = rekognition.list_project_policies(ProjectArn=arn, MaxResults=2)
    assert [p["PolicyName"] for p in page["ProjectPolicies"]] == ["p0", "p1"] and page["NextToken"]


def test_delete_project_removes_its_datasets(rekognition, unique):
    arn = rekognition.create_project(ProjectName=unique)["ProjectArn"]
    dataset = rekognition.create_dataset(ProjectArn=arn, DatasetType="TRAIN")["DatasetArn"]
    assert rekognition.delete_project(ProjectArn=arn)["Status"] == "DELETING"
    wait_gone(lambda: rekognition.describe_dataset(DatasetArn=dataset))
    wait_gone(lambda: rekognition.list_tags_for_resource(ResourceArn=arn))
    assert rekognition.describe_projects(ProjectNames=[unique])["ProjectDescriptions"] == []
