"""Import jobs in process, on the real embedded adapters (no HTTP): the paths
that are hard to reach from outside, such as a manifest too large to keep in
memory between the two passes."""
from __future__ import annotations

import asyncio
import json

import pytest

from customlabels.config import Settings
from services.datasets import jobs
from services.runtime import Embedded
from tests.support.api import classification_line, jpeg, manifest


@pytest.fixture
async def embedded(tmp_path):
    system = Embedded(Settings(data_dir=tmp_path / "data"))
    await system.start()
    await system.blobs.ensure_bucket("images")
    image = jpeg()
    for i in range(60):
        await system.blobs.put("images", f"{i:02d}.jpg", image)
    yield system
    await system.stop()


async def call(system, operation, params):
    return await system.services[0].ctx.router.call(operation, params)


async def wait(system, arn):
    for _ in range(600):
        description = (await call(system, "DescribeDataset", {"DatasetArn": arn}))["DatasetDescription"]
        if "PROGRESS" not in description["Status"]:
            return description
        await asyncio.sleep(0.02)
    raise AssertionError(description)


async def entries(system, arn):
    found, token = [], None
    while True:
        page = await call(system, "ListDatasetEntries", {"DatasetArn": arn, **({"NextToken": token} if token else {})})
        found += [json.loads(line) for line in page["DatasetEntries"]]
        token = page.get("NextToken")
        if not token:
            return found


@pytest.mark.parametrize("keep", [jobs.KEEP_ENTRIES, 10], ids=["entries-kept-in-memory", "manifest-read-twice"])
async def test_later_lines_win_in_both_writing_paths(embedded, monkeypatch, keep):
    monkeypatch.setattr(jobs, "KEEP_ENTRIES", keep)
    lines = [classification_line("images", f"{i:02d}.jpg", "first") for i in range(60)]
    lines += [classification_line("images", f"{i:02d}.jpg", "second") for i in range(0, 60, 2)]  # replace the even ones
    project = (await call(embedded, "CreateProject", {"ProjectName": "jobs"}))["ProjectArn"]
    arn = (await call(embedded, "CreateDataset", {"ProjectArn": project, "DatasetType": "TRAIN"}))["DatasetArn"]
    await wait(embedded, arn)
    await call(embedded, "UpdateDatasetEntries", {"DatasetArn": arn, "Changes": {"GroundTruth": manifest(lines)}})
    description = await wait(embedded, arn)
    assert description["Status"] == "UPDATE_COMPLETE", description
    assert description["DatasetStats"]["TotalEntries"] == 60
    labels = {e["source-ref"]: e["label-metadata"]["class-name"] for e in await entries(embedded, arn)}
    assert labels == {f"s3://images/{i:02d}.jpg": "second" if i % 2 == 0 else "first" for i in range(60)}
    counts = {l["LabelName"]: l["LabelStats"]["EntryCount"]
              for l in (await call(embedded, "ListDatasetLabels", {"DatasetArn": arn}))["DatasetLabelDescriptions"]}
    assert counts == {"first": 30, "second": 30}
