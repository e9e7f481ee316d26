"""One real model, trained in this process: the version's states from training to running to stopped.

40 flowers-small photos (8 of each of 5 labels) train within a 10 s budget
(about 20 s in all on 2 cores); the hosting tests start real inference units
(processes) on the exported model. The first test runs while the version is
still training, as pytest runs a module's tests in file order.
"""
from __future__ import annotations

import asyncio

import pytest

from customlabels import errors
from customlabels.ports.documents import Delete, Insert, stored
from services.hosting import service as hosting_service
from tests.support.api import classification_line
from tests.support.embedded import create_ready_dataset, wait_until, wait_version
from tests.support.models import flower_photos
from tests.support.training import BUDGET_TAG, OUTPUT

pytestmark = pytest.mark.slow

TRAINING_TIMEOUT = 180.0


@pytest.fixture(scope="module")
async def training(embedded) -> tuple[str, str]:
    """A project with 40 labeled photos and its version v1, just created (10 s budget): (project, version) ARNs."""
    api = embedded.api
    project = (await api.call("CreateProject", {"ProjectName": "servicetier-trained"}))["ProjectArn"]
    lines = []
    for i, (label, photo) in enumerate(flower_photos(8)):
        await embedded.put_object("servicetier-flowers", f"{label}/{i}.jpg", photo)
        lines.append(classification_line("servicetier-flowers", f"{label}/{i}.jpg", label))
    await create_ready_dataset(embedded, project, lines)
    version = await api.call("CreateProjectVersion", {"ProjectArn": project, "VersionName": "v1",
                                                      "OutputConfig": OUTPUT, "Tags": {BUDGET_TAG: "10"}})
    return project, version["ProjectVersionArn"]


@pytest.fixture(scope="module")
async def trained(embedded, training) -> tuple[str, str]:
    """The same version once TRAINING_COMPLETED."""
    project, _ = training
    description = await wait_version(embedded.api, project, "v1", timeout=TRAINING_TIMEOUT)
    assert description["Status"] == "TRAINING_COMPLETED", description["StatusMessage"]
    return training


async def test_a_version_in_training_cannot_be_deleted_copied_or_started(api, training):
    project, version = training
    (description,) = (await api.call("DescribeProjectVersions", {"ProjectArn": project}))["ProjectVersionDescriptions"]
    assert description["Status"] == "TRAINING_IN_PROGRESS", "this test must run while the version trains"
    with pytest.raises(errors.ResourceInUse, match="wait until it has finished"):
        await api.call("DeleteProjectVersion", {"ProjectVersionArn": version})
    with pytest.raises(errors.ResourceInUse, match="only a trained model can be copied"):
        await api.call("CopyProjectVersion", {"SourceProjectArn": project, "SourceProjectVersionArn": version,
                                              "DestinationProjectArn": project, "VersionName": "copy",
                                              "OutputConfig": OUTPUT})
    with pytest.raises(errors.ResourceInUse, match="TRAINING_IN_PROGRESS"):
        await api.call("StartProjectVersion", {"ProjectVersionArn": version, "MinInferenceUnits": 1})
    with pytest.raises(errors.ResourceNotReady):
        await api.call("DetectCustomLabels", {"ProjectVersionArn": version, "Image": {"Bytes": flower_photos(1)[0][1]}})


