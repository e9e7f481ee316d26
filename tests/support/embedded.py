"""Every service in this process, for the service-test tier (``tests/service``).

``EmbeddedServices`` is ``services.runtime.Embedded``, the composition root
``make run`` uses (SQLite documents, SQLite event bus, local-folder blobs, the
in-process operation router), under a folder of its own and without the HTTP
server. Tests call operations through ``api``, that router itself, with the
dicts boto3 would send (blobs as bytes), and get the
``customlabels.errors.ApiError`` subclasses a client would see by code. No
SigV4, no HTTP, no subprocess: a call takes milliseconds and a debugger stops
inside the service.

Invariants:

* ``api`` accepts only what a client could send and answers only what a
  client could read: the in-process router validates every request against
  the API's model as the gateway does (``customlabels.wire.dispatch``), and
  with ``CUSTOMLABELS_CHECK_RESPONSES`` on (``tests/conftest.py`` sets it;
  ``EmbeddedServices`` insists) every result must fit its output shape.
* Leaving the ``async with`` stops every service and adapter, and fails if
  anything it started is still there: an asyncio task, a thread (the event
  loop's own default executor aside: it belongs to the loop), or a child
  process (an inference unit).
* Event-driven states are awaited by polling an operation against a deadline
  (``wait_until`` and the helpers built on it); running out of time is an
  AssertionError naming what was awaited and the last answer, never a silent
  pass.
"""
from __future__ import annotations

import asyncio
import json
import os
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Self, TypeVar

from customlabels import errors
from customlabels.adapters.inprocess_operations import InProcessOperations
from customlabels.config import Settings
from customlabels.ports.operations import OperationRouter
from customlabels.wire.dispatch import CHECK_RESPONSES_ENV, check_responses_from_env

from services.runtime import Embedded
from tests.support.api import manifest

T = TypeVar("T")

DEFAULT_TIMEOUT = 20.0
DATASET_DONE = frozenset({"CREATE_COMPLETE", "UPDATE_COMPLETE", "CREATE_FAILED", "UPDATE_FAILED"})
# The loop's default executor (asyncio.to_thread) names its threads so; they live as long as the loop.
_LOOP_EXECUTOR_THREADS = "asyncio_"


class EmbeddedServices:
    """The embedded system under ``data_dir``; use it as ``async with EmbeddedServices(path) as services``."""

    def __init__(self, data_dir: Path, **settings: Any):
        # A short default training budget: a test that trains by mistake costs seconds, not minutes.
        self.settings = Settings(data_dir=Path(data_dir), **{"training_budget_seconds": 10.0, **settings})
        self.system = Embedded(self.settings)

    async def __aenter__(self) -> Self:
        assert check_responses_from_env(), f"set {CHECK_RESPONSES_ENV}=1 (tests/conftest.py does): results must be checked"
        self._tasks_before = asyncio.all_tasks()
        self._threads_before = set(threading.enumerate())
        self._children_before = _child_pids()
        await self.system.start()
        self.api: InProcessOperations = self.system.router
        self.blobs = self.system.blobs
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.system.stop()
        self._check_nothing_left()

    async def put_object(self, bucket: str, key: str, data: bytes) -> str:
        """Store an object straight in the blob store (no upload notification); its ``s3://`` address."""
        await self.blobs.ensure_bucket(bucket)
        await self.blobs.put(bucket, key, data)
        return f"s3://{bucket}/{key}"

    def _check_nothing_left(self) -> None:
        tasks = [t.get_name() for t in asyncio.all_tasks() - self._tasks_before
                 if t is not asyncio.current_task() and not t.done()]
        threads = [t.name for t in set(threading.enumerate()) - self._threads_before
                   if t.is_alive() and not t.name.startswith(_LOOP_EXECUTOR_THREADS)]
        children = sorted(_child_pids() - self._children_before)
        left = [f"{kind}: {', '.join(map(str, items))}" for kind, items in
                (("asyncio tasks", tasks), ("threads", threads), ("child processes", children)) if items]
        assert not left, "the embedded services left behind " + "; ".join(left)


def _child_pids() -> set[int]:
    """This process's living children (a zombie counts as gone)."""
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == os.getpid() and fields[0] != "Z":
            found.add(int(entry.name))
    return found


# --- waiting for event-driven states -------------------------------------------------
async def wait_until(probe: Callable[[], Awaitable[T]], done: Callable[[T], bool], what: str,
                     timeout: float = DEFAULT_TIMEOUT, interval: float = 0.02) -> T:
    """``await probe()`` until ``done`` holds for its answer, which is returned.

    Past ``timeout`` seconds: AssertionError naming ``what`` and the last answer.
    """
    deadline = time.monotonic() + timeout
    while True:
        answer = await probe()
        if done(answer):
            return answer
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}; the last answer was {answer!r}")
        await asyncio.sleep(interval)


