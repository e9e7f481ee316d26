"""customlabels as separate OS processes, one per service, as deployed."""
from __future__ import annotations

import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from customlabels.config import BACKEND_SERVICE_NAMES
from tests.support.server import ServerProcess, free_port

EVERY_SERVICE = BACKEND_SERVICE_NAMES


@dataclass
class ServiceProcess(ServerProcess):
    """``customlabels service <name>`` (the gateway's /healthz, a service's /readyz)."""

    name: str = "gateway"

    def command(self) -> list[str]:
        return [sys.executable, "-m", "services.cli.main", "service", self.name]

    @property
    def log_path(self) -> Path:
        return self.data_dir.parent / f"{self.name}-{self.port}.log"


@dataclass
class Cluster:
    """The gateway and ``services``, each its own process, the gateway routing to them over HTTP.

    Every process gets every other one's ``CUSTOMLABELS_<SERVICE>_URL``.
    A service killed with ``processes[name].kill()`` comes back with
    ``processes[name].start()``, on the same port."""

    data_dir: Path
    env: dict[str, str] = field(default_factory=dict)  # adapter settings shared by every service
    services: tuple[str, ...] = ("projects", "datasets")  # besides the gateway; EVERY_SERVICE for all
    processes: dict[str, ServiceProcess] = field(default_factory=dict)
    s3: object | None = None  # the S3 server's endpoint, where the cluster uses one
    start_timeout: float = 180

    def start(self) -> Cluster:
        names = (*self.services, "gateway")
        ports = {name: free_port() for name in names}
        urls = {f"CUSTOMLABELS_{n.upper()}_URL": f"http://127.0.0.1:{p}" for n, p in ports.items() if n != "gateway"}
        shared = {**self.env, **urls, "CUSTOMLABELS_TOKEN_SECRET": "cluster-test-secret"}
        self.processes = {name: ServiceProcess(self.data_dir, port=ports[name], extra_env=shared, name=name) for name in names}
        # Side by side: a service needs the others only when it calls them, and
        # most of a start is waiting for its Kafka consumer groups to form.
        with ThreadPoolExecutor(len(names)) as pool:
            starting = [pool.submit(process.start, self.start_timeout) for process in self.processes.values()]
        failed = [f.exception() for f in starting if f.exception() is not None]
        if failed:
            self.stop()
            raise failed[0]
        return self

    @property
    def gateway(self) -> ServiceProcess:
        return self.processes["gateway"]

    def stop(self) -> None:
        """The gateway first (no new requests), then the services side by side."""
        if "gateway" in self.processes:
            self.processes["gateway"].stop()
        with ThreadPoolExecutor(max(1, len(self.processes))) as pool:
            list(pool.map(lambda process: process.stop(), self.processes.values()))

    def logs(self, lines: int = 30) -> str:
        return "\n".join(f"--- {n}\n{p.log_tail(lines)}" for n, p in self.processes.items())
