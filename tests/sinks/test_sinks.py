"""Tests for :mod:`eventkit.sinks`: collect, call, jsonl and console."""

from __future__ import annotations

import io
from typing import TYPE_CHECKING

import pytest

import eventkit
from eventkit import sinks, sources
from eventkit.protocol import jsonl as codec
from tests.factories import ev
from tests.scripted import collect

if TYPE_CHECKING:
    from pathlib import Path

    from eventkit.events import Event
    from eventkit.streams import EventStream


EVENTS = [
    ev("started"),
    ev("stdout", "hello\n", 1),
    ev("stderr", "warn: é€😀\n", 2),
    ev("stdout", "no newline", 3),
    ev("result", "", 4, exit_code=0, execution_time=0.25, tags=["a", None]),
    ev("completed", "", 5, success=True),
]


async def read(stream: EventStream) -> list[Event]:
    """Return every event of ``stream``."""
    async with stream.stream() as streamer:
        events = [event async for event in streamer]
    return events


# --- collect ------------------------------------------------------------------


async def test_collect_keeps_events_in_order() -> None:
    """The collect sink keeps every event, in order."""
    sink = sinks.collect()
    await eventkit.run(sources.iterate(EVENTS), sink=sink)
    assert sink.events == EVENTS


async def test_collect_starts_empty() -> None:
    """A fresh collect sink holds nothing; an empty stream adds nothing."""
    sink = sinks.collect()
    assert sink.events == []
    await eventkit.run(sources.iterate([]), sink=sink)
    assert sink.events == []


# --- call ---------------------------------------------------------------------


async def test_call_with_a_sync_function() -> None:
    """A plain function is called once per event, in order."""
    seen: list[Event] = []
    await eventkit.run(sources.iterate(EVENTS), sink=sinks.call(seen.append))
    assert seen == EVENTS


async def test_call_with_an_async_function() -> None:
    """A coroutine function's result is awaited for each event."""
    seen: list[Event] = []

    async def record(event: Event) -> None:
        seen.append(event)

    await eventkit.run(sources.iterate(EVENTS), sink=sinks.call(record))
    assert seen == EVENTS


async def test_call_awaits_awaitables_from_sync_functions() -> None:
    """A plain function returning an awaitable has it awaited."""
    seen: list[Event] = []

    async def record(event: Event) -> None:
        seen.append(event)

    await eventkit.run(
        sources.iterate(EVENTS), sink=sinks.call(lambda event: record(event))
    )
    assert seen == EVENTS


async def test_call_failure_stops_the_run() -> None:
    """What the function raises stops the run as SinkError, with the undelivered."""

    def refuse_stderr(event: Event) -> None:
        if event.type == "stderr":
            raise RuntimeError("no stderr here")

    with pytest.raises(eventkit.SinkError) as info:
        await eventkit.run(sources.iterate(EVENTS), sink=sinks.call(refuse_stderr))
    assert isinstance(info.value.__cause__, RuntimeError)
    assert EVENTS[2:] == info.value.undelivered


# --- jsonl --------------------------------------------------------------------


async def test_jsonl_to_a_path(tmp_path: Path) -> None:
    """Events written to a path read back the same with the jsonl source."""
    path = tmp_path / "run.jsonl"
    await eventkit.run(sources.iterate(EVENTS), sink=sinks.jsonl(path))
    assert await read(sources.jsonl(path)) == EVENTS
    assert [codec.encode(event) for event in EVENTS] == path.read_bytes().splitlines(
        keepends=True
    )


async def test_jsonl_to_a_str_path_truncates(tmp_path: Path) -> None:
    """A path given as str is opened for writing and truncated."""
    path = tmp_path / "run.jsonl"
    path.write_text("old content that is not JSON\n" * 100)
    await eventkit.run(sources.iterate(EVENTS[:2]), sink=sinks.jsonl(str(path)))
    assert EVENTS[:2] == await read(sources.jsonl(path))


