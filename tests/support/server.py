"""A real customlabels server in a child process, for tests and benchmarks.

It runs ``customlabels serve`` exactly as ``make run`` does, on a free port
of 127.0.0.1 with its own data folder, and is stopped by PID.
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

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
            config=Config(retries={"max_attempts": 2, "mode": "standard"}, **config),
        )

    def objects(self) -> ObjectClient:
        return ObjectClient(Endpoint(url=self.endpoint))
