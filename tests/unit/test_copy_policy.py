"""The project-policy rule for CopyProjectVersion into another account (``services.training.copy_policy``)."""
from __future__ import annotations

import json

import pytest

from services.training.copy_policy import allows

SOURCE = "arn:aws:rekognition:us-east-1:111111111111:project/flowers/version/v1/1700000000000"
BOB = "222222222222"


def document(*statements) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


def statement(effect="Allow", principal=None, action="rekognition:CopyProjectVersion", resource=SOURCE, **more) -> dict:
    return {"Effect": effect, "Principal": {"AWS": f"arn:aws:iam::{BOB}:root"} if principal is None else principal,
            "Action": action, "Resource": resource, **more}


@pytest.mark.parametrize("principal", [
    {"AWS": BOB}, {"AWS": f"arn:aws:iam::{BOB}:root"}, {"AWS": ["333333333333", BOB]}, "*", {"AWS": "*"},
])
def test_the_principal_names_the_destination_account(principal):
    assert allows([document(statement(principal=principal))], BOB, SOURCE)


@pytest.mark.parametrize("principal", [
    {"AWS": "333333333333"}, {"AWS": f"arn:aws:iam::{BOB}:user/alice"}, {"Service": "rekognition.amazonaws.com"},
])
def test_another_principal_grants_nothing(principal):
    assert not allows([document(statement(principal=principal))], BOB, SOURCE)


@pytest.mark.parametrize("action, allowed", [
    ("rekognition:CopyProjectVersion", True), ("rekognition:copyprojectversion", True), ("rekognition:*", True),
    ("*", True), ("rekognition:Copy*", True), (["rekognition:DescribeProjects", "rekognition:CopyProjectVersion"], True),
    ("rekognition:DescribeProjects", False), ("s3:*", False),
])
def test_the_action_matches_with_wildcards_whatever_the_case(action, allowed):
    assert allows([document(statement(action=action))], BOB, SOURCE) is allowed


@pytest.mark.parametrize("resource, allowed", [
    (SOURCE, True), ("*", True), ("arn:aws:rekognition:us-east-1:111111111111:project/flowers/version/*", True),
    ("arn:aws:rekognition:us-east-1:111111111111:project/flowers/version/v?/*", True),
    ("arn:aws:rekognition:us-east-1:111111111111:project/roses/version/*", False),
    ("arn:aws:rekognition:us-east-1:111111111111:project/FLOWERS/version/*", False),  # resources are case-sensitive
    ("arn:aws:rekognition:us-east-1:111111111111:project/flowers[a]/*", False),  # brackets are no character class
])
def test_the_resource_matches_the_source_version(resource, allowed):
    assert allows([document(statement(resource=resource))], BOB, SOURCE) is allowed


def test_a_deny_wins_in_any_policy():
    assert not allows([document(statement()), document(statement(effect="Deny", action="rekognition:*"))], BOB, SOURCE)
    assert allows([document(statement()), document(statement(effect="Deny", principal={"AWS": "333333333333"}))], BOB, SOURCE)


def test_not_elements_match_what_they_do_not_name():
    not_action = {"Effect": "Allow", "Principal": "*", "NotAction": "rekognition:DeleteProject", "Resource": "*"}
    assert allows([document(not_action)], BOB, SOURCE)
    assert not allows([document({**not_action, "NotAction": "rekognition:Copy*"})], BOB, SOURCE)
    not_resource = {"Effect": "Deny", "Principal": "*", "Action": "*", "NotResource": SOURCE}
    assert allows([document(statement(), not_resource)], BOB, SOURCE)


def test_conditions_are_not_evaluated_so_they_grant_nothing_and_deny_everything():
    condition = {"StringEquals": {"aws:SourceVpc": "vpc-1"}}
    assert not allows([document(statement(Condition=condition))], BOB, SOURCE)
    assert not allows([document(statement(), statement(effect="Deny", Condition=condition))], BOB, SOURCE)


def test_nothing_said_is_refused():
    assert not allows([], BOB, SOURCE)
    assert not allows([document()], BOB, SOURCE)
    assert not allows(["not json", json.dumps({"Statement": "nonsense"})], BOB, SOURCE)
    assert not allows([document({"Effect": "Allow", "Action": "*", "Resource": "*"})], BOB, SOURCE)  # no principal
