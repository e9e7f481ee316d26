"""What every service is made of, and what the runtime hands it.

A service owns collections (through its ``ScopedStore``), serves API
operations, and handles events. The runtime builds one ``ServiceContext`` per
service, with adapters for whichever mode it runs in, and starts it.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import ClassVar, Mapping

from customlabels.arns import Arns
from customlabels.buckets import BucketOwners
from customlabels.wire.dispatch import current_account
from customlabels.config import Settings
from customlabels.events import Event
from customlabels.messaging import MESSAGING_COLLECTIONS, EventHandler, EventHandlers, OutboxRelay, UnitOfWork
from customlabels.pagination import TokenCodec
from customlabels.ports.blobs import BlobStore
from customlabels.ports.documents import Collection, ScopedStore
from customlabels.ports.events import EventBus
from customlabels.ports.operations import OperationRouter, Operations


@dataclass
class ServiceContext:
    settings: Settings
    store: ScopedStore
    bus: EventBus
    blobs: BlobStore
    router: OperationRouter
    tokens: TokenCodec

    @property
    def arns(self) -> Arns:
        """ARNs of the account the request being served is for (the caller's; the
        default account where no signed request started the work)."""
        return Arns(self.settings.region, current_account() or self.settings.account_id)

    @cached_property
    def buckets(self) -> BucketOwners:
        """Whose each bucket is: check every bucket a request names (``customlabels.buckets``)."""
        return BucketOwners(self.blobs, self.settings.account_id)


class Service:
    name: ClassVar[str]
    collections: ClassVar[tuple[Collection, ...]] = ()

    def __init__(self, ctx: ServiceContext):
        self.ctx = ctx
        self.store = ctx.store
        self.relay = OutboxRelay(ctx.store, ctx.bus)
        self._events: EventHandlers | None = None

    def operations(self) -> Operations:
        return {}

    def handlers(self) -> Mapping[type[Event], EventHandler]:
        return {}

    def uow(self) -> UnitOfWork:
        return UnitOfWork(self.store, self.relay)

    async def start(self) -> None:
        await self.store.store.start(self.store.collections([*self.collections, *MESSAGING_COLLECTIONS]))
        self.relay.start()
        self._events = EventHandlers(self.name, self.store, self.ctx.bus, self.relay, self.handlers())
        await self._events.start()

    async def stop(self) -> None:
        if self._events:
            await self._events.stop()
        await self.relay.stop()
