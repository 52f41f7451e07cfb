"""Tests for :mod:`eventkit.operators.buffer`."""

from __future__ import annotations

import itertools
from collections import defaultdict
from typing import TYPE_CHECKING

import pytest
from hypothesis import given, settings, strategies as st

from eventkit.events import Event
from eventkit.operators._base import Operator
from eventkit.operators.buffer import BufferBytes
from tests.factories import ev

if TYPE_CHECKING:
    from collections.abc import Iterable


class FakeClock:
    """A clock that moves only when told to, and counts its readings."""

    def __init__(self, now: float = 0.0) -> None:
        self.now = now
        self.reads = 0

    def __call__(self) -> float:
        self.reads += 1
        return self.now


def feed_all(buffer: BufferBytes, events: Iterable[Event]) -> list[Event]:
    """Feed ``events`` one by one and collect everything emitted."""
    out: list[Event] = []
    for event in events:
        out.extend(buffer.feed([event]))
    return out


def chunk(
    data: str,
    first: int,
    last: int,
    count: int,
    *,
    type: str = "stdout",
    run: str = "r",
) -> Event:
    """Make the chunk BufferBytes emits for ``data`` from ``first`` to ``last``."""
    return Event(
        type=type,
        data=data,
        timestamp=1000.0 + first,
        sequence=first,
        run=run,
        attrs={"count": count, "first_sequence": first, "last_sequence": last},
    )


def test_is_an_operator() -> None:
    """BufferBytes implements the Operator protocol."""
    assert isinstance(BufferBytes(), Operator)


def test_coalesces_until_end() -> None:
    """Small events are held and leave as one chunk at the end of input."""
    buffer = BufferBytes(16)
    assert buffer.feed([ev("stdout", "ab")]) == []
    assert buffer.feed([ev("stdout", "cd", 1)]) == []
    assert buffer.feed([ev("stdout", "ef", 2)]) == []
    assert buffer.flush() == [chunk("abcdef", 0, 2, 3)]
    assert buffer.flush() == []
    assert buffer.flushed == {"size": 0, "age": 0, "terminal": 0, "end": 1}


def test_chunk_takes_first_sequence_and_timestamp() -> None:
    """A chunk has the sequence and timestamp of its first input event."""
    buffer = BufferBytes(16)
    feed_all(buffer, [ev("stdout", "x", 7), ev("stdout", "y", 9)])
    (out,) = buffer.flush()
    assert out.sequence == 7
    assert out.timestamp == 1007.0
    assert out.attrs == {"count": 2, "first_sequence": 7, "last_sequence": 9}


def test_exact_limit_flushes_at_once() -> None:
    """A buffer that reaches exactly the limit leaves at once."""
    buffer = BufferBytes(4)
    assert buffer.feed([ev("stdout", "ab")]) == []
    assert buffer.feed([ev("stdout", "cd", 1)]) == [chunk("abcd", 0, 1, 2)]
    assert buffer.feed([ev("stdout", "efgh", 2)]) == [chunk("efgh", 2, 2, 1)]
    assert buffer.flush() == []
    assert buffer.flushed["size"] == 2
    assert buffer.splits == 0


def test_overflow_flushes_pending_first() -> None:
    """An event that would pass the limit sends the pending buffer out first."""
    buffer = BufferBytes(5)
    assert buffer.feed([ev("stdout", "abc")]) == []
    assert buffer.feed([ev("stdout", "def", 1)]) == [chunk("abc", 0, 0, 1)]
    assert buffer.flush() == [chunk("def", 1, 1, 1)]


def test_overflow_into_exact_limit() -> None:
    """An event that fills a fresh buffer exactly leaves right after the old one."""
    buffer = BufferBytes(4)
    buffer.feed([ev("stdout", "ab")])
    assert buffer.feed([ev("stdout", "wxyz", 1)]) == [
        chunk("ab", 0, 0, 1),
        chunk("wxyz", 1, 1, 1),
    ]
    assert buffer.flush() == []


