"""Tests for :mod:`eventkit.sources.aicomputer_api` against a scripted service."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import pytest

from eventkit.exceptions import HTTPError, SandboxError, StreamClosedError
from eventkit.sources import aicomputer_api
from eventkit.sources.aicomputer_api import aicomputer
from tests.sources.test_http import BODY, EXPECTED, base, kinds, read, service

if TYPE_CHECKING:
    from aiohttp import web

    from tests.sources.test_http import Service

# Fixtures of the HTTP source tests, used here by name.
__all__ = ["base", "service"]


@pytest.fixture(autouse=True)
def fast_polling(monkeypatch: pytest.MonkeyPatch) -> None:
    """Poll sandbox statuses without waiting a second."""
    monkeypatch.setattr(aicomputer_api, "_POLL_INTERVAL", 0.0)


async def test_aicomputer_full_flow(service: Service, base: str) -> None:
    """Token, create, status, execute and delete are called as 0.3.4 calls them."""
    events = await read(aicomputer(base, "print(1)", env={"A": "1"}, run="run-1"))
    assert kinds(events) == EXPECTED
    assert [e.sequence for e in events] == [0, 1, 2, 3, 4]
    assert {e.run for e in events} == {"run-1"}
    assert events[0]["sandbox_id"] == "sbx-1"
    assert service.paths() == [
        "POST /dev/token",
        "POST /api/v1/sandbox/create",
        "GET /api/v1/sandbox/sbx-1/status",
        "POST /api/v1/sandbox/sbx-1/execute/stream",
        "DELETE /api/v1/sandbox/sbx-1",
    ]
    token, *rest = service.calls
    assert token.authorization is None
    assert {call.authorization for call in rest} == {"Bearer dev-token"}
    assert service.calls[3].body == {
        "code": "print(1)",
        "timeout": 30,
        "environment": {"A": "1"},
    }


async def test_aicomputer_with_token(service: Service, base: str) -> None:
    """A given token skips /dev/token; without env the body has no environment."""
    events = await read(aicomputer(base, "x = 1", token="tok", timeout=7))
    assert kinds(events) == EXPECTED
    assert service.paths()[0] == "POST /api/v1/sandbox/create"
    assert {call.authorization for call in service.calls} == {"Bearer tok"}
    assert service.calls[2].body == {"code": "x = 1", "timeout": 7}


async def test_aicomputer_iterates_again(service: Service, base: str) -> None:
    """Each iteration makes a new sandbox and a fresh run id."""
    stream = aicomputer(base, "1", token="t")
    first, second = await read(stream), await read(stream)
    assert kinds(first) == kinds(second) == EXPECTED
    assert first[0].run != second[0].run
    assert service.paths().count("DELETE /api/v1/sandbox/sbx-1") == 2


async def test_aicomputer_deletes_when_consumer_breaks(
    service: Service, base: str
) -> None:
    """Breaking out after the first output still deletes the sandbox."""

    async def script(response: web.StreamResponse) -> None:
        await response.write(BODY[0])
        await service.hold()
        await response.write(BODY[3])

    service.script = script
    seen = []
    async with aicomputer(base, "1", token="t").stream() as streamer:
        async for event in streamer:
            seen.append(event.type)
            if event.type == "stdout":
                break
    assert seen == ["started", "stdout"]
    assert service.paths()[-1] == "DELETE /api/v1/sandbox/sbx-1"


async def test_aicomputer_deletes_when_cancelled(service: Service, base: str) -> None:
    """Cancelling the consuming task still deletes the sandbox."""

    async def script(response: web.StreamResponse) -> None:
        await response.write(BODY[0])
        await service.hold()

    service.script = script
    task = asyncio.ensure_future(read(aicomputer(base, "1", token="t")))
    await service.holding.wait()
    await asyncio.sleep(0.01)  # let the client take the first line
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert service.paths()[-1] == "DELETE /api/v1/sandbox/sbx-1"


async def test_aicomputer_polls_until_ready(service: Service, base: str) -> None:
    """Statuses not ready yet (or failing) are polled again; RUNNING counts as ready."""
    service.statuses = [
        (200, {"status": "creating"}),
        (503, {"detail": "busy"}),
        (200, b"<html>not json</html>"),
        (200, {"state": "ready"}),
        (200, {"status": "RUNNING"}),
    ]
    events = await read(aicomputer(base, "1", token="t"))
    assert kinds(events) == EXPECTED
    assert service.paths().count("GET /api/v1/sandbox/sbx-1/status") == 5


async def test_aicomputer_status_error_fails_at_once(
    service: Service, base: str
) -> None:
    """An ``error`` status fails at once, with the service's message; delete runs."""
    service.statuses = [(200, {"status": "Error", "error": "no capacity"})]
    with pytest.raises(SandboxError, match="no capacity") as info:
        await read(aicomputer(base, "1", token="t"))
    assert (info.value.sandbox_id, info.value.status) == ("sbx-1", "Error")
    assert service.paths()[1:] == [
        "GET /api/v1/sandbox/sbx-1/status",
        "DELETE /api/v1/sandbox/sbx-1",
    ]


