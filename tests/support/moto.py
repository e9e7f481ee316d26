"""An S3 server that lists as S3 does, without Docker: moto's standalone server.

SeaweedFS (the suite's main S3 server) lists in folder-walk order and reads
start-after as a path, so the blob store contract's listing-order and
start-after tests are strict xfails there. moto's server (``moto[s3]`` with
flask, a test dependency) lists in UTF-8 key order and honours start-after as
AWS S3 does, so those tests run against it. It keeps everything in memory, and
it does not check signatures: any key pair is accepted.

``MotoS3`` runs ``python -m moto.server`` as a child process on a free port of
127.0.0.1, logging to a file, and stops it by PID.
"""
from __future__ import annotations

import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Self

from tests.support.processes import ChildServer
from tests.support.seaweedfs import S3Endpoint
from tests.support.server import free_port

ACCESS_KEY, SECRET_KEY = "customlabels-test", "moto-accepts-any-secret"


@dataclass
class MotoS3(ChildServer):
    workdir: Path
    port: int = 0
    process: subprocess.Popen | None = None

    @property
    def log_path(self) -> Path:
        return self.workdir / "moto.log"

    def s3(self) -> S3Endpoint:
        return S3Endpoint(f"127.0.0.1:{self.port}", ACCESS_KEY, SECRET_KEY)

    def start(self, timeout: float = 30, tries: int = 3) -> Self:
        """Started and answering; a port taken between choosing and binding it is retried."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        for _ in range(tries):
            self.port = free_port()
            with open(self.log_path, "ab") as log:
                self.process = subprocess.Popen(
                    [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
                    stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and self.process.poll() is None:
                try:
                    urllib.request.urlopen(f"http://127.0.0.1:{self.port}/moto-api/", timeout=1).read()
                    return self
                except OSError:
                    time.sleep(0.05)
            if self.process.poll() is None:
                self.stop()
                raise RuntimeError(f"moto's server did not answer within {timeout} s:\n{self.log_tail()}")
        raise RuntimeError(f"moto's server did not start in {tries} tries:\n{self.log_tail()}")

