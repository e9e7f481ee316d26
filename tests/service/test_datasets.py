"""Datasets: busy states, DistributeDatasetEntries' preconditions, ListDatasetEntries' filters and pages, tags.

A change to a dataset (create, update, distribute, delete) answers at once
and runs as a job started by an event, so the call right after it finds the
dataset still *_IN_PROGRESS: the job's event has yet to go through the outbox
and the bus. Each test that relies on it checks the status it relied on.
"""
from __future__ import annotations

import pytest

from customlabels import errors
from tests.support.api import classification_line, jpeg, manifest
from tests.support.embedded import all_entries, all_pages, create_from_manifest, tags_of, wait_dataset, wait_gone, wait_until

LABELS = ("daisy", "dandelion", "roses", "sunflowers", "tulips")


def flower_lines(flowers) -> list[dict]:
    return [classification_line(bucket, key, label) for bucket, key, label in flowers]


async def status(api, arn: str) -> str:
    return (await api.call("DescribeDataset", {"DatasetArn": arn}))["DatasetDescription"]["Status"]


async def test_an_empty_dataset_from_create_to_delete(api, project):
    arn = (await api.call("CreateDataset", {"ProjectArn": project, "DatasetType": "TEST"}))["DatasetArn"]
    assert "/dataset/test/" in arn
    with pytest.raises(errors.ResourceNotReady):  # entries are listed once the dataset is created
        await api.call("ListDatasetEntries", {"DatasetArn": arn})
    description = await wait_dataset(api, arn)
    assert (description["Status"], description["StatusMessageCode"]) == ("CREATE_COMPLETE", "SUCCESS")
    assert description["DatasetStats"] == {"LabeledEntries": 0, "TotalEntries": 0, "TotalLabels": 0, "ErrorEntries": 0}
    with pytest.raises(errors.ResourceAlreadyExists):  # one dataset of each type per project
        await api.call("CreateDataset", {"ProjectArn": project, "DatasetType": "TEST"})
    await api.call("DeleteDataset", {"DatasetArn": arn})
    await wait_gone(api, "DescribeDataset", {"DatasetArn": arn})


async def test_a_dataset_being_created_refuses_changes_and_copies(api, embedded, project, unique, flowers):
    arn = await create_from_manifest(embedded, project, flower_lines(flowers))
    changes = {"GroundTruth": manifest(flower_lines(flowers[:1]))}
    with pytest.raises(errors.ResourceInUse, match="CREATE_IN_PROGRESS"):
        await api.call("UpdateDatasetEntries", {"DatasetArn": arn, "Changes": changes})
    with pytest.raises(errors.ResourceInUse, match="CREATE_IN_PROGRESS"):
        await api.call("DeleteDataset", {"DatasetArn": arn})
    with pytest.raises(errors.ResourceNotReady):
        await api.call("ListDatasetLabels", {"DatasetArn": arn})
    other = (await api.call("CreateProject", {"ProjectName": f"{unique}-copy"}))["ProjectArn"]
    with pytest.raises(errors.ResourceNotReady, match="CREATE_IN_PROGRESS"):
        await api.call("CreateDataset", {"ProjectArn": other, "DatasetType": "TRAIN", "DatasetSource": {"DatasetArn": arn}})
    assert await status(api, arn) == "CREATE_IN_PROGRESS"

    description = await wait_dataset(api, arn)
    assert description["Status"] == "CREATE_COMPLETE", description.get("StatusMessage")
    assert description["DatasetStats"]["TotalEntries"] == len(flowers)
    copies = (await api.call("DescribeProjects", {"ProjectNames": [f"{unique}-copy"]}))["ProjectDescriptions"]
    assert copies[0]["Datasets"] == []  # the refused copy created nothing


async def test_a_dataset_being_updated_refuses_a_second_update(api, embedded, project, flowers):
    arn = await create_from_manifest(embedded, project, flower_lines(flowers[:2]))
    await wait_dataset(api, arn)
    changes = {"GroundTruth": manifest([classification_line(*flowers[0][:2], "tulips"),
                                        *flower_lines(flowers[2:4])])}
    await api.call("UpdateDatasetEntries", {"DatasetArn": arn, "Changes": changes})
    with pytest.raises(errors.ResourceInUse, match="UPDATE_IN_PROGRESS"):
        await api.call("UpdateDatasetEntries", {"DatasetArn": arn, "Changes": changes})
    assert await status(api, arn) == "UPDATE_IN_PROGRESS"
    description = await wait_dataset(api, arn)
    assert description["Status"] == "UPDATE_COMPLETE"
    assert description["DatasetStats"]["TotalEntries"] == 4  # upserted by source-ref: the first line replaced
    first = await all_entries(api, arn, SourceRefContains=flowers[0][1])
    assert [entry["label-metadata"]["class-name"] for entry in first] == ["tulips"]


