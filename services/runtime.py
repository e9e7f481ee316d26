"""Composition root: builds adapters and services for a mode and runs them.

Embedded mode (``make run`` / ``customlabels serve``): every service in this
process, SQLite for documents and events, a local folder for objects, all
under ``CUSTOMLABELS_DATA``, and the gateway on ``CUSTOMLABELS_HOST:PORT``.
"""
from __future__ import annotations

import asyncio
import logging
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web

from customlabels.adapters.inprocess_operations import InProcessOperations
from customlabels.adapters.local_blobs import LocalBlobStore
from customlabels.adapters.sqlite_documents import SqliteDocumentStore
from customlabels.adapters.sqlite_events import SqliteEventBus
from customlabels.config import Settings
from customlabels.pagination import TokenCodec
from customlabels.ports.documents import ScopedStore
from customlabels.service import Service, ServiceContext

from services.datasets import DatasetsService
from services.gateway.app import gateway_app
from services.projects import ProjectsService

log = logging.getLogger("customlabels")

SERVICES: tuple[type[Service], ...] = (ProjectsService, DatasetsService)


def _secret(path: Path) -> bytes:
    """The server's secret for pagination tokens, made once and kept with the data."""
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(secrets.token_bytes(32))
    return path.read_bytes()


@dataclass
class Embedded:
    settings: Settings
    app: web.Application = field(init=False)
    services: list[Service] = field(default_factory=list)

    async def start(self) -> None:
        data = self.settings.data_dir
        data.mkdir(parents=True, exist_ok=True)
        self.documents = SqliteDocumentStore(data / "documents.sqlite")
        self.bus = SqliteEventBus(data / "events.sqlite")
        self.blobs = LocalBlobStore(data / "objects")
        await self.documents.start([])
        await self.bus.start()
        await self.blobs.start()
        router = InProcessOperations()
        tokens = TokenCodec(_secret(data / "token-secret.key"))
        for service_type in SERVICES:
            ctx = ServiceContext(self.settings, ScopedStore(self.documents, service_type.name), self.bus, self.blobs, router, tokens)
            service = service_type(ctx)
            router.register(service.name, service.operations())
            await service.start()
            self.services.append(service)
        self.app = gateway_app(self.settings, router, self.blobs)

    async def stop(self) -> None:
        for service in reversed(self.services):
            await service.stop()
        await self.bus.close()
        await self.documents.close()
        await self.blobs.close()


async def serve(settings: Settings, ready: asyncio.Event | None = None) -> None:
    """Run until cancelled (or SIGINT/SIGTERM via ``run_embedded``)."""
    embedded = Embedded(settings)
    await embedded.start()
    runner = web.AppRunner(embedded.app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, settings.host, settings.port)
    await site.start()
    log.info("customlabels listening on http://%s:%d (data in %s)", settings.host, settings.port, settings.data_dir)
    if ready:
        ready.set()
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()
        await embedded.stop()
        log.info("customlabels stopped")


def run_embedded() -> None:
    logging.basicConfig(level=os.environ.get("CUSTOMLABELS_LOG_LEVEL", "INFO"), format="%(asctime)s %(levelname)s %(name)s %(message)s")
    settings = Settings.from_env()
    loop = asyncio.new_event_loop()
    task = loop.create_task(serve(settings))
    import signal

    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, task.cancel)
    try:
        loop.run_until_complete(task)
    except asyncio.CancelledError:
        pass
    finally:
        loop.close()
