"""Whether a Docker engine can run containers here (testcontainers variants).

A suite with a variant that only Docker can run asks ``docker_variant(what)``
once, at collection: True where an engine answers; otherwise the variant is
left out (not collected: no skips) and ``what`` is noted in ``NOT_RUN``, which
the test run's summary prints as one line (``tests.support.ci_policy``).
"""
from __future__ import annotations

import functools

NOT_RUN: list[str] = []  # the Docker-only variants this session left out, as ``docker_variant`` named them


@functools.cache
def docker_unavailable() -> str | None:
    """Why no Docker engine answers, or None if one does. Asked once per session;
    without an engine it fails at once (no socket), so it is cheap."""
    try:
        import docker

        docker.from_env(timeout=2).ping()
    except Exception as exc:  # noqa: BLE001 - DockerException, connection errors, missing package
        return f"{type(exc).__name__}: {str(exc)[:120]}"
    return None


def docker_variant(what: str) -> bool:
    """True if the Docker-only variant ``what`` can run; else False, and ``what`` is noted as not run."""
    if docker_unavailable() is None:
        return True
    if what not in NOT_RUN:
        NOT_RUN.append(what)
    return False
