"""Settings, read once from the environment (documented in the README)."""
from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass, field
from pathlib import Path

# Every process `customlabels service <name>` can run, in start order: the gateway, then each
# service package ``services/<name>`` (its ``service.py`` defines the Service subclass named
# ``<name>``). The runtime, the CLI's choices, the deployment files and their tests derive from it.
SERVICE_NAMES = ("gateway", "projects", "datasets", "training", "evaluation", "hosting", "feedback")
BACKEND_SERVICE_NAMES = SERVICE_NAMES[1:]  # all but the gateway: they own data and handle events
# Images put here, under <project>/..., are answered by the project's live model (feedback service).
INFERENCE_BUCKET = "customlabels-inference"
DEV_ACCESS_KEY = "AKIDCUSTOMLABELS"
DEV_SECRET_KEY = "customlabels-dev-secret"


def parse_credentials(text: str, default_account: str) -> tuple[dict[str, str], dict[str, str]]:
    """``KEY:SECRET[:ACCOUNT]`` entries, separated by commas or lines (``#`` starts a comment):
    (key -> secret, key -> 12-digit account; ``default_account`` where an entry names none)."""
    secrets, accounts = {}, {}
    for line in text.splitlines():
        for item in line.split("#", 1)[0].split(","):
            if not item.strip():
                continue
            parts = [part.strip() for part in item.split(":")]
            if len(parts) not in (2, 3) or not parts[0] or not parts[1]:
                raise ValueError(f"a credentials entry is KEY:SECRET or KEY:SECRET:ACCOUNT, not {_redacted(item)!r}")
            account = parts[2] if len(parts) == 3 else default_account
            _check_account(account, f"the account of key {parts[0]}")
            if parts[0] in secrets:
                raise ValueError(f"access key {parts[0]} is given twice")
            secrets[parts[0]], accounts[parts[0]] = parts[1], account
    if not secrets:
        raise ValueError("no credentials given")
    return secrets, accounts


def _redacted(item: str) -> str:
    key, _, rest = item.strip().partition(":")
    return f"{key}:***" if rest else key


def _check_account(account: str, what: str) -> str:
    if not (len(account) == 12 and account.isdigit()):
        raise ValueError(f"{what} must be 12 digits, not {account!r}")
    return account


def _credentials_from_env(env: dict[str, str], default_account: str) -> tuple[dict[str, str], dict[str, str]]:
    """CUSTOMLABELS_CREDENTIALS and the file CUSTOMLABELS_CREDENTIALS_FILE names (a Kubernetes
    secret mounted as a file), together; the development pair when neither is set."""
    text = env.get("CUSTOMLABELS_CREDENTIALS") or ""
    if env.get("CUSTOMLABELS_CREDENTIALS_FILE"):
        text += "\n" + Path(env["CUSTOMLABELS_CREDENTIALS_FILE"]).read_text()
    if not text.strip():
        return {DEV_ACCESS_KEY: DEV_SECRET_KEY}, {DEV_ACCESS_KEY: default_account}
    return parse_credentials(text, default_account)


