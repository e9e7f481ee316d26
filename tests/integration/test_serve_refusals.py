"""`customlabels serve` refuses to start, in one line and before touching anything, when its port is taken."""
from __future__ import annotations

import os
import subprocess
import sys

from tests.support.server import REPO, ServerProcess


def test_a_port_in_use_is_one_clear_line_and_changes_nothing(tmp_path):
    running = ServerProcess(tmp_path / "running").start()
    try:
        env = {**os.environ, "CUSTOMLABELS_PORT": str(running.port), "CUSTOMLABELS_DATA": str(tmp_path / "second")}
        done = subprocess.run([sys.executable, "-m", "services.cli.main", "serve"], cwd=REPO, env=env,
                              capture_output=True, text=True, timeout=120)
    finally:
        running.stop()
    assert done.returncode != 0
    assert f"cannot listen on 127.0.0.1:{running.port}" in done.stderr and "CUSTOMLABELS_PORT" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "second").exists(), "nothing was written before refusing"