async def test_jsonl_to_an_open_text_file(tmp_path: Path) -> None:
    """Events written to an open text file read back the same; it stays open."""
    path = tmp_path / "run.jsonl"
    with path.open("w", encoding="utf-8") as file:
        await eventkit.run(sources.iterate(EVENTS), sink=sinks.jsonl(file))
        assert not file.closed
        file.write("")  # still writable
    assert await read(sources.jsonl(path)) == EVENTS


async def test_jsonl_to_an_open_binary_file(tmp_path: Path) -> None:
    """Events written to an open binary file read back the same; it stays open."""
    path = tmp_path / "run.jsonl"
    with path.open("wb") as file:
        await eventkit.run(sources.iterate(EVENTS), sink=sinks.jsonl(file))
        assert not file.closed
    assert await read(sources.jsonl(path)) == EVENTS


async def test_jsonl_to_in_memory_files() -> None:
    """StringIO and BytesIO targets get the same lines."""
    text, binary = io.StringIO(), io.BytesIO()
    await eventkit.run(sources.iterate(EVENTS), sink=sinks.jsonl(text))
    await eventkit.run(sources.iterate(EVENTS), sink=sinks.jsonl(binary))
    assert binary.getvalue() == text.getvalue().encode()
    assert await read(sources.jsonl(io.BytesIO(binary.getvalue()))) == EVENTS


class FlushRecorder(io.BytesIO):
    """A binary file that records how many lines it held at each flush."""

    def __init__(self) -> None:
        super().__init__()
        self.flushes: list[int] = []

    def flush(self) -> None:
        """Record the number of complete lines written so far."""
        self.flushes.append(self.getvalue().count(b"\n"))
        super().flush()


async def test_jsonl_flushes_at_completed_and_at_the_end() -> None:
    """The file is flushed after each run's completed event, then on close."""
    file = FlushRecorder()
    sink = sinks.jsonl(file)
    await sink.open()
    for event in [
        ev("started"),
        ev("stdout", "a", 1),
        ev("completed", "", 2),
        ev("started"),
        ev("stdout", "b", 1),
    ]:
        await sink.send(event)
    assert file.flushes == [3]
    await sink.close()
    assert file.flushes == [3, 5]
    assert not file.closed


async def test_jsonl_completed_run_is_on_disk(tmp_path: Path) -> None:
    """Once a run's completed event is sent, its lines are in the file on disk."""
    path = tmp_path / "run.jsonl"
    async with sinks.jsonl(path) as sink:
        for event in EVENTS:
            await sink.send(event)
        # Read through another handle while the sink still holds the file open.
        assert await read(sources.jsonl(path)) == EVENTS


async def test_jsonl_send_before_open_raises() -> None:
    """Sending to a jsonl sink that is not open is an error."""
    with pytest.raises(RuntimeError, match="not open"):
        await sinks.jsonl(io.BytesIO()).send(ev("started"))


# --- console ------------------------------------------------------------------


