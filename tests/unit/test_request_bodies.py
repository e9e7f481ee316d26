"""Request bodies are read whole, however the bytes arrive, and never past their limit.

Over real HTTP: a socket client writes the headers and then the body in pieces with
pauses between them, as a busy machine or a slow network delivers it. The console's
"try a photo" once read ``request.content.read(n)``, which returns what has arrived
so far: under load the model got half a JPEG (InvalidImageFormatException).
"""
from __future__ import annotations

import asyncio
import hashlib
import re
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from customlabels.wire.http import read_within

REPO = Path(__file__).resolve().parents[2]
LIMIT = 100_000


@pytest.fixture
async def server():
    async def echo(request: web.Request) -> web.Response:
        body = await read_within(request, LIMIT)
        if body is None:
            return web.Response(status=413, text="too large")
        return web.Response(text=f"{len(body)} {hashlib.sha256(body).hexdigest()}")

    app = web.Application()
    app.router.add_post("/", echo)
    async with TestServer(app, host="127.0.0.1") as test_server:
        yield test_server


async def _send(server: TestServer, head: bytes, pieces: list[bytes], pause: float = 0.05) -> tuple[int, str]:
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        writer.write(head)
        for piece in pieces:
            await writer.drain()
            await asyncio.sleep(pause)
            writer.write(piece)
        await writer.drain()
        answer = await reader.read()
    finally:
        writer.close()
    status = int(answer.split(b" ", 2)[1])
    return status, answer.split(b"\r\n\r\n", 1)[1].decode()


def _head(length: int | None) -> bytes:
    framing = f"Content-Length: {length}" if length is not None else "Transfer-Encoding: chunked"
    return f"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\n{framing}\r\nConnection: close\r\n\r\n".encode()


def _chunked(body: bytes) -> bytes:
    return f"{len(body):x}\r\n".encode() + body + b"\r\n"


async def test_a_body_that_arrives_in_pieces_is_read_whole(server):
    body = bytes(range(256)) * 300  # 76,800 bytes
    pieces = [body[:1000], body[1000:40_000], body[40_000:]]
    status, text = await _send(server, _head(len(body)), pieces)
    assert (status, text) == (200, f"{len(body)} {hashlib.sha256(body).hexdigest()}")


async def test_a_chunked_body_that_arrives_in_pieces_is_read_whole(server):
    body = b"x" * 5000 + b"y" * 5000
    status, text = await _send(server, _head(None), [_chunked(body[:5000]), _chunked(body[5000:]), b"0\r\n\r\n"])
    assert (status, text) == (200, f"{len(body)} {hashlib.sha256(body).hexdigest()}")


async def test_a_declared_length_over_the_limit_is_refused(server):
    status, text = await _send(server, _head(LIMIT + 1), [b"z" * (LIMIT + 1)])
    assert (status, text) == (413, "too large")


async def test_a_chunked_body_over_the_limit_is_refused_once_it_passes_it(server):
    pieces = [_chunked(b"z" * 60_000), _chunked(b"z" * 60_000), b"0\r\n\r\n"]
    status, text = await _send(server, _head(None), pieces)
    assert (status, text) == (413, "too large")


def test_no_handler_reads_a_body_with_a_size_that_may_come_back_short():
    """``StreamReader.read(n)`` returns what has arrived; bodies are read with ``read_within``."""
    short_reads = [f"{path.relative_to(REPO)}:{n}"
                   for root in ("services", "shared")
                   for path in (REPO / root).rglob("*.py")
                   for n, line in enumerate(path.read_text().splitlines(), 1)
                   if re.search(r"\.content\.read\(", line)]
    assert short_reads == []
