"""Tests for :mod:`eventkit.protocol.redis_entries`: no server, no event loop."""

from __future__ import annotations

import zlib
from typing import TYPE_CHECKING, Any

import msgspec
import pytest
from hypothesis import given, strategies as st
from redis.connection import Connection

from eventkit.exceptions import ShardCountError
from eventkit.protocol import jsonl, redis_entries as codec
from eventkit.protocol.redis_entries import (
    DEAD,
    DELIVER,
    DELIVER_LAST,
    DUPLICATE,
    DeadLetter,
    DecodeError,
    RunTracker,
)
from tests.factories import ev
from tests.strategies import events, texts

if TYPE_CHECKING:
    from eventkit.events import Event

#: Events as a producer writes them: numbered from 0.
numbered = events.map(
    lambda event: msgspec.structs.replace(event, sequence=abs(event.sequence))
)


@given(numbered)
def test_round_trip(event: Event) -> None:
    """An entry's field decodes back into the event it was encoded from."""
    assert event == codec.decode({codec.FIELD: codec.encode(event)})


@given(events)
def test_entry_is_a_jsonl_line(event: Event) -> None:
    """The entry's value is the event's JSON Lines line, without its newline."""
    assert jsonl.encode(event) == codec.encode(event) + b"\n"


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({}, "no 'event' field (fields: none)"),
        ({b"data": b"{}"}, "no 'event' field (fields: b'data')"),
        ({codec.FIELD: b"{not json"}, "JSON"),
        ({codec.FIELD: b"[1, 2]"}, "Expected `object`, got `array`"),
        ({codec.FIELD: b'{"data": "x"}'}, "missing required field `type`"),
        ({codec.FIELD: b'{"type": "x", "sequence": "1"}'}, "Expected `int`"),
        ({codec.FIELD: b'{"type": "\xff"}'}, "invalid"),
    ],
)
def test_garbage_has_a_reason(fields: dict[bytes, bytes], reason: str) -> None:
    """What is not an encoded event raises DecodeError saying why, in either form."""
    flat = [item for pair in fields.items() for item in pair]
    for given_as in (fields, flat):
        with pytest.raises(DecodeError) as caught:
            codec.decode(given_as)
        assert reason.lower() in str(caught.value).lower()


@given(numbered)
def test_fields_as_sent_decode_alike(event: Event) -> None:
    """Fields as the server sends them (a flat list) decode as a mapping does."""
    value = codec.encode(event)
    assert event == codec.decode([codec.FIELD, value])
    assert event == codec.decode([b"other", b"x", codec.FIELD, value])
    assert {codec.FIELD: value, b"a": b"b"} == codec.as_mapping(
        [codec.FIELD, value, b"a", b"b"]
    )


@given(st.text(), st.integers(1, 1000))
def test_shard_of_in_range_and_stable(run: str, shards: int) -> None:
    """A run's shard is in range and the CRC-32 of its id: the same everywhere."""
    shard = codec.shard_of(run, shards)
    assert 0 <= shard < shards
    assert zlib.crc32(run.encode(errors="surrogatepass")) % shards == shard


def test_shard_of_known_values() -> None:
    """Fixed values, so that a change of the routing function cannot go unseen."""
    assert [1, 3, 1, 3] == [codec.shard_of(f"run-{n}", 4) for n in range(4)]
    assert 0 == codec.shard_of("anything", 1)


def test_key_names() -> None:
    """One shard is the stream's own key; several are numbered; the rest derive."""
    assert ["s"] == codec.shard_keys("s", 1)
    assert ["s:0", "s:1", "s:2"] == codec.shard_keys("s", 3)
    assert "s:1:lease:g" == codec.lease_key("s:1", "g")
    assert "s:1:lease:g:token" == codec.token_key("s:1", "g")
    assert "s:consumers:g" == codec.consumers_key("s", "g")
    assert "s:dead" == codec.dead_letter_key("s")
    with pytest.raises(ValueError, match="shards must be at least 1"):
        codec.shard_keys("s", 0)