@pytest.fixture(autouse=True)
def plain_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep rich from forcing colour or a terminal on the StringIO streams."""
    for name in ("FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE", "COLUMNS"):
        monkeypatch.delenv(name, raising=False)


async def show(events: list[Event], *, show_progress: bool = True) -> tuple[str, str]:
    """Run ``events`` into a console sink; return what it wrote to stdout, stderr."""
    out, err = io.StringIO(), io.StringIO()
    sink = sinks.console(out, err, show_progress=show_progress)
    await eventkit.run(sources.iterate(events), sink=sink)
    return out.getvalue(), err.getvalue()


async def test_console_stdout_is_written_as_is() -> None:
    """stdout data reaches stdout unchanged, markup and emoji codes literal."""
    data = [
        "[bold]x[/bold]\n",
        "[red]unclosed\n",
        ":smile: \\[escaped]\n",
        "   spaces kept   \n",
        "é€😀 " * 40 + "\n",
        "no newline",
    ]
    out, err = await show([ev("stdout", d, i) for i, d in enumerate(data)])
    assert "".join(data) == out
    assert err == ""


async def test_console_stderr_goes_to_stderr() -> None:
    """stderr data reaches stderr unchanged and uncoloured when not a terminal."""
    out, err = await show([ev("stderr", "[bold]oops[/bold]\n"), ev("stderr", "x\n", 1)])
    assert out == ""
    assert err == "[bold]oops[/bold]\nx\n"


async def test_console_empty_output_writes_nothing() -> None:
    """Output events without data write nothing."""
    assert await show([ev(), ev("stderr", "", 1)]) == ("", "")


async def test_console_lifecycle_events_are_marked_lines_on_stderr() -> None:
    """Each lifecycle event is one marked line on stderr with its details."""
    out, err = await show(
        [
            ev("started"),
            ev("stdout", "hi\n", 1),
            ev("result", "", 2, exit_code=0),
            ev("error", "ZeroDivisionError: division by zero\n", 3),
            ev("resource_limit", "", 4, limit="memory"),
            ev("completed", "", 5, success=False),
        ]
    )
    assert out == "hi\n"
    expected = [
        "▶ started",
        "● result exit_code=0",
        "✗ error ZeroDivisionError: division by zero",
        "⚠ resource_limit limit='memory'",
        "■ completed success=False",
    ]
    assert expected == err.splitlines()
    assert err.endswith("\n")
    assert "\x1b" not in err


async def test_console_unknown_types_are_marked_too() -> None:
    """An event type outside the vocabulary is one line on stderr."""
    out, err = await show([ev("custom", "note", key=1)])
    assert out == ""
    assert err.splitlines() == ["· custom note key=1"]


async def test_console_mark_after_unfinished_line_starts_a_new_line() -> None:
    """A mark after output without a final newline starts on a line of its own."""
    out, err = await show([ev("stdout", "partial"), ev("completed", "", 1)])
    assert out == "partial"
    assert err == "\n■ completed\n"


PROGRESS = ev("progress", percent=50.0, current=5, total=10, eta=2.0, events=7)


async def test_console_shows_progress() -> None:
    """Progress events are shown on stderr by default."""
    out, err = await show([PROGRESS])
    assert out == ""
    assert err.splitlines() == ["↻ progress 50.0% (5/10) eta 2.0s 7 events"]


async def test_console_hides_progress() -> None:
    """``show_progress=False`` hides progress events and nothing else."""
    out, err = await show([PROGRESS, ev("completed", "", 1)], show_progress=False)
    assert out == ""
    assert err.splitlines() == ["■ completed"]


async def test_console_keeps_tabs() -> None:
    """Tabs in output reach the streams unchanged."""
    out, err = await show([ev("stdout", "a\tb\n"), ev("stderr", "c\td\n", 1)])
    assert (out, err) == ("a\tb\n", "c\td\n")


async def test_console_keeps_control_characters() -> None:
    """Carriage returns (progress bars), backspaces and bells reach stdout."""
    data = "10%\r50%\r100%\r\nbell\a back\b\n"
    out, _ = await show([ev("stdout", data)])
    assert data == out


async def test_jsonl_append_keeps_what_was_there(tmp_path: Path) -> None:
    """append=True adds to the file; a torn last line is ended first."""
    path = tmp_path / "out.jsonl"
    first = [ev("stdout", "a"), ev("completed", "", 1, success=True)]
    await eventkit.run(sources.iterate(first), sink=sinks.jsonl(path, append=True))
    # A worker killed mid-write leaves half a line behind.
    with path.open("ab") as file:
        file.write(b'{"type": "std')
    second = [ev("stdout", "b", run="s")]
    await eventkit.run(sources.iterate(second), sink=sinks.jsonl(path, append=True))
    invalid: list[eventkit.DecodeError] = []
    read = await collect(sources.jsonl(path, on_invalid=invalid.append))
    assert first + second == read
    assert [3] == [error.line for error in invalid]


async def test_jsonl_without_append_replaces(tmp_path: Path) -> None:
    """By default the file is replaced: a recording of this run only."""
    path = tmp_path / "out.jsonl"
    path.write_bytes(b"old\n")
    await eventkit.run(sources.iterate([ev("stdout", "a")]), sink=sinks.jsonl(path))
    assert [ev("stdout", "a")] == await collect(sources.jsonl(path))