def test_oversize_event_is_split() -> None:
    """An event over the limit: pending first, full pieces, last piece held."""
    buffer = BufferBytes(4)
    buffer.feed([ev("stdout", "ab")])
    assert buffer.feed([ev("stdout", "0123456789", 1)]) == [
        chunk("ab", 0, 0, 1),
        chunk("0123", 1, 1, 1),
        chunk("4567", 1, 1, 1),
    ]
    assert buffer.splits == 1
    assert buffer.feed([ev("stdout", "X", 2)]) == []
    assert buffer.flush() == [chunk("89X", 1, 2, 2)]


def test_split_with_exact_last_piece_holds_nothing() -> None:
    """A split whose last piece fills the limit leaves nothing pending."""
    buffer = BufferBytes(4)
    assert buffer.feed([ev("stdout", "01234567")]) == [
        chunk("0123", 0, 0, 1),
        chunk("4567", 0, 0, 1),
    ]
    assert buffer.flush() == []
    assert buffer.chunks == 2


@pytest.mark.parametrize("char", ["é", "€", "😀"])
@pytest.mark.parametrize("limit", [4, 5, 6, 7])
def test_split_never_cuts_a_character(char: str, limit: int) -> None:
    """Pieces of multi-byte text end on character boundaries within the limit."""
    text = ("a" + char * 5) * 3
    buffer = BufferBytes(limit)
    out = [*buffer.feed([ev("stdout", text)]), *buffer.flush()]
    assert text == "".join(e.data for e in out)
    for piece in out:
        assert 0 < len(piece.data.encode()) <= limit
        assert set(piece.data) <= {"a", char}
    # Greedy: each piece but the last leaves no room for the next character.
    for piece, following in itertools.pairwise(out):
        assert len(piece.data.encode()) + len(following.data[0].encode()) > limit


def test_multibyte_size_counts_bytes() -> None:
    """The limit counts UTF-8 bytes, not characters."""
    buffer = BufferBytes(4)
    assert buffer.feed([ev("stdout", "é")]) == []
    assert buffer.feed([ev("stdout", "é", 1)]) == [chunk("éé", 0, 1, 2)]
    assert buffer.feed([ev("stdout", "€", 2)]) == []
    assert buffer.feed([ev("stdout", "😀", 3)]) == [
        chunk("€", 2, 2, 1),
        chunk("😀", 3, 3, 1),
    ]
    assert buffer.flush() == []


def test_empty_data_joins_pending_buffer() -> None:
    """An empty event joins a pending buffer: counted, without bytes."""
    buffer = BufferBytes(16)
    buffer.feed([ev("stdout", "ab")])
    assert buffer.feed([ev("stdout", "", 1)]) == []
    assert buffer.flush() == [chunk("ab", 0, 1, 2)]
    assert buffer.empty_dropped == 0


def test_empty_data_without_buffer_is_dropped() -> None:
    """An empty event with nothing to join is dropped and counted."""
    buffer = BufferBytes(16)
    assert buffer.feed([ev()]) == []
    assert buffer.flush() == []
    assert buffer.empty_dropped == 1
    assert buffer.chunks == 0


def test_buffers_per_run_and_type() -> None:
    """Each (run, type) has its own buffer; the end flushes them in start order."""
    buffer = BufferBytes(16)
    feed_all(
        buffer,
        [
            ev("stderr", "e1"),
            ev("stdout", "o1", 1),
            ev("stdout", "b1", run="b"),
            ev("stderr", "e2", 2),
        ],
    )
    assert buffer.flush() == [
        chunk("e1e2", 0, 2, 2, type="stderr"),
        chunk("o1", 1, 1, 1),
        chunk("b1", 0, 0, 1, run="b"),
    ]


