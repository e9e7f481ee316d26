"""A real customlabels server in a child process, for tests and benchmarks.

It runs ``customlabels serve`` exactly as ``make run`` does, on a free port
of 127.0.0.1 with its own data folder, and is stopped by PID.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import boto3
from botocore.config import Config
from customlabels.client import Endpoint, ObjectClient
from customlabels.config import DEV_ACCESS_KEY, DEV_SECRET_KEY

from tests.support import processes

REPO = Path(__file__).resolve().parents[2]
DATASETS = REPO.parent / "shared" / "datasets"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class ServerProcess:
    data_dir: Path
    port: int = field(default_factory=free_port)
    extra_env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def env(self) -> dict[str, str]:
        """Environment for client subprocesses (the CLI) talking to this server."""
        return {
            **os.environ,
            "CUSTOMLABELS_ENDPOINT": self.endpoint,
            "AWS_ACCESS_KEY_ID": DEV_ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": DEV_SECRET_KEY,
            "AWS_DEFAULT_REGION": "us-east-1",
        }

    @property
    def log_path(self) -> Path:
        return self.data_dir.parent / f"{self.data_dir.name}-server.log"

    def command(self) -> list[str]:
        return [sys.executable, "-m", "services.cli.main", "serve"]

    def start(self, timeout: float = 60) -> "ServerProcess":
        env = {
            **os.environ,
            "CUSTOMLABELS_PORT": str(self.port),
            "CUSTOMLABELS_DATA": str(self.data_dir),
            "CUSTOMLABELS_LOG_LEVEL": "INFO",
            **self.extra_env,
        }
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen(self.command(), env=env, stdout=log, stderr=subprocess.STDOUT, cwd=REPO)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited with {self.process.returncode}:\n{self.log_tail()}")
            try:
                urllib.request.urlopen(f"{self.endpoint}/readyz", timeout=1).read()
                return self
            except OSError:
                time.sleep(0.1)
        self.kill()
        raise RuntimeError(f"server did not answer within {timeout}s:\n{self.log_tail()}")

    def stop(self, timeout: float = 20) -> None:
        """SIGTERM (a clean shutdown), then kill -9 if it is still there after ``timeout``."""
        process, self.process = self.process, None
        processes.stop(process, timeout)

    def kill(self) -> None:
        """kill -9: no chance to clean up, like a crash or an OOM kill."""
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.process = None

    def kill_when(self, reached: Callable[[], bool], what: str, timeout: float = 60, slice_seconds: float = 0.005) -> None:
        """kill -9 at the first moment ``reached()`` is true, as seen while the process is frozen.

        The server runs in short slices (SIGCONT, a few milliseconds, SIGSTOP) and ``reached``
        is asked between them, while no thread of it can commit anything: the state ``reached``
        approved is exactly the state the kill leaves behind, however loaded the machine.
        (Polling a running server races it: a job can finish between two looks.) ``reached``
        must only read the data folder, as ``tests.support.peek`` does: the frozen process may
        hold the store's write lock, and its API cannot answer.
        """
        assert self.process is not None and self.process.poll() is None, "the server is not running"
        deadline = time.monotonic() + timeout
        try:
            while True:
                self._freeze()
                if reached():
                    self.kill()
                    return
                if time.monotonic() > deadline:
                    raise AssertionError(f"timed out after {timeout:g} s waiting for {what}\n{self.log_tail()}")
                self.process.send_signal(signal.SIGCONT)
                time.sleep(slice_seconds)
        finally:
            if self.process is not None and self.process.poll() is None:
                self.process.send_signal(signal.SIGCONT)

    def _freeze(self) -> None:
        """SIGSTOP, returning once every thread of the process is stopped (or it has died)."""
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)
        tasks = Path(f"/proc/{self.process.pid}/task")
        while self.process.poll() is None:
            try:
                states = [(task / "stat").read_text().rsplit(")", 1)[1].split()[0] for task in tasks.iterdir()]
            except (FileNotFoundError, ProcessLookupError):
                continue  # a thread ended while we looked
            if all(state in "TtZX" for state in states):  # stopped, or a thread already gone
                return
            time.sleep(0.0005)
        raise AssertionError(f"the server died (exit {self.process.returncode})\n{self.log_tail()}")

    def restart(self) -> "ServerProcess":
        self.stop()
        return self.start()

    def log_tail(self, lines: int = 60) -> str:
        return processes.log_tail(self.log_path, lines)

    def rekognition(self, **config):
        return boto3.client(
            "rekognition",
            endpoint_url=self.endpoint,
            region_name="us-east-1",
            aws_access_key_id=DEV_ACCESS_KEY,
            aws_secret_access_key=DEV_SECRET_KEY,
            config=Config(**{"retries": {"max_attempts": 2, "mode": "standard"}, **config}),
        )

    def objects(self) -> ObjectClient:
        return ObjectClient(Endpoint(url=self.endpoint))
