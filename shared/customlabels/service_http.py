"""A service's own HTTP face in distributed mode: its operations, health, readiness.

The gateway (or another service) calls ``POST /`` with the same AWS JSON 1.1
encoding clients use; signatures were checked at the gateway, so this port
belongs on the internal network only. ``/healthz`` answers while the process
lives; ``/readyz`` once the service has started (and no longer while it stops),
which is what Kubernetes probes and load balancers need.
"""
from __future__ import annotations

from aiohttp import web

from customlabels import errors
from customlabels.service import Service
from customlabels.wire import load_api_model
from customlabels.wire.http import JSON_CONTENT_TYPE, request_ids

READY = web.AppKey("ready", dict)


def service_app(service: Service, *, max_body: int) -> web.Application:
    model = load_api_model()
    operations = service.operations()

    async def call(request: web.Request) -> web.Response:
        operation = model.resolve_target(request.headers.get("X-Amz-Target", ""))
        if operation not in operations:
            raise errors.UnsupportedOperation(f"the {service.name} service does not serve {operation}")
        params = model.parse_request(operation, await request.read())
        result = await operations[operation](params)
        return web.Response(body=model.serialize_response(operation, result), content_type=JSON_CONTENT_TYPE)

    app = web.Application(middlewares=[request_ids], client_max_size=max_body)
    app.router.add_post("/", call)
    add_probes(app)
    return app


def add_probes(app: web.Application) -> None:
    """``/healthz`` (alive), ``/readyz`` (serving: ``app[READY]["ready"]``) and ``/metrics``
    (Prometheus text: every metric this process registered; all services in embedded mode)."""
    app[READY] = {"ready": False}

    async def healthz(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(request: web.Request) -> web.Response:
        ready = request.app[READY]["ready"]
        return web.json_response({"status": "ready" if ready else "starting"}, status=200 if ready else 503)

    async def metrics(request: web.Request) -> web.Response:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
