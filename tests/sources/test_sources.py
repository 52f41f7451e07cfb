"""Tests for :mod:`eventkit.sources`: iterate and jsonl."""

from __future__ import annotations

import io
from typing import TYPE_CHECKING

import pytest

import eventkit
from eventkit import sources
from eventkit.events import Event
from eventkit.exceptions import DecodeError, LineTooLongError
from eventkit.protocol import jsonl as codec
from tests.factories import ev
from tests.scripted import collect

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator
    from pathlib import Path

    from eventkit.streams import EventStream

#: The jsonl source's read size (``eventkit.sources.jsonl._BLOCK``).
BLOCK = 1 << 18


EVENTS = [
    ev("started"),
    ev("stdout", "hello\n", 1),
    ev("stderr", "é€😀 \u2028 \r\n", 2),
    Event(type="result", timestamp=1003.0, sequence=3, run="r", attrs={"code": 0}),
    ev("completed", "", 4),
]


async def read(stream: EventStream) -> list[Event]:
    """Return every event of ``stream``."""
    async with stream.stream() as streamer:
        events = [event async for event in streamer]
    return events


async def read_into(stream: EventStream, seen: list[Event]) -> None:
    """Append every event of ``stream`` to ``seen`` as it comes."""
    async with stream.stream() as streamer:
        async for event in streamer:
            seen.append(event)


def lines(events: list[Event]) -> bytes:
    """Return ``events`` as JSON Lines."""
    return b"".join(codec.encode(event) for event in events)


# --- iterate ------------------------------------------------------------------


async def test_iterate_a_list() -> None:
    """A list's events come out in order."""
    assert await read(sources.iterate(EVENTS)) == EVENTS


async def test_iterate_a_list_is_reiterable() -> None:
    """Each iteration over a list source replays the list."""
    stream = sources.iterate(EVENTS)
    assert await read(stream) == EVENTS
    assert await read(stream) == EVENTS


async def test_iterate_a_generator_is_consumed_once() -> None:
    """A generator's events come out once; a second iteration finds none."""

    def generate() -> Iterator[Event]:
        yield from EVENTS

    stream = sources.iterate(generate())
    assert await read(stream) == EVENTS
    assert await read(stream) == []


async def test_iterate_an_async_generator() -> None:
    """An async generator's events come out in order, once."""

    async def generate() -> AsyncIterator[Event]:
        for event in EVENTS:
            yield event

    stream = sources.iterate(generate())
    assert await read(stream) == EVENTS
    assert await read(stream) == []


async def test_iterate_through_a_pipeline() -> None:
    """An iterate source feeds a pipeline run and its operators."""
    sink = eventkit.sinks.collect()
    await eventkit.run(
        sources.iterate(EVENTS), eventkit.pipe.only("stdout", "stderr"), sink=sink
    )
    assert EVENTS[1:3] == sink.events


# --- jsonl: reading -------------------------------------------------------------


async def test_jsonl_from_a_path(tmp_path: Path) -> None:
    """A path's events come out as recorded, given as Path or str."""
    path = tmp_path / "run.jsonl"
    path.write_bytes(lines(EVENTS))
    assert await read(sources.jsonl(path)) == EVENTS
    assert await read(sources.jsonl(str(path))) == EVENTS


async def test_jsonl_path_source_is_reiterable(tmp_path: Path) -> None:
    """Each iteration over a path source reads the file again."""
    path = tmp_path / "run.jsonl"
    path.write_bytes(lines(EVENTS))
    stream = sources.jsonl(path)
    assert await read(stream) == EVENTS
    assert await read(stream) == EVENTS


async def test_jsonl_from_an_open_binary_file(tmp_path: Path) -> None:
    """An open binary file's events come out; the file is left open."""
    path = tmp_path / "run.jsonl"
    path.write_bytes(lines(EVENTS))
    with path.open("rb") as file:
        assert await read(sources.jsonl(file)) == EVENTS
        assert not file.closed


async def test_jsonl_from_an_open_text_file(tmp_path: Path) -> None:
    """An open text file's events come out; the file is left open."""
    path = tmp_path / "run.jsonl"
    path.write_bytes(lines(EVENTS))
    with path.open(encoding="utf-8") as file:
        assert await read(sources.jsonl(file)) == EVENTS
        assert not file.closed


async def test_jsonl_from_in_memory_files() -> None:
    """BytesIO and StringIO sources read the same events."""
    data = lines(EVENTS)
    assert await read(sources.jsonl(io.BytesIO(data))) == EVENTS
    assert await read(sources.jsonl(io.StringIO(data.decode()))) == EVENTS


