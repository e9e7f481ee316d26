"""Child processes of the test suite (servers, brokers): stopped by PID, their logs read back.

Every server a test starts is a child process logging to a file; this is how
each one is stopped and how its log is shown when something fails.
"""
from __future__ import annotations

import signal
import subprocess
from pathlib import Path


def stop(process: subprocess.Popen | None, timeout: float) -> None:
    """SIGTERM, then SIGKILL if ``process`` has not exited within ``timeout`` seconds; reaped either way."""
    if process is None or process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def log_tail(path: Path, lines: int) -> str:
    """The last ``lines`` lines of the log at ``path`` (which may not exist yet)."""
    try:
        return "\n".join(Path(path).read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return f"(no log at {path})"


class ChildServer:
    """A server run as a child process, to use as ``with Server(...) as server:``.

    The subclass has ``process`` (the Popen, None when stopped), ``log_path``
    and ``start()``; this gives it ``stop()``, ``log_tail()`` and the context
    manager.
    """

    process: subprocess.Popen | None
    log_path: Path
    STOP_SECONDS = 15.0  # SIGTERM, then SIGKILL after this long

    def start(self):
        raise NotImplementedError

    def stop(self) -> None:
        process, self.process = self.process, None
        stop(process, self.STOP_SECONDS)

    def log_tail(self, lines: int = 40) -> str:
        return log_tail(self.log_path, lines)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
