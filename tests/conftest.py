"""Fixtures shared by the whole suite.

The Kafka (Tansu), S3 (SeaweedFS) and MongoDB-protocol (SecantusDB) servers are
real processes from PyPI packages, started once per session when a test needs them.

``server`` is one real customlabels process for the session (tests isolate by
unique names); tests that kill or restart a server make their own
``ServerProcess``.
"""
from __future__ import annotations

import uuid
from typing import Iterator

import pytest

from tests.support.seaweedfs import S3Endpoint, SeaweedFS
from tests.support.secantus import SecantusServer
from tests.support.server import DATASETS, ServerProcess
from tests.support.tansu import TansuBroker


@pytest.fixture(scope="session")
def server(tmp_path_factory):
    process = ServerProcess(tmp_path_factory.mktemp("server") / "data").start()
    yield process
    process.stop()


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