async def test_jsonl_empty_file() -> None:
    """An empty file has no events."""
    assert await read(sources.jsonl(io.BytesIO(b""))) == []


async def test_jsonl_skips_blank_lines() -> None:
    """Empty and whitespace-only lines are skipped."""
    first, second = (codec.encode(event) for event in EVENTS[:2])
    data = b"\n" + first + b"\n   \n\t\n" + second + b"\n\n"
    assert EVENTS[:2] == await read(sources.jsonl(io.BytesIO(data)))


async def test_jsonl_without_trailing_newline(tmp_path: Path) -> None:
    """A last line without its newline is read all the same."""
    path = tmp_path / "run.jsonl"
    path.write_bytes(lines(EVENTS).rstrip(b"\n"))
    assert await read(sources.jsonl(path)) == EVENTS


async def test_jsonl_crlf_line_ends() -> None:
    """Lines ending in CRLF are read, from binary and text files alike."""
    data = lines(EVENTS).replace(b"\n", b"\r\n")
    assert await read(sources.jsonl(io.BytesIO(data))) == EVENTS
    text = io.TextIOWrapper(io.BytesIO(data), encoding="utf-8")
    assert await read(sources.jsonl(text)) == EVENTS


# --- jsonl: invalid lines -------------------------------------------------------

BAD = b'{"type": "stdout", "da'


async def test_jsonl_bad_line_raises_with_its_number(tmp_path: Path) -> None:
    """A bad line 3 raises DecodeError for line 3 after lines 1 and 2 only."""
    path = tmp_path / "run.jsonl"
    path.write_bytes(lines(EVENTS[:2]) + BAD + b"\n" + lines(EVENTS[2:]))
    seen: list[Event] = []
    with pytest.raises(DecodeError) as info:
        await read_into(sources.jsonl(path), seen)
    assert info.value.line == 3
    assert "line 3: " in str(info.value)
    assert BAD.decode() == info.value.text
    assert EVENTS[:2] == seen


async def test_jsonl_line_numbers_count_blank_lines() -> None:
    """Line numbers in errors count blank lines too."""
    data = b"\n" + codec.encode(EVENTS[0]) + b"\n" + BAD + b"\n"
    with pytest.raises(DecodeError) as info:
        await read(sources.jsonl(io.BytesIO(data)))
    assert info.value.line == 4


async def test_jsonl_truncated_last_line_is_an_error() -> None:
    """A last line cut short raises DecodeError; no partial event comes out."""
    data = lines(EVENTS)
    cut = data[: len(data) - 10]
    seen: list[Event] = []
    with pytest.raises(DecodeError) as info:
        await read_into(sources.jsonl(io.BytesIO(cut)), seen)
    assert len(EVENTS) == info.value.line
    assert EVENTS[:-1] == seen


async def test_jsonl_on_invalid_reports_and_goes_on() -> None:
    """With ``on_invalid``, each bad line is reported and the rest read."""
    data = (
        lines(EVENTS[:2])
        + BAD
        + b"\n"
        + lines(EVENTS[2:4])
        + b"[1, 2]\n"
        + b'{"type": 5}\n'
        + lines(EVENTS[4:])
    )
    errors: list[DecodeError] = []
    events = await read(sources.jsonl(io.BytesIO(data), on_invalid=errors.append))
    assert events == EVENTS
    assert [error.line for error in errors] == [3, 6, 7]
    assert all(isinstance(error, DecodeError) for error in errors)
    assert BAD.decode() == errors[0].text


async def test_jsonl_errors_stop_a_pipeline_run() -> None:
    """Without ``on_invalid``, a bad line ends ``eventkit.run`` with DecodeError."""
    sink = eventkit.sinks.collect()
    data = lines(EVENTS[:1]) + BAD + b"\n" + lines(EVENTS[1:])
    with pytest.raises(DecodeError):
        await eventkit.run(sources.jsonl(io.BytesIO(data)), sink=sink)
    assert EVENTS[:1] == sink.events


async def test_jsonl_path_is_closed_after_an_error(tmp_path: Path) -> None:
    """The file a path source opened is closed even when a line is bad."""
    path = tmp_path / "run.jsonl"
    path.write_bytes(BAD + b"\n")
    # Under filterwarnings=error, an unclosed file would fail the test.
    with pytest.raises(DecodeError):
        await read(sources.jsonl(path))


