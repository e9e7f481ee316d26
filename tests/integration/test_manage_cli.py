"""``customlabels projects|datasets|versions list|describe|delete`` against the session's server.

(Versions are listed, described and deleted by the README tour, which trains them.)
"""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.support.server import DATASETS, REPO
from tests.support.training import cli


@pytest.fixture
def small_project(server, unique, tmp_path):
    """A project whose TRAIN dataset holds 3 daisies and 3 roses, imported with the CLI."""
    for label in ("daisy", "roses"):
        (tmp_path / label).mkdir()
        for photo in sorted((DATASETS / "flowers-small" / label).glob("*.jpg"))[:3]:
            (tmp_path / label / photo.name).symlink_to(photo)
    done = cli(server, "import-folder", str(tmp_path), "--project", unique, "--create-project", "--prefix", f"{unique}/")
    assert done.returncode == 0, done.stderr
    return unique


def ok(server, *args: str) -> str:
    done = cli(server, *args)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_list_and_describe_print_tables_and_json(server, small_project):
    table = ok(server, "projects", "list").splitlines()
    assert table[0].split() == ["NAME", "STATUS", "CREATED", "DATASETS"]
    row = next(line for line in table if line.startswith(small_project + " "))
    assert "CREATED" in row and "TRAIN" in row
    projects = json.loads(ok(server, "projects", "list", "--json"))
    assert small_project in {p["ProjectArn"].split("/")[1] for p in projects}

    described = ok(server, "projects", "describe", small_project)
    assert f"name:    {small_project}" in described and "no model versions yet" in described
    datasets = ok(server, "datasets", "list", "--project", small_project).splitlines()
    assert datasets[0].split()[:6] == ["DATASET", "STATUS", "ENTRIES", "LABELED", "LABELS", "ERRORS"]
    assert datasets[1].split()[:6] == ["TRAIN", "CREATE_COMPLETE", "6", "6", "2", "0"]
    described = ok(server, "datasets", "describe", "--project", small_project, "--type", "train")
    assert "status:      CREATE_COMPLETE" in described and "entries:     6" in described
    stats = json.loads(ok(server, "datasets", "describe", "--project", small_project, "--type", "train", "--json"))
    assert stats["DatasetStats"]["TotalEntries"] == 6 and stats["Status"] == "CREATE_COMPLETE"
    assert ok(server, "versions", "list", "--project", small_project).strip() == "(none)"


def test_what_is_not_there_is_a_one_line_error(server, small_project):
    for args in (("projects", "describe", small_project + "x"),
                 ("versions", "describe", "--project", small_project, "--version", "v9"),
                 ("datasets", "describe", "--project", small_project, "--type", "test")):
        done = cli(server, *args)
        assert done.returncode == 1 and done.stderr.startswith("ResourceNotFoundException:"), done.stderr
        assert len(done.stderr.strip().splitlines()) == 1


def test_delete_with_wait_returns_once_it_is_gone(server, small_project):
    assert "deleted the train dataset" in ok(server, "datasets", "delete", "--project", small_project,
                                             "--type", "train", "--wait")
    assert "TRAIN" not in ok(server, "projects", "describe", small_project)
    assert ok(server, "projects", "delete", small_project, "--wait").strip() == f"deleted project {small_project}"
    assert cli(server, "projects", "describe", small_project).returncode == 1


@pytest.mark.parametrize("command", ["projects", "datasets", "versions", "backup", "restore"])
def test_help_names_the_command_with_examples(command):
    done = subprocess.run([sys.executable, "-m", "services.cli.main", command, "--help"], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "Example" in done.stdout
    assert f"customlabels {command} " in done.stdout.split("Example", 1)[1]
