"""customlabels as separate OS processes, one per service, as deployed."""
from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.server import ServerProcess, free_port


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
    data_dir: Path
    env: dict[str, str] = field(default_factory=dict)  # adapter settings shared by every service
    processes: dict[str, ServiceProcess] = field(default_factory=dict)
    s3: object | None = None  # the S3 server's endpoint, where the cluster uses one

    def start(self) -> "Cluster":
        ports = {name: free_port() for name in ("projects", "datasets", "gateway")}
        urls = {f"CUSTOMLABELS_{n.upper()}_URL": f"http://127.0.0.1:{p}" for n, p in ports.items() if n != "gateway"}
        shared = {**self.env, **urls, "CUSTOMLABELS_TOKEN_SECRET": "cluster-test-secret"}
        for name in ("projects", "datasets", "gateway"):
            self.processes[name] = ServiceProcess(self.data_dir, port=ports[name], extra_env=shared, name=name).start()
        return self

    @property
    def gateway(self) -> ServiceProcess:
        return self.processes["gateway"]

    def stop(self) -> None:
        for process in reversed(list(self.processes.values())):
            process.stop()

    def logs(self) -> str:
        return "\n".join(f"--- {n}\n{p.log_tail(30)}" for n, p in self.processes.items())