async def test_too_many_bad_lines_fail_the_update_and_change_nothing(api, embedded, project, flowers):
    arn = await create_from_manifest(embedded, project, flower_lines(flowers[:5]))
    before = await wait_dataset(api, arn)
    entries_before = await all_entries(api, arn)
    bad = manifest(["{bad", "{bad", "{bad", classification_line(*flowers[10][:2], "x")])
    await api.call("UpdateDatasetEntries", {"DatasetArn": arn, "Changes": {"GroundTruth": bad}})
    after = await wait_dataset(api, arn)
    assert after["Status"] == "UPDATE_FAILED"
    assert "ERROR_TOO_MANY_INVALID_ROWS_IN_MANIFEST" in after["StatusMessage"]
    assert after["DatasetStats"] == before["DatasetStats"]
    assert await all_entries(api, arn) == entries_before


async def test_distribute_needs_a_ready_train_and_an_empty_test_of_one_project(api, embedded, project, unique, flowers):
    train = await create_from_manifest(embedded, project, flower_lines(flowers))
    test = (await api.call("CreateDataset", {"ProjectArn": project, "DatasetType": "TEST"}))["DatasetArn"]
    with pytest.raises(errors.ResourceNotReady, match="CREATE_IN_PROGRESS"):
        await api.call("DistributeDatasetEntries", {"Datasets": [{"Arn": train}, {"Arn": test}]})
    await wait_dataset(api, train)
    await wait_dataset(api, test)

    with pytest.raises(errors.InvalidParameter, match="TRAIN and the TEST"):
        await api.call("DistributeDatasetEntries", {"Datasets": [{"Arn": train}, {"Arn": train}]})
    other = (await api.call("CreateProject", {"ProjectName": f"{unique}-other"}))["ProjectArn"]
    other_test = (await api.call("CreateDataset", {"ProjectArn": other, "DatasetType": "TEST"}))["DatasetArn"]
    await wait_dataset(api, other_test)
    with pytest.raises(errors.InvalidParameter, match="one project"):
        await api.call("DistributeDatasetEntries", {"Datasets": [{"Arn": train}, {"Arn": other_test}]})

    await api.call("DistributeDatasetEntries", {"Datasets": [{"Arn": train}, {"Arn": test}]})
    assert (await status(api, train), await status(api, test)) == ("UPDATE_IN_PROGRESS", "UPDATE_IN_PROGRESS")
    train_after, test_after = await wait_dataset(api, train), await wait_dataset(api, test)
    assert train_after["Status"] == test_after["Status"] == "UPDATE_COMPLETE"
    train_refs = {e["source-ref"] for e in await all_entries(api, train)}
    test_refs = {e["source-ref"] for e in await all_entries(api, test)}
    assert test_refs and not train_refs & test_refs and len(train_refs | test_refs) == len(flowers)
    with pytest.raises(errors.InvalidParameter, match="must be empty"):
        await api.call("DistributeDatasetEntries", {"Datasets": [{"Arn": train}, {"Arn": test}]})


