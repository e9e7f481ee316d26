"""Fixtures shared by the whole suite.

The Kafka (Tansu), S3 (SeaweedFS) and MongoDB-protocol (SecantusDB) servers are
real processes from PyPI packages, started once per session when a test needs them.

``server`` is one real customlabels process for the session (tests isolate by
unique names); tests that kill or restart a server make their own
``ServerProcess``.

``embedded`` is every service in the test process instead, on the embedded
adapters, reached through ``api`` (``tests.support.embedded``): the fast
service tier (``tests/service``) uses it.
"""
from __future__ import annotations

import os

# Before torch loads: OpenMP threads that wait by spinning burn CPU while another process holds their partner's
# core, so on a busy machine the ML tests' work clock (this process's CPU time, tests.support.work_clock) counted
# the spinning as training work (20 s of "work" bought 3 detector steps instead of about 55). Waiting threads sleep.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import uuid
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING

import pytest

from tests.support.seaweedfs import S3Endpoint, SeaweedFS
from tests.support.secantus import SecantusServer
from tests.support.server import DATASETS, ServerProcess
from tests.support.tansu import TansuBroker

if TYPE_CHECKING:
    from tests.support.embedded import EmbeddedServices

pytest_plugins = ["tests.support.ci_policy"]  # strict runs: a skip fails; one line for what Docker-only variants did not run

# Every server process and in-process router a test starts checks each answer against
# its operation's output shape: a member the model lacks fails (customlabels.wire.dispatch).
os.environ.setdefault("CUSTOMLABELS_CHECK_RESPONSES", "1")

@pytest.fixture(scope="session")
def server(tmp_path_factory):
    process = ServerProcess(tmp_path_factory.mktemp("server") / "data").start()
    yield process
    process.stop()


@pytest.fixture(scope="session")
async def embedded(tmp_path_factory) -> AsyncIterator[EmbeddedServices]:
    """Every service in this process on SQLite and a local folder; stopped, and checked for leftovers, at the end
    (``tests/service`` has its own, stopped when the tier is done)."""
    # Imported here, not at the top: it imports every service, which only this fixture's users need.
    from tests.support.embedded import EmbeddedServices

    async with EmbeddedServices(tmp_path_factory.mktemp("embedded") / "data") as services:
        yield services


@pytest.fixture
def api(embedded):
    """The embedded services' operations, checked against the model as the wire checks them:
    ``await api.call("CreateProject", {"ProjectName": ...})``."""
    return embedded.api


@pytest.fixture
def rekognition(server):
    return server.rekognition()


@pytest.fixture
def objects(server):
    return server.objects()


@pytest.fixture
def unique():
    """A fresh name for projects, buckets and keys in one test."""
    return f"t{uuid.uuid4().hex[:10]}"


@pytest.fixture(scope="session")
def datasets_dir():
    assert DATASETS.is_dir(), f"the shared datasets are expected at {DATASETS}"
    return DATASETS


# --- real wire-protocol servers, one each per session, started on first use --------
@pytest.fixture(scope="session")
def tansu(tmp_path_factory):
    with TansuBroker(tmp_path_factory.mktemp("tansu")) as broker:
        yield broker


@pytest.fixture(scope="session")
def seaweedfs_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Endpoint]:
    """One ``weed mini`` for the session; its log is ``<basetemp>/seaweedfs0/weed.log``."""
    server = SeaweedFS(tmp_path_factory.mktemp("seaweedfs")).start()
    try:
        yield server.s3()
    finally:
        server.stop()


@pytest.fixture(scope="session")
def secantus_uri(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One SecantusDB server for the session; tests keep apart by database."""
    with SecantusServer(tmp_path_factory.mktemp("secantus")) as server:
        yield server.uri