# A run's entries as read: the sequences in the order of the stream, each at
# least once; duplicates come after the original (a retry, a reclaim).
@st.composite
def deliveries(draw: st.DrawFn) -> list[tuple[str, int]]:
    """Entries of a few runs, interleaved, with duplicates: (run, sequence)."""
    runs = draw(st.lists(st.sampled_from("abcd"), min_size=1, max_size=4, unique=True))
    entries: list[tuple[str, int]] = []
    for run in runs:
        sequences = draw(st.lists(st.integers(0, 30), min_size=1, max_size=20))
        stream = [(run, sequence) for sequence in sequences]
        # Duplicates: copies of entries, each put somewhere after its original.
        for _ in range(draw(st.integers(0, 10))):
            at = draw(st.integers(0, len(stream) - 1))
            to = draw(st.integers(at + 1, len(stream)))
            stream.insert(to, stream[at])
        # Interleave with the runs so far, keeping each run's own order.
        merged: list[tuple[str, int]] = []
        mine, theirs = iter(stream), iter(entries)
        picks = draw(st.permutations([True] * len(stream) + [False] * len(entries)))
        for pick in picks:
            merged.append(next(mine) if pick else next(theirs))
        entries = merged
    return entries


@given(deliveries())
def test_tracker_delivers_each_sequence_once(entries: list[tuple[str, int]]) -> None:
    """Delivered: each run's distinct sequences, in first-seen order; acks: all."""
    tracker = RunTracker()
    delivered: dict[str, list[int]] = {}
    ids: dict[str, list[bytes]] = {}
    for number, (run, sequence) in enumerate(entries):
        entry_id = f"{number}-0".encode()
        ids.setdefault(run, []).append(entry_id)
        if tracker.receive(entry_id, ev(sequence=sequence, run=run)):
            delivered.setdefault(run, []).append(sequence)
    for run, sequences in delivered.items():
        firsts = list(dict.fromkeys(s for r, s in entries if r == run))
        assert firsts == sequences
    assert len(entries) - sum(map(len, delivered.values())) == tracker.duplicates
    assert [] == tracker.acks
    assert len(ids) == tracker.open_runs
    for run in ids:
        tracker.finish(run)
        assert (ids[run], [run]) == tracker.take_acks()
    assert 0 == tracker.open_runs


@given(deliveries())
def test_tracker_late_duplicates_acked_at_once(entries: list[tuple[str, int]]) -> None:
    """After a run finished, its entries again are dropped and ackable at once."""
    tracker = RunTracker()
    for number, (run, sequence) in enumerate(entries):
        tracker.receive(f"{number}-0".encode(), ev(sequence=sequence, run=run))
    for run in {run for run, _ in entries}:
        tracker.finish(run)
    tracker.take_acks()
    for number, (run, sequence) in enumerate(entries):
        late = f"late-{number}".encode()
        assert not tracker.receive(late, ev(sequence=sequence, run=run))
        assert [late] == tracker.take_acks()[0]
    assert 0 == tracker.open_runs


def test_tracker_run_going_on_after_its_end() -> None:
    """A higher sequence after the terminal event continues the run."""
    tracker = RunTracker()
    assert tracker.receive(b"1-0", ev(sequence=0, run="r"))
    assert tracker.receive(b"2-0", ev("completed", sequence=1, run="r"))
    tracker.finish("r")
    assert [b"1-0", b"2-0"] == tracker.take_acks()[0]
    assert tracker.knows("r")
    assert tracker.receive(b"3-0", ev(sequence=2, run="r"))
    assert 1 == tracker.open_runs
    # Sequences delivered before the end stay duplicates.
    assert not tracker.receive(b"4-0", ev(sequence=1, run="r"))
    assert not tracker.receive(b"5-0", ev(sequence=2, run="r"))
    tracker.finish("r")
    assert [b"3-0", b"4-0", b"5-0"] == tracker.take_acks()[0]
    assert not tracker.receive(b"6-0", ev(sequence=2, run="r"))
    assert [b"6-0"] == tracker.take_acks()[0]


def test_tracker_forgets_the_oldest_finished_runs() -> None:
    """Only the last ``finished_runs`` finished runs are remembered."""
    tracker = RunTracker(finished_runs=2)
    for number, run in enumerate("abc"):
        tracker.receive(f"{number}-0".encode(), ev(sequence=0, run=run))
        tracker.finish(run)
    assert not tracker.knows("a")
    assert tracker.knows("b")
    assert tracker.knows("c")
    # "a" is new again.
    assert tracker.receive(b"9-0", ev(sequence=0, run="a"))
    assert 1 == tracker.open_runs


def test_tracker_finish_unknown_run_does_nothing() -> None:
    """Finishing a run not in progress acknowledges nothing."""
    tracker = RunTracker()
    tracker.finish("nobody")
    assert [] == tracker.take_acks()[0]
    with pytest.raises(ValueError, match="finished_runs"):
        RunTracker(finished_runs=-1)


