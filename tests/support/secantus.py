"""MongoDB-protocol servers for tests.

``SecantusServer`` runs SecantusDB (``secantusd-py``, a MongoDB wire-protocol
server; GPL, so a test dependency only) as a child process on a free port of
127.0.0.1 with its data in a given folder, and stops it by PID. It presents
itself as a one-node replica set, so transactions work.

``MongoReplicaSetContainer`` runs the official MongoDB image through
testcontainers as a one-node replica set, where a Docker engine exists
(``tests.support.docker.docker_variant`` tells).
"""
from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from pymongo import MongoClient
from pymongo.errors import PyMongoError

from tests.support.processes import ChildServer
from tests.support.server import free_port

SECANTUSD = Path(sys.executable).parent / "secantusd-py"  # installed in the venv with SecantusDB


@dataclass
class SecantusServer(ChildServer):
    """``with SecantusServer(folder) as server:`` (``server.uri``); SIGTERM stops it in about 4 s."""

    data_dir: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen | None = None

    @property
    def uri(self) -> str:
        # directConnection: talk to this node as is, whatever replica set it names.
        return f"mongodb://127.0.0.1:{self.port}/?directConnection=true"

    @property
    def log_path(self) -> Path:
        return self.data_dir / "secantusd.log"

    def start(self, timeout: float = 30) -> SecantusServer:
        if not SECANTUSD.exists():
            raise RuntimeError(f"{SECANTUSD} is missing: install the test extras (SecantusDB)")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        # No --standalone: it would stop SecantusDB presenting as a replica set.
        command = [str(SECANTUSD), "--host", "127.0.0.1", "--port", str(self.port)]
        command += ["--storage-path", str(self.data_dir / "storage"), "--log-level", "WARNING"]
        with open(self.log_path, "ab") as log:  # the child keeps its own descriptor
            self.process = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
            )
        try:
            self._wait_until_ready(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_until_ready(self, timeout: float) -> None:
        assert self.process is not None
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"secantusd-py exited with {self.process.returncode}:\n{self.log_tail()}")
            if _pings(self.uri):
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"secantusd-py did not answer within {timeout} s:\n{self.log_tail()}")
            time.sleep(0.1)



def _pings(uri: str) -> bool:
    client = MongoClient(uri, serverSelectionTimeoutMS=500, connectTimeoutMS=500)
    try:
        client.admin.command("ping")
        return True
    except PyMongoError:
        return False
    finally:
        client.close()


# --- the official image, where Docker is available --------------------------------
MONGO_IMAGE = "mongo:8.0.4"  # pinned: the contract holds for this version


def _mongo_container_class():
    # Imported here: testcontainers is only needed where Docker is.
    from testcontainers.community.mongodb import MongoDbContainer

    class MongoReplicaSetContainer(MongoDbContainer):
        """The official image as a one-node replica set, without authentication.

        Transactions need a replica set. MongoDbContainer sets root credentials,
        and with credentials a replica set also needs a key file, so this keeps
        the server open: it is only published on the host's 127.0.0.1.
        """

        def __init__(self, image: str = MONGO_IMAGE) -> None:
            super().__init__(image)
            self.with_command("--replSet rs0 --bind_ip_all")
            self.ports[str(self.port)] = ("127.0.0.1",)  # docker-py: host IP, any free port

        def _configure(self) -> None:
            pass  # no MONGO_INITDB_ROOT_* variables: no authentication

        def get_connection_url(self) -> str:
            host, port = self.get_container_host_ip(), self.get_exposed_port(self.port)
            return f"mongodb://{host}:{port}/?directConnection=true"

        def start(self) -> MongoReplicaSetContainer:
            super().start()
            # The member is named as the server sees itself; directConnection
            # means the client never needs to resolve that name.
            initiate = "rs.initiate({_id: 'rs0', members: [{_id: 0, host: 'localhost:27017'}]})"
            result = self.exec(["mongosh", "--quiet", "--eval", initiate])
            if result.exit_code != 0:
                raise RuntimeError(f"rs.initiate failed: {result.output.decode(errors='replace')}")
            self._wait_for_primary()
            return self

        def _wait_for_primary(self, timeout: float = 60) -> None:
            deadline = time.monotonic() + timeout
            with MongoClient(self.get_connection_url(), serverSelectionTimeoutMS=1000) as client:
                while not client.admin.command("hello").get("isWritablePrimary"):
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"{self.image} did not become primary within {timeout} s")
                    time.sleep(0.2)

    return MongoReplicaSetContainer


def mongo_replica_set_container(image: str = MONGO_IMAGE):
    """An unstarted ``MongoReplicaSetContainer`` (a testcontainers MongoDbContainer)."""
    return _mongo_container_class()(image)
