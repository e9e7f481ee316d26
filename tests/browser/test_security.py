"""Sign-in and safety in Chromium: credentials checked, the session cookie's
attributes, CSRF tokens and the Origin check on every state change, a cookie
carried to another origin worth nothing, images only for a session, no secret
in pages or logs."""
from __future__ import annotations

import http.server
import threading

import pytest
from customlabels.config import DEV_ACCESS_KEY, DEV_SECRET_KEY

from tests.browser.conftest import sign_in
from tests.support.server import free_port

COOKIE = "__Host-sid"


def project_exists(rekognition, name: str) -> bool:
    return bool(rekognition.describe_projects(ProjectNames=[name])["ProjectDescriptions"])


def session_cookie(page) -> dict | None:
    return next((c for c in page.context.cookies() if c["name"] == COOKIE), None)


@pytest.mark.parametrize("access_key, secret", [
    (DEV_ACCESS_KEY, "wrong-secret"),
    ("AKIDNOBODY", DEV_SECRET_KEY),
    (DEV_ACCESS_KEY, DEV_SECRET_KEY + " "),
])
def test_wrong_credentials_are_refused(new_page, access_key, secret):
    page = new_page()
    page.goto("/console/projects")
    assert "/console/sign-in" in page.url
    page.fill("#access_key", access_key)
    page.fill("#secret", secret)
    response = None
    with page.expect_response(lambda r: r.url.endswith("/console/sign-in") and r.request.method == "POST") as answer:
        page.click("#sign-in")
    response = answer.value
    assert response.status == 401
    assert page.inner_text("#sign-in-problem") == "The access key or the secret is wrong."
    assert session_cookie(page) is None
    assert secret not in page.content()


def test_the_session_cookie_is_host_only_secure_httponly_strict_and_rotated(new_page):
    page = new_page()
    sign_in(page)
    assert page.url.endswith("/console/projects")
    first = session_cookie(page)
    assert first["secure"] and first["httpOnly"] and first["sameSite"] == "Strict" and first["path"] == "/"
    assert first["expires"] > 0  # an expiry, not a browser-session cookie
    assert len(first["value"]) >= 40  # 256 random bits, url-safe
    assert page.evaluate("document.cookie") == ""  # HttpOnly: scripts cannot read it
    sign_in(page)  # signing in again gives a new id
    second = session_cookie(page)
    assert second["value"] != first["value"]
    # the old id is worth nothing
    other = new_page()
    other.context.add_cookies([copy(first)])
    other.goto("/console/projects")
    assert "/console/sign-in" in other.url


def test_sign_out_ends_the_session(new_page):
    page = new_page()
    sign_in(page)
    cookie = session_cookie(page)
    page.click("text=Sign out")
    assert "/console/sign-in" in page.url
    assert session_cookie(page) is None
    page.context.add_cookies([copy(cookie)])
    page.goto("/console/projects")
    assert "/console/sign-in" in page.url


def copy(cookie: dict, **changes) -> dict:
    """A cookie as add_cookies takes it, with ``changes``."""
    return {**{k: cookie[k] for k in ("name", "value", "domain", "path", "secure", "httpOnly", "sameSite")}, **changes}


def post(page, path: str, form: dict, headers: dict | None = None):
    """A POST from this page's context (its cookies), with the headers given."""
    return page.request.post(path, form=form, headers=headers or {}, max_redirects=0)


def test_state_changes_need_the_csrf_token_and_this_origin(page, server, unique):
    rekognition = server.rekognition()
    origin = server.endpoint
    token = page.get_attribute('meta[name="csrf-token"]', "content")
    assert len(token) >= 40
    refused = [
        post(page, "/console/projects", {"name": unique}, {"Origin": origin}),  # no token
        post(page, "/console/projects", {"name": unique, "csrf": token[::-1]}, {"Origin": origin}),  # a wrong one
        post(page, "/console/projects", {"name": unique, "csrf": token}, {"Origin": "http://evil.example"}),
        post(page, "/console/projects", {"name": unique, "csrf": token}, {"Origin": origin.replace("127.0.0.1", "localhost")}),
    ]
    for response in refused:
        assert response.status == 403, response.text()
        assert "AccessDeniedException" in response.text()
    assert not project_exists(rekognition, unique)
    # GET never changes state
    assert page.request.get(f"/console/projects?name={unique}").ok
    assert not project_exists(rekognition, unique)
    # the same request with the token, from this origin, works
    assert post(page, "/console/projects", {"name": unique, "csrf": token}, {"Origin": origin}).status == 303
    assert project_exists(rekognition, unique)


class _Attacker(http.server.BaseHTTPRequestHandler):
    """A page on another origin that submits a form to the console as soon as it loads."""

    target = ""

    def do_GET(self):
        page = f"""<!doctype html><form id=f method=post action="{self.target}/console/projects">
<input name=name value="{self.server.project}"></form><script>document.getElementById('f').submit()</script>"""
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.end_headers()
        self.wfile.write(page.encode())

    def log_message(self, *args):
        pass


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])  # same site other port; another site
def test_a_form_on_another_origin_cannot_change_anything(page, server, unique, host):
    rekognition = server.rekognition()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), type("Attacker", (_Attacker,), {"target": server.endpoint}))
    server.project = unique
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        with page.expect_response(lambda r: r.url.endswith("/console/projects") and r.request.method == "POST") as answer:
            page.goto(f"http://{host}:{server.server_address[1]}/")
        assert answer.value.status == 403
        assert not project_exists(rekognition, unique)
    finally:
        server.shutdown()
        server.server_close()


def test_a_session_cookie_carried_to_another_origin_names_no_session(page, new_page, server):
    stolen = session_cookie(page)
    thief = new_page(base_url=server.endpoint.replace("127.0.0.1", "localhost"))
    thief.context.add_cookies([copy(stolen, domain="localhost")])
    thief.goto("/console/projects")
    assert "/console/sign-in" in thief.url
    answer = thief.request.get("/console/projects/status.json", headers={"Accept": "application/json"})
    assert answer.status == 403


def test_images_and_thumbnails_are_only_for_a_session(page, new_page, server, unique, tmp_path):
    from tests.browser.test_forms import create_project, jpeg

    create_project(page, unique)
    (tmp_path / "a.jpg").write_bytes(jpeg())
    page.goto(f"/console/projects/{unique}/datasets/new?kind=train")
    page.set_input_files("#pick-files", [str(tmp_path / "a.jpg")])
    page.click("#start-upload")
    page.wait_for_selector("#open-dataset")
    page.click("#open-dataset")
    thumbnail = page.get_attribute(".tile img", "src")
    own = page.request.get(thumbnail)
    assert own.ok and own.headers["content-type"] == "image/jpeg"
    assert own.headers["cache-control"] == "private, max-age=31536000, immutable"
    stranger = new_page()
    for url in (thumbnail, thumbnail.replace("/thumbnails/", "/objects/")):
        answer = stranger.request.get(url, max_redirects=0)
        assert answer.status in (303, 403) and "image" not in answer.headers.get("content-type", "")


def test_pages_carry_the_security_headers_and_no_secret(page, server):
    response = page.goto("/console/projects")
    headers = response.headers
    assert "default-src 'self'" in headers["content-security-policy"]
    assert "frame-ancestors 'none'" in headers["content-security-policy"]
    assert "script-src 'self'" in headers["content-security-policy"]
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["referrer-policy"] == "same-origin"
    assert DEV_SECRET_KEY not in page.content()
    assert DEV_SECRET_KEY not in server.log_path.read_text(errors="replace")
