"""The service's handle on one inference unit process.

``UnitProcess.start`` spawns ``python -m services.hosting.unit_server``, waits for
its ``READY`` line, connects to its socket and pings it (the health check);
only then does the unit take requests. ``detect`` pipelines a request over the
connection and waits for its answer by id. When the process exits or the
connection breaks, every request still waiting on it fails with ``UnitDied``
(the pool retries them on another unit) and ``on_exit`` is told, once.

``stop`` drains (waits for the requests in flight), closes the connection
(the unit exits when it sees that), then SIGTERM and finally SIGKILL by PID.
A unit also exits by itself when the service dies: its stdin is a pipe from
this process, and EOF on it ends the unit.
"""
from __future__ import annotations

import asyncio
import itertools
import json
import logging
import os
import signal
import sys
import time
import uuid
from pathlib import Path
from typing import Any
from collections.abc import Callable

from services.hosting import protocol

log = logging.getLogger("customlabels.hosting")

_ids = itertools.count(1)


class UnitDied(Exception):
    """The unit went away before answering; the request never got an answer."""


class UnitFailedToStart(Exception):
    pass


class UnitError(Exception):
    """The unit answered with an error: ``code`` is the API error's ``__type``."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class UnitProcess:
    def __init__(self, name: str, model_dir: Path, *, options: dict[str, Any] | None = None,
                 on_exit: Callable[[UnitProcess], None] | None = None) -> None:
        self.name = name
        self.model_dir = model_dir
        self.options = options or {}
        self.on_exit = on_exit
        self.process: asyncio.subprocess.Process | None = None
        self.facts: dict[str, Any] = {}
        self.pending: dict[int, asyncio.Future] = {}
        self.dead = False
        self.draining = False
        self.started_seconds: float | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._tasks: list[asyncio.Task] = []

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    @property
    def outstanding(self) -> int:
        return len(self.pending)

    @property
    def serving(self) -> bool:
        return not self.dead and not self.draining and self._writer is not None

    def __repr__(self) -> str:
        return f"<unit {self.name} pid={self.pid}{' dead' if self.dead else ''}>"

    # --- lifecycle ------------------------------------------------------------------
    async def start(self, timeout: float = 120.0) -> UnitProcess:
        started = time.perf_counter()
        address = protocol.socket_address(f"customlabels-unit-{os.getpid()}-{uuid.uuid4().hex[:12]}")
        command = [sys.executable, "-m", "services.hosting.unit_server", "--model", str(self.model_dir),
                   "--address", address, "--name", self.name]
        for option, value in self.options.items():
            if value:
                command += [f"--{option.replace('_', '-')}", str(value)]
        self.process = await asyncio.create_subprocess_exec(
            *command, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=None,
            start_new_session=True,  # a Ctrl-C in a terminal reaches the service, which stops units in order
        )
        try:
            line = await asyncio.wait_for(self.process.stdout.readline(), timeout)
            if not line.startswith(b"READY "):
                code = await asyncio.wait_for(self.process.wait(), 10)
                if line.startswith(b"FAILED "):
                    raise UnitFailedToStart(f"the model cannot be loaded: {json.loads(line[7:])['error']}")
                raise UnitFailedToStart(f"the inference unit exited with status {code} while loading the model "
                                        "(its log is in the service's log)")
            self.facts = json.loads(line[len(b"READY "):])
            reader, self._writer = await asyncio.open_unix_connection(protocol.os_address(address))
            self._tasks = [asyncio.create_task(self._read(reader), name=f"{self.name}-read"),
                           asyncio.create_task(self._watch(), name=f"{self.name}-watch")]
            await self.ping(timeout=min(timeout, 30))
        except BaseException as exc:
            await self.kill()
            if isinstance(exc, TimeoutError):
                raise UnitFailedToStart(f"the inference unit was not ready within {timeout:.0f} s") from None
            raise
        self.started_seconds = time.perf_counter() - started
        return self

    async def stop(self, grace: float = 10.0) -> None:
        """Drain, then end the process (close, SIGTERM, SIGKILL); returns once it is gone."""
        self.draining = True
        deadline = time.monotonic() + grace
        while self.pending and not self.dead and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        if self._writer is not None:
            self._writer.close()
        await self._end(timeout=5.0)

    async def kill(self) -> None:
        """SIGKILL by PID and wait for it (no draining)."""
        if self.process and self.process.returncode is None:
            try:
                self.process.kill()
            except ProcessLookupError:
                pass
        await self._end(timeout=5.0)

    async def _end(self, timeout: float) -> None:
        process = self.process
        if process is None:
            return
        if process.returncode is None:
            try:
                await asyncio.wait_for(process.wait(), timeout)
            except TimeoutError:
                try:
                    process.send_signal(signal.SIGTERM)
                    await asyncio.wait_for(process.wait(), timeout)
                except (TimeoutError, ProcessLookupError):
                    try:
                        process.kill()
                    except ProcessLookupError:
                        pass
                    await process.wait()
        if process.stdin and not process.stdin.is_closing():
            process.stdin.close()
        self._died("stopped")
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    # --- requests ---------------------------------------------------------------------
    async def detect(self, image: bytes, min_confidence: float | None, max_results: int | None,
                     capture: bool = False) -> dict[str, Any]:
        """The unit's answer (``labels``, ``batch`` ..., and ``capture`` when asked: every prediction,
        the thresholds, the model's task and labels); UnitError for a refused image, UnitDied."""
        header = {"op": "detect", "min_confidence": min_confidence, "max_results": max_results}
        if capture:
            header["capture"] = True
        return await self._call(header, image)

    async def ping(self, timeout: float = 10.0) -> dict[str, Any]:
        return await asyncio.wait_for(self._call({"op": "ping"}), timeout)

    async def _call(self, header: dict[str, Any], body: bytes = b"") -> dict[str, Any]:
        if self.dead or self._writer is None:
            raise UnitDied(f"{self.name} is not running")
        request_id = next(_ids)
        future = asyncio.get_running_loop().create_future()
        self.pending[request_id] = future
        try:
            self._writer.write(protocol.encode({"id": request_id, **header}, body))
            if self._writer.transport.get_write_buffer_size() > (4 << 20):
                await self._writer.drain()
            answer = await future
        finally:
            self.pending.pop(request_id, None)
        if not answer.get("ok"):
            raise UnitError(answer.get("code", "InternalServerError"), answer.get("message", "the unit failed"))
        return answer

    # --- background ---------------------------------------------------------------------
    async def _read(self, reader: asyncio.StreamReader) -> None:
        try:
            while True:
                frame = await protocol.read_frame_async(reader)
                if frame is None:
                    break
                header, _ = frame
                future = self.pending.get(header.get("id"))
                if future is not None and not future.done():
                    future.set_result(header)
        except (ConnectionError, protocol.ProtocolError, ValueError) as exc:
            log.warning("%s: connection broken: %s", self.name, exc)
        self._died("its connection closed")

    async def _watch(self) -> None:
        code = await self.process.wait()
        self._died(f"it exited with status {code}")

    def _died(self, reason: str) -> None:
        if self.dead:
            return
        self.dead = True
        lost = [f for f in self.pending.values() if not f.done()]
        for future in lost:
            future.set_exception(UnitDied(f"{self.name} (pid {self.pid}) went away: {reason}"))
        self.pending.clear()
        if not self.draining:
            log.warning("%s (pid %s) went away: %s; %d request(s) in flight will be retried",
                        self.name, self.pid, reason, len(lost))
        if self.on_exit:
            self.on_exit(self)
