"""The local protocol between the hosting service and its inference units.

One stream connection (a Unix socket) per unit, carrying frames both ways:

    !II    header length, body length (big-endian uint32 each)
    header a small JSON object: {"id": int, "op": ...} / {"id": int, "ok": ...}
    body   raw bytes (the image, for a detect request; empty otherwise)

Requests are pipelined: the service writes as many as it likes without
waiting, and the unit answers each by ``id`` in whatever order they finish
(a batch finishes together), so many requests share one connection.

Operations: ``detect`` (body = image bytes; header ``min_confidence``,
``max_results``) answers ``labels``; ``ping`` answers the unit's facts
(pid, providers, batch cap, load counters), and is the health check.

Why a Unix socket and not HTTP on loopback: measured on the 2-core machine
with a 56 KB body and a small answer, a round trip costs 0.14 ms (p50) here
against 0.46 ms through an aiohttp client and server on 127.0.0.1, and the
unit needs no HTTP stack; it is a local child of the service, so nothing
else needs to speak to it.
"""
from __future__ import annotations

import asyncio
import json
import socket
import struct
import sys
from typing import Any

PREFIX = struct.Struct("!II")
CALIBRATION_FILE = "calibration.json"  # the unit's batch measurements, kept beside the model
MAX_HEADER = 1 << 20
MAX_BODY = 64 << 20  # an image is at most 15 MB; anything bigger is a broken stream


class ProtocolError(Exception):
    pass


def encode(header: dict[str, Any], body: bytes = b"") -> bytes:
    raw = json.dumps(header, separators=(",", ":")).encode()
    return PREFIX.pack(len(raw), len(body)) + raw + body


def _lengths(prefix: bytes) -> tuple[int, int]:
    header_length, body_length = PREFIX.unpack(prefix)
    if header_length > MAX_HEADER or body_length > MAX_BODY:
        raise ProtocolError(f"frame too large: header {header_length}, body {body_length} bytes")
    return header_length, body_length


# --- blocking side (the unit's threads) ---------------------------------------------
def _recv_exactly(sock: socket.socket, size: int) -> bytes | None:
    buffer = bytearray(size)
    view = memoryview(buffer)
    got = 0
    while got < size:
        n = sock.recv_into(view[got:])
        if n == 0:
            return None
        got += n
    return bytes(buffer)


def read_frame(sock: socket.socket) -> tuple[dict[str, Any], bytes] | None:
    """The next frame, or None when the peer closed the connection."""
    prefix = _recv_exactly(sock, PREFIX.size)
    if prefix is None:
        return None
    header_length, body_length = _lengths(prefix)
    header = _recv_exactly(sock, header_length)
    body = _recv_exactly(sock, body_length) if body_length else b""
    if header is None or body is None:
        return None
    return json.loads(header), body


# --- asyncio side (the service) ---------------------------------------------------
async def read_frame_async(reader: asyncio.StreamReader) -> tuple[dict[str, Any], bytes] | None:
    try:
        prefix = await reader.readexactly(PREFIX.size)
        header_length, body_length = _lengths(prefix)
        header = await reader.readexactly(header_length)
        body = await reader.readexactly(body_length) if body_length else b""
    except asyncio.IncompleteReadError:
        return None
    return json.loads(header), body


# --- addresses --------------------------------------------------------------------
def socket_address(name: str) -> str:
    """Where a unit listens, as a command-line word: ``@name``, an abstract Unix
    socket on Linux (no file to clean up, nothing left behind by a killed
    unit), else a path in the temp folder."""
    if sys.platform.startswith("linux"):
        return "@" + name
    import tempfile
    from pathlib import Path

    return str(Path(tempfile.gettempdir()) / f"{name}.sock")


def os_address(address: str) -> str:
    """The address as ``socket`` takes it (``@name`` -> ``\\0name``)."""
    return "\0" + address[1:] if address.startswith("@") else address
