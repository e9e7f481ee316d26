"""The browser tier: Playwright for Python driving Debian's Chromium, headless,
against the suite's real ``customlabels serve`` process (``server``, what
``make run`` starts); tests keep apart by project names.

Chromium comes from Debian's package (``make test`` installs it where it is
missing); Playwright's own browser downloads are never used. Every page a
test opens must run its scripts without an uncaught error, and the tours save
screenshots of their main pages under ``tests/browser/screenshots/`` (ignored
by git), at 1280x800 and, for read-only pages, 390 px wide.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from customlabels.config import DEV_ACCESS_KEY, DEV_SECRET_KEY


CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOTS = Path(__file__).resolve().parent / "screenshots"
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}


# Module scope, not session: while Playwright's sync API is open it runs its own
# event loop in this thread, and the suite's async tests (after these) need it closed.
@pytest.fixture(scope="module")
def chromium():
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium package (make test does: apt-get install -y chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--disable-dev-shm-usage"])
        yield browser
        browser.close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"report_{report.when}", report)


@pytest.fixture
def new_page(request, chromium, server):
    """Pages in fresh browser contexts (no cookies); each checks that no script
    failed, and is saved as failed-<test>-<n>.png when the test fails."""
    contexts, failures = [], []

    def make(base_url: str | None = None, viewport: dict = DESKTOP):
        context = chromium.new_context(base_url=base_url or server.endpoint, viewport=viewport)
        contexts.append(context)
        page = context.new_page()
        page.on("pageerror", lambda error: failures.append(f"{page.url}: {error}"))
        page.on("dialog", lambda dialog: failures.append(f"{page.url}: unexpected dialog {dialog.message!r}") or dialog.dismiss())
        page.set_default_timeout(30_000)
        return page

    yield make
    report = getattr(request.node, "report_call", None)
    for number, context in enumerate(contexts):
        if report is not None and report.failed:
            SCREENSHOTS.mkdir(exist_ok=True)
            for page in context.pages:
                page.screenshot(path=str(SCREENSHOTS / f"failed-{request.node.name}-{number}.png"), full_page=True)
        context.close()
    assert not failures, "scripts failed in the browser:\n" + "\n".join(failures)


@pytest.fixture
def page(new_page):
    """A signed-in page at 1280x800."""
    page = new_page()
    sign_in(page)
    return page


def sign_in(page, access_key: str = DEV_ACCESS_KEY, secret: str = DEV_SECRET_KEY) -> None:
    page.goto("/console/sign-in")
    page.fill("#access_key", access_key)
    page.fill("#secret", secret)
    page.click("#sign-in")
    page.wait_for_load_state()


def shot(page, name: str, *, phone: bool = False) -> Path:
    """Screenshot the page as the user sees it (and at 390 px wide when ``phone``)."""
    SCREENSHOTS.mkdir(exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    if phone:
        size = page.viewport_size
        page.set_viewport_size(PHONE)
        page.screenshot(path=str(SCREENSHOTS / f"{name}-390.png"), full_page=True)
        width = page.evaluate("document.documentElement.scrollWidth")
        page.set_viewport_size(size)
        assert width <= PHONE["width"] + 1, f"{name} is {width} px wide on a 390-px phone: it scrolls sideways"
    return path


def page_data(page) -> dict:
    return json.loads(page.text_content("#page-data"))


def wait_page_status(page, status: str, timeout_ms: int = 30_000) -> None:
    """Until the page was rendered with the version in ``status``: a page that watches a status
    reloads when it changes, so a page rendered before (STARTING, say) is about to go away."""
    page.wait_for_function("""(status) => {
        try { return JSON.parse(document.getElementById("page-data").textContent).status === status; }
        catch { return false; }  // the page is being replaced
    }""", arg=status, timeout=timeout_ms)
    page.wait_for_load_state()


def problem_text(page) -> str:
    return re.sub(r"\s+", " ", page.inner_text(".problem")).strip()
