"""Events in Redis Streams: entries, shard keys, key names, per-run bookkeeping.

The sans-I/O part of :func:`eventkit.sinks.redis_stream` and
:func:`eventkit.sources.redis_stream` (the lease policy of the workers is in
:mod:`eventkit.sources.redis.leases`); ``docs/redis.md`` tells the whole
model.

- **Entries.** One field, ``event``, holding the event in eventkit's JSON (as
  :mod:`eventkit.protocol.jsonl` writes it, without the newline):
  :func:`encode`, :func:`decode`.
- **Shards.** A logical stream ``S`` is one key (``S``) or ``n`` keys
  (``S:0`` … ``S:n-1``); a run always goes to the same one
  (:func:`shard_of`, :func:`shard_keys`).
- **Key names** of the leases, heartbeats and dead letters of a consumer
  group: :func:`lease_key`, :func:`token_key`, :func:`consumers_key`,
  :func:`dead_letter_key`; the stream's published shard count:
  :func:`meta_key`, :func:`check_shards`.
- **Bookkeeping.** A :class:`RunTracker` per shard tells duplicates from new
  events, which entry ids to acknowledge once a run has ended, which runs
  have been idle too long (:func:`expiry_events` ends them), and which
  entries go to the dead-letter stream because their run was closed out.

Failure behaviour: :func:`decode` raises :exc:`~eventkit.exceptions.DecodeError`
saying why for an entry that is not an encoded event (a negative sequence
included); :func:`check_shards` raises
:exc:`~eventkit.exceptions.ShardCountError` for a count other than the one
published; the rest raises :exc:`ValueError` for nonsense arguments only.
"""

from __future__ import annotations

import sys
import zlib
from collections import OrderedDict
from collections.abc import Mapping
from typing import TYPE_CHECKING, Final, NamedTuple

import msgspec

from eventkit.events import TERMINAL_TYPES as TERMINAL, Event
from eventkit.exceptions import DecodeError, ShardCountError

# The JSON Lines codec itself: an entry's value is byte for byte a line of an
# eventkit recording, without its newline.
from eventkit.protocol.jsonl import _decoder, _encoder, decode as decode_line

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = [
    "DEAD",
    "DELIVER",
    "DELIVER_LAST",
    "DUPLICATE",
    "FIELD",
    "FINISHED_RETENTION_MS",
    "RUN_EXPIRED",
    "SHARDS_FIELD",
    "DeadLetter",
    "DecodeError",
    "RunTracker",
    "as_mapping",
    "check_shards",
    "consumers_key",
    "dead_letter_key",
    "decode",
    "encode",
    "expiry_events",
    "finished_key",
    "lease_key",
    "meta_key",
    "pack_xadd",
    "shard_keys",
    "shard_of",
    "token_key",
    "xadd_prefix",
]

#: The one field of an entry: the event's JSON.
FIELD: Final = b"event"
#: Finished runs a :class:`RunTracker` remembers by default.
FINISHED_RUNS: Final = 10_000
#: Milliseconds a finished run stays in a shard's finished set
#: (:func:`finished_key`), for the other workers: any late duplicate of one of
#: its entries (a producer's retry) is read well within it.
FINISHED_RETENTION_MS: Final = 3_600_000

#: The field of a stream's meta key (:func:`meta_key`) holding its shard count.
SHARDS_FIELD: Final = b"shards"
#: ``attrs["code"]`` of the error event that ends a run idle too long, and the
#: ``reason`` of its late entries in the dead-letter stream.
RUN_EXPIRED: Final = "run_expired"

#: What :meth:`RunTracker.receive` says of an entry: a duplicate, not to be
#: delivered; an event to deliver; an event to deliver that makes its run
#: whole (its terminal event and every sequence before it delivered); an
#: entry of a run closed out, for the dead-letter stream
#: (:meth:`RunTracker.dead_letter` says why).
DUPLICATE: Final = 0
DELIVER: Final = 1
DELIVER_LAST: Final = 2
DEAD: Final = 3


class DeadLetter(NamedTuple):
    """Why the entries of a run closed out go to the dead-letter stream.

    Attributes:
        reason: The entry's ``reason`` field (``run_expired``, say).
        fields: More fields for the entry, after ``reason``.
    """

    reason: str
    fields: tuple[tuple[bytes, bytes], ...] = ()


