"""Whether a Docker engine can run containers here (testcontainers variants)."""
from __future__ import annotations

import functools


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
