"""Tests for :mod:`eventkit.server.resume`: rings, readers, expiry (virtual time)."""

from __future__ import annotations

import asyncio

import pytest

from eventkit.server.resume import Execution, Executions
from tests.virtual_time import virtual


async def drain(execution: Execution, after: int = -1) -> list[bytes]:
    """Attach a reader after ``after``; return every frame until the end."""
    reader = execution.attach(after)
    frames = []
    while (frame := await reader.next()) is not None:
        frames.append(frame)
        reader.sent()
    return frames


def frames(count: int, size: int = 10) -> list[bytes]:
    """Return ``count`` distinct frames of ``size`` bytes."""
    return [str(n).rjust(size, "-").encode() for n in range(count)]


def writer(out: list[bytes], *, then: asyncio.Event | None = None):  # type: ignore[no-untyped-def]
    """Return a run writing ``out`` (after ``then`` is set, if given), then ending."""

    async def run(execution: Execution) -> None:
        if then is not None:
            await then.wait()
        for frame in out:
            await execution.append(frame)
        execution.end(1000)

    return run


@virtual
async def test_a_reader_gets_every_frame_even_past_the_ring() -> None:
    """A small ring with a reader attached loses nothing: the run waits for it."""
    executions = Executions(buffer_bytes=25)
    out = frames(50)
    execution = executions.start("owner", writer(out))
    assert out == await drain(execution)
    assert 1000 == execution.close_code
    await executions.close()


@virtual
async def test_detached_run_goes_on_and_a_resume_reports_the_gap() -> None:
    """Nobody attached: the ring keeps the newest frames; resume says what is gone."""
    executions = Executions(buffer_bytes=30)
    out = frames(10)
    execution = executions.start("owner", writer(out))
    await asyncio.sleep(0.1)
    assert execution.ended
    reader = execution.attach(2)
    assert 7 == reader.gap
    rest = []
    while (frame := await reader.next()) is not None:
        rest.append(frame)
        reader.sent()
    assert out[7:] == rest
    await executions.close()


@virtual
async def test_resume_after_a_frame_gets_the_ones_after_it() -> None:
    """after=N: frames N+1 on, no gap while the ring still holds them."""
    executions = Executions()
    out = frames(5)
    execution = executions.start("owner", writer(out))
    await asyncio.sleep(0)
    reader = execution.attach(-1)
    for _ in range(3):
        assert await reader.next() is not None
        reader.sent()
    execution.detach(reader)
    assert out[3:] == await drain(execution, after=2)
    await executions.close()


@virtual
async def test_frames_sent_are_kept_for_a_resume() -> None:
    """What a lost connection had sent may be lost in flight: the ring keeps it."""
    executions = Executions(buffer_bytes=1000)
    out = frames(4)
    execution = executions.start("owner", writer(out))
    assert out == await drain(execution)
    assert out[1:] == await drain(execution, after=0)
    await executions.close()


@virtual
async def test_a_second_reader_displaces_the_first() -> None:
    """A resume while the old connection still seems attached takes over."""
    executions = Executions()
    go = asyncio.Event()
    execution = executions.start("owner", writer(frames(2), then=go))
    old = execution.attach(-1)
    waiting = asyncio.create_task(old.next())
    await asyncio.sleep(0)
    new = execution.attach(-1)
    assert await waiting is None
    assert old.displaced
    go.set()
    assert await new.next() is not None
    await executions.close()


@virtual
async def test_detached_run_is_cancelled_after_the_window() -> None:
    """No resume within the window: the run stops and the execution is forgotten."""
    executions = Executions(window=5.0)
    stopped = asyncio.Event()

    async def forever(execution: Execution) -> None:
        try:
            await asyncio.sleep(3600)
        finally:
            stopped.set()

    execution = executions.start("owner", forever)
    reader = execution.attach(-1)
    execution.detach(reader)
    await asyncio.sleep(4.9)
    assert not stopped.is_set()
    assert execution is executions.get(execution.id, "owner")
    await asyncio.sleep(0.2)
    assert stopped.is_set()
    assert executions.get(execution.id, "owner") is None
    await executions.close()


