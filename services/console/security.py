"""Who may do what, and the headers every console answer carries.

Invariants, for every request under /console/:
- Only the routes in ``PUBLIC`` (sign-in, static files) answer without a session.
- A method other than GET/HEAD changes state, so it must come from this
  origin (``Origin``, else ``Referer``, equal to the request's own origin) and,
  once signed in, carry the session's CSRF token (form field ``csrf`` or
  header ``X-CSRF-Token``). GET never changes state.
- Every answer carries the content security policy below, ``nosniff``,
  ``Referrer-Policy: same-origin`` and ``Cache-Control: no-store`` unless the
  handler chose a cache policy (immutable static files and thumbnails).
"""
from __future__ import annotations

from urllib.parse import urlsplit

from aiohttp import web

SAFE_METHODS = frozenset({"GET", "HEAD"})
PUBLIC = frozenset({"sign_in", "sign_in_form", "static"})
CSRF_HEADER = "X-CSRF-Token"
CSRF_FIELD = "csrf"

CSP = "; ".join([
    "default-src 'self'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self' blob: data:",
    "connect-src 'self'",
    "object-src 'none'",
    "base-uri 'none'",
    "form-action 'self'",
    "frame-ancestors 'none'",
])
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
}
LOOPBACK = ("127.", "[::1]", "localhost")


def request_origin(request: web.Request) -> str:
    """scheme://host as the browser sees it (a TLS proxy in front says https
    with X-Forwarded-Proto; claiming it falsely only locks the claimant out)."""
    forwarded = request.headers.get("X-Forwarded-Proto", "").split(",")[0].strip().lower()
    scheme = "https" if request.secure or forwarded == "https" else "http"
    return f"{scheme}://{request.host}"


def is_trustworthy(origin: str) -> bool:
    """Whether browsers keep a Secure cookie set by this origin: https, or
    plain http on a loopback address (Chromium and Firefox treat those as
    secure contexts)."""
    parts = urlsplit(origin)
    return parts.scheme == "https" or (parts.hostname or "").startswith(LOOPBACK) or parts.hostname == "::1"


def same_origin(request: web.Request) -> bool:
    """The request was sent by a page of this origin (OWASP: Origin, else Referer)."""
    own = request_origin(request)
    origin = request.headers.get("Origin")
    if origin is not None:
        return origin == own
    referer = request.headers.get("Referer")
    if referer:
        parts = urlsplit(referer)
        return f"{parts.scheme}://{parts.netloc}" == own
    return False


def add_headers(response: web.StreamResponse) -> None:
    for name, value in HEADERS.items():
        response.headers.setdefault(name, value)
    response.headers.setdefault("Cache-Control", "no-store")
