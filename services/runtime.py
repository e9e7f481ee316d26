"""Composition root: builds adapters and services for a mode and runs them.

- Embedded (``make run`` / ``customlabels serve``): every service in this
  process behind the gateway, operations routed in process.
- One service (``customlabels service <name>``): that service alone with its
  internal HTTP API and probes (or, for ``gateway``, the public API routed to
  the others over HTTP) — the distributed deployment runs one per container,
  as many replicas as wanted.

Either mode uses the distributed adapters whose settings are present
(``CUSTOMLABELS_KAFKA_BOOTSTRAP``, ``CUSTOMLABELS_MONGODB_URI``,
``CUSTOMLABELS_S3_ENDPOINT``) and the embedded ones, under
``CUSTOMLABELS_DATA``, for the rest.
"""
from __future__ import annotations

import asyncio
import importlib
import logging
import os
import secrets
import signal
import socket
from dataclasses import dataclass
from typing import Callable

from aiohttp import web

from customlabels.adapters.data_folder import DataFolderError, open_data_folder
from customlabels.adapters.inprocess_operations import InProcessOperations
from customlabels.config import BACKEND_SERVICE_NAMES, Settings
from customlabels.pagination import TokenCodec
from customlabels.ports.blobs import BlobStore
from customlabels.ports.documents import DocumentStore, ScopedStore
from customlabels.ports.events import EventBus
from customlabels.ports.operations import OperationRouter
from customlabels.service import Service, ServiceContext
from customlabels.service_http import READY, service_app

from services.console import mount_console
from services.gateway.app import gateway_app

log = logging.getLogger("customlabels")



def service_class(name: str) -> type[Service]:
    """The Service subclass named ``name``, defined in ``services/<name>/service.py``."""
    module = importlib.import_module(f"services.{name}.service")
    found = [value for value in vars(module).values()
             if isinstance(value, type) and issubclass(value, Service) and getattr(value, "name", None) == name]
    if len(found) != 1:
        raise ImportError(f"services/{name}/service.py must define exactly one Service subclass named {name!r}")
    return found[0]


SERVICES: dict[str, type[Service]] = {name: service_class(name) for name in BACKEND_SERVICE_NAMES}


# --- adapters ------------------------------------------------------------------
def documents_adapter(settings: Settings) -> DocumentStore:
    if settings.mongodb_uri:
        from customlabels.adapters.mongo_documents import MongoDocumentStore

        return MongoDocumentStore(settings.mongodb_uri, settings.mongodb_database)
    from customlabels.adapters.sqlite_documents import SqliteDocumentStore

    return SqliteDocumentStore(settings.data_dir / "documents.sqlite")


def bus_adapter(settings: Settings) -> EventBus:
    if settings.kafka_bootstrap:
        from customlabels.adapters.kafka_events import KafkaEventBus

        return KafkaEventBus(settings.kafka_bootstrap, topic_prefix=settings.kafka_topic_prefix)
    from customlabels.adapters.sqlite_events import SqliteEventBus

    return SqliteEventBus(settings.data_dir / "events.sqlite")


def blobs_adapter(settings: Settings) -> BlobStore:
    if settings.s3_endpoint:
        from customlabels.adapters.s3_blobs import S3BlobStore

        endpoint = settings.s3_endpoint
        secure = endpoint.startswith("https://")
        endpoint = endpoint.removeprefix("https://").removeprefix("http://").rstrip("/")
        return S3BlobStore(endpoint, settings.s3_access_key or "", settings.s3_secret_key or "", secure=secure, region=settings.region)
    from customlabels.adapters.local_blobs import LocalBlobStore

    return LocalBlobStore(settings.data_dir / "objects")


def token_codec(settings: Settings) -> TokenCodec:
    """Pagination tokens: the configured secret, else one made once and kept with the data."""
    if settings.token_secret:
        return TokenCodec(settings.token_secret.encode())
    path = settings.data_dir / "token-secret.key"
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(secrets.token_bytes(32))
    return TokenCodec(path.read_bytes())


@dataclass
class Adapters:
    documents: DocumentStore
    bus: EventBus
    blobs: BlobStore

    @classmethod
    async def open(cls, settings: Settings) -> "Adapters":
        open_data_folder(settings.data_dir)  # created, or migrated to this release's format (or refused)
        adapters = cls(documents_adapter(settings), bus_adapter(settings), blobs_adapter(settings))
        await adapters.documents.start([])
        await adapters.bus.start()
        await adapters.blobs.start()
        return adapters

    async def close(self) -> None:
        await self.bus.close()
        await self.documents.close()
        await self.blobs.close()


async def notification_bridge(settings: Settings, bus: EventBus):
    """The object store's bucket notifications as ImageUploaded events, where configured."""
    if not (settings.kafka_bootstrap and settings.s3_notifications_topic):
        return None
    from customlabels.adapters.s3_notifications import KafkaNotificationBridge

    bridge = KafkaNotificationBridge(settings.kafka_bootstrap, settings.s3_notifications_topic, bus)
    await bridge.start()
    return bridge


