"""The deployment files, checked without a container engine or a cluster.

Nothing in docker-compose.yml or infra/k8s can be started here, so each file is
validated against its official schema (the Compose specification through
check-jsonschema's vendored copy; the Kubernetes API through the JSON schemas
that kubernetes-validate ships, offline) and against rules of ours that a schema
cannot state: images pinned, one customlabels image, health checks and probes
on /readyz and /healthz, ports published on loopback only, settings that
``Settings.from_env`` actually reads, commands the CLI and ``services.runtime``
accept, every service able to reach the owner of each operation it calls (and,
on Kubernetes, only those), training on the CPU by default and on a GPU where
asked, autoscaling for the gateway and hosting. The overlays are rendered (a
small Kustomize subset, below, compared with ``kubectl kustomize`` where that
is installed) and validated as well. A few negative controls show that the
validators do reject broken files.
"""
from __future__ import annotations

import ast
import base64
import copy
import json
import math
import re
import subprocess
import sys
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import yaml
from customlabels.config import DEV_ACCESS_KEY, DEV_SECRET_KEY, INFERENCE_BUCKET, SERVICE_NAMES, Settings
from customlabels.ports.operations import OWNERS

from services.cli.main import DEFAULT_BUCKET, build_parser
from services.datasets.records import INTERNAL_BUCKET
from services.runtime import SERVICES, SingleService
from tests.support.kubectl import find as find_kubectl

REPO = Path(__file__).resolve().parents[2]
COMPOSE = REPO / "docker-compose.yml"
DOCKERFILE = REPO / "infra" / "Dockerfile"
K8S = REPO / "infra" / "k8s"
RUNNABLE = set(SERVICE_NAMES)  # what `customlabels service <name>` runs
IMAGE = "customlabels"
OBJECTS_TOPIC = "customlabels.objects"

# The operations each service calls on the others (``ctx.router.call``): it
# must reach each one's owner (OWNERS) at CUSTOMLABELS_<OWNER>_URL, and on
# Kubernetes only those owners admit it (NetworkPolicy).
# test_the_call_table_matches_the_code keeps this table honest.
CALLS: dict[str, set[str]] = {
    # routes every API operation to its owner
    "gateway": {operation for operation, owner in OWNERS.items() if owner in RUNNABLE},
    "projects": {"DescribeProjectVersions"},
    "datasets": {"DescribeProjects"},
    "training": {"DescribeProjects", "DescribeDataset", "ListDatasetEntries", "ListProjectPolicies"},
    "evaluation": set(),
    "hosting": {"DescribeProjects", "DescribeProjectVersions", "ListTagsForResource", "DescribeFlowDefinition"},
    "feedback": {"DescribeProjects", "ListTagsForResource", "ListDatasetLabels", "CreateProjectVersion",
                 "DescribeProjectVersions", "StartProjectVersion", "StopProjectVersion", "DetectCustomLabels"},
}
# Variables for libraries rather than customlabels, allowed beside CUSTOMLABELS_*.
LIBRARY_ENV = {
    "OMP_NUM_THREADS": "PyTorch's intra-op threads: the CPU limit, not the host's core count",
}
GPU = "nvidia.com/gpu"


def owners_called_by(role: str) -> set[str]:
    """The services ``role`` calls: it needs their URLs."""
    return {OWNERS[operation] for operation in CALLS[role]} - {role}


def callers_of(role: str) -> set[str]:
    return {caller for caller in CALLS if role in owners_called_by(caller)}


# --- helpers ------------------------------------------------------------------------
def _environ_reads() -> set[str]:
    """CUSTOMLABELS_* names read straight from os.environ outside Settings (e.g. the log level)."""
    names = set()
    for path in [*(REPO / "services").rglob("*.py"), *(REPO / "shared" / "customlabels").rglob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            target = None
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "get":
                target, args = node.func.value, node.args
            elif isinstance(node, ast.Subscript):
                target, args = node.value, [node.slice]
            if (
                isinstance(target, ast.Attribute) and target.attr == "environ"
                and args and isinstance(args[0], ast.Constant) and str(args[0].value).startswith("CUSTOMLABELS_")
            ):
                names.add(args[0].value)
    return names


ENVIRON_READS = _environ_reads()
_DEFAULT_SETTINGS = Settings.from_env({})


def setting_is_read(name: str) -> bool:
    """Whether a customlabels process reads ``name``: setting it changes (or is
    refused by) ``Settings.from_env`` or hosting's ``HostingConfig.from_env``,
    or the code reads it from os.environ."""
    if name in ENVIRON_READS:
        return True
    from services.hosting.service import HostingConfig

    for read, default in ((Settings.from_env, _DEFAULT_SETTINGS), (HostingConfig.from_env, HostingConfig())):
        for probe in ("7", "123456789012", "http://probe.invalid:7"):
            try:
                if read({name: probe}) != default:
                    return True
            except ValueError:  # refused: so it was read
                return True
    return False


def _literal_router_calls(tree: ast.AST) -> set[str]:
    """Operation names passed as literals to ``router.call(...)`` / ``<...>.router.call(...)``."""
    found = set()
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "call"
            and (isinstance(node.func.value, ast.Attribute) and node.func.value.attr == "router"
                 or isinstance(node.func.value, ast.Name) and node.func.value.id == "router")
            and node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)
        ):
            found.add(node.args[0].value)
    return found


def _lookup_calls() -> dict[str, set[str]]:
    """The shared lookups (``customlabels.lookups``): function name -> the operations it calls."""
    tree = ast.parse((REPO / "shared" / "customlabels" / "lookups.py").read_text())
    return {node.name: _literal_router_calls(node) for node in tree.body if isinstance(node, ast.AsyncFunctionDef)}


def _router_calls(folder: Path) -> set[str]:
    """The operations the code under ``folder`` calls: literals passed to ``router.call`` and the
    operations of the shared lookups it uses."""
    lookups = _lookup_calls()
    found = set()
    for path in folder.rglob("*.py"):
        tree = ast.parse(path.read_text(), str(path))
        found |= _literal_router_calls(tree)
        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                name = getattr(node.func, "id", None) or getattr(node.func, "attr", None)
                found |= lookups.get(name, set())
    return found


def cpu_cores(quantity) -> float:
    """A CPU quantity ("500m", "2", 4) in cores."""
    text = str(quantity)
    return int(text[:-1]) / 1000 if text.endswith("m") else float(text)


_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}


def memory_bytes(quantity) -> int:
    match = re.fullmatch(r"(\d+)(Ki|Mi|Gi|Ti)?", str(quantity))
    assert match, f"memory quantity {quantity!r}: use a binary suffix (Mi, Gi)"
    return int(match[1]) * _BINARY.get(match[2] or "", 1)


def compose_seconds(duration: str) -> float:
    """A Compose duration ("10m", "1m30s", "90s") in seconds."""
    parts = re.findall(r"(\d+(?:\.\d+)?)(h|ms|m|s|us)", duration)
    assert parts and "".join(n + u for n, u in parts) == duration, f"not a duration: {duration!r}"
    scale = {"h": 3600, "m": 60, "s": 1, "ms": 1e-3, "us": 1e-6}
    return sum(float(n) * scale[u] for n, u in parts)


