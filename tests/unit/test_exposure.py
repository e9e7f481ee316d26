"""The development keys are never served on a public address unless asked for explicitly."""
from __future__ import annotations

import subprocess
import sys

import pytest

from customlabels.config import DEV_ACCESS_KEY, Settings
from tests.support.server import REPO, free_port


@pytest.mark.parametrize("host", ["127.0.0.1", "::1", "localhost", "127.8.9.10"])
def test_loopback_addresses_may_use_the_development_keys(host):
    assert Settings.from_env({"CUSTOMLABELS_HOST": host}).exposure_problem() is None


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "10.1.2.3", "example.org"])
def test_public_addresses_refuse_the_development_keys_and_say_what_to_do(host):
    problem = Settings.from_env({"CUSTOMLABELS_HOST": host}).exposure_problem()
    assert problem is not None
    assert DEV_ACCESS_KEY in problem and "CUSTOMLABELS_CREDENTIALS" in problem


def test_own_keys_or_an_explicit_allowance_serve_anywhere():
    assert Settings.from_env({"CUSTOMLABELS_HOST": "0.0.0.0", "CUSTOMLABELS_CREDENTIALS": "AKIDTEAM:s3cret"}).exposure_problem() is None
    assert Settings.from_env({"CUSTOMLABELS_HOST": "0.0.0.0", "CUSTOMLABELS_ALLOW_DEV_CREDENTIALS": "1"}).exposure_problem() is None


@pytest.mark.parametrize("command", [["serve"], ["service", "gateway"]])
def test_the_server_refuses_to_start_and_says_why(tmp_path, command):
    env = {"PATH": "/usr/bin:/bin", "CUSTOMLABELS_HOST": "0.0.0.0", "CUSTOMLABELS_PORT": str(free_port()),
           "CUSTOMLABELS_DATA": str(tmp_path)}
    result = subprocess.run([sys.executable, "-m", "services.cli.main", *command], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert "refusing to serve on 0.0.0.0" in result.stderr
    assert not any(tmp_path.iterdir()), "nothing was written before refusing"