@virtual
async def test_an_attached_reader_keeps_the_run_past_the_window() -> None:
    """The window only counts while no connection is attached."""
    executions = Executions(window=5.0)
    execution = executions.start("owner", lambda _: asyncio.sleep(10))
    reader = execution.attach(-1)
    await asyncio.sleep(11)
    assert execution.ended
    assert 1011 == execution.close_code  # returned without end()
    assert await reader.next() is None
    await executions.close()


@virtual
async def test_ended_execution_is_kept_for_the_window_then_forgotten() -> None:
    """A finished run can be resumed for the window; after it, never."""
    executions = Executions(window=5.0)
    execution = executions.start("owner", writer(frames(1)))
    await asyncio.sleep(4)
    assert execution is executions.get(execution.id, "owner")
    await asyncio.sleep(2)
    assert executions.get(execution.id, "owner") is None
    assert 0 == executions.total
    await executions.close()


@virtual
async def test_ended_execution_being_read_is_not_forgotten() -> None:
    """A slow client still reading past the window keeps the frames."""
    executions = Executions(window=1.0)
    out = frames(3)
    execution = executions.start("owner", writer(out))
    reader = execution.attach(-1)
    await asyncio.sleep(3)
    got = []
    while (frame := await reader.next()) is not None:
        got.append(frame)
        reader.sent()
    assert out == got
    await executions.close()


@virtual
async def test_only_the_owner_resumes() -> None:
    """Another sandbox's token, or a wrong id type, finds nothing."""
    executions = Executions()
    execution = executions.start("owner", writer([]))
    assert executions.get(execution.id, "someone else") is None
    assert executions.get(42, "owner") is None
    await executions.close()


@virtual
async def test_total_evicts_ended_executions_first() -> None:
    """Past the total, an ended execution goes before any frame of a live one."""
    executions = Executions(buffer_bytes=100, total_bytes=100)
    old = executions.start("owner", writer(frames(6)))
    await asyncio.sleep(0)
    assert old.ended
    assert 60 == executions.total
    go = asyncio.Event()
    live = executions.start("owner", writer(frames(6), then=go))
    go.set()
    await asyncio.sleep(0)
    assert executions.get(old.id, "owner") is None
    assert 60 == executions.total
    assert 0 == live.first
    await executions.close()


@virtual
async def test_clean_close_cancels_and_forgets() -> None:
    """cancel() stops the run at once and the id is gone."""
    executions = Executions()
    execution = executions.start("owner", lambda _: asyncio.sleep(3600))
    await asyncio.sleep(0)
    execution.cancel()
    await asyncio.sleep(0)
    assert executions.get(execution.id, "owner") is None
    assert 0 == len(executions)
    await executions.close()


@virtual
async def test_a_failing_run_ends_with_1011() -> None:
    """A run that raises ends its execution with an internal error close."""

    async def failing(execution: Execution) -> None:
        await execution.append(b"x")
        raise RuntimeError("boom")

    executions = Executions()
    execution = executions.start("owner", failing)
    assert [b"x"] == await drain(execution)
    assert 1011 == execution.close_code
    await executions.close()


@virtual
async def test_close_cancels_every_run_and_refuses_new_ones() -> None:
    """At shutdown the runs stop; nothing new starts."""
    executions = Executions()
    execution = executions.start("owner", lambda _: asyncio.sleep(3600))
    await executions.close()
    assert execution.ended
    assert 1001 == execution.close_code
    with pytest.raises(RuntimeError, match="closing"):
        executions.start("owner", writer([]))


@pytest.mark.parametrize(
    "options",
    [
        {"buffer_bytes": 0},
        {"window": 0.0},
        {"total_bytes": -1},
        {"window": float("nan")},
    ],
)
def test_invalid_settings(options: dict[str, float]) -> None:
    """Sizes and the window must be positive."""
    with pytest.raises(ValueError, match="must be positive"):
        Executions(**options)  # type: ignore[arg-type]
