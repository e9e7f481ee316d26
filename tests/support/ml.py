"""Fixtures for tests of the ML code: two threads (as on the target machine), and no weight downloads.

Use them with ``from tests.support.ml import offline, two_threads  # noqa: F401`` (both autouse).
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from tests.support.server import REPO

WEIGHTS = Path(os.environ.get("CUSTOMLABELS_WEIGHTS", REPO / "weights"))


@pytest.fixture(scope="module", autouse=True)
def two_threads():
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(autouse=True)
def offline(monkeypatch, tmp_path):
    """Any attempt to fetch weights fails, and torch's own cache is an empty folder."""
    def refuse(*args, **kwargs):
        raise AssertionError("tried to download weights")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", refuse)
    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty-torch-home"))
    monkeypatch.setenv("CUSTOMLABELS_WEIGHTS", str(WEIGHTS))