def test_other_type_flushes_its_run_in_start_order() -> None:
    """A lifecycle event sends its run's buffers out first, oldest first."""
    buffer = BufferBytes(16)
    feed_all(
        buffer,
        [ev("stderr", "err"), ev("stdout", "b", run="b"), ev("stdout", "out", 1)],
    )
    done = ev("completed", "", 2)
    assert buffer.feed([done]) == [
        chunk("err", 0, 0, 1, type="stderr"),
        chunk("out", 1, 1, 1),
        done,
    ]
    assert buffer.flushed["terminal"] == 2
    # The other run's buffer was left alone.
    assert buffer.flush() == [chunk("b", 0, 0, 1, run="b")]


def test_other_run_event_passes_without_flushing() -> None:
    """A lifecycle event of another run passes alone."""
    buffer = BufferBytes(16)
    buffer.feed([ev("stdout", "held")])
    started = ev("started", run="other")
    assert buffer.feed([started]) == [started]
    assert buffer.flush() == [chunk("held", 0, 0, 1)]


def test_unknown_types_pass() -> None:
    """Types outside ``types`` pass unchanged, as the same object."""
    buffer = BufferBytes(16)
    custom = ev("custom", "payload")
    assert buffer.feed([custom])[0] is custom
    assert buffer.flush() == []


def test_custom_types() -> None:
    """Only the given types are buffered."""
    buffer = BufferBytes(16, types=["log"])
    stdout = ev("stdout", "out")
    assert buffer.feed([stdout]) == [stdout]
    assert buffer.feed([ev("log", "a", 1)]) == []
    assert buffer.flush() == [chunk("a", 1, 1, 1, type="log")]


def test_max_age_flushes_on_tick() -> None:
    """A buffer waiting max_age seconds leaves on tick, without more input."""
    clock = FakeClock(10.0)
    buffer = BufferBytes(16, max_age=2.0, clock=clock)
    assert buffer.deadline() is None
    buffer.feed([ev("stdout", "a")])
    clock.now = 11.0
    buffer.feed([ev("stdout", "b", run="b")])
    buffer.feed([ev("stdout", "c", 1)])
    assert buffer.deadline() == 12.0
    assert buffer.tick(11.9) == []
    assert buffer.tick(12.0) == [chunk("ac", 0, 1, 2)]
    assert buffer.deadline() == 13.0
    assert buffer.tick(20.0) == [chunk("b", 0, 0, 1, run="b")]
    assert buffer.deadline() is None
    assert buffer.tick(30.0) == []
    assert buffer.flushed["age"] == 2


def test_tick_flushes_every_due_buffer_in_order() -> None:
    """One late tick flushes all due buffers, oldest first, and no others."""
    clock = FakeClock()
    buffer = BufferBytes(16, max_age=1.0, clock=clock)
    for now, run in [(0.0, "a"), (0.5, "b"), (3.0, "c")]:
        clock.now = now
        buffer.feed([ev("stdout", run, run=run)])
    assert buffer.tick(2.0) == [
        chunk("a", 0, 0, 1, run="a"),
        chunk("b", 0, 0, 1, run="b"),
    ]
    assert buffer.deadline() == 4.0


def test_deadline_follows_the_oldest_buffer() -> None:
    """When the oldest buffer leaves for size or a lifecycle event, the next rules."""
    clock = FakeClock()
    buffer = BufferBytes(4, max_age=5.0, clock=clock)
    buffer.feed([ev("stdout", "ab")])
    clock.now = 1.0
    buffer.feed([ev("stdout", "x", run="b")])
    clock.now = 2.0
    buffer.feed([ev("stdout", "y", run="c")])
    assert buffer.deadline() == 5.0
    buffer.feed([ev("stdout", "cd", 1)])  # fills run r's buffer: it leaves for size
    assert buffer.deadline() == 6.0
    buffer.feed([ev("completed", "", 1, run="b")])
    assert buffer.deadline() == 7.0
    buffer.flush()
    assert buffer.deadline() is None


def test_restarted_buffer_goes_to_the_back() -> None:
    """A buffer that starts again after leaving is the youngest."""
    clock = FakeClock()
    buffer = BufferBytes(4, max_age=5.0, clock=clock)
    buffer.feed([ev("stdout", "abc")])
    clock.now = 1.0
    buffer.feed([ev("stdout", "x", run="b")])
    clock.now = 2.0
    buffer.feed([ev("stdout", "de", 1)])  # run r's buffer leaves; "de" starts a new one
    assert buffer.deadline() == 6.0
    assert buffer.tick(6.0) == [chunk("x", 0, 0, 1, run="b")]
    assert buffer.deadline() == 7.0