@pytest.mark.parametrize("maxlen", [None, 1000])
@given(key=texts.filter(bool), value=st.binary())
def test_packed_xadd_is_what_redis_py_sends(
    maxlen: int | None, key: str, value: bytes
) -> None:
    """A packed XADD is byte for byte redis-py's own packing of the command."""
    trim = () if maxlen is None else ("MAXLEN", "~", maxlen)
    args = ("XADD", key, *trim, "*", "event", value)
    # redis-py's synchronous connection packs as its asyncio one; untyped.
    connection: Any = Connection
    expected = b"".join(connection().pack_command(*args))
    assert expected == codec.pack_xadd(codec.xadd_prefix(key, maxlen), value)


def test_tracker_run_whole_at_terminal_event() -> None:
    """In order, the terminal event makes the run whole."""
    tracker = RunTracker()
    assert DELIVER == tracker.receive(b"1-0", ev(sequence=0, run="r"))
    assert DELIVER == tracker.receive(b"2-0", ev(sequence=1, run="r"))
    assert DELIVER_LAST == tracker.receive(b"3-0", ev("completed", sequence=2, run="r"))


def test_tracker_terminal_event_ahead_waits_for_the_rest() -> None:
    """A terminal event that overtook others ends the run once they came.

    ``reorder`` downstream holds such a terminal event: acknowledging at it
    would acknowledge events still held.
    """
    tracker = RunTracker()
    assert DELIVER == tracker.receive(b"1-0", ev(sequence=0, run="r"))
    assert DELIVER == tracker.receive(b"2-0", ev("completed", sequence=3, run="r"))
    assert DELIVER == tracker.receive(b"3-0", ev(sequence=2, run="r"))
    assert DUPLICATE == tracker.receive(b"4-0", ev(sequence=2, run="r"))
    assert DELIVER_LAST == tracker.receive(b"5-0", ev(sequence=1, run="r"))
    tracker.finish("r")
    assert ([b"1-0", b"2-0", b"3-0", b"4-0", b"5-0"], ["r"]) == tracker.take_acks()


def test_tracker_run_finished_elsewhere_is_all_duplicates() -> None:
    """Entries of a run another worker finished are dropped and acked at once."""
    tracker = RunTracker()
    tracker.finished_elsewhere("r")
    assert tracker.knows("r")
    for sequence in (0, 5, 10**6):
        assert DUPLICATE == tracker.receive(
            f"{sequence}-0".encode(), ev(sequence=sequence, run="r")
        )
    assert ([b"0-0", b"5-0", b"1000000-0"], []) == tracker.take_acks()
    assert 0 == tracker.open_runs


def test_tracker_first_event_after_the_terminal_one() -> None:
    """A run is whole from sequence 0, not from the lowest sequence seen."""
    tracker = RunTracker()
    assert DELIVER == tracker.receive(b"1-0", ev(sequence=1, run="r"))
    assert DELIVER == tracker.receive(b"2-0", ev("completed", sequence=2, run="r"))
    assert DELIVER_LAST == tracker.receive(b"3-0", ev(sequence=0, run="r"))


def test_tracker_sequences_after_the_terminal_one_fill_no_gap() -> None:
    """A sequence beyond the terminal one does not stand in for a missing one."""
    tracker = RunTracker()
    assert DELIVER == tracker.receive(b"1-0", ev(sequence=0, run="r"))
    assert DELIVER == tracker.receive(b"2-0", ev(sequence=3, run="r"))
    assert DELIVER == tracker.receive(b"3-0", ev("completed", sequence=2, run="r"))
    assert DELIVER_LAST == tracker.receive(b"4-0", ev(sequence=1, run="r"))


@given(st.integers(0, 12), st.data())
def test_tracker_whole_exactly_when_all_came(end: int, data: st.DataObject) -> None:
    """DELIVER_LAST comes once: with the last of 0..end to arrive, terminal at end.

    Any order, with duplicates and sequences past the terminal one mixed in.
    """
    sequences = list(range(end + 1)) + data.draw(
        st.lists(st.integers(0, end + 3), max_size=10)
    )
    order = data.draw(st.permutations(sequences))
    tracker = RunTracker()
    whole_at = []
    arrived: set[int] = set()
    for number, sequence in enumerate(order):
        kind = "completed" if sequence == end else "stdout"
        verdict = tracker.receive(
            f"{number}-0".encode(), ev(kind, sequence=sequence, run="r")
        )
        arrived.add(sequence)
        if verdict == DELIVER_LAST:
            whole_at.append(number)
            tracker.finish("r")
            break
    assert len(whole_at) == 1
    assert arrived >= set(range(end + 1))
    assert order[whole_at[0]] in range(end + 1)