@dataclass(frozen=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 8080
    data_dir: Path = Path("data")
    region: str = "us-east-1"
    account_id: str = "000000000000"  # the account of keys that name none, and of work no key started
    credentials: dict[str, str] = field(default_factory=lambda: {DEV_ACCESS_KEY: DEV_SECRET_KEY})  # key -> secret
    # key -> its 12-digit account: a key sees and changes only its account's resources.
    key_accounts: dict[str, str] = field(default_factory=dict)
    # A 5 MB image as base64 is about 6.7 MB; leave room for the JSON around it.
    max_json_body: int = 8 * 1024 * 1024
    # Objects include manifests, which the reference allows up to 1 GB.
    max_object_bytes: int = 1024 * 1024 * 1024
    max_clock_skew_seconds: int = 15 * 60
    # Distributed adapters: each one set replaces its embedded counterpart.
    kafka_bootstrap: str | None = None
    kafka_topic_prefix: str = ""  # lets several deployments share one Kafka cluster
    mongodb_uri: str | None = None
    mongodb_database: str = "customlabels"
    s3_endpoint: str | None = None  # host:port, or a URL (https:// means TLS)
    s3_access_key: str | None = None
    s3_secret_key: str | None = None
    # Where each service's internal API answers, in distributed mode
    # (CUSTOMLABELS_<SERVICE>_URL, e.g. CUSTOMLABELS_PROJECTS_URL=http://projects:8080).
    service_urls: dict[str, str] = field(default_factory=dict)
    # Images stored under <bucket>/<project>/<train|test>/ in these buckets become
    # unlabeled entries of that project's dataset (ImageUploaded events); in
    # INFERENCE_BUCKET they are answered by the project's live model instead.
    watched_buckets: tuple[str, ...] = ("customlabels-images", INFERENCE_BUCKET)
    # Kafka topic where the object store publishes its bucket notifications (S3 event format).
    s3_notifications_topic: str | None = None
    training_budget_seconds: float = 300.0  # per version; the tag customlabels:max-training-seconds overrides it
    training_device: str | None = None  # cuda / cpu; None: cuda when present
    # Signs pagination tokens; replicas of a service must share it.
    token_secret: str | None = None
    # Serve with the development keys on a non-loopback address anyway (CUSTOMLABELS_ALLOW_DEV_CREDENTIALS=1).
    allow_dev_credentials: bool = False

    def account_of(self, access_key: str) -> str:
        return self.key_accounts.get(access_key, self.account_id)

    @property
    def uses_dev_credentials(self) -> bool:
        return self.credentials.get(DEV_ACCESS_KEY) == DEV_SECRET_KEY

    def exposure_problem(self) -> str | None:
        """Why serving the public API on ``host`` is refused, or None: the development keys
        are published in the README, so anyone who can reach a non-loopback address could use them."""
        if not self.uses_dev_credentials or _is_loopback(self.host) or self.allow_dev_credentials:
            return None
        return (f"refusing to serve on {self.host}:{self.port} with the development credentials "
                f"({DEV_ACCESS_KEY}), which anyone can read in the README: set CUSTOMLABELS_CREDENTIALS="
                "KEY:SECRET (or CUSTOMLABELS_HOST=127.0.0.1), or CUSTOMLABELS_ALLOW_DEV_CREDENTIALS=1 "
                "if this address is private to you")

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> "Settings":
        env = dict(os.environ if env is None else env)
        account = _check_account(env.get("CUSTOMLABELS_ACCOUNT_ID", cls.account_id), "CUSTOMLABELS_ACCOUNT_ID")
        credentials, key_accounts = _credentials_from_env(env, account)
        return cls(
            host=env.get("CUSTOMLABELS_HOST", cls.host),
            port=int(env.get("CUSTOMLABELS_PORT", cls.port)),
            data_dir=Path(env.get("CUSTOMLABELS_DATA", str(cls.data_dir))).resolve(),
            region=env.get("CUSTOMLABELS_REGION", cls.region),
            account_id=account,
            credentials=credentials,
            key_accounts=key_accounts,
            max_object_bytes=int(env.get("CUSTOMLABELS_MAX_OBJECT_BYTES", cls.max_object_bytes)),
            kafka_bootstrap=env.get("CUSTOMLABELS_KAFKA_BOOTSTRAP") or None,
            kafka_topic_prefix=env.get("CUSTOMLABELS_KAFKA_TOPIC_PREFIX", ""),
            mongodb_uri=env.get("CUSTOMLABELS_MONGODB_URI") or None,
            mongodb_database=env.get("CUSTOMLABELS_MONGODB_DATABASE", cls.mongodb_database),
            s3_endpoint=env.get("CUSTOMLABELS_S3_ENDPOINT") or None,
            s3_access_key=env.get("CUSTOMLABELS_S3_ACCESS_KEY") or None,
            s3_secret_key=env.get("CUSTOMLABELS_S3_SECRET_KEY") or None,
            service_urls={
                name: env[f"CUSTOMLABELS_{name.upper()}_URL"]
                for name in SERVICE_NAMES
                if env.get(f"CUSTOMLABELS_{name.upper()}_URL")
            },
            token_secret=env.get("CUSTOMLABELS_TOKEN_SECRET") or None,
            watched_buckets=tuple(b.strip() for b in env.get("CUSTOMLABELS_WATCHED_BUCKETS", ",".join(cls.watched_buckets)).split(",") if b.strip()),
            s3_notifications_topic=env.get("CUSTOMLABELS_S3_NOTIFICATIONS_TOPIC") or None,
            training_budget_seconds=float(env.get("CUSTOMLABELS_TRAINING_BUDGET_SECONDS", cls.training_budget_seconds)),
            training_device=env.get("CUSTOMLABELS_TRAINING_DEVICE") or None,
            allow_dev_credentials=env.get("CUSTOMLABELS_ALLOW_DEV_CREDENTIALS", "") == "1",
        )


# Every environment variable a customlabels server reads, with what it means. `customlabels serve
# --help` prints it; tests/unit/test_settings_table.py checks that it names exactly what the code
# reads and that the README documents each. <SERVICE> is one of SERVICE_NAMES' backends, upper-case.
ENVIRONMENT: dict[str, str] = {
    "CUSTOMLABELS_HOST": "address to bind (127.0.0.1; another address needs your own credentials)",
    "CUSTOMLABELS_PORT": "port of the API, /objects, /healthz, /readyz, /metrics (8080)",
    "CUSTOMLABELS_DATA": "the embedded data folder: documents, events, objects (./data)",
    "CUSTOMLABELS_REGION": "region in ARNs and in the signature scope (us-east-1)",
    "CUSTOMLABELS_ACCOUNT_ID": "12-digit account in ARNs (000000000000)",
    "CUSTOMLABELS_CREDENTIALS": "accepted KEY:SECRET[:ACCOUNT] entries, comma-separated (the development pair)",
    "CUSTOMLABELS_CREDENTIALS_FILE": "a file of more KEY:SECRET[:ACCOUNT] entries, one a line (a mounted secret)",
    "CUSTOMLABELS_ALLOW_DEV_CREDENTIALS": "1: serve the development pair on a non-loopback address anyway",
    "CUSTOMLABELS_WATCHED_BUCKETS": "buckets whose images under <project>/<train|test>/ become entries",
    "CUSTOMLABELS_MAX_OBJECT_BYTES": "largest object PUT /objects accepts (1073741824)",
    "CUSTOMLABELS_WEIGHTS": "folder of the pretrained weight files (./weights)",
    "CUSTOMLABELS_TRAINING_BUDGET_SECONDS": "a version's training time budget unless its tag says otherwise (300)",
    "CUSTOMLABELS_TRAINING_DEVICE": "cpu or cuda for training (cuda when present)",
    "CUSTOMLABELS_HOSTING_MAX_UNITS": "the most inference units a version may ask for (8)",
    "CUSTOMLABELS_HOSTING_SCALE_OUT_SECONDS": "sustained load before a unit is added (3)",
    "CUSTOMLABELS_HOSTING_SCALE_IN_SECONDS": "idle time before a unit is removed (60)",
    "CUSTOMLABELS_HOSTING_QUEUE_SECONDS": "work a unit queues before ThrottlingException (1)",
    "CUSTOMLABELS_HOSTING_START_TIMEOUT": "seconds a unit may take to start before the version FAILED (120)",
    "CUSTOMLABELS_HOSTING_UNIT_THREADS": "onnxruntime threads per unit (0: one per core)",
    "CUSTOMLABELS_HOSTING_UNIT_RUNNERS": "concurrent runs per unit (0: 2 on a CPU, 1 on a GPU)",
    "CUSTOMLABELS_HOSTING_UNIT_MAX_BATCH": "batch cap per unit (0: measured at start)",
    "CUSTOMLABELS_HOSTING_UNIT_MAX_WAIT_MS": "how long a unit waits to fill a batch (2)",
    "CUSTOMLABELS_HOSTING_UNIT_SPINNING": "1: onnxruntime threads spin between runs (lower latency, busy CPU)",
    "CUSTOMLABELS_LOG_LEVEL": "log level (INFO)",
    "CUSTOMLABELS_CHECK_RESPONSES": "1: check every answer against its output shape (the tests do)",
    # distributed mode: each setting present replaces an embedded adapter
    "CUSTOMLABELS_KAFKA_BOOTSTRAP": "Kafka bootstrap servers: the event bus",
    "CUSTOMLABELS_KAFKA_TOPIC_PREFIX": "prefix of the Kafka topics and groups",
    "CUSTOMLABELS_MONGODB_URI": "MongoDB URI (a replica set): the documents",
    "CUSTOMLABELS_MONGODB_DATABASE": "MongoDB database (customlabels)",
    "CUSTOMLABELS_S3_ENDPOINT": "S3 endpoint (host:port, https:// for TLS): the objects",
    "CUSTOMLABELS_S3_ACCESS_KEY": "the S3 endpoint's access key",
    "CUSTOMLABELS_S3_SECRET_KEY": "the S3 endpoint's secret key",
    "CUSTOMLABELS_S3_NOTIFICATIONS_TOPIC": "Kafka topic of the object store's bucket notifications",
    "CUSTOMLABELS_TOKEN_SECRET": "signs pagination tokens; every replica needs the same",
    "CUSTOMLABELS_<SERVICE>_URL": "where a service's internal API answers (http://projects:8080)",
}


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name other than localhost may resolve anywhere