def encode(event: Event) -> bytes:
    """Return ``event`` as the value of an entry's :data:`FIELD`."""
    return _encoder.encode(event)


def decode(fields: Mapping[bytes, bytes] | Sequence[bytes]) -> Event:
    """Return the event of an entry, given its fields.

    Args:
        fields: As redis-py gives them (a mapping), or as the server sends
            them (a flat list, name then value), which costs less to read.

    Raises:
        DecodeError: If the entry has no :data:`FIELD`, or its value is not
            the JSON of an event, or the event's sequence is negative (a run
            is numbered from 0: it would never be whole); the message says
            why.
    """
    if isinstance(fields, list) and len(fields) == 2 and fields[0] == FIELD:
        value = fields[1]
        try:
            event: Event = _decoder.decode(value)
        except (msgspec.DecodeError, UnicodeError, RecursionError):
            # Decode again the slow way, for the error with its reason.
            event = decode_line(value)
    else:
        mapping = fields if isinstance(fields, Mapping) else as_mapping(fields)
        try:
            event = _decoder.decode(mapping[FIELD])
        except KeyError:
            names = ", ".join(repr(name) for name in mapping) or "none"
            raise DecodeError(
                f"no {FIELD.decode()!r} field (fields: {names})"
            ) from None
        except (msgspec.DecodeError, UnicodeError, RecursionError):
            event = decode_line(mapping[FIELD])
    if event.sequence < 0:
        raise DecodeError(f"negative sequence {event.sequence}")
    return event


def as_mapping(fields: Sequence[bytes]) -> dict[bytes, bytes]:
    """Return an entry's fields as the server sends them (name, value, …) as a dict."""
    return dict(zip(fields[::2], fields[1::2], strict=True))


def xadd_prefix(key: str, maxlen: int | None = None) -> bytes:
    """Return ``XADD key [MAXLEN ~ maxlen] * event`` in RESP, but for the value.

    :func:`pack_xadd` completes it into a command; commands sent back to back
    are a pipeline. A producer that packs its own commands pays a fraction of
    a client library's cost per command.
    """
    trim = () if maxlen is None else (b"MAXLEN", b"~", str(maxlen).encode())
    args = (b"XADD", key.encode(), *trim, b"*", FIELD)
    # The array's length counts the value, packed later.
    head = [b"*%d\r\n" % (len(args) + 1)]
    head.extend(b"$%d\r\n%s\r\n" % (len(arg), arg) for arg in args)
    return b"".join(head)


def pack_xadd(prefix: bytes, value: bytes) -> bytes:
    """Return the command appending ``value`` (see :func:`encode`) after ``prefix``.

    Args:
        prefix: What :func:`xadd_prefix` returned for the key.
        value: The entry's ``event`` field.
    """
    return b"%s$%d\r\n%s\r\n" % (prefix, len(value), value)


def shard_of(run: str, shards: int) -> int:
    """Return the shard of ``run``, in ``range(shards)``.

    CRC-32 of the run id's UTF-8: the same in every process and on every
    machine, unlike :func:`hash`.
    """
    return zlib.crc32(run.encode(errors="surrogatepass")) % shards


def shard_keys(stream: str, shards: int) -> list[str]:
    """Return the keys of the logical stream ``stream``, in shard order.

    ``[stream]`` for one shard, else ``stream:0`` … ``stream:<shards - 1>``.

    Raises:
        ValueError: If ``shards`` is not positive.
    """
    if shards < 1:
        raise ValueError(f"shards must be at least 1, not {shards!r}")
    if shards == 1:
        return [stream]
    return [f"{stream}:{index}" for index in range(shards)]


def lease_key(shard_key: str, group: str) -> str:
    """Return the key holding the name of the consumer that owns a shard."""
    return f"{shard_key}:lease:{group}"


def token_key(shard_key: str, group: str) -> str:
    """Return the key holding the token of a shard's last acquisition.

    It outlives the lease, so that an owner whose lease expired can tell
    whether anyone acquired the shard since (then it lost the shard) or not
    (then it may take the lease again and carry on).
    """
    return f"{lease_key(shard_key, group)}:token"


def consumers_key(stream: str, group: str) -> str:
    """Return the key of a group's heartbeats: a sorted set, consumer -> ms."""
    return f"{stream}:consumers:{group}"


