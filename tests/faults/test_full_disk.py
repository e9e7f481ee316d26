"""Embedded mode with its data folder on a full filesystem (issue 12 item 5).

The server's ``CUSTOMLABELS_DATA`` is a 32 MB tmpfs of its own (mounted here:
the tests run as root); a filler file takes every byte left. Requests that
must store something get a 503 ``ServiceUnavailableException`` saying the
disk is full and changing nothing; reads answer as before; an import that was
running when the disk filled finishes once space returns, with every line
once; after the filler goes, and after a restart, everything stored before is
intact and writes work again.
"""
from __future__ import annotations

import json
import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from botocore.exceptions import ClientError
from customlabels.client import ObjectStoreError

from tests.support.api import (
    all_entries,
    classification_line,
    create_from_manifest,
    jpeg,
    manifest,
    wait_dataset,
)
from tests.support.models import client
from tests.support.server import ServerProcess

pytestmark = pytest.mark.slow

SIZE = "32m"
IMPORT_LINES = 1000


@dataclass
class LogOutside(ServerProcess):
    """A server whose log is kept off the full filesystem (its data folder is on it)."""

    log_folder: Path = Path("/tmp")

    @property
    def log_path(self) -> Path:
        return self.log_folder / "server.log"


@pytest.fixture
def small_filesystem(tmp_path) -> Path:
    folder = tmp_path / "fs"
    folder.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={SIZE}", "tmpfs", str(folder)],
                             capture_output=True, text=True, check=False)
    if mounted.returncode != 0:
        pytest.skip(f"mounting a {SIZE} tmpfs needs root: {mounted.stderr.strip()}")
    yield folder
    subprocess.run(["umount", "-l", str(folder)], check=False)


def fill(filler: Path, leave: int = 0) -> Path:
    """``filler``, a file that takes every byte its filesystem has left but ``leave``."""
    with open(filler, "wb", buffering=0) as out:
        for block in (1 << 20, 4096):
            try:
                while True:
                    out.write(b"\0" * block)
            except OSError:
                pass
        if leave:
            out.truncate(max(0, out.tell() - leave))
    return filler


def refused_for_space(call) -> bool:
    """True when ``call()`` answers 503 saying the disk is full; False when it succeeds; anything else fails."""
    try:
        call()
    except ClientError as error:
        assert error.response["ResponseMetadata"]["HTTPStatusCode"] == 503, error.response
        assert error.response["Error"]["Code"] == "ServiceUnavailableException"
        assert "out of disk space" in error.response["Error"]["Message"]
        return True
    except ObjectStoreError as error:
        assert "ServiceUnavailable" in str(error) and "out of disk space" in str(error), error  # S3's code on /objects
        return True
    return False


def state(rek, objects, project: str, dataset: str) -> dict:
    return {
        "projects": sorted(d["ProjectArn"] for d in rek.describe_projects()["ProjectDescriptions"]),
        "dataset": {k: v for k, v in rek.describe_dataset(DatasetArn=dataset)["DatasetDescription"].items()
                    if k != "LastUpdatedTimestamp"},
        "entries": sorted(json.dumps(e, sort_keys=True) for e in all_entries(rek, dataset)),
        "tags": rek.list_tags_for_resource(ResourceArn=project)["Tags"],
        "object": objects.get("kept", "photo.jpg"),
    }


def test_a_full_disk_answers_503s_that_say_why_and_loses_nothing(small_filesystem, tmp_path):
    server = LogOutside(small_filesystem / "data", log_folder=tmp_path).start()
    try:
        rek, objects = client(server, attempts=1), server.objects()
        project = rek.create_project(ProjectName="kept", Tags={"team": "a"})["ProjectArn"]
        objects.put("kept", "photo.jpg", jpeg(120, 90))
        lines = [classification_line("kept", "photo.jpg", "cat")]
        dataset = create_from_manifest(rek, objects, project, "kept", lines)
        assert wait_dataset(rek, dataset)["Status"] == "CREATE_COMPLETE"
        before = state(rek, objects, project, dataset)

        # An import that runs out of space half-way: it is accepted (with 1 MB left), its batches are not.
        busy = rek.create_project(ProjectName="busy")["ProjectArn"]
        bulk = [classification_line("bulk", f"{i:05d}.jpg", f"label{i % 3}") for i in range(IMPORT_LINES)]
        objects.put_many("bulk", [(f"{i:05d}.jpg", jpeg(64, 64)) for i in range(IMPORT_LINES)])
        objects.put("bulk", "bulk.manifest", manifest(bulk))
        filler = fill(small_filesystem / "filler", leave=1 << 20)
        importing = rek.create_dataset(ProjectArn=busy, DatasetType="TRAIN", DatasetSource={
            "GroundTruthManifest": {"S3Object": {"Bucket": "bulk", "Name": "bulk.manifest"}}})["DatasetArn"]
        time.sleep(2)
        assert rek.describe_dataset(DatasetArn=importing)["DatasetDescription"]["Status"] == "CREATE_IN_PROGRESS"
        more = fill(small_filesystem / "more")

        # Writes: refused with a 503 that says why (or, where SQLite still had a free page, done).
        assert refused_for_space(lambda: objects.put("kept", "new.jpg", jpeg(400, 400)))
        created = not refused_for_space(lambda: rek.create_project(ProjectName="during"))
        tagged = not refused_for_space(lambda: rek.tag_resource(ResourceArn=project, Tags={"more": "b"}))
        # Reads: as before.
        assert state(rek, objects, project, dataset) | {"projects": None, "tags": None} == \
            before | {"projects": None, "tags": None}
        time.sleep(8)  # the import's handler meets the full disk again and again meanwhile: it must not give up

        os.remove(filler)
        os.remove(more)
        # Normal again: the import completes with every line once, new writes work.
        done = wait_dataset(rek, importing, timeout=240)
        assert done["Status"] == "CREATE_COMPLETE", done.get("StatusMessage")
        assert done["DatasetStats"]["TotalEntries"] == IMPORT_LINES
        assert len({e["source-ref"] for e in all_entries(rek, importing)}) == IMPORT_LINES
        objects.put("kept", "new.jpg", jpeg(400, 400))
        rek.create_project(ProjectName="after")
        after = state(rek, objects, project, dataset)
        names = {arn.split("/")[-2] for arn in after["projects"]}
        assert names == {"kept", "busy", "after"} | ({"during"} if created else set())
        assert after["tags"] == {"team": "a"} | ({"more": "b"} if tagged else {})
        assert after | {"projects": None, "tags": None} == before | {"projects": None, "tags": None}

        server.stop()  # and from the disk, after a restart
        server.start()
        rek, objects = client(server, attempts=1), server.objects()
        assert state(rek, objects, project, dataset) == after
        assert objects.get("kept", "new.jpg") == jpeg(400, 400)
    finally:
        server.stop()
