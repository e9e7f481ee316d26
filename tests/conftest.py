"""Fixtures shared by the whole suite.

``server`` is one real customlabels process for the session (tests isolate by
unique names); tests that kill or restart a server make their own
``ServerProcess``.
"""
from __future__ import annotations

import uuid

import pytest

from tests.support.server import DATASETS, ServerProcess


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