@pytest.mark.parametrize("sequence", [-1, -(2**40)])
def test_negative_sequence_does_not_decode(sequence: int) -> None:
    """A negative sequence is refused: a run numbered from 0 would never be whole."""
    value = codec.encode(ev(sequence=sequence, run="r"))
    for fields in ({codec.FIELD: value}, [codec.FIELD, value]):
        with pytest.raises(DecodeError, match=f"negative sequence {sequence}"):
            codec.decode(fields)


def test_meta_key_and_shard_check() -> None:
    """The published count: none yet is fine, the same is fine, another is not."""
    assert "s:meta" == codec.meta_key("s")
    assert codec.check_shards("s", None, 3, "worker") is None
    assert 3 == codec.check_shards("s", b"3", 3, "worker")
    with pytest.raises(ShardCountError) as caught:
        codec.check_shards("s", b"3", 1, "worker")
    error = caught.value
    assert ("s", 3, 1, "worker") == (
        error.stream,
        error.published,
        error.configured,
        error.role,
    )
    assert "published with 3 shards" in str(error)
    assert "this worker has shards=1" in str(error)
    for garbage in (b"x", b"0", b"-2"):
        with pytest.raises(DecodeError, match="not a positive integer"):
            codec.check_shards("s", garbage, 1, "producer")


def test_expiry_events() -> None:
    """An error with code run_expired, then a failed completed, numbered on."""
    error, completed = codec.expiry_events("r", 4, 300, 12.5)
    assert ("error", 5, "r", 12.5) == (
        error.type,
        error.sequence,
        error.run,
        error.timestamp,
    )
    assert {"code": "run_expired", "idle_timeout": 300} == error.attrs
    assert "run expired: no event for 300 s" == error.data
    assert ("completed", 6, {"success": False}) == (
        completed.type,
        completed.sequence,
        completed.attrs,
    )


def test_tracker_idle_runs_and_close() -> None:
    """Runs that received nothing since a time are found; closed, they are acked."""
    tracker = RunTracker()
    tracker.receive(b"1-0", ev(sequence=0, run="old"), 1.0)
    tracker.receive(b"2-0", ev(sequence=0, run="new"), 1.0)
    tracker.receive(b"3-0", ev(sequence=1, run="new"), 5.0)
    assert ["old"] == tracker.idle_runs(2.0)
    assert 0 == tracker.last_sequence("old")
    assert not tracker.ended("old")
    tracker.close("old", DeadLetter("run_expired"))
    assert ([b"1-0"], []) == tracker.take_acks()
    assert 1 == tracker.open_runs
    assert tracker.knows("old")
    # Its later entries are dead letters, whatever their sequence.
    for number, sequence in enumerate((0, 1, 7)):
        assert DEAD == tracker.receive(
            f"9-{number}".encode(), ev(sequence=sequence, run="old"), 9.0
        )
    assert DeadLetter("run_expired") == tracker.dead_letter("old")
    assert ([], []) == tracker.take_acks()


def test_tracker_run_closed_before_its_entries_come() -> None:
    """A poison run closed ahead: each of its entries is dead, none delivered."""
    why = DeadLetter("processing_failed", ((b"error_type", b"ValueError"),))
    tracker = RunTracker()
    tracker.close("p", why)
    assert DEAD == tracker.receive(b"1-0", ev(sequence=0, run="p"))
    assert DEAD == tracker.receive(b"2-0", ev("completed", sequence=1, run="p"))
    assert why == tracker.dead_letter("p")
    assert 0 == tracker.open_runs


def test_tracker_ended_run_waiting_for_a_gap() -> None:
    """A run whose terminal event came, a sequence before it missing, has ended."""
    tracker = RunTracker()
    tracker.receive(b"1-0", ev(sequence=0, run="r"))
    tracker.receive(b"2-0", ev("completed", sequence=2, run="r"))
    assert tracker.ended("r")
    assert 2 == tracker.last_sequence("r")


def test_tracker_forgets_the_oldest_closed_runs() -> None:
    """Closed runs are remembered like finished ones: the last ``finished_runs``."""
    tracker = RunTracker(finished_runs=2)
    for run in "abc":
        tracker.close(run, DeadLetter("run_expired"))
    assert not tracker.knows("a")
    assert DELIVER == tracker.receive(b"1-0", ev(sequence=0, run="a"))
    assert DEAD == tracker.receive(b"2-0", ev(sequence=0, run="c"))
    nothing = RunTracker(finished_runs=0)
    nothing.close("a", DeadLetter("run_expired"))
    assert not nothing.knows("a")