def finished_key(shard_key: str, group: str) -> str:
    """Return the key of a shard's runs finished lately: a sorted set, run -> ms.

    Workers add the runs they finish (with the entries' acknowledgement) and
    look up the runs they have not seen: a run finished by another worker
    whose late duplicate comes up after a takeover is not taken for a new run.
    """
    return f"{shard_key}:finished:{group}"


def dead_letter_key(stream: str) -> str:
    """Return the default dead-letter stream of ``stream``."""
    return f"{stream}:dead"


def meta_key(stream: str) -> str:
    """Return the key of what the producers of ``stream`` publish: a hash.

    Its field :data:`SHARDS_FIELD` holds the shard count, set by the first
    producer (``HSETNX``) and checked by every later producer and worker.
    """
    return f"{stream}:meta"


def check_shards(
    stream: str, published: bytes | None, shards: int, role: str
) -> int | None:
    """Check ``shards`` against the count published in ``stream``'s meta key.

    Args:
        stream: The logical stream.
        published: The value of :data:`SHARDS_FIELD`, None when unset.
        shards: The count of the worker or producer checking.
        role: ``"worker"`` or ``"producer"``, for the message.

    Returns:
        The published count, or None when nothing is published yet.

    Raises:
        ShardCountError: If another count is published.
        DecodeError: If what is published is not a positive integer.
    """
    if published is None:
        return None
    try:
        count = int(published)
    except ValueError:
        count = 0
    if count < 1:
        raise DecodeError(
            f"{meta_key(stream)} holds shards={published!r}, not a positive integer"
        )
    if count != shards:
        raise ShardCountError(stream, count, shards, role)
    return count


def expiry_events(
    run: str, after: int, idle_timeout: float, timestamp: float
) -> list[Event]:
    """Return the events that end ``run``, idle for ``idle_timeout`` seconds.

    An ``error`` event (attrs ``code`` = :data:`RUN_EXPIRED` and
    ``idle_timeout``), then ``completed`` with ``success`` False: the two
    events every eventkit source makes for a run cut short, numbered after
    the last sequence delivered.

    Args:
        run: The run.
        after: The highest sequence of the run delivered so far.
        idle_timeout: Seconds the run went without an entry.
        timestamp: Now, in Unix seconds.
    """
    return [
        Event(
            type="error",
            data=f"run expired: no event for {idle_timeout:g} s",
            timestamp=timestamp,
            sequence=after + 1,
            run=run,
            attrs={"code": RUN_EXPIRED, "idle_timeout": idle_timeout},
        ),
        Event(
            type="completed",
            timestamp=timestamp,
            sequence=after + 2,
            run=run,
            attrs={"success": False},
        ),
    ]


class _Run:
    """What a :class:`RunTracker` knows of one run in progress.

    The sequences delivered are the run's floor and all before it, the
    sequences up to :attr:`top` (in order, the usual case, that is all) and
    those in :attr:`extra` (ahead of a gap): no set per run until its
    events come out of order.
    """

    __slots__ = ("active", "extra", "ids", "terminal", "top")

    def __init__(self, floor: int, now: float) -> None:
        #: When an entry of the run was last received.
        self.active = now
        #: Entry ids read so far, duplicates included, in order.
        self.ids: list[bytes] = []
        #: Every sequence up to this one counts as delivered: -1 for a new
        #: run (it starts at 0), the last one delivered for a finished run
        #: that goes on after its terminal event; then it moves up as the
        #: next sequences come.
        self.top = floor
        #: Sequences delivered above ``top + 1``, ahead of a gap; None when
        #: there are none.
        self.extra: set[int] | None = None
        #: The sequence of the terminal event, once delivered.
        self.terminal: int | None = None

    def delivered(self, sequence: int) -> bool:
        """Tell whether ``sequence`` was delivered (or counts as such)."""
        extra = self.extra
        return sequence <= self.top or (extra is not None and sequence in extra)

    def add(self, sequence: int, terminal: bool) -> bool:
        """Count ``sequence``, new, delivered; tell whether the run became whole.

        Whole: its terminal event and every sequence before it delivered.
        True once, with the sequence that makes it so.
        """
        end = self.terminal
        top = self.top
        was_whole = end is not None and top >= end
        if terminal and end is None:
            self.terminal = end = sequence
        extra = self.extra
        if sequence == top + 1:
            top = sequence
            if extra is not None:
                # The gap closed: take the sequences that came ahead of it.
                while top + 1 in extra:
                    top += 1
                    extra.remove(top)
                if not extra:
                    self.extra = None
            self.top = top
        elif extra is None:
            self.extra = {sequence}
        else:
            extra.add(sequence)
        return not was_whole and end is not None and top >= end

    def last(self) -> int:
        """Return the highest sequence delivered (or counted as such)."""
        extra = self.extra
        return self.top if extra is None else max(extra)


