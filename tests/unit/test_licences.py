"""Licences: ours matches pyproject's, every weight file and runtime dependency is named with its
origin and licence, and the GPL test server stays out of what `make run` installs."""
from __future__ import annotations

import re
import shutil
import subprocess
import tomllib
from importlib import metadata

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from customlabels.ml.weights import WEIGHTS
from tests.support.server import REPO

PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
NOTICES = (REPO / "THIRD_PARTY_NOTICES.md").read_text()
GPL_TEST_SERVER = "secantusdb"


def _names(requirements: list[str]) -> set[str]:
    return {canonicalize_name(Requirement(r).name) for r in requirements}


def test_the_licence_file_is_the_licence_pyproject_declares():
    assert PYPROJECT["project"]["license"] == "Apache-2.0"
    text = (REPO / "LICENSE").read_text()
    assert "Apache License" in text and "Version 2.0, January 2004" in text
    assert "TERMS AND CONDITIONS FOR USE, REPRODUCTION, AND DISTRIBUTION" in text  # the full text, not a pointer


@pytest.mark.parametrize("weight", WEIGHTS, ids=lambda w: w.name)
def test_every_weight_file_is_named_with_its_package_and_licence(weight):
    file_name = weight.relative_path.rsplit("/", 1)[-1]
    row = next((line for line in NOTICES.splitlines() if f"`{file_name}`" in line), None)
    assert row, f"THIRD_PARTY_NOTICES.md names no row for {file_name}"
    assert f"`{weight.package}`" in row, f"{file_name}: the row must name the pinned package {weight.package}"
    assert re.search(r"MIT|Apache-2\.0|BSD", row), f"{file_name}: the row must name a licence"


def test_every_runtime_dependency_is_named():
    named = {canonicalize_name(n.strip()) for line in NOTICES.splitlines() if line.startswith("| ")
             for n in line.split("|")[1].split(",")}
    missing = _names(PYPROJECT["project"]["dependencies"]) - named
    assert not missing, f"THIRD_PARTY_NOTICES.md: name the licences of {sorted(missing)}"


def _runtime_closure() -> set[str]:
    """Every installed distribution the runtime dependencies pull in (markers honoured, no extras)."""
    seen: set[str] = set()
    pending = list(_names(PYPROJECT["project"]["dependencies"]))
    while pending:
        name = pending.pop()
        if name in seen:
            continue
        seen.add(name)
        for text in metadata.requires(name) or []:
            requirement = Requirement(text)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                pending.append(canonicalize_name(requirement.name))
    return seen


def test_the_gpl_test_server_is_a_test_extra_only():
    assert GPL_TEST_SERVER in _names(PYPROJECT["project"]["optional-dependencies"]["test"])
    assert GPL_TEST_SERVER not in _runtime_closure(), "a runtime dependency pulls in the GPL test server"


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_run_installs_without_the_test_extras_and_make_test_with_them():
    def planned(target: str) -> str:  # what make would run from scratch (-B), without running it (-n)
        return subprocess.run(["make", "-n", "-B", target], cwd=REPO, capture_output=True, text=True,
                              check=True, timeout=60).stdout

    run, test = planned("run"), planned("test")
    assert "--editable ." in run and "[test]" not in run
    assert "--editable '.[test]'" in test