async def test_list_entries_filters_and_pages(api, embedded, project, unique, flowers):
    unlabeled = await embedded.put_object(unique, "unlabeled.jpg", jpeg())
    lines = [*flower_lines(flowers), {"source-ref": unlabeled}, classification_line(unique, "missing.jpg", "daisy")]
    arn = await create_from_manifest(embedded, project, lines)
    description = await wait_dataset(api, arn)
    assert description["Status"] == "CREATE_COMPLETE", description.get("StatusMessage")
    assert description["DatasetStats"] == {"LabeledEntries": 21, "TotalEntries": 22, "TotalLabels": 5, "ErrorEntries": 1}

    answers = await all_pages(api, "ListDatasetEntries", {"DatasetArn": arn, "MaxResults": 7})
    pages = [answer["DatasetEntries"] for answer in answers]
    assert [len(page) for page in pages] == [7, 7, 7, 1]
    assert len({line for page in pages for line in page}) == 22

    roses = await all_entries(api, arn, ContainsLabels=["roses"])
    assert len(roses) == 4 and all(e["label-metadata"]["class-name"] == "roses" for e in roses)
    assert len(await all_entries(api, arn, ContainsLabels=["roses", "tulips"])) == 8
    assert [e["source-ref"] for e in await all_entries(api, arn, Labeled=False)] == [unlabeled]
    assert len(await all_entries(api, arn, Labeled=True)) == 21
    assert len(await all_entries(api, arn, SourceRefContains="sunflowers/")) == 4
    (broken,) = await all_entries(api, arn, HasErrors=True)
    assert broken["source-ref"] == f"s3://{unique}/missing.jpg"
    assert [error["code"] for error in broken["errors"]] == ["ERROR_INVALID_IMAGE"]
    assert len(await all_entries(api, arn, HasErrors=False)) == 21

    first = await api.call("ListDatasetEntries", {"DatasetArn": arn, "MaxResults": 5})
    with pytest.raises(errors.InvalidPaginationToken):  # a token is good for the query that made it only
        await api.call("ListDatasetEntries", {"DatasetArn": arn, "MaxResults": 5, "Labeled": False,
                                              "NextToken": first["NextToken"]})

    labels = await api.call("ListDatasetLabels", {"DatasetArn": arn, "MaxResults": 2})
    assert [label["LabelName"] for label in labels["DatasetLabelDescriptions"]] == ["daisy", "dandelion"]
    rest = await api.call("ListDatasetLabels", {"DatasetArn": arn, "NextToken": labels["NextToken"]})
    assert [label["LabelName"] for label in rest["DatasetLabelDescriptions"]] == ["roses", "sunflowers", "tulips"]
    assert {label["LabelStats"]["EntryCount"] for label in rest["DatasetLabelDescriptions"]} == {4}


async def test_tags_on_a_dataset(api, project):
    arn = (await api.call("CreateDataset", {"ProjectArn": project, "DatasetType": "TRAIN",
                                            "Tags": {"origin": "test"}}))["DatasetArn"]
    await wait_dataset(api, arn)

    found = await wait_until(lambda: tags_of(api, arn), lambda tags: tags is not None, "the dataset's tags")
    assert found == {"origin": "test"}
    await api.call("TagResource", {"ResourceArn": arn, "Tags": {"stage": "raw"}})
    assert await tags_of(api, arn) == {"origin": "test", "stage": "raw"}
    await api.call("DeleteDataset", {"DatasetArn": arn})
    await wait_gone(api, "ListTagsForResource", {"ResourceArn": arn})


async def test_unknown_datasets_and_bad_sources_create_nothing(api, embedded, project, unique):
    missing = project.rsplit("/", 1)[0] + "/dataset/train/1"
    with pytest.raises(errors.ResourceNotFound):
        await api.call("DescribeDataset", {"DatasetArn": missing})
    with pytest.raises(errors.InvalidS3Object):
        await api.call("CreateDataset", {
            "ProjectArn": project, "DatasetType": "TRAIN",
            "DatasetSource": {"GroundTruthManifest": {"S3Object": {"Bucket": "nowhere", "Name": "x.manifest"}}}})
    await embedded.put_object("manifests", f"{unique}.manifest", manifest([]))
    with pytest.raises(errors.InvalidParameter, match="not both"):
        await api.call("CreateDataset", {
            "ProjectArn": project, "DatasetType": "TRAIN",
            "DatasetSource": {"GroundTruthManifest": {"S3Object": {"Bucket": "manifests", "Name": f"{unique}.manifest"}},
                              "DatasetArn": missing}})
    with pytest.raises(errors.ResourceNotFound):
        await api.call("CreateDataset", {"ProjectArn": project.rsplit("/", 1)[0] + "/1", "DatasetType": "TRAIN"})
    with pytest.raises(errors.ResourceNotFound):
        await api.call("CreateDataset", {"ProjectArn": project, "DatasetType": "TRAIN",
                                         "DatasetSource": {"DatasetArn": missing}})
    (described,) = (await api.call("DescribeProjects", {"ProjectNames": [unique]}))["ProjectDescriptions"]
    assert described["Datasets"] == []