async def test_aicomputer_never_ready(service: Service, base: str) -> None:
    """A sandbox not ready after 10 polls fails; delete runs."""
    service.statuses = [(200, {"status": "pending"})]
    with pytest.raises(SandboxError, match="not ready after 10") as info:
        await read(aicomputer(base, "1", token="t"))
    assert info.value.status == "pending"
    assert service.paths().count("GET /api/v1/sandbox/sbx-1/status") == 10
    assert service.paths()[-1] == "DELETE /api/v1/sandbox/sbx-1"


async def test_aicomputer_token_refused(service: Service, base: str) -> None:
    """A /dev/token answer other than 200 raises HTTPError; nothing else is called."""
    service.token = (403, {"detail": "no dev tokens here"})
    with pytest.raises(HTTPError) as info:
        await read(aicomputer(base, "1"))
    assert info.value.status == 403
    assert "no dev tokens here" in info.value.body
    assert info.value.method == "POST"
    assert service.paths() == ["POST /dev/token"]


@pytest.mark.parametrize(
    "answer", [{"token": "x"}, {"access_token": 5}, ["access_token"]]
)
async def test_aicomputer_token_without_access_token(
    service: Service, base: str, answer: Any
) -> None:
    """A 200 /dev/token answer without an access token raises SandboxError."""
    service.token = (200, answer)
    with pytest.raises(SandboxError):
        await read(aicomputer(base, "1"))


async def test_aicomputer_create_refused(service: Service, base: str) -> None:
    """A failed create raises HTTPError; there is no sandbox to delete."""
    service.create = (500, {"detail": "down"})
    with pytest.raises(HTTPError) as info:
        await read(aicomputer(base, "1", token="t"))
    assert info.value.status == 500
    assert service.paths() == ["POST /api/v1/sandbox/create"]


async def test_aicomputer_create_answer_not_json(service: Service, base: str) -> None:
    """A create answer that is not JSON raises SandboxError."""
    service.create = (200, b"<html>sandbox_id</html>")
    with pytest.raises(SandboxError, match="not JSON"):
        await read(aicomputer(base, "1", token="t"))


async def test_aicomputer_answer_too_large(
    service: Service, base: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An answer over the size limit raises SandboxError instead of being read."""
    monkeypatch.setattr(aicomputer_api, "_ANSWER_LIMIT", 10)
    with pytest.raises(SandboxError, match="over 10 bytes"):
        await read(aicomputer(base, "1", token="t"))


async def test_aicomputer_create_without_id(service: Service, base: str) -> None:
    """A create answer without a sandbox id raises SandboxError."""
    service.create = (200, {"id": "sbx-1"})
    with pytest.raises(SandboxError, match="sandbox_id"):
        await read(aicomputer(base, "1", token="t"))


async def test_aicomputer_execute_refused(service: Service, base: str) -> None:
    """A failed execute call raises HTTPError: its status, the first KiB of body."""
    service.execute_error = (429, "slow down " + "x" * 5000)
    service.delete_status = 500  # a failed delete hides nothing
    with pytest.raises(HTTPError) as info:
        await read(aicomputer(base, "1", token="t"))
    assert info.value.status == 429
    assert info.value.body == ("slow down " + "x" * 5000)[:1024]
    assert "/execute/stream" in info.value.url
    assert service.paths()[-1] == "DELETE /api/v1/sandbox/sbx-1"


async def test_aicomputer_delete_failure_is_ignored(
    service: Service, base: str
) -> None:
    """A failing delete does not spoil a run that went well."""
    service.delete_status = 500
    assert kinds(await read(aicomputer(base, "1", token="t"))) == EXPECTED


async def test_aicomputer_body_without_completed(service: Service, base: str) -> None:
    """A body that ends before ``completed`` raises StreamClosedError; delete runs."""
    service.chunks = BODY[:2]
    with pytest.raises(StreamClosedError, match="before completed") as info:
        await read(aicomputer(base, "1", token="t"))
    assert info.value.code is None
    assert service.paths()[-1] == "DELETE /api/v1/sandbox/sbx-1"


async def test_aicomputer_body_without_completed_as_events(
    service: Service, base: str
) -> None:
    """With ``on_close="event"`` an early end gives an error and a failed completed."""
    service.chunks = BODY[:2]
    events = await read(aicomputer(base, "1", token="t", on_close="event"))
    assert kinds(events) == [
        *EXPECTED[:3],
        (
            "error",
            "stream closed before the run completed: body ended before completed",
        ),
        ("completed", ""),
    ]
    assert events[-2]["code"] == "closed_before_complete"
    assert events[-1]["success"] is False
    assert [e.sequence for e in events] == [0, 1, 2, 3, 4]


async def test_aicomputer_stops_reading_at_completed(
    service: Service, base: str
) -> None:
    """After ``completed`` the body is not read on, even if the server holds it open."""

    async def script(response: web.StreamResponse) -> None:
        await response.write(b"".join(BODY) + b'{"type": "stdout", "data": "late"}\n')
        await service.hold()

    service.script = script
    events = await asyncio.wait_for(read(aicomputer(base, "1", token="t")), 5)
    assert kinds(events) == EXPECTED


# Arguments


@pytest.mark.parametrize("kwargs", [{"on_close": "quiet"}, {"timeout": 0}])
def test_aicomputer_arguments(kwargs: dict[str, Any]) -> None:
    """Invalid arguments raise ValueError when the source is made."""
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        aicomputer("http://127.0.0.1:1", "1", **kwargs)