def test_clock_read_only_when_a_buffer_starts() -> None:
    """The clock is read once per new buffer with max_age, never without it."""
    clock = FakeClock()
    aged = BufferBytes(16, max_age=1.0, clock=clock)
    feed_all(
        aged,
        [
            ev("stdout", "a"),
            ev("stdout", "b", 1),
            ev("stdout", "c", 2),
            ev("stdout", "d", run="b"),
        ],
    )
    assert clock.reads == 2
    unaged = BufferBytes(16, clock=clock)
    feed_all(unaged, [ev("stdout", "a"), ev("stdout", "b", run="b")])
    assert clock.reads == 2
    assert unaged.deadline() is None
    assert unaged.tick(1e9) == []


def test_counters() -> None:
    """Chunks are counted in all and by reason; splits per oversize event."""
    clock = FakeClock()
    buffer = BufferBytes(4, max_age=1.0, clock=clock)
    feed_all(
        buffer,
        [
            ev("stdout", "abcdefghij"),  # split: 2 size chunks, "ij" held
            ev("stdout", "xy", run="b"),
            ev("result", "", 1),  # terminal for run r
        ],
    )
    buffer.feed([ev("stdout", "z", 2)])
    clock.now = 5.0
    buffer.tick(5.0)  # run b's and run r's buffers are due
    buffer.feed([ev("stdout", "q", 3)])
    buffer.flush()
    assert buffer.flushed == {"size": 2, "age": 2, "terminal": 1, "end": 1}
    assert buffer.chunks == 6
    assert buffer.splits == 1


@pytest.mark.parametrize("limit", [3, 0, -1])
def test_limit_below_four_is_refused(limit: int) -> None:
    """A limit that cannot hold every character raises ValueError."""
    with pytest.raises(ValueError, match=rf"limit=.*{limit}"):
        BufferBytes(limit)


def test_negative_max_age_is_refused() -> None:
    """A negative max_age raises ValueError."""
    with pytest.raises(ValueError, match=r"max_age=-1"):
        BufferBytes(max_age=-1)


def test_zero_max_age_is_due_at_once() -> None:
    """With max_age 0 a buffer is due as soon as it starts."""
    clock = FakeClock(3.0)
    buffer = BufferBytes(16, max_age=0, clock=clock)
    buffer.feed([ev("stdout", "a")])
    assert buffer.deadline() == 3.0
    assert buffer.tick(3.0) == [chunk("a", 0, 0, 1)]


# Property tests -------------------------------------------------------------

BUFFERED = ("stdout", "stderr")
texts = st.one_of(
    st.text(max_size=20),
    st.text(alphabet="ab\né€😀中", max_size=60),
)
types = st.sampled_from([*BUFFERED, *BUFFERED, "started", "result", "completed", "gap"])


@st.composite
def streams(draw: st.DrawFn) -> list[Event | float]:
    """Draw a stream of events of 1-3 runs, with clock advances (floats) mixed in."""
    runs = ["a", "b", "c"][: draw(st.integers(1, 3))]
    items = draw(
        st.lists(
            st.one_of(
                st.tuples(st.sampled_from(runs), types, texts),
                st.floats(0.0, 3.0),
            ),
            max_size=60,
        )
    )
    sequences: dict[str, int] = defaultdict(int)
    stream: list[Event | float] = []
    for item in items:
        if isinstance(item, float):
            stream.append(item)
            continue
        run, type_, data = item
        stream.append(ev(type_, data, sequences[run], run=run))
        sequences[run] += 1
    return stream