async def test_a_version_hosting_has_not_heard_of_yet_is_waited_for(embedded, api, trained, monkeypatch):
    """The window after TRAINING_COMPLETED in which hosting's VersionCompleted is still on its way: a caller
    that saw the status and acts at once is answered as if it had arrived (it is waited for); one that
    never arrives is a 503 to retry, never the contradiction "is TRAINING_COMPLETED; only a TRAINING_COMPLETED ...".
    """
    project, version = trained
    (hosting,) = [service for service in embedded.system.services if service.name == "hosting"]
    known = await wait_until(lambda: hosting.store.get(hosting_service.VERSIONS, version), lambda doc: doc is not None,
                             "hosting to receive VersionCompleted")
    await hosting.store.commit([Delete(hosting_service.VERSIONS, version)])  # as if the event were still on its way

    async def arrives_late():
        await asyncio.sleep(0.5)
        await hosting.store.commit([Insert(hosting_service.VERSIONS, stored(known))])

    arriving = asyncio.create_task(arrives_late())
    try:
        with pytest.raises(errors.ResourceInUse, match="not running: nothing to stop"):
            await api.call("StopProjectVersion", {"ProjectVersionArn": version})
    finally:
        await arriving

    monkeypatch.setattr(hosting_service, "ARRIVAL_SECONDS", 0.3)
    await hosting.store.commit([Delete(hosting_service.VERSIONS, version)])
    try:
        with pytest.raises(errors.ServiceUnavailable, match="retry in a few seconds"):
            await api.call("StartProjectVersion", {"ProjectVersionArn": version, "MinInferenceUnits": 1})
    finally:
        await hosting.store.commit([Insert(hosting_service.VERSIONS, stored(known))])


async def test_a_trained_version_from_stopped_to_running_and_back(api, trained):
    project, version = trained
    photo = flower_photos(1)[0][1]
    detect = {"ProjectVersionArn": version, "Image": {"Bytes": photo}, "MinConfidence": 0}
    with pytest.raises(errors.ResourceNotReady):
        await api.call("DetectCustomLabels", detect)
    with pytest.raises(errors.ResourceInUse, match="not running"):
        await api.call("StopProjectVersion", {"ProjectVersionArn": version})

    started = await api.call("StartProjectVersion", {"ProjectVersionArn": version, "MinInferenceUnits": 1})
    assert started["Status"] == "STARTING"
    with pytest.raises(errors.ResourceInUse, match="STARTING"):
        await api.call("StartProjectVersion", {"ProjectVersionArn": version, "MinInferenceUnits": 1})
    await wait_version(api, project, "v1", {"RUNNING"}, timeout=120)
    with pytest.raises(errors.ResourceInUse, match="StopProjectVersion"):
        await api.call("DeleteProjectVersion", {"ProjectVersionArn": version})
    labels = (await api.call("DetectCustomLabels", detect))["CustomLabels"]
    assert sorted(label["Name"] for label in labels) == ["daisy", "dandelion", "roses", "sunflowers", "tulips"]

    assert (await api.call("StopProjectVersion", {"ProjectVersionArn": version}))["Status"] == "STOPPING"
    await wait_version(api, project, "v1", {"STOPPED"}, timeout=60)
    with pytest.raises(errors.ResourceInUse, match="STOPPED"):
        await api.call("StopProjectVersion", {"ProjectVersionArn": version})
    with pytest.raises(errors.ResourceNotReady):
        await api.call("DetectCustomLabels", detect)


async def test_a_trained_version_copies_with_its_evaluation(api, trained, unique):
    project, version = trained
    destination = (await api.call("CreateProject", {"ProjectName": unique}))["ProjectArn"]
    copied = (await api.call("CopyProjectVersion", {
        "SourceProjectArn": project, "SourceProjectVersionArn": version, "DestinationProjectArn": destination,
        "VersionName": "copy", "OutputConfig": OUTPUT}))["ProjectVersionArn"]
    result = await wait_version(api, destination, "copy", timeout=60)
    assert result["Status"] == "COPYING_COMPLETED", result["StatusMessage"]
    assert (result["ProjectVersionArn"], result["SourceProjectVersionArn"]) == (copied, version)
    (source,) = (await api.call("DescribeProjectVersions", {"ProjectArn": project, "VersionNames": ["v1"]}))[
        "ProjectVersionDescriptions"]
    assert result["EvaluationResult"]["F1Score"] == source["EvaluationResult"]["F1Score"]
