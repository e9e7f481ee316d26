"""A service's own HTTP face in distributed mode: its operations, health, readiness.

The gateway (or another service) sends a service the requests of every API
in their public wire form (``POST /`` with ``X-Amz-Target``, REST-JSON
routes); the service answers those it owns through the one request path
(``customlabels.wire.dispatch``), the same code the embedded gateway uses,
and the others ``UnsupportedOperationException``. Signatures were checked at
the gateway, so this port belongs on the internal network only. ``/healthz``
answers while the process lives; ``/readyz`` once the service has started
(and no longer while it stops), which is what Kubernetes probes and load
balancers need.
"""
from __future__ import annotations

from typing import Callable

from aiohttp import web

from customlabels.adapters.inprocess_operations import InProcessOperations
from customlabels.service import Service
from customlabels.wire.http import add_api_routes, request_ids

READY = web.AppKey("ready", dict)


def service_app(service: Service, *, max_body: int) -> web.Application:
    own = InProcessOperations(where="not this one")
    own.register(service.name, service.operations())
    app = web.Application(middlewares=[request_ids], client_max_size=max_body)
    add_api_routes(app, own, max_body=max_body)
    add_probes(app)
    return app


def add_probes(app: web.Application, *, authenticate_metrics: Callable[[web.Request], object] | None = None) -> None:
    """``/healthz`` (alive), ``/readyz`` (serving: ``app[READY]["ready"]``) and ``/metrics``
    (Prometheus text: every metric this process registered; all services in embedded mode).
    ``authenticate_metrics`` raises an ApiError for a request that may not read the metrics (the
    gateway's public port); without it they are open, as on a service's internal port."""
    app[READY] = {"ready": False}

    async def healthz(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(request: web.Request) -> web.Response:
        ready = request.app[READY]["ready"]
        return web.json_response({"status": "ready" if ready else "starting"}, status=200 if ready else 503)

    async def metrics(request: web.Request) -> web.Response:
        if authenticate_metrics is not None:
            authenticate_metrics(request)
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
