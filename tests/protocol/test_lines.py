"""Tests for :mod:`eventkit.protocol.lines`: splitting, the line decoder base."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from hypothesis import example, given, strategies as st

from eventkit.events import NO_ATTRS, Event
from eventkit.exceptions import LineTooLongError
from eventkit.protocol.lines import MAX_LINE, LineDecoder, LineSplitter, NumberedLines
from tests.factories import ev


def reference_lines(data: bytes) -> list[bytes]:
    """Split ``data`` into lines the obvious way, all at once."""
    *lines, tail = data.split(b"\n")
    if tail:
        lines.append(tail)
    return [line.removesuffix(b"\r") for line in lines]


def split_lines(chunks: list[bytes], max_line: int = MAX_LINE) -> list[bytes]:
    """Return the lines a splitter gives for ``chunks``, then end of input."""
    splitter = LineSplitter(max_line)
    lines = [line for chunk in chunks for line in splitter.receive(chunk)]
    return lines + splitter.close()


# LineSplitter


@given(st.binary(), st.lists(st.integers(min_value=0), max_size=12))
@example(b"a\r\nb\n\nc", [2, 3])
@example("é€\n😀".encode(), [1, 5, 6])
def test_any_split_gives_the_same_lines(data: bytes, cuts: list[int]) -> None:
    """However a byte stream is cut into chunks, the same lines come out."""
    points = sorted({cut % (len(data) + 1) for cut in cuts})
    chunks = [data[a:b] for a, b in itertools.pairwise([0, *points, len(data)])]
    assert reference_lines(data) == split_lines(chunks)


@given(st.lists(st.binary(max_size=8).filter(lambda b: b"\n" not in b), max_size=8))
def test_byte_by_byte(lines: list[bytes]) -> None:
    """Feeding one byte at a time gives every newline-terminated line."""
    data = b"".join(line + b"\n" for line in lines)
    chunks = [data[i : i + 1] for i in range(len(data))]
    assert [line.removesuffix(b"\r") for line in lines] == split_lines(chunks)


def test_crlf() -> None:
    """CRLF endings give the same lines as LF; a lone CR inside stays."""
    assert split_lines([b"a\r\nb\rc\r\n\r\n"]) == [b"a", b"b\rc", b""]


def test_no_trailing_newline() -> None:
    """The last line comes out of ``close()`` when no newline ends the input."""
    splitter = LineSplitter()
    assert splitter.receive(b"one\ntw") == [b"one"]
    assert splitter.pending == 2
    assert splitter.receive(b"o") + splitter.close() == [b"two"]
    assert splitter.close() == []
    assert splitter.receive(b"three\r") + splitter.close() == [b"three"]


def test_close_without_tail() -> None:
    """``close()`` gives nothing when the input ended with a newline or was empty."""
    splitter = LineSplitter()
    assert splitter.receive(b"") == []
    assert splitter.close() == []
    assert splitter.receive(b"x\n") == [b"x"]
    assert splitter.close() == []


def test_max_line_is_inclusive() -> None:
    """A line of exactly ``max_line`` bytes passes, CRLF or not."""
    assert split_lines([b"x" * 8 + b"\n", b"y" * 8 + b"\r\n", b"z" * 8]) == [
        b"x" * 8,
        b"y" * 8,
        b"z" * 8,
    ]


@pytest.mark.parametrize(
    "chunks",
    [
        [b"x" * 9 + b"\n"],
        [b"ok\n" + b"x" * 9 + b"\nok\n"],
        [b"x" * 5, b"x" * 4 + b"\n"],
        [b"x" * 9 + b"\r\n"],
    ],
)
def test_line_too_long(chunks: list[bytes]) -> None:
    """A complete line over ``max_line`` bytes raises LineTooLongError."""
    with pytest.raises(LineTooLongError) as info:
        split_lines(chunks, max_line=8)
    assert info.value.limit == 8
    assert info.value.size > 8
    assert isinstance(info.value, ValueError)


def test_long_tail_raises_before_its_newline() -> None:
    """An unterminated line is refused once over the limit: memory stays bounded."""
    splitter = LineSplitter(max_line=8)
    assert splitter.receive(b"x" * 9) == []  # might still be 8 bytes and a CR
    with pytest.raises(LineTooLongError):
        splitter.receive(b"x")
    assert splitter.pending == 0


def test_long_tail_in_a_chunk_with_lines() -> None:
    """A chunk ending in an overlong unterminated line raises too."""
    with pytest.raises(LineTooLongError):
        LineSplitter(max_line=4).receive(b"ok\n" + b"x" * 6)


def test_long_last_line_raises_on_close() -> None:
    """A final line without newline that is one byte too long raises on close."""
    splitter = LineSplitter(max_line=4)
    assert splitter.receive(b"xxxxx") == []
    with pytest.raises(LineTooLongError):
        splitter.close()


@pytest.mark.parametrize("max_line", [0, -1])
def test_max_line_must_be_positive(max_line: int) -> None:
    """A non-positive ``max_line`` is refused."""
    with pytest.raises(ValueError, match="max_line"):
        LineSplitter(max_line)


# LineDecoder: the splitting and counting every line dialect shares


class Echo(LineDecoder):
    """A line dialect for the tests: each non-blank line is a stdout event."""

    __slots__ = ("made",)

    def __init__(self, *, max_line: int = MAX_LINE) -> None:
        super().__init__(max_line=max_line)
        self.made = 0

    @property
    def run(self) -> str:
        return "r"

    @property
    def finished(self) -> bool:
        return False

    @property
    def done(self) -> bool:
        return False

    def start(self, attrs: Any = NO_ATTRS) -> list[Event]:
        return []

    def abort(self, reason: str, code: int | None = None) -> list[Event]:
        return []

    def _line(self, line: bytes) -> list[Event]:
        if not line.strip():
            return []
        self.made += 1
        return [ev("stdout", line.decode(errors="replace"), self.made - 1)]


def echo(chunks: list[bytes], max_line: int = MAX_LINE) -> tuple[Echo, list[Event]]:
    """Return an Echo decoder fed ``chunks`` then closed, and its events."""
    decoder = Echo(max_line=max_line)
    events = [event for chunk in chunks for event in decoder.receive(chunk)]
    return decoder, events + decoder.close()


@given(st.binary(), st.lists(st.integers(min_value=0), max_size=12))
@example(b"a\r\nb\n\nc", [2, 3])
def test_decoder_sees_the_lines_of_any_split(data: bytes, cuts: list[int]) -> None:
    """However the input is cut, a decoder decodes and counts the same lines."""
    points = sorted({cut % (len(data) + 1) for cut in cuts})
    chunks = [data[a:b] for a, b in itertools.pairwise([0, *points, len(data)])]
    decoder, events = echo(chunks)
    lines = reference_lines(data)
    assert [line.decode(errors="replace") for line in lines if line.strip()] == [
        event.data for event in events
    ]
    assert len(lines) == decoder.lines


def test_decoder_counts_every_line() -> None:
    """Blank lines count as received lines; the unterminated last one on close."""
    decoder = Echo()
    assert [e.data for e in decoder.receive(b"a\n\n  \nb")] == ["a"]
    assert (decoder.lines, decoder.pending) == (3, 1)
    assert [e.data for e in decoder.close()] == ["b"]
    assert (decoder.lines, decoder.pending) == (4, 0)
    assert (decoder.invalid_lines, decoder.ignored) == (0, 0)


def test_decoder_line_too_long() -> None:
    """A line over the decoder's max_line raises, and no event of its chunk comes."""
    decoder = Echo(max_line=4)
    assert decoder.max_line == 4
    with pytest.raises(LineTooLongError) as info:
        decoder.receive(b"ok\n" + b"x" * 5 + b"\n")
    assert info.value.limit == 4
    assert decoder.made == 0
    assert decoder.lines == 0


