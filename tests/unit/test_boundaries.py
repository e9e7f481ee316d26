"""Services talk only through events, ports and HTTP."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from customlabels.ports.documents import ScopedStore

REPO = Path(__file__).resolve().parents[2]


def test_import_contracts_hold():
    """import-linter: no service imports another; the shared library imports none."""
    lint = Path(sys.executable).parent / "lint-imports"
    result = subprocess.run([str(lint), "--config", "pyproject.toml"], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 kept, 0 broken" in result.stdout


def test_every_service_is_in_the_independence_contract():
    """A new service folder must join the contract, or it would escape the check."""
    text = (REPO / "pyproject.toml").read_text()
    services = sorted(p.name for p in (REPO / "services").iterdir() if (p / "service.py").exists())
    assert services, "no services found"
    for name in services:
        assert f'"services.{name}"' in text, f"services.{name} is missing from the import-linter contract"


def test_a_service_cannot_name_another_services_collection():
    scoped = ScopedStore(store=None, service="datasets")
    assert scoped.name("entries") == "datasets.entries"
    with pytest.raises(ValueError):
        scoped.name("projects.projects")