async def wait_dataset(api: OperationRouter, arn: str, timeout: float = DEFAULT_TIMEOUT) -> dict:
    """DescribeDataset's description once the dataset has left its *_IN_PROGRESS status."""
    async def describe():
        return (await api.call("DescribeDataset", {"DatasetArn": arn}))["DatasetDescription"]

    return await wait_until(describe, lambda d: d["Status"] in DATASET_DONE, f"dataset {arn} to finish", timeout)


async def wait_version(api: OperationRouter, project_arn: str, name: str, statuses: set[str] | None = None,
                       timeout: float = DEFAULT_TIMEOUT) -> dict:
    """The version's description once its status is in ``statuses`` (default: anything but *_IN_PROGRESS)."""
    async def describe():
        found = await api.call("DescribeProjectVersions", {"ProjectArn": project_arn, "VersionNames": [name]})
        (description,) = found["ProjectVersionDescriptions"]
        return description

    def reached(description):
        status = description["Status"]
        return status in statuses if statuses else not status.endswith("_IN_PROGRESS")

    wanted = " or ".join(sorted(statuses)) if statuses else "a status other than *_IN_PROGRESS"
    return await wait_until(describe, reached, f"version {name} of {project_arn} to be {wanted}", timeout)


async def dataset_statuses(api: OperationRouter, project_arn: str) -> dict[str, str]:
    """The project's datasets' statuses by type, as DescribeProjects shows them.

    That is the projects service's read model, fed by the datasets service's
    events: it lags DescribeDataset, and rules that read it (CreateProjectVersion,
    DeleteProject) see what it shows.
    """
    name = project_arn.rsplit("/", 2)[1]
    (found,) = (await api.call("DescribeProjects", {"ProjectNames": [name]}))["ProjectDescriptions"]
    return {d["DatasetType"]: d["Status"] for d in found["Datasets"]}


async def wait_gone(api: OperationRouter, operation: str, params: dict, timeout: float = DEFAULT_TIMEOUT) -> None:
    """Until ``operation(params)`` raises ResourceNotFoundException."""
    async def gone():
        try:
            return await api.call(operation, params)
        except errors.ResourceNotFound:
            return None

    await wait_until(gone, lambda answer: answer is None, f"{operation} {params} to find nothing", timeout)


# --- datasets from manifests ------------------------------------------------------------
async def create_from_manifest(services: EmbeddedServices, project_arn: str, lines: list, dataset_type: str = "TRAIN",
                               bucket: str = "manifests") -> str:
    """CreateDataset from a Ground Truth manifest of ``lines`` (``tests.support.api.manifest``); the dataset ARN."""
    key = f"{project_arn.rsplit('/', 2)[1]}-{dataset_type}.manifest"
    await services.put_object(bucket, key, manifest(lines))
    source = {"GroundTruthManifest": {"S3Object": {"Bucket": bucket, "Name": key}}}
    created = await services.api.call("CreateDataset", {
        "ProjectArn": project_arn, "DatasetType": dataset_type, "DatasetSource": source})
    return created["DatasetArn"]


async def create_ready_dataset(services: EmbeddedServices, project_arn: str, lines: list,
                               dataset_type: str = "TRAIN") -> str:
    """``create_from_manifest``, then wait until the dataset is CREATE_COMPLETE and DescribeProjects shows it so."""
    arn = await create_from_manifest(services, project_arn, lines, dataset_type)
    description = await wait_dataset(services.api, arn)
    assert description["Status"] == "CREATE_COMPLETE", description.get("StatusMessage")
    await wait_until(lambda: dataset_statuses(services.api, project_arn),
                     lambda found: found.get(dataset_type) == "CREATE_COMPLETE",
                     f"DescribeProjects to show the {dataset_type} dataset complete")
    return arn


async def tags_of(api: OperationRouter, arn: str) -> dict[str, str] | None:
    """ListTagsForResource's tags, or None while the projects service does not know ``arn`` (it hears by events)."""
    try:
        return (await api.call("ListTagsForResource", {"ResourceArn": arn}))["Tags"]
    except errors.ResourceNotFound:
        return None


async def all_pages(api: OperationRouter, operation: str, params: dict[str, Any]) -> list[dict]:
    """Every page of a paged operation's answer, following NextToken until there is none."""
    pages, token = [], None
    while True:
        page = await api.call(operation, {**params, **({"NextToken": token} if token else {})})
        pages.append(page)
        token = page.get("NextToken")
        if not token:
            return pages


async def all_entries(api: OperationRouter, arn: str, **filters: Any) -> list[dict]:
    """Every page of ListDatasetEntries, each entry decoded."""
    pages = await all_pages(api, "ListDatasetEntries", {"DatasetArn": arn, **filters})
    return [json.loads(line) for page in pages for line in page["DatasetEntries"]]