def test_decoder_long_last_line_raises_on_close() -> None:
    """An unterminated last line one byte too long raises on close."""
    decoder = Echo(max_line=4)
    assert decoder.receive(b"xxxxx") == []
    with pytest.raises(LineTooLongError):
        decoder.close()


@pytest.mark.parametrize("max_line", [0, -1])
def test_decoder_max_line_must_be_positive(max_line: int) -> None:
    """A non-positive ``max_line`` is refused when the decoder is made."""
    with pytest.raises(ValueError, match="max_line"):
        Echo(max_line=max_line)


# NumberedLines


@given(
    st.lists(st.binary(max_size=12).map(lambda b: b.replace(b"\n", b"")), max_size=12),
    st.lists(st.integers(1, 9), min_size=1),
    st.integers(1, 10),
)
def test_numbered_lines_whatever_the_chunks(
    lines: list[bytes], cuts: list[int], limit: int
) -> None:
    """Chunking never changes the numbered lines; long ones become errors in place."""
    data = b"".join(line + b"\n" for line in lines)
    reader = NumberedLines(limit)
    out = []
    start = 0
    for size in itertools.cycle(cuts):
        if start >= len(data):
            break
        out += reader.receive(data[start : start + size])
        start += size
    out += reader.close()
    expected = [
        (n, line if len(line) <= limit else ("too long", len(line)))
        for n, line in enumerate(lines, 1)
    ]
    got = [
        (n, ("too long", item.size) if isinstance(item, LineTooLongError) else item)
        for n, item in out
    ]
    assert expected == got


def test_numbered_lines_last_line_without_newline() -> None:
    """close() gives the last line when it has no newline, numbered."""
    reader = NumberedLines(100)
    assert [(1, b"a")] == reader.receive(b"a\nb")
    assert [(2, b"b")] == reader.close()
    assert [] == reader.close()


def test_numbered_lines_hold_little_of_a_long_line() -> None:
    """A line past the limit is dropped as it comes: its pieces are not kept."""
    reader = NumberedLines(10)
    for _ in range(1000):
        assert [] == reader.receive(b"x" * 1000)
    assert [] == reader._parts
    ((number, error), (after, line)) = reader.receive(b"\nok\n")
    assert isinstance(error, LineTooLongError)
    assert (1, 1_000_000, 1) == (number, error.size, error.line)
    assert (2, b"ok") == (after, line)
