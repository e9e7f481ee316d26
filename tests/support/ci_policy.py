"""The suite's rules for a run that must mean what it says (a pytest plugin, registered in tests/conftest.py).

Strict runs: ``make test`` (it sets ``CUSTOMLABELS_STRICT_TESTS=1``) and any
run with ``CI`` set (``.ci/run`` runs under ``CI=true``). In a strict run a
skipped test, or a test module skipped at collection, is a failure: a missing
``../shared/datasets``, test extra (scikit-learn, check-jsonschema, ...) or
kubectl would otherwise turn dozens of tests into a green "s". A developer
who knowingly runs without them sets ``CUSTOMLABELS_STRICT_TESTS=0``.
Expected failures (xfail) are not skips and are left alone.

The variants that only a Docker engine can run are not collected where there
is none (``tests.support.docker.docker_variant``): the summary then says, in
one line, what did not run.
"""
from __future__ import annotations

import os

import pytest

from tests.support.docker import NOT_RUN, docker_unavailable

STRICT_VARIABLE = "CUSTOMLABELS_STRICT_TESTS"
_FALSE = ("", "0", "false", "no", "off")


def strict() -> bool:
    """``CUSTOMLABELS_STRICT_TESTS`` decides when set; else a run under ``CI`` is strict."""
    flag = os.environ.get(STRICT_VARIABLE)
    if flag is not None:
        return flag.strip().lower() not in _FALSE
    return os.environ.get("CI", "").strip().lower() not in _FALSE


def _skip_reason(report) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:  # (path, line, "Skipped: reason")
        return f"{longrepr[2]} ({longrepr[0]}:{longrepr[1]})"
    return str(longrepr)


def _fail_the_skip(report) -> None:
    report.outcome = "failed"
    report.longrepr = (
        f"a skip is a failure in a strict run (make test, CI; {STRICT_VARIABLE}=0 to allow it): "
        f"{_skip_reason(report)}")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if report.skipped and not hasattr(report, "wasxfail") and strict():
        _fail_the_skip(report)
    return report


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(collector):
    report = yield
    if report.skipped and strict():
        _fail_the_skip(report)
    return report


def pytest_report_header(config) -> str:
    return f"strict run: {'yes, a skip fails' if strict() else 'no, skips allowed'} ({STRICT_VARIABLE}, CI)"


def pytest_terminal_summary(terminalreporter) -> None:
    if NOT_RUN:
        terminalreporter.write_line(
            f"NOT RUN here, no Docker engine ({docker_unavailable()}): {'; '.join(NOT_RUN)}", yellow=True, bold=True)