@settings(deadline=None)
@given(stream=streams(), limit=st.integers(4, 64), max_age=st.none() | st.floats(0, 5))
def test_chunks_preserve_bytes_within_limit(
    stream: list[Event | float], limit: int, max_age: float | None
) -> None:
    """Chunks restore each (run, type)'s data, within the limit, never empty."""
    clock = FakeClock()
    buffer = BufferBytes(limit, max_age=max_age, clock=clock)
    out: list[Event] = []
    given_data: dict[tuple[str, str], list[str]] = defaultdict(list)
    for item in stream:
        if isinstance(item, float):
            clock.now += item
            out.extend(buffer.tick(clock.now))
            continue
        if item.type in BUFFERED:
            given_data[item.run, item.type].append(item.data)
        out.extend(buffer.feed([item]))
    out.extend(buffer.flush())

    chunk_data: dict[tuple[str, str], list[str]] = defaultdict(list)
    for event in out:
        if event.type in BUFFERED:
            assert 0 < len(event.data.encode()) <= limit
            first, last = event.attrs["first_sequence"], event.attrs["last_sequence"]
            assert event.sequence == first <= last
            assert 1 <= event.attrs["count"] <= last - first + 1
            chunk_data[event.run, event.type].append(event.data)
    for key in given_data.keys() | chunk_data.keys():
        assert "".join(given_data[key]) == "".join(chunk_data[key])
    assert (
        sum(buffer.flushed.values())
        == buffer.chunks
        == len([e for e in out if e.type in BUFFERED])
    )


@settings(deadline=None)
@given(stream=streams(), limit=st.integers(4, 64), max_age=st.none() | st.floats(0, 5))
def test_other_events_keep_order_behind_earlier_output(
    stream: list[Event | float], limit: int, max_age: float | None
) -> None:
    """Other events pass in order, each after all earlier output of its run."""
    clock = FakeClock()
    buffer = BufferBytes(limit, max_age=max_age, clock=clock)
    others_in: list[Event] = []
    # Bytes of buffered data of each run fed before each other event.
    expected_before: list[int] = []
    fed: dict[str, int] = defaultdict(int)
    out: list[Event] = []
    for item in stream:
        if isinstance(item, float):
            clock.now += item
            out.extend(buffer.tick(clock.now))
            continue
        if item.type in BUFFERED:
            fed[item.run] += len(item.data.encode())
        else:
            others_in.append(item)
            expected_before.append(fed[item.run])
        out.extend(buffer.feed([item]))
    out.extend(buffer.flush())

    others_out: list[Event] = []
    emitted: dict[str, int] = defaultdict(int)
    for event in out:
        if event.type in BUFFERED:
            emitted[event.run] += len(event.data.encode())
        else:
            # All of the run's earlier output is out, and none of its later.
            assert expected_before[len(others_out)] == emitted[event.run]
            others_out.append(event)
    assert others_in == others_out
    assert all(a is b for a, b in zip(others_in, others_out, strict=True))


@settings(deadline=None)
@given(stream=streams(), limit=st.integers(4, 64), max_age=st.floats(0, 5))
def test_deadline_tracks_pending_data(
    stream: list[Event | float], limit: int, max_age: float
) -> None:
    """deadline() is set exactly while data is held, and tick leaves none due."""
    clock = FakeClock()
    buffer = BufferBytes(limit, max_age=max_age, clock=clock)
    held: dict[tuple[str, str], int] = defaultdict(int)

    def account(events: Iterable[Event]) -> None:
        for event in events:
            if event.type in BUFFERED:
                held[event.run, event.type] -= len(event.data.encode())

    for item in stream:
        if isinstance(item, float):
            clock.now += item
            account(buffer.tick(clock.now))
            deadline = buffer.deadline()
            assert deadline is None or deadline > clock.now
        else:
            if item.type in BUFFERED:
                held[item.run, item.type] += len(item.data.encode())
            account(buffer.feed([item]))
        deadline = buffer.deadline()
        if any(held.values()):
            assert deadline is not None
            assert deadline <= clock.now + max_age
        else:
            assert deadline is None
    account(buffer.flush())
    assert not any(held.values())
    assert buffer.deadline() is None