@pytest.mark.parametrize(
    "bad",
    [
        b'{"type": "stdout", "data": "caf\xe9"}',
        b'{"type": "x", "attrs": {"a": ' + b"[" * 100_000,
    ],
    ids=["latin-1-data", "deep-nesting"],
)
async def test_jsonl_on_invalid_gets_every_bad_line(bad: bytes) -> None:
    """Lines msgspec cannot decode in other ways also go to ``on_invalid``."""
    data = lines(EVENTS[:2]) + bad + b"\n" + lines(EVENTS[2:])
    errors: list[DecodeError] = []
    events = await read(sources.jsonl(io.BytesIO(data), on_invalid=errors.append))
    assert events == EVENTS
    assert [error.line for error in errors] == [3]


# --- jsonl: large files -----------------------------------------------------------


def many_events(count: int) -> list[Event]:
    """Return ``count`` events of varied sizes, some with multi-byte text."""
    return [
        Event(
            type="stdout" if i % 3 else "stderr",
            data=f"line {i} " + "x" * (i % 97) + "é€😀"[: i % 4] + "\n",
            timestamp=1000.0 + i / 7,
            sequence=i,
            run=f"run-{i % 5}",
        )
        for i in range(count)
    ]


def crosses_blocks(data: bytes) -> bool:
    """Tell whether every block boundary inside ``data`` falls within a line."""
    boundaries = range(BLOCK, len(data), BLOCK)
    return len(boundaries) > 2 and all(data[b - 1] != ord("\n") for b in boundaries)


async def test_jsonl_large_file_round_trips(tmp_path: Path) -> None:
    """20,000 events, several read blocks long, come back as written."""
    events = many_events(20_000)
    path = tmp_path / "big.jsonl"
    await eventkit.run(sources.iterate(events), sink=eventkit.sinks.jsonl(path))
    data = path.read_bytes()
    assert crosses_blocks(data)
    assert events == await read(sources.jsonl(path))
    with path.open(encoding="utf-8") as file:
        assert events == await read(sources.jsonl(file))


async def test_jsonl_character_split_between_blocks() -> None:
    """A multi-byte character cut by a block boundary is read whole."""
    # '{"type":"stdout","data":"' is 25 bytes and each "é" 2, so byte BLOCK
    # falls between the two bytes of an "é".
    first = ev("stdout", "é" * (BLOCK // 2 + 10))
    data = lines([first, *EVENTS])
    assert data[17:25] == b'"data":"'
    assert "é".encode() == data[BLOCK - 1 : BLOCK + 1]
    assert [first, *EVENTS] == await read(sources.jsonl(io.BytesIO(data)))


async def test_jsonl_line_longer_than_a_block() -> None:
    """A line spanning several blocks is put together whole."""
    long = ev("stdout", "y" * (3 * BLOCK))
    data = lines([EVENTS[0], long, EVENTS[1]])
    assert [EVENTS[0], long, EVENTS[1]] == await read(sources.jsonl(io.BytesIO(data)))


async def test_jsonl_line_over_the_limit_names_its_line() -> None:
    """A line longer than max_line_bytes is a DecodeError naming it; before it, all."""
    data = lines(EVENTS[:1]) + b"x" * 5000 + b"\n" + lines(EVENTS[1:])
    sink = eventkit.sinks.collect()
    with pytest.raises(LineTooLongError) as caught:
        await eventkit.run(
            sources.jsonl(io.BytesIO(data), max_line_bytes=1000), sink=sink
        )
    assert (2, 1000, 5000) == (caught.value.line, caught.value.limit, caught.value.size)
    assert isinstance(caught.value, DecodeError)
    assert EVENTS[:1] == sink.events


async def test_jsonl_line_over_the_limit_skipped_with_on_invalid() -> None:
    """With on_invalid the long line is reported and skipped; reading goes on."""
    data = lines(EVENTS[:1]) + b"x" * 5000 + b"\n" + lines(EVENTS[1:])
    invalid: list[DecodeError] = []
    got = await collect(
        sources.jsonl(io.BytesIO(data), max_line_bytes=1000, on_invalid=invalid.append)
    )
    assert EVENTS == got
    assert [2] == [error.line for error in invalid]


async def test_jsonl_huge_line_is_read_in_linear_time(tmp_path: Path) -> None:
    """A 64 MiB line in small blocks is joined once (it used to be quadratic)."""
    path = tmp_path / "big.jsonl"
    data = "y" * (64 << 20)
    path.write_bytes(codec.encode(ev("stdout", data)))
    (event,) = await collect(sources.jsonl(path, max_line_bytes=65 << 20))
    assert len(event.data) == len(data)


def test_jsonl_max_line_bytes_must_be_positive() -> None:
    """A nonsense limit is refused when the source is made."""
    with pytest.raises(ValueError, match="max_line_bytes"):
        sources.jsonl("x.jsonl", max_line_bytes=0)