async def start_service(kind: type[Service], settings: Settings, adapters: Adapters, router: OperationRouter) -> Service:
    ctx = ServiceContext(settings, ScopedStore(adapters.documents, kind.name), adapters.bus, adapters.blobs, router, token_codec(settings))
    service = kind(ctx)
    await service.start()
    return service


# --- modes ------------------------------------------------------------------------
class Embedded:
    """Every service in this process, behind the gateway."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.services: list[Service] = []

    async def start(self) -> None:
        self.adapters = await Adapters.open(self.settings)
        self.blobs = self.adapters.blobs
        self.router = router = InProcessOperations()  # the service-test tier calls operations through it
        for kind in SERVICES.values():
            service = await start_service(kind, self.settings, self.adapters, router)
            router.register(service.name, service.operations())
            self.services.append(service)
        self.app = gateway_app(self.settings, router, self.blobs, self.adapters.bus)
        await mount_console(self.app, self.settings, router, self.blobs, self.adapters.documents)
        self.bridge = await notification_bridge(self.settings, self.adapters.bus)

    async def stop(self) -> None:
        if self.bridge:
            await self.bridge.stop()
        for service in reversed(self.services):
            await service.stop()
        await self.adapters.close()


class SingleService:
    """One service (or the gateway) in this process, the others reached over HTTP."""

    def __init__(self, name: str, settings: Settings):
        if name != "gateway" and name not in SERVICES:
            raise ValueError(f"unknown service {name!r}: choose gateway or one of {', '.join(SERVICES)}")
        self.name = name
        self.settings = settings
        self.service: Service | None = None

    async def start(self) -> None:
        from customlabels.adapters.http_operations import HttpOperations

        self.router = HttpOperations({n: u for n, u in self.settings.service_urls.items() if n != self.name})
        if self.name == "gateway":
            self.blobs, self.bus = blobs_adapter(self.settings), bus_adapter(self.settings)
            self.documents = documents_adapter(self.settings)  # the console's sessions, shared by replicas
            await self.blobs.start()
            await self.bus.start()
            await self.documents.start([])
            self.app = gateway_app(self.settings, self.router, self.blobs, self.bus)
            await mount_console(self.app, self.settings, self.router, self.blobs, self.documents)
            return
        self.adapters = await Adapters.open(self.settings)
        self.service = await start_service(SERVICES[self.name], self.settings, self.adapters, self.router)
        self.bridge = await notification_bridge(self.settings, self.adapters.bus) if self.name == "datasets" else None
        self.app = service_app(self.service, max_body=self.settings.max_json_body)

    async def stop(self) -> None:
        if self.service:
            if self.bridge:
                await self.bridge.stop()
            await self.service.stop()  # the running handler finishes; offsets are committed
            await self.adapters.close()
        else:
            await self.bus.close()
            await self.documents.close()
            await self.blobs.close()
        await self.router.close()


async def serve(system: Embedded | SingleService, settings: Settings, ready: asyncio.Event | None = None) -> None:
    """Serve ``system`` on settings.host:port until cancelled, then shut down in order."""
    await system.start()
    runner = web.AppRunner(system.app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, settings.host, settings.port)
    await site.start()
    system.app[READY]["ready"] = True
    log.info("customlabels %s listening on http://%s:%d", getattr(system, "name", "(embedded)"), settings.host, settings.port)
    if ready:
        ready.set()
    try:
        await asyncio.Event().wait()
    finally:
        system.app[READY]["ready"] = False
        await site.stop()  # no new requests; requests in flight finish
        await runner.cleanup()
        await system.stop()
        log.info("customlabels stopped")


def _port_problem(host: str, port: int) -> str | None:
    """Why ``host:port`` cannot be listened on (another server holds it, say), found before anything
    starts; None when it can (a race with another process is still possible: then bind fails later)."""
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        socket.create_server((host, port), family=family).close()
    except OSError as e:
        return (f"cannot listen on {host}:{port} ({e.strerror or e}): stop what uses that port "
                "(another customlabels server?) or choose another with CUSTOMLABELS_PORT")
    return None


def _run(make: Callable[[Settings], Embedded | SingleService], *, public: bool) -> None:
    """Serve what ``make`` builds until SIGINT/SIGTERM. ``public``: it answers the public
    API (embedded, or the gateway), so it must not expose the development keys."""
    logging.basicConfig(level=os.environ.get("CUSTOMLABELS_LOG_LEVEL", "INFO"), format="%(asctime)s %(levelname)s %(name)s %(message)s")
    settings = Settings.from_env()
    if public and (problem := settings.exposure_problem()):
        raise SystemExit(f"customlabels: {problem}")
    if problem := _port_problem(settings.host, settings.port):
        raise SystemExit(f"customlabels: {problem}")
    loop = asyncio.new_event_loop()
    task = loop.create_task(serve(make(settings), settings))
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, task.cancel)
    try:
        loop.run_until_complete(task)
    except asyncio.CancelledError:
        pass
    except DataFolderError as e:
        raise SystemExit(f"customlabels: {e}") from None
    finally:
        loop.close()


def run_embedded() -> None:
    _run(Embedded, public=True)


def run_service(name: str) -> None:
    _run(lambda settings: SingleService(name, settings), public=name == "gateway")

