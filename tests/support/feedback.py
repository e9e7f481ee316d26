"""Helpers for the feedback loop's tests and benchmark: stock clients, flows, flowers split three ways."""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import boto3
from botocore.config import Config

from customlabels.client import Endpoint, review_client
from customlabels.config import DEV_ACCESS_KEY, DEV_SECRET_KEY
from tests.support.server import DATASETS

FLOWERS = DATASETS / "flowers-small"
ROLE = "arn:aws:iam::000000000000:role/a2i-unused"
UNCERTAIN = {"ConditionType": "DetectionCount",  # no label reaches 70 %: the model is unsure
             "ConditionParameters": {"LabelName": "*", "MinConfidence": 70, "CountEquals": 0}}


def client(endpoint: str, name: str):
    """A stock boto3 client (``sagemaker``, ``sagemaker-a2i-runtime``, ``rekognition``) of the server."""
    return boto3.client(name, endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id=DEV_ACCESS_KEY,
                        aws_secret_access_key=DEV_SECRET_KEY, config=Config(retries={"max_attempts": 2, "mode": "standard"}))


def review(endpoint: str):
    return review_client(Endpoint(url=endpoint))


def activation(*conditions: dict) -> dict:
    """HumanLoopActivationConfig for these conditions (any one true opens a loop)."""
    return {"HumanLoopActivationConditionsConfig": {"HumanLoopActivationConditions": json.dumps({"Conditions": list(conditions)})}}


def sampling(percentage: float) -> dict:
    return {"ConditionType": "Sampling", "ConditionParameters": {"RandomSamplingPercentage": percentage}}


def create_flow(sagemaker, name: str, *conditions: dict, output: str = "s3://customlabels-output/reviews",
                tags: dict[str, str] | None = None, task_count: int | None = None) -> str:
    params = {"FlowDefinitionName": name, "RoleArn": ROLE, "OutputConfig": {"S3OutputPath": output},
              "Tags": [{"Key": k, "Value": v} for k, v in (tags or {}).items()]}
    if conditions:
        params["HumanLoopActivationConfig"] = activation(*conditions)
    if task_count:
        params["HumanLoopConfig"] = {
            "WorkteamArn": "arn:aws:sagemaker:us-east-1:000000000000:workteam/private-crowd/unused",
            "HumanTaskUiArn": "arn:aws:sagemaker:us-east-1:000000000000:human-task-ui/customlabels-classification",
            "TaskTitle": "Which flower?", "TaskDescription": "Pick the flower in the photo", "TaskCount": task_count}
    return sagemaker.create_flow_definition(**params)["FlowDefinitionArn"]


@dataclass
class FlowerSplit:
    """flowers-small split three ways: a fixed test set, a small seed to train v1 on, and a stream."""

    test: list[tuple[str, Path]] = field(default_factory=list)  # (label, photo)
    seed: list[tuple[str, Path]] = field(default_factory=list)
    stream: list[tuple[str, Path]] = field(default_factory=list)


def flower_split(test_per_label: int, seed_per_label: int, offset: int = 0) -> FlowerSplit:
    """The same photos every time for the same arguments; ``offset`` rotates which photos go where."""
    split = FlowerSplit()
    for label in sorted(p.name for p in FLOWERS.iterdir() if p.is_dir()):
        photos = sorted((FLOWERS / label).glob("*.jpg"))
        photos = photos[offset % len(photos):] + photos[:offset % len(photos)]
        split.test += [(label, p) for p in photos[:test_per_label]]
        split.seed += [(label, p) for p in photos[test_per_label:test_per_label + seed_per_label]]
        split.stream += [(label, p) for p in photos[test_per_label + seed_per_label:]]
    return split


def wait_for(probe, done, what: str, timeout: float = 60, interval: float = 0.2):
    """``probe()`` until ``done(answer)``; AssertionError naming ``what`` and the last answer past ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        answer = probe()
        if done(answer):
            return answer
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}; last: {answer!r}")
        time.sleep(interval)
