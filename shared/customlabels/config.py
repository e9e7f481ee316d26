"""Settings, read once from the environment (documented in the README)."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

SERVICE_NAMES = ("gateway", "projects", "datasets", "training", "evaluation", "hosting", "feedback")
DEV_ACCESS_KEY = "AKIDCUSTOMLABELS"
DEV_SECRET_KEY = "customlabels-dev-secret"


def _credentials(raw: str | None) -> dict[str, str]:
    """``KEY:SECRET[,KEY:SECRET...]``; the development pair when unset."""
    if not raw:
        return {DEV_ACCESS_KEY: DEV_SECRET_KEY}
    pairs = (item.split(":", 1) for item in raw.split(",") if item.strip())
    return {key.strip(): secret.strip() for key, secret in pairs}


@dataclass(frozen=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 8080
    data_dir: Path = Path("data")
    region: str = "us-east-1"
    account_id: str = "000000000000"
    credentials: dict[str, str] = field(default_factory=lambda: _credentials(None))
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
    # unlabeled entries of that project's dataset (ImageUploaded events).
    watched_buckets: tuple[str, ...] = ("customlabels-images",)
    # Kafka topic where the object store publishes its bucket notifications (S3 event format).
    s3_notifications_topic: str | None = None
    training_budget_seconds: float = 300.0  # per version; the tag customlabels:max-training-seconds overrides it
    training_device: str | None = None  # cuda / cpu; None: cuda when present
    # Signs pagination tokens; replicas of a service must share it.
    token_secret: str | None = None

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> "Settings":
        env = dict(os.environ if env is None else env)
        account = env.get("CUSTOMLABELS_ACCOUNT_ID", cls.account_id)
        if not (len(account) == 12 and account.isdigit()):
            raise ValueError(f"CUSTOMLABELS_ACCOUNT_ID must be 12 digits, not {account!r}")
        return cls(
            host=env.get("CUSTOMLABELS_HOST", cls.host),
            port=int(env.get("CUSTOMLABELS_PORT", cls.port)),
            data_dir=Path(env.get("CUSTOMLABELS_DATA", str(cls.data_dir))).resolve(),
            region=env.get("CUSTOMLABELS_REGION", cls.region),
            account_id=account,
            credentials=_credentials(env.get("CUSTOMLABELS_CREDENTIALS")),
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
            watched_buckets=tuple(b.strip() for b in env.get("CUSTOMLABELS_WATCHED_BUCKETS", "customlabels-images").split(",") if b.strip()),
            s3_notifications_topic=env.get("CUSTOMLABELS_S3_NOTIFICATIONS_TOPIC") or None,
            training_budget_seconds=float(env.get("CUSTOMLABELS_TRAINING_BUDGET_SECONDS", cls.training_budget_seconds)),
            training_device=env.get("CUSTOMLABELS_TRAINING_DEVICE") or None,
        )
