"""Pages: Jinja2 templates (autoescaping always on) and the static files they use.

Static files are served under ``/console/static/<build>/``, where ``<build>``
is a hash of every static file, so their URLs change whenever a file does and
browsers may cache them for good.
"""
from __future__ import annotations

import hashlib
import mimetypes
from pathlib import Path
from typing import Any

import jinja2
from aiohttp import web

HERE = Path(__file__).resolve().parent
STATIC = HERE / "static"
IMMUTABLE = "private, max-age=31536000, immutable"

# The navigation: (section, title, path).
NAV = (
    ("projects", "Projects", "/console/projects"),
    ("review", "Review queue", "/console/review"),
    ("flows", "Flow definitions", "/console/flows"),
    ("comparisons", "Comparisons", "/console/comparisons"),
    ("promotions", "Promotions", "/console/promotions"),
)


def static_build() -> str:
    digest = hashlib.sha256()
    for path in sorted(STATIC.rglob("*")):
        if path.is_file():
            digest.update(path.relative_to(STATIC).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


class Views:
    def __init__(self) -> None:
        self.build = static_build()
        self.env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(HERE / "templates"),
            autoescape=True,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.env.globals.update(nav=NAV, static=self.static_url)
        self.env.filters.update(when=_when, number=_number, percent=_percent)

    def static_url(self, name: str) -> str:
        return f"/console/static/{self.build}/{name}"

    def render(self, request: web.Request, template: str, *, status: int = 200, **context: Any) -> web.Response:
        session = request.get("session")
        page = self.env.get_template(template).render(
            session=session,
            csrf=session.csrf if session else "",
            path=request.path,
            **context,
        )
        return web.Response(text=page, status=status, content_type="text/html", charset="utf-8")

    async def static(self, request: web.Request) -> web.StreamResponse:
        if request.match_info["build"] != self.build:
            raise web.HTTPNotFound()
        name = request.match_info["name"]
        path = (STATIC / name).resolve()
        if not path.is_file() or STATIC not in path.parents:
            raise web.HTTPNotFound()
        kind = {".js": "text/javascript", ".css": "text/css"}.get(path.suffix) or mimetypes.guess_type(path.name)[0]
        return web.Response(body=path.read_bytes(), content_type=kind or "application/octet-stream",
                            headers={"Cache-Control": IMMUTABLE})


def _when(value: Any) -> str:
    if value is None:
        return "—"
    try:
        return value.strftime("%Y-%m-%d %H:%M")
    except AttributeError:
        return str(value)


def _number(value: Any, digits: int = 3) -> str:
    if value is None:
        return "—"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def _percent(value: Any) -> str:
    return "—" if value is None else f"{100 * value:.1f} %"