def image_is_pinned(image: str) -> bool:
    """A digest, or a tag other than latest (a registry port is not a tag)."""
    if "@sha256:" in image:
        return True
    name, _, tag = image.rpartition(":")
    return bool(name) and "/" not in tag and tag not in ("", "latest")


_INTERPOLATION = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}")
# What the operator must set (${VAR:?message}: Compose refuses to start without it), as these tests set it.
OPERATOR_ENV = {"CUSTOMLABELS_CREDENTIALS": "AKIDOPERATOR:an-operator-chosen-secret"}


def interpolate(value):
    """Compose's ${VAR:-default} with VAR unset, as a fresh checkout sees it, and its required
    ${VAR:?message} as the operator sets it (OPERATOR_ENV)."""
    def one(match: re.Match) -> str:
        name, kind, text = match.groups()
        if kind and kind.endswith("?"):
            assert name in OPERATOR_ENV, f"${{{name}:?...}} is required: say in OPERATOR_ENV what an operator sets"
            return OPERATOR_ENV[name]
        return text or ""

    if isinstance(value, str):
        return _INTERPOLATION.sub(one, value).replace("$$", "$")
    return value


def compose_env(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: "" if v is None else str(interpolate(v)) for k, v in env.items()}


def run_check_jsonschema(path: Path) -> subprocess.CompletedProcess:
    pytest.importorskip("check_jsonschema", reason="check-jsonschema (test extra) is not installed")
    return subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec", str(path)],
        check=False, capture_output=True, text=True, timeout=120,
    )


def dockerfile_uid() -> int:
    users = re.findall(r"^USER\s+(\S+)", DOCKERFILE.read_text(), re.MULTILINE)
    assert users, "infra/Dockerfile must switch to a non-root USER"
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) != 0, "the Dockerfile's USER must be a numeric, non-root id (runAsNonRoot checks it)"
    return int(uid)


# --- docker-compose.yml ------------------------------------------------------------------
@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())  # anchors and merge keys resolved, as Compose does


@pytest.fixture(scope="module")
def services(compose) -> dict[str, dict]:
    return compose["services"]


def customlabels_services(services: dict) -> dict[str, dict]:
    return {n: s for n, s in services.items() if (s.get("image") or "").split(":")[0] == IMAGE}


def dns_names(name: str, service: dict) -> set[str]:
    """The names a compose service answers to on the default network: its own and its aliases."""
    networks = service.get("networks") or {}
    aliases = (networks.get("default") or {}).get("aliases", []) if isinstance(networks, dict) else []
    return {name, *aliases}


def test_compose_file_matches_the_compose_specification():
    result = run_check_jsonschema(COMPOSE)
    assert result.returncode == 0, result.stdout + result.stderr


def services_image(services: dict) -> str:
    images = {s["image"] for s in customlabels_services(services).values()}
    assert len(images) == 1, f"the customlabels services run different images: {images}"
    return images.pop()


def test_every_image_is_pinned(services):
    for name, service in services.items():
        image = service.get("image")
        assert image, f"{name}: no image (a built service must still name the image it builds)"
        assert image_is_pinned(image), f"{name}: image {image!r} is not pinned to a tag (or digest)"


def test_one_customlabels_image_built_once_from_the_dockerfile(services):
    ours = customlabels_services(services)
    assert set(ours) >= RUNNABLE
    services_image(services)
    builders = {n: s["build"] for n, s in ours.items() if "build" in s}
    assert len(builders) == 1, f"exactly one service builds the image, not {sorted(builders)}"
    (build,) = builders.values()
    assert (REPO / build.get("context", ".") / build["dockerfile"]).resolve() == DOCKERFILE
    for name, service in ours.items():
        if "build" not in service:  # a local image: never try a registry for it
            assert service.get("pull_policy") == "never", f"{name}: set pull_policy: never"
    assert 'ENTRYPOINT ["customlabels"]' in DOCKERFILE.read_text()


def test_commands_are_services_the_runtime_knows(services):
    commands = {n: s.get("command") for n, s in customlabels_services(services).items()}
    deployed = set()
    for name, command in commands.items():
        assert isinstance(command, list) and command[:1] == ["service"] and len(command) == 2, f"{name}: command {command!r}"
        build_parser().parse_args(command)  # the CLI accepts it (SystemExit otherwise)
        SingleService(command[1], _DEFAULT_SETTINGS)  # the runtime knows it (ValueError otherwise)
        deployed.add(command[1])
    assert deployed == RUNNABLE, f"deployed {sorted(deployed)}, the runtime runs {sorted(RUNNABLE)}"


def test_long_running_services_have_healthchecks_and_restart_policies(services):
    for name, service in services.items():
        if service.get("restart") == "no":  # a one-shot job
            assert any(
                dep.get("condition") == "service_completed_successfully"
                for other in services.values() for dep_name, dep in (other.get("depends_on") or {}).items() if dep_name == name
            ), f"{name}: a one-shot job nobody waits for"
            continue
        assert service.get("restart") in ("always", "unless-stopped", "on-failure"), f"{name}: restart policy"
        test = (service.get("healthcheck") or {}).get("test")
        assert test and test[0] in ("CMD", "CMD-SHELL") and not service["healthcheck"].get("disable"), f"{name}: healthcheck"


def test_customlabels_healthchecks_ask_readyz_on_the_service_port(services):
    for name, service in customlabels_services(services).items():
        port = Settings.from_env(compose_env(service)).port
        test = " ".join(service["healthcheck"]["test"])
        assert f"127.0.0.1:{port}/readyz" in test, f"{name}: healthcheck must ask /readyz on port {port}: {test}"


def test_depends_on_waits_for_health_or_completion(services):
    for name, service in services.items():
        depends = service.get("depends_on") or {}
        assert isinstance(depends, dict), f"{name}: depends_on needs the long form, with conditions"
        for target, spec in depends.items():
            assert target in services, f"{name} depends on unknown {target}"
            condition = (spec or {}).get("condition")
            if condition == "service_healthy":
                assert "healthcheck" in services[target], f"{name} waits for {target}'s health, which has no healthcheck"
            elif condition == "service_completed_successfully":
                assert services[target].get("restart") == "no", f"{target} must be a one-shot job"
            else:
                pytest.fail(f"{name} -> {target}: condition {condition!r}; wait for service_healthy or service_completed_successfully")

    def visit(node, path):
        assert node not in path, f"depends_on cycle: {' -> '.join([*path, node])}"
        for target in services[node].get("depends_on") or {}:
            visit(target, [*path, node])

    for name in services:
        visit(name, [])


def test_customlabels_services_start_after_their_stores(services):
    ours = customlabels_services(services)
    for name, service in ours.items():
        settings = Settings.from_env(compose_env(service))
        needed = {"minio-init"}
        if settings.kafka_bootstrap:
            needed.add(settings.kafka_bootstrap.split(":")[0])
        if settings.mongodb_uri:
            needed |= {h.split(":")[0] for h in urlsplit(settings.mongodb_uri).netloc.split(",")}
        needed |= {urlsplit(url).hostname for url in settings.service_urls.values()}
        # Two services that call each other cannot both wait (Compose refuses a cycle): the one
        # whose calls are not needed to start (it makes them later, and retries) leaves the wait
        # to the other (hosting <-> feedback, projects <-> training).
        needed -= {other for other in needed if name in (ours.get(other, {}).get("depends_on") or {})}
        assert needed <= set(service.get("depends_on") or {}), f"{name} must wait for {sorted(needed)}"


