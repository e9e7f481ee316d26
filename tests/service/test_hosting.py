"""Hosting's refusals for versions that cannot run: never trained, failed, or not there.

The states of a trained version (running, stopped) are in ``test_trained_version.py``.
"""
from __future__ import annotations

import pytest

from customlabels import errors
from tests.support.api import jpeg
from tests.support.embedded import wait_version
from tests.support.training import OUTPUT


@pytest.fixture
async def failed_version(api, project, one_label) -> str:
    """A version whose training failed (its dataset has one label): its ARN."""
    created = await api.call("CreateProjectVersion", {"ProjectArn": project, "VersionName": "v1", "OutputConfig": OUTPUT})
    assert (await wait_version(api, project, "v1"))["Status"] == "TRAINING_FAILED"
    return created["ProjectVersionArn"]


async def test_a_version_that_never_trained_cannot_start_stop_or_answer(api, failed_version, project):
    with pytest.raises(errors.ResourceInUse, match="TRAINING_FAILED"):
        await api.call("StartProjectVersion", {"ProjectVersionArn": failed_version, "MinInferenceUnits": 1})
    with pytest.raises(errors.ResourceInUse, match="TRAINING_FAILED"):
        await api.call("StopProjectVersion", {"ProjectVersionArn": failed_version})
    with pytest.raises(errors.ResourceNotReady, match="TRAINING_FAILED"):
        await api.call("DetectCustomLabels", {"ProjectVersionArn": failed_version, "Image": {"Bytes": jpeg()}})
    (description,) = (await api.call("DescribeProjectVersions", {"ProjectArn": project}))["ProjectVersionDescriptions"]
    assert description["Status"] == "TRAINING_FAILED"  # unchanged by the refusals


async def test_a_version_that_does_not_exist(api, failed_version):
    missing = failed_version.replace("/version/v1/", "/version/nope/")
    with pytest.raises(errors.ResourceNotFound):
        await api.call("StartProjectVersion", {"ProjectVersionArn": missing, "MinInferenceUnits": 1})
    with pytest.raises(errors.ResourceNotFound):
        await api.call("StopProjectVersion", {"ProjectVersionArn": missing})
    with pytest.raises(errors.ResourceNotFound):
        await api.call("DetectCustomLabels", {"ProjectVersionArn": missing, "Image": {"Bytes": jpeg()}})


async def test_inference_units_are_checked_before_anything_else(api, failed_version):
    with pytest.raises(errors.InvalidParameter, match="MaxInferenceUnits"):
        await api.call("StartProjectVersion", {"ProjectVersionArn": failed_version, "MinInferenceUnits": 3,
                                               "MaxInferenceUnits": 2})
    with pytest.raises(errors.LimitExceeded):
        await api.call("StartProjectVersion", {"ProjectVersionArn": failed_version, "MinInferenceUnits": 1,
                                               "MaxInferenceUnits": 1000})
    with pytest.raises(errors.InvalidParameter, match="minInferenceUnits"):  # the model's own check (at least 1)
        await api.call("StartProjectVersion", {"ProjectVersionArn": failed_version, "MinInferenceUnits": 0})
