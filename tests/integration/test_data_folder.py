"""The data folder's format: written at first start, older folders migrated, newer ones refused.

The migration runner is checked directly on folders (in order, one step at a
time, again after a crash); the server, on a folder the current release made
and then stripped of its format file (what releases before the format file
left), and on a folder claiming a newer format.
"""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from customlabels.adapters.data_folder import (
    FORMAT,
    FORMAT_FILE,
    DataFolderError,
    open_data_folder,
    read_format,
)
from tests.support.server import REPO, ServerProcess, free_port


def test_a_new_folder_gets_the_current_format(tmp_path):
    folder = tmp_path / "data"
    assert open_data_folder(folder) == FORMAT
    assert json.loads((folder / FORMAT_FILE).read_text())["format"] == FORMAT
    assert open_data_folder(folder) == FORMAT  # opening again changes nothing


def test_migrations_run_in_order_each_recorded_as_it_finishes(tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "documents.sqlite").write_bytes(b"")  # data, and no format file: format 0
    ran = []

    def step(number):
        def migrate(path):
            assert read_format(path) == number, "each step starts from the format before it"
            ran.append(number)
        return migrate

    assert open_data_folder(folder, [step(0), step(1), step(2)]) == 3
    assert ran == [0, 1, 2] and read_format(folder) == 3


def test_a_migration_cut_short_runs_again_from_where_the_folder_is(tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "documents.sqlite").write_bytes(b"")
    ran = []

    def crashes_once(path):
        ran.append("second")
        if ran.count("second") == 1:
            raise RuntimeError("killed mid-migration")

    migrations = [lambda path: ran.append("first"), crashes_once]
    with pytest.raises(RuntimeError):
        open_data_folder(folder, migrations)
    assert read_format(folder) == 1  # the first step is recorded; the second is not
    assert open_data_folder(folder, migrations) == 2
    assert ran == ["first", "second", "second"]


def test_a_folder_from_a_newer_release_is_refused_and_left_alone(tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / FORMAT_FILE).write_text(json.dumps({"format": FORMAT + 1}))
    before = sorted((p.name, p.read_bytes()) for p in folder.iterdir())
    with pytest.raises(DataFolderError, match=f"data format {FORMAT + 1}.*reads formats up to {FORMAT}"):
        open_data_folder(folder)
    assert sorted((p.name, p.read_bytes()) for p in folder.iterdir()) == before


@pytest.mark.parametrize("body", ["not json", json.dumps({"format": "one"}), json.dumps({"format": -1}), "{}"])
def test_a_damaged_format_file_is_an_error_that_says_what_to_do(tmp_path, body):
    (tmp_path / FORMAT_FILE).write_text(body)
    with pytest.raises(DataFolderError):
        read_format(tmp_path)


def test_the_server_opens_a_folder_from_before_the_format_file_with_its_data(tmp_path):
    server = ServerProcess(tmp_path / "data").start()
    try:
        rek = server.rekognition()
        arn = rek.create_project(ProjectName="old")["ProjectArn"]
        server.objects().put("customlabels-output", "kept.txt", b"kept")
    finally:
        server.stop()
    assert read_format(tmp_path / "data") == FORMAT
    (tmp_path / "data" / FORMAT_FILE).unlink()  # as releases before the format file left their folders
    server.start()
    try:
        projects = server.rekognition().describe_projects()["ProjectDescriptions"]
        assert [p["ProjectArn"] for p in projects] == [arn]
        assert server.objects().get("customlabels-output", "kept.txt") == b"kept"
    finally:
        server.stop()
    assert read_format(tmp_path / "data") == FORMAT


def test_the_server_refuses_a_folder_from_a_newer_release_and_says_why(tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / FORMAT_FILE).write_text(json.dumps({"format": FORMAT + 1}))
    env = {"PATH": "/usr/bin:/bin", "CUSTOMLABELS_PORT": str(free_port()), "CUSTOMLABELS_DATA": str(folder)}
    done = subprocess.run([sys.executable, "-m", "services.cli.main", "serve"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    assert f"data format {FORMAT + 1}" in done.stderr and "Traceback" not in done.stderr
    assert [p.name for p in folder.iterdir()] == [FORMAT_FILE]
