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
  :func:`dead_letter_key`.
- **Bookkeeping.** A :class:`RunTracker` per shard tells duplicates from new
  events and which entry ids to acknowledge once a run has ended.

Failure behaviour: :func:`decode` raises :exc:`~eventkit.exceptions.DecodeError`
saying why for an entry that is not an encoded event; the rest raises
:exc:`ValueError` for nonsense arguments only.
"""

from __future__ import annotations

import sys
import zlib
from collections import OrderedDict
from collections.abc import Mapping
from typing import TYPE_CHECKING, Final

import msgspec

from eventkit.events import TERMINAL_TYPES as TERMINAL
from eventkit.exceptions import DecodeError

# The JSON Lines codec itself: an entry's value is byte for byte a line of an
# eventkit recording, without its newline.
from eventkit.protocol.jsonl import _decoder, _encoder, decode as decode_line

if TYPE_CHECKING:
    from collections.abc import Sequence

    from eventkit.events import Event

__all__ = [
    "DELIVER",
    "DELIVER_LAST",
    "DUPLICATE",
    "FIELD",
    "FINISHED_RETENTION_MS",
    "DecodeError",
    "RunTracker",
    "as_mapping",
    "consumers_key",
    "dead_letter_key",
    "decode",
    "encode",
    "finished_key",
    "lease_key",
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

#: What :meth:`RunTracker.receive` says of an entry: a duplicate, not to be
#: delivered; an event to deliver; an event to deliver that makes its run
#: whole (its terminal event and every sequence before it delivered).
DUPLICATE: Final = 0
DELIVER: Final = 1
DELIVER_LAST: Final = 2


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
            the JSON of an event; the message says why.
    """
    if isinstance(fields, list) and len(fields) == 2 and fields[0] == FIELD:
        value = fields[1]
        try:
            return _decoder.decode(value)
        except (msgspec.DecodeError, UnicodeError, RecursionError):
            # Decode again the slow way, for the error with its reason.
            return decode_line(value)
    mapping = fields if isinstance(fields, Mapping) else as_mapping(fields)
    try:
        return _decoder.decode(mapping[FIELD])
    except KeyError:
        names = ", ".join(repr(name) for name in mapping) or "none"
        raise DecodeError(f"no {FIELD.decode()!r} field (fields: {names})") from None
    except (msgspec.DecodeError, UnicodeError, RecursionError):
        return decode_line(mapping[FIELD])


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


class _Run:
    """What a :class:`RunTracker` knows of one run in progress."""

    __slots__ = ("floor", "ids", "missing", "seen", "terminal")

    def __init__(self, floor: int) -> None:
        #: Entry ids read so far, duplicates included, in order.
        self.ids: list[bytes] = []
        #: Sequences delivered.
        self.seen: set[int] = set()
        #: Sequences up to this one count as delivered: -1 for a new run (it
        #: starts at 0), the last one delivered for a finished run that goes
        #: on after its terminal event.
        self.floor = floor
        #: The sequence of the terminal event, once delivered.
        self.terminal: int | None = None
        #: Once it is: how many sequences from ``floor + 1`` to it are still
        #: to come. The run is whole at 0.
        self.missing = 0

    def add(self, sequence: int, terminal: bool) -> bool:
        """Count ``sequence`` delivered; tell whether the run is whole now."""
        self.seen.add(sequence)
        end = self.terminal
        if end is None:
            if not terminal:
                return False
            self.terminal = end = sequence
            # Once per run: the sequences delivered so far up to the end.
            below = sum(1 for s in self.seen if s <= end)
            self.missing = end - self.floor - below
        elif sequence <= end:
            self.missing -= 1
        return self.missing == 0


class RunTracker:
    """Tell the new events of one shard from duplicates, and what to acknowledge.

    Feed each entry read to :meth:`receive`, in stream order; deliver the
    event unless it says :data:`DUPLICATE`. When it says
    :data:`DELIVER_LAST`, the event makes its run whole: the terminal event
    and every sequence from 0 to it have come (a terminal event that overtook
    others, as ``reorder`` would hold it, does not end the run until they
    come; a run whose first events never come, trimmed away before they were
    read, never ends). Once that event has been through the pipeline, call
    :meth:`finish`: the run's entry ids join :attr:`acks`, which the caller
    acknowledges and clears with :meth:`take_acks`, and the run joins
    :attr:`finished`, which the caller records for the other workers.

    Duplicates: an entry whose run and sequence were delivered already (a
    producer's retry after a lost reply, an entry claimed again) is not
    delivered; its id joins those of its run. After :meth:`finish`, the run
    is remembered (its highest sequence, for the last ``finished_runs`` runs):
    an entry of it with a sequence up to that one is a late duplicate, put on
    :attr:`acks` at once; one with a higher sequence continues the run. A run
    another worker finished (:meth:`finished_elsewhere`) is remembered with
    every sequence a duplicate.

    Memory: the ids and sequences of each run in progress, and a string and
    an integer per remembered finished run.

    Args:
        finished_runs: How many finished runs to remember.

    Attributes:
        acks: Entry ids that may be acknowledged, in the order they became so.
        finished: Runs finished since the last :meth:`take_acks`.
        duplicates: Entries not delivered as duplicates, ever.
    """

    __slots__ = (
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
        self.acks: list[bytes] = []
        self.finished: list[str] = []
        self.duplicates = 0

    @property
    def open_runs(self) -> int:
        """Runs read and not finished."""
        return len(self._runs)

    def knows(self, run: str) -> bool:
        """Tell whether ``run`` is in progress or remembered as finished."""
        return run in self._runs or run in self._finished

    def receive(self, entry_id: bytes, event: Event) -> int:
        """Take the entry ``entry_id`` holding ``event``; tell what to do with it.

        Returns :data:`DUPLICATE` (then call :meth:`take_acks` at the next
        occasion: a late duplicate of a finished run is ackable at once),
        :data:`DELIVER` or :data:`DELIVER_LAST`; only the first is false.
        """
        state = self._runs.get(event.run)
        if state is None:
            return self._start(entry_id, event)
        state.ids.append(entry_id)
        sequence = event.sequence
        if sequence in state.seen or sequence <= state.floor:
            self.duplicates += 1
            return DUPLICATE
        return DELIVER_LAST if state.add(sequence, event.type in TERMINAL) else DELIVER

    def _start(self, entry_id: bytes, event: Event) -> int:
        """Take the first entry of a run not in progress."""
        run = event.run
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
            state = _Run(last)
        else:
            state = _Run(-1)
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
        self._remember(run, max(state.seen, default=state.floor))

    def _remember(self, run: str, last: int) -> None:
        if self._finished_runs:
            self._finished[run] = last
            self._finished.move_to_end(run)
            if len(self._finished) > self._finished_runs:
                self._finished.popitem(last=False)

    def take_acks(self) -> tuple[list[bytes], list[str]]:
        """Return :attr:`acks` and :attr:`finished`, and clear them."""
        acks, self.acks = self.acks, []
        finished, self.finished = self.finished, []
        return acks, finished


#: Every sequence: what counts as delivered of a run finished elsewhere.
_ALL: Final = sys.maxsize