class RunTracker:
    """Tell the new events of one shard from duplicates, and what to acknowledge.

    Feed each entry read to :meth:`receive`, in stream order; deliver the
    event when it says :data:`DELIVER` or :data:`DELIVER_LAST`. When it says
    :data:`DELIVER_LAST`, the event makes its run whole: the terminal event
    and every sequence from 0 to it have come (a terminal event that overtook
    others, as ``reorder`` would hold it, does not end the run until they
    come; a run whose first events never come, trimmed away before they were
    read, never ends but by expiry). Once that event has been through the
    pipeline, call :meth:`finish`: the run's entry ids join :attr:`acks`,
    which the caller acknowledges and clears with :meth:`take_acks`, and the
    run joins :attr:`finished`, which the caller records for the other
    workers.

    Duplicates: an entry whose run and sequence were delivered already (a
    producer's retry after a lost reply, an entry claimed again) is not
    delivered; its id joins those of its run. After :meth:`finish`, the run
    is remembered (its highest sequence, for the last ``finished_runs`` runs):
    an entry of it with a sequence up to that one is a late duplicate, put on
    :attr:`acks` at once; one with a higher sequence continues the run. A run
    another worker finished (:meth:`finished_elsewhere`) is remembered with
    every sequence a duplicate.

    Closing out: :meth:`idle_runs` tells the runs that received nothing
    since a given time; the caller ends each with :func:`expiry_events`
    (:meth:`last_sequence` numbers them) and, once they went through the
    pipeline, calls :meth:`close` (reason :data:`RUN_EXPIRED`): the run's
    entry ids join :attr:`acks` and it is remembered as closed, for the last
    ``finished_runs`` runs closed. A run can also be closed before any of
    its entries came (a poison run, by the worker's failure policy). Every
    later entry of a closed run is :data:`DEAD`: the caller puts it in the
    dead-letter stream as :meth:`dead_letter` says, and acknowledges it.

    Memory: the ids and sequences of each run in progress, and a string and
    an integer per remembered finished or closed run.

    Args:
        finished_runs: How many finished runs (and how many closed ones) to
            remember.

    Attributes:
        acks: Entry ids that may be acknowledged, in the order they became so.
        finished: Runs finished since the last :meth:`take_acks`.
        duplicates: Entries not delivered as duplicates, ever.
    """

    __slots__ = (
        "_closed",
        "_finished",
        "_finished_runs",
        "_runs",
        "acks",
        "duplicates",
        "finished",
    )

    def __init__(self, finished_runs: int = FINISHED_RUNS) -> None:
        if finished_runs < 0:
            raise ValueError(f"finished_runs must be >= 0, not {finished_runs!r}")
        self._finished_runs = finished_runs
        self._runs: dict[str, _Run] = {}
        # Finished runs, least recently seen first: run -> highest sequence.
        self._finished: OrderedDict[str, int] = OrderedDict()
        # Closed runs, least recently closed first: why their entries are dead.
        self._closed: OrderedDict[str, DeadLetter] = OrderedDict()
        self.acks: list[bytes] = []
        self.finished: list[str] = []
        self.duplicates = 0

    @property
    def open_runs(self) -> int:
        """Runs read and not finished."""
        return len(self._runs)

    def knows(self, run: str) -> bool:
        """Tell whether ``run`` is in progress, or remembered as finished or closed."""
        return run in self._runs or run in self._finished or run in self._closed

    def receive(self, entry_id: bytes, event: Event, now: float = 0.0) -> int:
        """Take the entry ``entry_id`` holding ``event``; tell what to do with it.

        Returns :data:`DUPLICATE` (then call :meth:`take_acks` at the next
        occasion: a late duplicate of a finished run is ackable at once),
        :data:`DELIVER`, :data:`DELIVER_LAST` or :data:`DEAD`; only the first
        is false.

        Args:
            entry_id: The entry's id.
            event: Its event.
            now: When it was read, on the clock :meth:`idle_runs` is asked
                on (monotonic seconds, say).
        """
        state = self._runs.get(event.run)
        if state is None:
            return self._start(entry_id, event, now)
        state.active = now
        state.ids.append(entry_id)
        sequence = event.sequence
        if state.delivered(sequence):
            self.duplicates += 1
            return DUPLICATE
        return DELIVER_LAST if state.add(sequence, event.type in TERMINAL) else DELIVER

    def _start(self, entry_id: bytes, event: Event, now: float) -> int:
        """Take the first entry of a run not in progress."""
        run = event.run
        closed = self._closed
        if closed and run in closed:
            return DEAD
        last = self._finished.get(run)
        if last is not None:
            self._finished.move_to_end(run)
            if event.sequence <= last:
                self.duplicates += 1
                self.acks.append(entry_id)
                return DUPLICATE
            # Events after the terminal one: the run goes on, and its
            # sequences up to the last one delivered stay duplicates.
            del self._finished[run]
            state = _Run(last, now)
        else:
            state = _Run(-1, now)
        state.ids.append(entry_id)
        self._runs[run] = state
        whole = state.add(event.sequence, event.type in TERMINAL)
        return DELIVER_LAST if whole else DELIVER

    def finished_elsewhere(self, run: str) -> None:
        """Remember ``run`` as finished by another worker: drop all its entries.

        For a run not in progress; one in progress is left as it is.
        """
        if run not in self._runs:
            self._remember(run, _ALL)

    def finish(self, run: str) -> None:
        """End ``run``: its entry ids join :attr:`acks`; remember it as finished.

        Call it once the run's terminal event went through the whole
        pipeline. A run not in progress is ignored.
        """
        state = self._runs.pop(run, None)
        if state is None:
            return
        self.acks.extend(state.ids)
        self.finished.append(run)
        self._remember(run, state.last())

    def _remember(self, run: str, last: int) -> None:
        if self._finished_runs:
            self._finished[run] = last
            self._finished.move_to_end(run)
            if len(self._finished) > self._finished_runs:
                self._finished.popitem(last=False)

    def idle_runs(self, since: float) -> list[str]:
        """Return the runs in progress that received no entry after ``since``.

        Looks at every run in progress: ask now and then, not at every read.
        """
        return [run for run, state in self._runs.items() if state.active <= since]

    def last_sequence(self, run: str) -> int:
        """Return the highest sequence of ``run`` delivered (-1 for none)."""
        return self._runs[run].last()

    def ended(self, run: str) -> bool:
        """Tell whether the terminal event of ``run``, in progress, was delivered.

        Such a run waits for sequences before it that never came: there is
        nothing to end it with.
        """
        return self._runs[run].terminal is not None

    def close(self, run: str, why: DeadLetter) -> None:
        """Close ``run`` out: its entries join :attr:`acks`; later ones are dead.

        For a run in progress (expired: call it once the events that end it
        went through the pipeline) or not (a poison run closed before its
        entries come again). A closed run is not recorded in
        :attr:`finished`: another worker meeting its late entries processes
        them as a run of their own.

        Args:
            run: The run.
            why: What the dead-letter entries of its later entries say.
        """
        state = self._runs.pop(run, None)
        if state is not None:
            self.acks.extend(state.ids)
        self._finished.pop(run, None)
        if self._finished_runs:
            self._closed[run] = why
            self._closed.move_to_end(run)
            if len(self._closed) > self._finished_runs:
                self._closed.popitem(last=False)

    def dead_letter(self, run: str) -> DeadLetter:
        """Return why the entries of ``run``, closed, go to the dead-letter stream."""
        return self._closed[run]

    def take_acks(self) -> tuple[list[bytes], list[str]]:
        """Return :attr:`acks` and :attr:`finished`, and clear them."""
        acks, self.acks = self.acks, []
        finished, self.finished = self.finished, []
        return acks, finished


#: Every sequence: what counts as delivered of a run finished elsewhere.
_ALL: Final = sys.maxsize
