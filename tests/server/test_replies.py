"""Bounded sends and answers held once: Output, send_json, send_within."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from eventkit.server.replies import Output, SendTimeoutError, send_json, send_within
from eventkit.stats import server_stats


def test_output_keeps_at_most_the_cap_in_utf8_bytes() -> None:
    """Past the cap nothing is kept; a character is never cut in two."""
    output = Output(7, ("stdout", "stderr"))
    output.add("stdout", "abc")
    output.add("stderr", "éé")  # 4 bytes: 7 in all
    output.add("stdout", "x")
    assert (7, True) == (output.size, output.truncated)
    assert ("abc", "éé") == (output.text("stdout"), output.text("stderr"))
    cut = Output(5, ("output",))
    cut.add("output", "aé€")  # 1 + 2 + 3 bytes: the euro sign does not fit
    assert "aé" == cut.text("output")


def test_pieces_are_json_string_insides() -> None:
    """Quotes, backslashes and control characters are escaped; text stays UTF-8."""
    output = Output(100, ("output",))
    output.add("output", 'a"b\\c\nd\x01é')
    inside = b"".join(output.pieces("output"))
    assert 'a"b\\c\nd\x01é' == json.loads(b'"' + inside + b'"')
    assert "é".encode() in inside  # not \u00e9


async def test_send_json_writes_one_object() -> None:
    """The fields and the streams make one JSON object, streamed."""
    output = Output(1 << 22, ("stdout", "stderr"))
    output.add("stdout", "x" * (3 << 20))  # past one slice
    output.add("stderr", "e")

    async def handler(request: web.Request) -> web.StreamResponse:
        return await send_json(request, {"exit_code": 0}, output, send_timeout=5)

    app = web.Application()
    app.router.add_get("/", handler)
    async with TestClient(TestServer(app)) as client:
        response = await client.get("/")
        answer = await response.json()
    assert {"exit_code": 0, "stdout": "x" * (3 << 20), "stderr": "e"} == answer


async def test_send_within_drops_a_client_that_does_not_read() -> None:
    """A send stuck past its time: the connection aborted, counted, SendTimeoutError."""
    before = server_stats().aborts.get("send_timeout", 0)
    outcome: list[Any] = []

    async def handler(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        await response.prepare(request)
        try:
            while True:
                await send_within(response.write(b"x" * 65536), request, 0.2)
        except SendTimeoutError as exc:
            outcome.append(exc)
        return response

    app = web.Application()
    app.router.add_get("/", handler)
    async with TestServer(app) as server:
        _, writer = await asyncio.open_connection(server.host, server.port)
        writer.write(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        for _ in range(200):
            if outcome:
                break
            await asyncio.sleep(0.05)
        writer.close()
    assert isinstance(outcome[0], ConnectionError)
    assert before + 1 == server_stats().aborts["send_timeout"]


@pytest.mark.parametrize("cap", [0, 1])
def test_tiny_caps(cap: int) -> None:
    """A cap of 0 keeps nothing; of 1, one ASCII byte."""
    output = Output(cap, ("output",))
    output.add("output", "ab")
    assert ("ab"[:cap], True) == (output.text("output"), output.truncated)
