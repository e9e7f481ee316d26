"""The web console: server-rendered pages at /console/ over the public operations.

Built by ``mount_console`` (called by the composition root, services/runtime.py)
and mounted in the gateway's aiohttp application, so it is served wherever the
gateway is, on the same origin as the API. It owns browser sessions only (its
``ScopedStore``, shared by gateway replicas) and thumbnails (derived data in
its own bucket); everything else it reads or changes through
``router.call(operation, params)`` and, for image bytes, the blob store port.
"""
from __future__ import annotations

import logging
from urllib.parse import quote, urlsplit

from aiohttp import web
from customlabels import errors
from customlabels.buckets import BucketOwners
from customlabels.config import Settings
from customlabels.ports.blobs import BlobStore
from customlabels.ports.documents import DocumentStore, ScopedStore
from customlabels.ports.operations import OperationRouter

from services.console import security
from services.console.calls import Calls
from services.console.images import Images
from services.console.pages.comparisons import ComparisonPages, PromotionPages, Reports
from services.console.pages.datasets import DatasetPages
from services.console.pages.flows import FlowPages
from services.console.pages.labeling import LabelingPages
from services.console.pages.models import ModelPages
from services.console.pages.projects import ProjectPages
from services.console.pages.review import ReviewPages
from services.console.records import COLLECTIONS
from services.console.sessions import COOKIE, MAX_AGE_SECONDS, Sessions, csrf_matches
from services.console.views import Views

log = logging.getLogger("customlabels.console")
PREFIX = "/console"
FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