def test_host_ports_are_published_on_loopback_only(services):
    published = {}
    for name, service in services.items():
        assert service.get("network_mode") != "host", f"{name}: network_mode host publishes everything"
        for port in service.get("ports") or []:
            if isinstance(port, dict):
                host_ip, host_port = port.get("host_ip"), port.get("published")
            else:
                parts = str(port).rsplit("/", 1)[0].split(":")
                host_ip, host_port = (parts[0], parts[1]) if len(parts) == 3 else (None, None)
            assert host_ip == "127.0.0.1", f"{name}: {port!r} must be published on 127.0.0.1 only"
            published[name] = published.get(name, []) + [str(host_port)]
    gateway = services["gateway"]
    assert str(Settings.from_env(compose_env(gateway)).port) in {str(p).split(":")[-1] for p in gateway["ports"]}
    for name in customlabels_services(services):
        assert name == "gateway" or name not in published, f"{name}'s internal API must not be published"


def test_customlabels_environment_is_settings_the_code_reads(services):
    for name, service in customlabels_services(services).items():
        for var in compose_env(service):
            if var in LIBRARY_ENV:
                continue
            assert var.startswith("CUSTOMLABELS_"), f"{name}: {var} is not a customlabels setting"
            assert setting_is_read(var), f"{name}: {var} is read by nothing (see shared/customlabels/config.py)"


def test_the_probe_finds_unread_settings():
    """Negative control for the check above."""
    assert setting_is_read("CUSTOMLABELS_MONGODB_URI") and setting_is_read("CUSTOMLABELS_PORT")
    assert setting_is_read("CUSTOMLABELS_LOG_LEVEL") and setting_is_read("CUSTOMLABELS_PROJECTS_URL")
    assert setting_is_read("CUSTOMLABELS_TRAINING_BUDGET_SECONDS") and setting_is_read("CUSTOMLABELS_HOSTING_UNIT_THREADS")
    assert not setting_is_read("CUSTOMLABELS_MONGO_URI")
    assert not setting_is_read("CUSTOMLABELS_PROJECT_URL")
    assert not setting_is_read("CUSTOMLABELS_HOSTING_UNITS_THREADS")


def test_services_use_the_distributed_stores_and_find_each_other(services):
    ours = customlabels_services(services)
    kafka_env = compose_env(services["kafka"])
    replica_set = services["mongodb"]["command"][services["mongodb"]["command"].index("--replSet") + 1]
    for name, service in ours.items():
        settings = Settings.from_env(compose_env(service))
        role = service["command"][1]
        assert settings.s3_endpoint == "http://minio:9000", f"{name}: S3 endpoint"
        assert settings.s3_access_key == interpolate(services["minio"]["environment"]["MINIO_ROOT_USER"])
        assert settings.s3_secret_key == interpolate(services["minio"]["environment"]["MINIO_ROOT_PASSWORD"])
        # exactly the owners of the operations it calls
        assert set(settings.service_urls) == owners_called_by(role), f"{name}: URLs {sorted(settings.service_urls)}"
        if role == "gateway":
            assert settings.credentials, f"{name}: API credentials"
        else:
            # a replica without one of these would quietly keep its own SQLite file
            assert settings.kafka_bootstrap in kafka_env["KAFKA_ADVERTISED_LISTENERS"], f"{name}: Kafka bootstrap"
            uri = urlsplit(settings.mongodb_uri or "")
            assert uri.scheme == "mongodb" and parse_qs(uri.query).get("replicaSet") == [replica_set], f"{name}: MongoDB URI"
            assert settings.token_secret, f"{name}: replicas need a shared CUSTOMLABELS_TOKEN_SECRET"
        for target, url in settings.service_urls.items():
            host, port = urlsplit(url).hostname, urlsplit(url).port
            # every compose service that runs `target` (training, training-gpu) answers to the URL's host
            serving = {n: s for n, s in ours.items() if s["command"][1] == target}
            assert serving, f"{name}: no compose service runs {target}"
            for other, service_of_target in serving.items():
                assert host in dns_names(other, service_of_target), f"{name}: {url} does not reach {other}"
                assert port == Settings.from_env(compose_env(service_of_target)).port, f"{name}: {url} is not {other}'s port"
    token_secrets = {Settings.from_env(compose_env(s)).token_secret for s in ours.values()} - {None}
    assert len(token_secrets) == 1, "every service shares one token secret"


def test_the_call_table_matches_the_code():
    """CALLS is what the services' code calls (literal operation names passed to router.call)."""
    assert set(CALLS) == RUNNABLE, "CALLS names every service the runtime runs"
    for role in SERVICES:
        called = _router_calls(REPO / "services" / role)
        assert called <= set(OWNERS), f"{role} calls operations nobody owns: {sorted(called - set(OWNERS))}"
        assert called == CALLS[role], f"services/{role} calls {sorted(called)}; update CALLS (and the deployments)"
    assert CALLS["gateway"] == {operation for operation, owner in OWNERS.items() if owner in RUNNABLE}


