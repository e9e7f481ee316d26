"""Helpers for tests that train model versions through the API."""
from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

from customlabels.tags import MAX_TRAINING_SECONDS as BUDGET_TAG  # noqa: F401 (the tests import it from here)
from tests.support.server import DATASETS, REPO

OUTPUT = {"S3Bucket": "customlabels-output", "S3KeyPrefix": "tests/"}


def cli(server, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    """``customlabels ARGS`` against ``server``; the completed process (check its returncode)."""
    return subprocess.run([sys.executable, "-m", "services.cli.main", *args], env=server.env, cwd=REPO,
                          capture_output=True, text=True, timeout=timeout)


def import_flowers(server, project: str) -> None:
    """flowers-small (200 photos, 5 labels) as the TRAIN dataset of a new project."""
    done = cli(server, "import-folder", str(DATASETS / "flowers-small"), "--project", project, "--create-project")
    assert done.returncode == 0, done.stderr


def wait_version(client, project_arn: str, name: str, timeout: float = 600) -> dict:
    """The version's description once it has left *_IN_PROGRESS."""
    deadline = time.monotonic() + timeout
    while True:
        found = client.describe_project_versions(ProjectArn=project_arn, VersionNames=[name])
        description = found["ProjectVersionDescriptions"][0]
        if not description["Status"].endswith("_IN_PROGRESS"):
            return description
        if time.monotonic() > deadline:
            raise AssertionError(f"version {name} still {description['Status']}: {description.get('StatusMessage')}")
        time.sleep(0.25)


def readme_snippet(folder: Path) -> dict:
    """The README's onnxruntime snippet run as a user would, on ``folder/model/`` (``customlabels export -o``
    there): its names (``session``, ``model_input``, ``classify``)."""
    snippet = re.search(r"<!-- onnx-snippet -->\s*```python\n(.*?)```", (REPO / "README.md").read_text(), re.S)[1]
    namespace: dict = {}
    exec(compile(snippet.replace('"model/', f'"{folder}/model/'), "README snippet", "exec"), namespace)
    return namespace


def project_arn(client, name: str) -> str:
    return client.describe_projects(ProjectNames=[name])["ProjectDescriptions"][0]["ProjectArn"]