class Console:
    def __init__(self, settings: Settings, router: OperationRouter, blobs: BlobStore, store: ScopedStore):
        self.store = store
        self.sessions = Sessions(store, settings.credentials)
        self.views = Views()
        self.calls = calls = Calls(router, settings)
        self.images = Images(blobs, BucketOwners(blobs, settings.account_id), account=calls.account, bucket_of=calls.bucket)
        reports = Reports(calls, blobs)
        self.pages = [
            ProjectPages(calls, self.views),
            DatasetPages(calls, self.views, blobs),
            LabelingPages(calls, self.views, self.images),
            ModelPages(calls, self.views, self.images, blobs, settings.region),
            ReviewPages(calls, self.views, self.images),
            FlowPages(calls, self.views, settings.region),
            ComparisonPages(calls, self.views, reports, blobs),
            PromotionPages(calls, self.views, reports),
        ]

    async def start(self) -> None:
        await self.store.store.start(self.store.collections(COLLECTIONS))
        await self.images.start()

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self.guard])
        app.on_response_prepare.append(_add_headers)
        app.add_routes([
            web.get("/", self.home),
            web.get("/sign-in", self.sign_in_form, name="sign_in_form"),
            web.post("/sign-in", self.sign_in, name="sign_in"),
            web.post("/sign-out", self.sign_out),
            web.get("/static/{build}/{name}", self.views.static, name="static"),
            web.put("/uploads/{project}/{kind}/{path:.+}", self.images.upload),
            web.get("/objects/{bucket}/{key:.+}", self.images.image),
            web.get("/thumbnails/{bucket}/{key:.+}", self.images.thumbnail),
        ])
        for pages in self.pages:
            app.add_routes(pages.routes())
        return app

    # --- every request -------------------------------------------------------------
    @web.middleware
    async def guard(self, request: web.Request, handler) -> web.StreamResponse:
        """Sessions, sign-in, origin and CSRF checks (see security.py), a signed-in
        request run for its user's account (``Calls.signed_in``), and errors as
        pages (or JSON, for the pages' scripts)."""
        route = request.match_info.route.name
        try:
            request["session"] = session = await self.sessions.find(
                request.cookies.get(COOKIE), security.request_origin(request))
            if request.method not in security.SAFE_METHODS:
                if not security.same_origin(request):
                    raise errors.AccessDenied("This request did not come from a page of this console, so it was refused.")
                if route not in security.PUBLIC and session is not None:
                    token = request.headers.get(security.CSRF_HEADER)
                    if token is None and request.content_type in FORM_TYPES:
                        token = (await request.post()).get(security.CSRF_FIELD)
                    if not csrf_matches(session, token if isinstance(token, str) else None):
                        raise errors.AccessDenied("The page's security token is missing or out of date: reload the page and try again.")
            if route not in security.PUBLIC and session is None:
                if request.method in security.SAFE_METHODS and not _wants_json(request):
                    raise web.HTTPSeeOther(f"{PREFIX}/sign-in?next={quote(request.path_qs)}")
                raise errors.AccessDenied("You are signed out (or your session expired): sign in again.")
            if session is None:
                return await handler(request)
            with self.calls.signed_in(session.access_key):  # every call and bucket read is for the user's account
                return await handler(request)
        except web.HTTPException as http:
            if http.status < 400:
                return web.Response(status=http.status, headers={"Location": http.headers.get("Location", PREFIX + "/")})
            return self.error(request, http.status, http.reason, "")
        except errors.ApiError as error:
            return self.error(request, error.status, error.code, error.message)
        except Exception:  # a bug: logged with the request id, which the page shows
            request_id = request.get("request_id", "")
            log.exception("console error", extra={"request_id": request_id})
            return self.error(request, 500, "InternalServerError", f"Something went wrong on the server (request id {request_id}).")

    def error(self, request: web.Request, status: int, code: str, message: str) -> web.Response:
        if _wants_json(request):
            return web.json_response({"code": code, "message": message}, status=status)
        return self.views.render(request, "error.html", status=status, code=code, message=message)

    # --- sign-in -----------------------------------------------------------------
    async def home(self, request: web.Request) -> web.Response:
        raise web.HTTPSeeOther(f"{PREFIX}/projects")

    async def sign_in_form(self, request: web.Request, *, problem: str | None = None, status: int = 200) -> web.Response:
        origin = security.request_origin(request)
        insecure = None if security.is_trustworthy(origin) else (
            f"This console is reached over plain HTTP at {origin}: browsers do not keep its secure session "
            "cookie there, and your secret would cross the network in clear. Put it behind HTTPS "
            "(a TLS proxy that sets X-Forwarded-Proto: https), or open it on this machine at http://127.0.0.1."
        )
        return self.views.render(request, "sign-in.html", status=status, problem=problem, insecure=insecure,
                                 next=_local_path(request.query.get("next")))

    async def sign_in(self, request: web.Request) -> web.Response:
        form = await request.post()
        access_key, secret = str(form.get("access_key", "")).strip(), str(form.get("secret", ""))
        signed = await self.sessions.sign_in(access_key, secret, security.request_origin(request)) if access_key and secret else None
        if signed is None:
            log.info("console sign-in refused for access key %r", access_key[:32])
            return await self.sign_in_form(request, problem="The access key or the secret is wrong.", status=401)
        old = request.get("session")
        if old is not None:
            await self.sessions.end(old)
        cookie, _ = signed
        response = web.Response(status=303, headers={"Location": _local_path(str(form.get("next", "")))})
        response.set_cookie(COOKIE, cookie, max_age=MAX_AGE_SECONDS, path="/", secure=True, httponly=True, samesite="Strict")
        return response

    async def sign_out(self, request: web.Request) -> web.Response:
        await self.sessions.end(request["session"])
        response = web.Response(status=303, headers={"Location": f"{PREFIX}/sign-in"})
        response.del_cookie(COOKIE, path="/", secure=True, httponly=True, samesite="Strict")
        return response


def _wants_json(request: web.Request) -> bool:
    return "application/json" in request.headers.get("Accept", "") or request.path.endswith(".json")


def _local_path(target: str | None) -> str:
    """Where to go after signing in: a console path of this site, never elsewhere."""
    parts = urlsplit(target or "")
    if parts.scheme or parts.netloc or not parts.path.startswith(PREFIX + "/") or "\\" in target:
        return f"{PREFIX}/projects"
    return target


async def _add_headers(request: web.Request, response: web.StreamResponse) -> None:
    security.add_headers(response)


async def mount_console(app: web.Application, settings: Settings, router: OperationRouter, blobs: BlobStore,
                        documents: DocumentStore) -> Console:
    """Start the console and mount it at /console/ in ``app`` (the gateway's)."""
    console = Console(settings, router, blobs, ScopedStore(documents, "console"))
    await console.start()
    app.add_subapp(PREFIX, console.app())

    async def to_console(request: web.Request) -> web.Response:
        return web.Response(status=301, headers={"Location": f"{PREFIX}/"})  # returned: the gateway turns raised ones into API errors

    app.router.add_get(PREFIX, to_console)
    return console