def test_training_runs_on_the_cpu_by_default_and_on_a_gpu_in_profile_gpu(services):
    """`docker compose up` trains on the CPU; `--profile gpu up --scale training=0` on a GPU instead."""
    workers = {n: s for n, s in customlabels_services(services).items() if s["command"] == ["service", "training"]}
    assert {n for n, s in workers.items() if not s.get("profiles")} == {"training"}, "one worker runs without a profile"
    assert {n for n, s in workers.items() if s.get("profiles")} == {"training-gpu"}
    cpu, gpu = workers["training"], workers["training-gpu"]
    assert gpu["profiles"] == ["gpu"]
    assert gpu["deploy"]["resources"]["reservations"]["devices"] == [{"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}]
    assert "reservations" not in cpu.get("deploy", {}).get("resources", {}), "the CPU worker reserves no device"
    # the same worker otherwise: settings (but the thread count), health, dependencies, grace
    library = lambda service: {k: v for k, v in compose_env(service).items() if k not in LIBRARY_ENV}
    assert library(cpu) == library(gpu)
    for key in ("image", "healthcheck", "depends_on", "stop_grace_period", "restart"):
        assert cpu.get(key) == gpu.get(key), f"training and training-gpu differ in {key}"
    # The GPU worker answers to `training` too: URLs stay the same whichever runs.
    assert "training" in dns_names("training-gpu", gpu)
    # `--scale training=0` must not block a start: nothing requires the CPU
    # worker, and nothing waits for the GPU one (it is off without the profile).
    for name, service in services.items():
        depends = service.get("depends_on") or {}
        assert "training-gpu" not in depends, f"{name} waits for training-gpu, which runs only in profile gpu"
        if "training" in depends:
            assert depends["training"].get("required") is False, f"{name}: depends_on training needs required: false"
    text = COMPOSE.read_text()
    assert "docker compose --profile gpu up" in text and "--scale training=0" in text, "document the GPU command"


def test_threads_match_the_cpu_limit(services):
    for name, service in customlabels_services(services).items():
        threads = compose_env(service).get("OMP_NUM_THREADS")
        limit = ((service.get("deploy") or {}).get("resources") or {}).get("limits", {}).get("cpus")
        if threads is not None or name.startswith("training"):
            assert limit and int(threads) == math.ceil(float(limit)), f"{name}: OMP_NUM_THREADS {threads}, CPU limit {limit}"


def test_training_has_its_budget_and_the_time_to_finish_a_job(services):
    for name, service in customlabels_services(services).items():
        if service["command"][1] != "training":
            continue
        env = compose_env(service)
        assert "CUSTOMLABELS_TRAINING_BUDGET_SECONDS" in env, f"{name}: set the training budget explicitly"
        budget = Settings.from_env(env).training_budget_seconds
        grace = compose_seconds(service.get("stop_grace_period", "10s"))
        # SIGTERM lets the job in flight train to the end of its budget, then export it
        assert grace >= budget + 120, f"{name}: stop_grace_period {grace:.0f} s for a {budget:.0f} s budget"


def test_kafka_is_a_single_kraft_node_reachable_at_kafka_9092(services):
    kafka = services["kafka"]
    assert kafka["image"].startswith("apache/kafka:")
    env = compose_env(kafka)
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert "PLAINTEXT://kafka:9092" in env["KAFKA_ADVERTISED_LISTENERS"].split(",")
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"] == f"{env['KAFKA_NODE_ID']}@kafka:9093"
    assert len(base64.urlsafe_b64decode(env["CLUSTER_ID"] + "==")) == 16, "CLUSTER_ID is a base64 UUID"
    for key in ("KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR", "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR"):
        assert env[key] == "1", f"{key}: one node holds one replica"
    assert any(v.endswith(":" + env["KAFKA_LOG_DIRS"]) for v in kafka["volumes"]), "Kafka's log dir is on a volume"


def test_mongodb_healthcheck_initiates_its_replica_set(services):
    mongodb = services["mongodb"]
    assert mongodb["image"].startswith("mongo:")
    replica_set = mongodb["command"][mongodb["command"].index("--replSet") + 1]
    check = " ".join(mongodb["healthcheck"]["test"])
    assert "rs.initiate(" in check and f"_id: '{replica_set}'" in check
    assert "catch" in check, "initiate only when rs.status() says it is not initiated (idempotent)"
    assert "host: 'mongodb:27017'" in check, "the member must be advertised under the name clients use"
    assert "isWritablePrimary" in check, "healthy only once it is primary"


def test_minio_init_creates_buckets_and_sends_puts_to_kafka(services):
    init = services["minio-init"]
    assert init["image"].startswith("minio/mc:RELEASE.") and services["minio"]["image"].startswith("minio/minio:RELEASE.")
    env = compose_env(init)
    assert set(env["BUCKETS"].split()) == {INTERNAL_BUCKET, DEFAULT_BUCKET, INFERENCE_BUCKET}
    assert set(env["NOTIFY_BUCKETS"].split()) == {DEFAULT_BUCKET, INFERENCE_BUCKET} and env["KAFKA_TOPIC"] == OBJECTS_TOPIC
    assert env["KAFKA_BROKERS"] in compose_env(services["kafka"])["KAFKA_ADVERTISED_LISTENERS"]
    mounts = {v.split(":")[1]: v.split(":")[0] for v in init["volumes"]}
    script_path = init["entrypoint"][-1]
    script = REPO / mounts[script_path]
    assert script.is_file(), f"{script} is missing"
    subprocess.run(["sh", "-n", str(script)], check=True)
    text = script.read_text()
    for needed in ("mc mb --ignore-existing", "notify_kafka", "mc admin service restart", "mc event add", "--event put", "--ignore-existing", "queue_dir=/notify-queue"):
        assert needed in text, f"minio-init.sh: {needed!r}"
    assert "/notify-queue" in {v.split(":")[1] for v in services["minio"]["volumes"]}, "MinIO's notification queue is on a volume"
    for variable in sorted(set(re.findall(r"\$\{?([A-Z_]+)", text)) - {"TARGET", "ARN"}):
        assert variable in env, f"minio-init.sh reads ${variable}, which minio-init does not set"


def test_dev_secrets_are_marked_as_such():
    text = COMPOSE.read_text()
    assert "DEVELOPMENT DEFAULTS" in text and "Change them" in text


def test_compose_never_serves_the_development_keys(services):
    """The gateway's keys are required (${CUSTOMLABELS_CREDENTIALS:?...}: Compose stops without them) and
    the development pair appears nowhere, so `docker compose up` cannot publish it."""
    text = COMPOSE.read_text()
    assert DEV_ACCESS_KEY not in text and DEV_SECRET_KEY not in text
    raw = services["gateway"]["environment"]["CUSTOMLABELS_CREDENTIALS"]
    assert re.fullmatch(r"\$\{CUSTOMLABELS_CREDENTIALS:\?[^}]+\}", raw), raw
    settings = Settings.from_env(compose_env(services["gateway"]))
    assert not settings.uses_dev_credentials and settings.exposure_problem() is None


def test_the_image_refuses_the_development_keys_on_its_public_address():
    """The Dockerfile's own environment (0.0.0.0, no keys) is one the server refuses to serve, and the
    Dockerfile neither sets keys nor allows the development pair."""
    env = dict(re.findall(r"(CUSTOMLABELS_[A-Z_]+)=(\S+)", " ".join(re.findall(r"^ENV (.+?)(?<!\\)$",
                                                                             DOCKERFILE.read_text().replace("\\\n", " "),
                                                                             re.MULTILINE))))
    assert env.get("CUSTOMLABELS_HOST") == "0.0.0.0"
    assert "CUSTOMLABELS_CREDENTIALS" not in env and "CUSTOMLABELS_ALLOW_DEV_CREDENTIALS" not in env
    assert Settings.from_env(env).exposure_problem() is not None
    assert "--editable" not in DOCKERFILE.read_text() and "[test]" not in DOCKERFILE.read_text()


def test_the_compose_schema_rejects_a_broken_file(compose, tmp_path):
    """Negative control: a misspelt key must fail validation."""
    broken = copy.deepcopy(compose)
    broken["services"]["gateway"]["helthcheck"] = broken["services"]["gateway"].pop("healthcheck")
    path = tmp_path / "broken.json"
    path.write_text(json.dumps(broken))
    result = run_check_jsonschema(path)
    assert result.returncode != 0 and "helthcheck" in result.stdout + result.stderr


# --- Kubernetes: a small Kustomize subset ----------------------------------------------
KUSTOMIZATION_KEYS = {"apiVersion", "kind", "namespace", "resources", "components", "patches", "images"}
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "PriorityClass", "StorageClass"}
KINDS = {"Kustomization": "kustomize.config.k8s.io/v1beta1", "Component": "kustomize.config.k8s.io/v1alpha1"}


def load_kustomization(folder: Path) -> dict:
    k = yaml.safe_load((folder / "kustomization.yaml").read_text())
    unknown = set(k) - KUSTOMIZATION_KEYS
    assert not unknown, f"{folder}: {sorted(unknown)} not understood by this test's renderer; teach render() first"
    assert k["kind"] in KINDS and k["apiVersion"] == KINDS[k["kind"]], f"{folder}: {k['apiVersion']} {k['kind']}"
    return k


def load_docs(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


def _matches(doc: dict, target: dict) -> bool:
    unknown = set(target) - {"kind", "name"}
    assert not unknown, f"patch target keys {sorted(unknown)} not supported by render()"
    return doc["kind"] == target.get("kind", doc["kind"]) and re.fullmatch(target.get("name", ".*"), doc["metadata"]["name"]) is not None


def _merge(base: dict, patch: dict, where: str) -> None:
    for key, value in patch.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge(base[key], value, f"{where}.{key}")
        else:
            assert not isinstance(value, list), f"{where}.{key}: list merges (merge keys) are not supported by render()"
            base[key] = value


def _json_patch(doc: dict, ops: list[dict]) -> None:
    for op in ops:
        *parents, last = [p.replace("~1", "/").replace("~0", "~") for p in op["path"].split("/")[1:]]
        node = doc
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        if op["op"] in ("replace", "remove"):
            assert (int(last) < len(node)) if isinstance(node, list) else (last in node), f"{op['path']} does not exist"
        if op["op"] == "remove":
            del node[int(last) if isinstance(node, list) else last]
        elif isinstance(node, list):
            index = len(node) if last == "-" else int(last)
            node.insert(index, op["value"]) if op["op"] == "add" else node.__setitem__(index, op["value"])
        elif op["op"] in ("add", "replace"):
            node[last] = op["value"]
        else:
            pytest.fail(f"JSON patch op {op['op']!r} not supported by render()")


def _containers(doc: dict) -> list[dict]:
    spec = doc.get("spec", {}).get("template", {}).get("spec", {})
    return [*spec.get("initContainers", []), *spec.get("containers", [])]


def render(folder: Path, docs: list[dict] | None = None) -> list[dict]:
    """``kustomize build`` for the features our kustomizations use; anything else fails loudly.

    A Component (``components:``) is rendered onto the documents of the
    kustomization that lists it, after that one's resources and before its
    own patches, as kustomize does."""
    k = load_kustomization(folder)
    assert (k["kind"] == "Component") == (docs is not None), f"{folder}: a Component is only rendered through components:"
    docs = [] if docs is None else docs
    for entry in k.get("resources", []):
        path = (folder / entry).resolve()
        docs += render(path) if path.is_dir() else load_docs(path)
    for entry in k.get("components", []):
        render((folder / entry).resolve(), docs)
    for patch in k.get("patches", []):
        if "path" in patch:
            for p in load_docs(folder / patch["path"]):
                hits = [d for d in docs if _matches(d, {"kind": p["kind"], "name": re.escape(p["metadata"]["name"])})]
                assert hits, f"{patch['path']}: patches nothing"
                for d in hits:
                    _merge(d, p, p["metadata"]["name"])
        else:
            hits = [d for d in docs if _matches(d, patch["target"])]
            assert hits, f"patch for {patch['target']} matches nothing"
            for d in hits:
                _json_patch(d, yaml.safe_load(patch["patch"]))
    for image in k.get("images", []):
        for d in docs:
            for c in _containers(d):
                name = re.split(r"[:@]", c["image"])[0]
                if name == image["name"]:
                    new = image.get("newName", name)
                    c["image"] = f"{new}@{image['digest']}" if "digest" in image else f"{new}:{image.get('newTag', c['image'].split(':')[-1])}"
    if "namespace" in k:
        for d in docs:
            if d["kind"] not in CLUSTER_SCOPED:
                d["metadata"]["namespace"] = k["namespace"]
    return docs


KUSTOMIZATIONS = sorted(p.parent for p in K8S.rglob("kustomization.yaml"))
OVERLAYS = [p for p in KUSTOMIZATIONS if "overlays" in p.parts]
GPU_TRAINING = K8S / "components" / "gpu-training"


def uses_component(folder: Path, component: Path) -> bool:
    """Whether rendering ``folder`` applies ``component`` (directly or through its resources)."""
    k = load_kustomization(folder)
    if any((folder / c).resolve() == component.resolve() for c in k.get("components", [])):
        return True
    return any(uses_component((folder / r).resolve(), component) for r in k.get("resources", []) if (folder / r).is_dir())
MANIFESTS = sorted(p for p in K8S.rglob("*.yaml") if p.name != "kustomization.yaml")


def k8s_versions() -> tuple[str, ...]:
    kv = pytest.importorskip("kubernetes_validate", reason="kubernetes-validate (test extra) is not installed")
    return ("1.30", kv.utils.latest_version())  # the oldest we claim, and the newest schemas shipped


def k8s_validate(doc: dict) -> None:
    """Against the schemas of each version; strict: unknown fields are errors too."""
    versions = k8s_versions()  # skips when the package is missing
    import kubernetes_validate

    for version in versions:
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as e:  # its own text quotes the whole schema
            where = "/".join(str(p) for p in e.absolute_path) or "(top)"
            name = f"{doc.get('kind')}/{doc.get('metadata', {}).get('name')}"
            raise AssertionError(f"{name} is not a valid Kubernetes {version} object at {where}: {e.message}") from None


def test_the_layout_is_a_base_overlays_and_the_gpu_component():
    assert K8S / "base" in KUSTOMIZATIONS and K8S / "overlays" / "dev" in KUSTOMIZATIONS
    assert load_kustomization(GPU_TRAINING)["kind"] == "Component"
    assert [o for o in OVERLAYS if uses_component(o, GPU_TRAINING)], "an overlay must use (and so test) the GPU component"
    assert [o for o in OVERLAYS if not uses_component(o, GPU_TRAINING)], "and one must train on the CPU"
    assert (K8S / "README.md").is_file()


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: str(p.relative_to(K8S)))
def test_manifest_matches_the_kubernetes_schema(path):
    docs = load_docs(path)
    assert docs, f"{path} is empty"
    for doc in docs:
        k8s_validate(doc)


@pytest.mark.parametrize("folder", OVERLAYS, ids=lambda p: str(p.relative_to(K8S)))
def test_rendered_overlay_matches_the_kubernetes_schema(folder):
    for doc in render(folder):
        k8s_validate(doc)


@pytest.mark.parametrize("folder", KUSTOMIZATIONS, ids=lambda p: str(p.relative_to(K8S)))
def test_kustomization_lists_every_file(folder):
    k = load_kustomization(folder)
    listed = set()
    for entry in k.get("resources", []):
        path = (folder / entry).resolve()
        assert path.exists(), f"{folder}: {entry} does not exist"
        assert path.is_file() or (path / "kustomization.yaml").is_file(), f"{entry} is not a kustomization"
        listed.add(path)
    listed |= {(folder / p["path"]).resolve() for p in k.get("patches", []) if "path" in p}
    present = {p.resolve() for p in folder.glob("*.yaml") if p.name != "kustomization.yaml"}
    assert present - listed == set(), f"{folder}: not in kustomization.yaml: {sorted(p.name for p in present - listed)}"
    assert {p for p in listed if p.is_file()} <= present, f"{folder}: lists files that are not beside it"


def test_the_renderer_applies_patches():
    docs = render(K8S / "overlays" / "dev")
    hpa = by_kind(docs, "HorizontalPodAutoscaler")["gateway"]
    base_hpa = by_kind(render(K8S / "base"), "HorizontalPodAutoscaler")["gateway"]
    assert hpa["spec"]["minReplicas"] != base_hpa["spec"]["minReplicas"], "the dev overlay's HPA patch did not apply"
    with pytest.raises(AssertionError):
        _json_patch(copy.deepcopy(hpa), [{"op": "replace", "path": "/spec/nothing", "value": 1}])


def _canonical(docs: list[dict]) -> dict[tuple[str, str], str]:
    return {(d["kind"], d["metadata"]["name"]): json.dumps(d, sort_keys=True) for d in docs}


@pytest.mark.parametrize("folder", OVERLAYS, ids=lambda p: str(p.relative_to(K8S)))
def test_the_renderer_agrees_with_kubectl_kustomize(folder):
    """kubectl's kustomize renders exactly what render() does (``make test`` installs kubectl where it is missing)."""
    kubectl = find_kubectl()
    if kubectl is None:
        pytest.skip("kubectl is not installed (make test installs it: python -m tests.support.kubectl install)")
    done = subprocess.run([kubectl, "kustomize", str(folder)], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    ours, theirs = _canonical(render(folder)), _canonical([d for d in yaml.safe_load_all(done.stdout) if d])
    assert set(ours) == set(theirs)
    for key in ours:
        assert json.loads(ours[key]) == json.loads(theirs[key]), f"{key} renders differently"


def test_the_kubernetes_schema_rejects_broken_manifests():
    """Negative controls: a misspelt field and a wrong type must fail validation."""
    deployment = next(d for d in load_docs(K8S / "base" / "gateway.yaml") if d["kind"] == "Deployment")
    misspelt = copy.deepcopy(deployment)
    container = misspelt["spec"]["template"]["spec"]["containers"][0]
    container["readinesProbe"] = container.pop("readinessProbe")
    wrong_type = copy.deepcopy(deployment)
    wrong_type["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] = "8080"
    for broken, error in ((misspelt, "'readinesProbe' was unexpected"), (wrong_type, "is not of type 'integer'")):
        with pytest.raises(AssertionError, match=error):
            k8s_validate(broken)


# --- Kubernetes: our rules, on every rendered overlay (and the base where it stands alone) --
@pytest.fixture(scope="module", params=OVERLAYS, ids=lambda p: str(p.relative_to(K8S)))
def rendered(request) -> list[dict]:
    return render(request.param)


def by_kind(docs: list[dict], kind: str) -> dict[str, dict]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def effective_env(doc: dict, docs: list[dict]) -> dict[str, str]:
    """The environment a Deployment's main container gets, from its ConfigMaps and Secrets."""
    config_maps, secrets = by_kind(docs, "ConfigMap"), by_kind(docs, "Secret")

    def secret_data(name):
        assert name in secrets, f"{doc['metadata']['name']}: Secret {name} is not deployed"
        s = secrets[name]
        return {**{k: base64.b64decode(v).decode() for k, v in (s.get("data") or {}).items()}, **(s.get("stringData") or {})}

    env: dict[str, str] = {}
    container = doc["spec"]["template"]["spec"]["containers"][0]
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            name = source["configMapRef"]["name"]
            assert name in config_maps, f"{doc['metadata']['name']}: ConfigMap {name} is not deployed"
            env.update(config_maps[name]["data"])
        else:
            env.update(secret_data(source["secretRef"]["name"]))
    for var in container.get("env", []):
        if "value" in var:
            env[var["name"]] = var["value"]
        elif "configMapKeyRef" in var.get("valueFrom", {}):
            ref = var["valueFrom"]["configMapKeyRef"]
            env[var["name"]] = config_maps[ref["name"]]["data"][ref["key"]]
        elif "secretKeyRef" in var.get("valueFrom", {}):
            ref = var["valueFrom"]["secretKeyRef"]
            data = secret_data(ref["name"])
            assert ref["key"] in data, f"{doc['metadata']['name']}: Secret {ref['name']} has no key {ref['key']}"
            env[var["name"]] = data[ref["key"]]
        elif "resourceFieldRef" in var.get("valueFrom", {}):
            env[var["name"]] = str(resource_field(doc, var["valueFrom"]["resourceFieldRef"]))
    return env


def resource_field(doc: dict, ref: dict) -> int:
    """What the kubelet puts in an env var from ``resourceFieldRef`` (CPU only: cores, rounded up)."""
    containers = {c["name"]: c for c in doc["spec"]["template"]["spec"]["containers"]}
    name = ref.get("containerName", doc["spec"]["template"]["spec"]["containers"][0]["name"])
    assert name in containers, f"{doc['metadata']['name']}: resourceFieldRef names no container {name!r}"
    kind, _, resource = ref["resource"].partition(".")
    assert resource == "cpu", f"{doc['metadata']['name']}: only CPU resourceFieldRefs are understood here"
    value = containers[name]["resources"][kind][resource]
    return math.ceil(cpu_cores(value) / cpu_cores(ref.get("divisor", "1")))


def test_deployments_run_each_runtime_service_once(rendered):
    deployed = {}
    for name, d in by_kind(rendered, "Deployment").items():
        (container,) = d["spec"]["template"]["spec"]["containers"]
        assert container["command"] == ["customlabels"], f"{name}: command"
        build_parser().parse_args(container["args"])  # the CLI accepts it
        assert container["args"][0] == "service" and len(container["args"]) == 2, f"{name}: args {container['args']}"
        SingleService(container["args"][1], _DEFAULT_SETTINGS)
        deployed[container["args"][1]] = name
    assert set(deployed) == RUNNABLE
    assert all(deployed[s] == s for s in deployed), "each Deployment is named after its service (URLs use the names)"


def test_images_are_pinned_and_one(rendered):
    images = set()
    for d in rendered:
        for c in _containers(d):
            assert image_is_pinned(c["image"]), f"{d['metadata']['name']}: image {c['image']!r} is not pinned"
            assert c.get("imagePullPolicy") != "Always" or "@sha256:" in c["image"]
            images.add(c["image"])
    assert len(images) == 1 and re.split(r"[:@]", images.pop())[0].rsplit("/", 1)[-1] == IMAGE


def test_deployments_have_resources_and_probes_on_the_service_port(rendered):
    for name, d in by_kind(rendered, "Deployment").items():
        container = d["spec"]["template"]["spec"]["containers"][0]
        port = Settings.from_env(effective_env(d, rendered)).port
        ports = {p["containerPort"]: p.get("name") for p in container["ports"]}
        assert port in ports, f"{name}: the container does not expose CUSTOMLABELS_PORT {port}"
        for kind in ("requests", "limits"):
            for resource in ("cpu", "memory"):
                assert resource in container.get("resources", {}).get(kind, {}), f"{name}: resources.{kind}.{resource}"
        for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
            get = container[probe]["httpGet"]
            assert get["path"] == path, f"{name}: {probe} must ask {path}"
            assert get["port"] in (port, ports[port]), f"{name}: {probe} must ask port {port}"
        if "startupProbe" in container:
            assert container["startupProbe"]["httpGet"]["path"] == "/healthz"


def test_pods_meet_the_restricted_pod_security_standard(rendered):
    uid = dockerfile_uid()
    for name, d in by_kind(rendered, "Deployment").items():
        pod = d["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True, f"{name}: runAsNonRoot"
        assert pod["securityContext"].get("runAsUser") in (None, uid), f"{name}: runAsUser is the image's user {uid}"
        for c in _containers(d):
            sc = c.get("securityContext", {})
            seccomp = sc.get("seccompProfile") or pod["securityContext"].get("seccompProfile") or {}
            assert seccomp.get("type") in ("RuntimeDefault", "Localhost"), f"{name}: seccompProfile"
            assert sc.get("allowPrivilegeEscalation") is False, f"{name}: allowPrivilegeEscalation"
            assert sc.get("capabilities", {}).get("drop") == ["ALL"], f"{name}: drop all capabilities"
            assert sc.get("readOnlyRootFilesystem") is True, f"{name}: readOnlyRootFilesystem"
            mounts = {m["mountPath"] for m in c.get("volumeMounts", [])}
            assert "/tmp" in mounts, f"{name}: a read-only root needs a writable /tmp (upload spooling)"
    namespaces = by_kind(rendered, "Namespace")
    assert all(ns["metadata"]["labels"].get("pod-security.kubernetes.io/enforce") == "restricted" for ns in namespaces.values())


def test_everything_lives_in_a_deployed_namespace(rendered):
    namespaces = set(by_kind(rendered, "Namespace"))
    for d in rendered:
        if d["kind"] not in CLUSTER_SCOPED:
            assert d["metadata"].get("namespace") in namespaces, f"{d['kind']}/{d['metadata']['name']}: namespace"


def test_environment_is_settings_the_code_reads(rendered):
    for kind in ("ConfigMap", "Secret"):
        for name, d in by_kind(rendered, kind).items():
            for key in {**(d.get("data") or {}), **(d.get("stringData") or {})}:
                assert setting_is_read(key), f"{kind} {name}: {key} is read by nothing"
    for name, d in by_kind(rendered, "Deployment").items():
        for var in d["spec"]["template"]["spec"]["containers"][0].get("env", []):
            assert var["name"] in LIBRARY_ENV or setting_is_read(var["name"]), f"{name}: {var['name']} is read by nothing"
    for name, config in by_kind(rendered, "ConfigMap").items():
        secretish = {k for k in config["data"] if re.search(r"CREDENTIALS|SECRET|PASSWORD|MONGODB_URI", k)}
        assert not secretish, f"ConfigMap {name} holds secrets {sorted(secretish)}: they belong in the Secret"


def test_services_use_the_external_stores_and_find_each_other(rendered):
    deployments, services = by_kind(rendered, "Deployment"), by_kind(rendered, "Service")
    for name, d in deployments.items():
        settings = Settings.from_env(effective_env(d, rendered))
        role = d["spec"]["template"]["spec"]["containers"][0]["args"][1]
        assert settings.s3_endpoint and settings.s3_access_key and settings.s3_secret_key, f"{name}: S3"
        missing = owners_called_by(role) - set(settings.service_urls)
        assert not missing, f"{name} calls operations of {sorted(missing)} but has no URL for them"
        if role != "gateway":
            assert settings.kafka_bootstrap, f"{name}: Kafka (else each replica keeps its own SQLite event log)"
            assert settings.mongodb_uri and "replicaSet=" in settings.mongodb_uri, f"{name}: MongoDB, a replica set"
            assert settings.token_secret, f"{name}: replicas need a shared CUSTOMLABELS_TOKEN_SECRET"
        for target, url in settings.service_urls.items():
            host, port = urlsplit(url).hostname, urlsplit(url).port
            assert host in services, f"{name}: {url} names no Service"
            assert port in {p["port"] for p in services[host]["spec"]["ports"]}, f"{name}: {url}: no such port"
            assert _selected(services[host]["spec"]["selector"], deployments[target]), f"{url} does not reach the {target} pods"


def _selected(selector: dict, deployment: dict) -> bool:
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    return all(labels.get(k) == v for k, v in selector.items())


def test_services_select_one_deployment_and_a_named_port(rendered):
    deployments = by_kind(rendered, "Deployment")
    for name, service in by_kind(rendered, "Service").items():
        hits = [d for d in deployments.values() if _selected(service["spec"]["selector"], d)]
        assert len(hits) == 1, f"Service {name} selects {len(hits)} Deployments"
        ports = {p.get("name") for c in _containers(hits[0]) for p in c.get("ports", [])} | {
            p["containerPort"] for c in _containers(hits[0]) for p in c.get("ports", [])}
        for port in service["spec"]["ports"]:
            assert port["targetPort"] in ports, f"Service {name}: targetPort {port['targetPort']} is not a container port"
    for name, d in deployments.items():
        assert d["spec"]["selector"]["matchLabels"].items() <= d["spec"]["template"]["metadata"]["labels"].items()


AUTOSCALED = {"gateway", "hosting"}  # stateless API, and the inference units


def test_gateway_and_hosting_scale_with_hpas_and_keep_disruption_budgets(rendered):
    deployments = by_kind(rendered, "Deployment")
    hpas = by_kind(rendered, "HorizontalPodAutoscaler").values()
    targets = {}
    for hpa in hpas:
        assert hpa["apiVersion"] == "autoscaling/v2"
        ref = hpa["spec"]["scaleTargetRef"]
        assert ref["kind"] == "Deployment" and ref["name"] in deployments, f"HPA {hpa['metadata']['name']}: target {ref}"
        targets[ref["name"]] = hpa
    assert set(targets) == AUTOSCALED, f"HPAs scale {sorted(targets)}; training must not autoscale (see training.yaml)"
    pdbs = by_kind(rendered, "PodDisruptionBudget").values()
    for name, hpa in targets.items():
        deployment = deployments[name]
        assert "replicas" not in deployment["spec"], f"the HPA owns {name}'s replica count"
        assert 1 <= hpa["spec"].get("minReplicas", 1) <= hpa["spec"]["maxReplicas"]
        requests = deployment["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"]
        for metric in hpa["spec"]["metrics"]:
            if metric["type"] == "Resource" and metric["resource"]["target"]["type"] == "Utilization":
                assert metric["resource"]["name"] in requests, f"{name}: utilization of {metric['resource']['name']} needs a request"
        budgets = [p for p in pdbs if _selected(p["spec"]["selector"]["matchLabels"], deployment)]
        assert len(budgets) == 1 and budgets[0]["apiVersion"] == "policy/v1", f"{name}: one PodDisruptionBudget"
        (pdb,) = budgets
        selected = [n for n, d in deployments.items() if _selected(pdb["spec"]["selector"]["matchLabels"], d)]
        assert selected == [name]
        assert "maxUnavailable" in pdb["spec"] or pdb["spec"]["minAvailable"] < hpa["spec"].get("minReplicas", 1), "the budget must allow a drain"


def _gpu_limit(deployment: dict):
    return deployment["spec"]["template"]["spec"]["containers"][0]["resources"].get("limits", {}).get(GPU)


@pytest.mark.parametrize("folder", OVERLAYS, ids=lambda p: str(p.relative_to(K8S)))
def test_training_asks_for_a_gpu_where_the_overlay_uses_the_gpu_component(folder):
    deployments = by_kind(render(folder), "Deployment")
    training = deployments["training"]
    pod = training["spec"]["template"]["spec"]
    for name, d in deployments.items():
        assert name == "training" or _gpu_limit(d) is None, f"{name} asks for a GPU"
    if uses_component(folder, GPU_TRAINING):
        assert _gpu_limit(training) == 1, "one GPU per training pod"
        assert pod["nodeSelector"].get("nvidia.com/gpu.present") == "true", "GPU nodes only"
        assert {"key": GPU, "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"], "tolerate the GPU nodes' taint"
    else:  # on the CPU, anywhere
        assert _gpu_limit(training) is None and "nodeSelector" not in pod and "tolerations" not in pod
    assert training["spec"]["replicas"] == 1


def test_training_pods_finish_their_job_and_get_the_memory_for_it(rendered):
    training = by_kind(rendered, "Deployment")["training"]
    pod = training["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    budget = Settings.from_env(effective_env(training, rendered)).training_budget_seconds
    assert "CUSTOMLABELS_TRAINING_BUDGET_SECONDS" in effective_env(training, rendered), "set the budget explicitly"
    # SIGTERM lets the job in flight train to the end of its budget, then export it
    assert pod["terminationGracePeriodSeconds"] >= budget + 120
    # a new pod joining the consumer group would cut the jobs of the old ones short
    assert training["spec"]["strategy"] == {"type": "Recreate"}
    assert memory_bytes(container["resources"]["limits"]["memory"]) >= 8 * 2**30
    threads = effective_env(training, rendered).get("OMP_NUM_THREADS")
    assert threads == str(math.ceil(cpu_cores(container["resources"]["limits"]["cpu"]))), "PyTorch's threads: the CPU limit"
    # a pod busy training answers probes slowly: give it time before it is restarted
    assert container["livenessProbe"].get("timeoutSeconds", 1) >= 5
    assert container["livenessProbe"]["periodSeconds"] * container["livenessProbe"]["failureThreshold"] >= 60


def test_hosting_pods_get_cpu_for_their_inference_units():
    """In the base (overlays may shrink requests for a laptop)."""
    hosting = by_kind(render(K8S / "base"), "Deployment")["hosting"]
    (container,) = hosting["spec"]["template"]["spec"]["containers"]
    assert cpu_cores(container["resources"]["requests"]["cpu"]) >= 1
    assert cpu_cores(container["resources"]["limits"]["cpu"]) >= 2
    threads = {v["name"]: v["valueFrom"]["resourceFieldRef"] for v in container["env"] if "resourceFieldRef" in v.get("valueFrom", {})}
    assert threads.get("CUSTOMLABELS_HOSTING_UNIT_THREADS", {}).get("resource") == "limits.cpu", "unit threads: the CPU limit"
    data = next(v for v in hosting["spec"]["template"]["spec"]["volumes"] if v["name"] == "data")
    assert memory_bytes(data["emptyDir"]["sizeLimit"]) >= 2**30, "room for the running models' files under /data"


def _selects(selector: dict, labels: dict) -> bool:
    """A LabelSelector (matchLabels, matchExpressions with In / NotIn / Exists / DoesNotExist)."""
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for e in selector.get("matchExpressions") or []:
        value, present = labels.get(e["key"]), e["key"] in labels
        ok = {"In": present and value in e.get("values", []), "NotIn": not present or value not in e.get("values", []),
              "Exists": present, "DoesNotExist": not present}[e["operator"]]
        if not ok:
            return False
    return True


def test_network_policies_admit_exactly_the_callers(rendered):
    """Each internal API admits the services that call it (CALLS), on its http port, and nobody else."""
    deployments = by_kind(rendered, "Deployment")
    labels = {d["spec"]["template"]["spec"]["containers"][0]["args"][1]: d["spec"]["template"]["metadata"]["labels"]
              for d in deployments.values()}
    policies = [p for p in by_kind(rendered, "NetworkPolicy").values() if "Ingress" in p["spec"].get("policyTypes", ["Ingress"])]
    for role, pod_labels in labels.items():
        applying = [p for p in policies if _selects(p["spec"]["podSelector"], pod_labels)]
        if role == "gateway":
            assert not applying, "the gateway is the public API: no ingress policy may select it"
            continue
        assert applying, f"no NetworkPolicy isolates {role}: any pod could call its API"
        admitted = set()
        for policy in applying:
            for rule in policy["spec"].get("ingress") or []:
                ports = {p.get("port") for p in rule.get("ports") or [{}]}
                assert ports <= {"http", 8080, None}, f"{policy['metadata']['name']}: ports {ports}"
                for peer in rule.get("from") or []:
                    assert set(peer) == {"podSelector"}, f"{policy['metadata']['name']}: only pods of this namespace may call"
                    admitted |= {caller for caller, caller_labels in labels.items() if _selects(peer["podSelector"], caller_labels)}
                assert rule.get("from"), f"{policy['metadata']['name']}: a rule without from admits everyone"
        assert admitted == callers_of(role), f"{role} admits {sorted(admitted)}, its callers are {sorted(callers_of(role))}"


def test_dev_secret_is_marked_dev_only():
    for path in K8S.rglob("*.yaml"):
        if any(d.get("kind") == "Secret" for d in load_docs(path)):
            assert "overlays" in path.parts, f"{path}: a Secret with values belongs in an overlay, not the base"
            assert "DEV ONLY" in path.read_text(), f"{path}: mark dev-only secret values as such"
    assert not any(d["kind"] == "Secret" for d in render(K8S / "base"))


def test_readme_says_why_kustomize_and_how_training_gets_a_gpu():
    text = (K8S / "README.md").read_text()
    for needed in ("Why Kustomize", "nvidia.com/gpu", "nodeSelector", "tolerations", "HorizontalPodAutoscaler",
                   "external", "components/gpu-training", "Recreate", "NetworkPolicy"):
        assert needed in text, f"infra/k8s/README.md: {needed!r}"


def test_dockerfile_runs_as_the_user_the_manifests_expect():
    assert dockerfile_uid() == 10001
    text = DOCKERFILE.read_text()
    assert re.search(r"^FROM \S+:\S+", text, re.MULTILINE) and ":latest" not in text


def test_no_kubernetes_overlay_serves_the_development_keys():
    """The gateway listens on 0.0.0.0 in its pod: an overlay's Secret must not give it the README's pair
    (the gateway would refuse to start, and rightly)."""
    for path in K8S.rglob("*.yaml"):
        for doc in load_docs(path):
            if doc.get("kind") == "Secret":
                credentials = (doc.get("stringData") or {}).get("CUSTOMLABELS_CREDENTIALS")
                if credentials:
                    settings = Settings.from_env({"CUSTOMLABELS_CREDENTIALS": credentials, "CUSTOMLABELS_HOST": "0.0.0.0"})
                    assert settings.exposure_problem() is None, f"{path}: {settings.exposure_problem()}"
