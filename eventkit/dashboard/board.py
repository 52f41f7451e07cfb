"""The dashboard's model of the runs, without I/O: :class:`Board`.

Feed it batches of events with the time they arrived; it keeps one
:class:`RunRecord` per run (state, progress, counts, exit code, limits hit),
a bounded log of each run's events, and the events per second of the last
five minutes. The web app (and ``eventkit top`` through it) reads rows, a
run's held events, the counts by state and what changed since it last asked.
Nothing here waits or reads a clock: the caller passes the time.

**Two feeds.** A board can be fed from one point of a pipeline (``record``
and ``log`` both true: what a sink at the end sees) or from two: the
source's events before the chain as the *record* (the run's state, counts
and exit code hold whatever the chain drops), and the chain's output as the
*log* (the events shown and downloaded, the chain's ``gap`` and
``truncated`` marks). ``progress`` events set a run's progress from either
feed; the board also reads progress reported in the record's output itself
(``45%``, ``9/20``, as :func:`eventkit.pipe.track_progress` does), so a bar
shows without that stage.

**States.** ``running`` until the run's ``completed``; then ``expired`` if a
``resource_limit`` with ``limit="timeout"`` came, ``truncated`` if one with
``limit="output"`` came, else ``succeeded`` or ``failed`` by the
``completed`` event's ``success``. A run still running when the feed ends
(:meth:`Board.end`: the stream closed before the run completed) is
``truncated`` too: its record is cut short.

**Bounds.** Running runs are always kept; at most ``keep_runs`` finished
runs, the oldest finished first out. Each run's log holds at most
``tail_bytes``, counting the UTF-8 size of each event's ``data`` plus
:data:`EVENT_OVERHEAD` bytes an event; the oldest events go first, and how
many went is counted. The throughput keeps :data:`THROUGHPUT_SECONDS`
one-second buckets.

Failure behaviour: no event makes the board raise. Unknown types are counted
and logged like any other; attrs of an unexpected type are ignored. The log
feed ignores events of runs the record feed never saw (or already let go),
so that a late chain output cannot bring an evicted run back as ``running``.
"""

from __future__ import annotations

import collections
import itertools
import operator
from typing import TYPE_CHECKING, Any, Final

from eventkit.events import OUTPUT_TYPES
from eventkit.operators.progress import parse_progress

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator

    from eventkit.events import Event

__all__ = [
    "EVENT_OVERHEAD",
    "STATES",
    "THROUGHPUT_SECONDS",
    "Board",
    "Changes",
    "RunRecord",
]

#: A run's states, in the order the page lists them.
STATES: Final = ("running", "succeeded", "failed", "expired", "truncated")
#: Bytes an event counts in a log besides its data: so that a flood of empty
#: events is bounded too.
EVENT_OVERHEAD: Final = 64
#: Seconds of throughput kept.
THROUGHPUT_SECONDS: Final = 300
#: Error messages are shown, not archived: this many characters are kept.
_ERROR_CHARS: Final = 500
#: Limits kept per run (a run reporting the same limit in a loop stays small).
_MAX_LIMITS: Final = 16

_OUTPUT: Final = frozenset(str(kind) for kind in OUTPUT_TYPES)
_RUN: Final = operator.attrgetter("run")
#: Record-feed types with more to do than counting.
_LIFECYCLE: Final = frozenset(
    {"started", "result", "error", "resource_limit", "completed", "progress"}
)


class RunRecord:
    """What the board knows about one run.

    Attributes:
        run: The run's id.
        source: Where its events come from (the feed's label).
        seen_at: Board time of its first event.
        ended_at: Board time it finished, None while running.
        first_timestamp: Event time of its first event.
        last_timestamp: Event time of its latest event.
        events: Events of the run in the record feed (``progress`` and
            ``gap`` not counted).
        stdout_bytes: UTF-8 bytes of its ``stdout`` data.
        stderr_bytes: UTF-8 bytes of its ``stderr`` data.
        exit_code: From its ``result``.
        execution_time: From its ``result``.
        success: From its ``completed``; None before it.
        cut: True when the feed ended before the run completed.
        limits: The ``limit`` of each ``resource_limit``, in order.
        errors: ``error`` events.
        error: The latest error message (at most 500 characters).
        percent: The latest progress percentage.
        current: The latest progress count.
        total: The latest progress total.
        progress_elapsed: Event-time seconds from the first event to the
            latest change of the progress, for the ETA.
        gaps: ``gap`` events in its log.
        missing: Sequences those gaps left out.
        truncated: ``truncated`` events in its log.
        version: The board's :attr:`Board.version` when it last changed.
        log: The held events of its log, oldest first.
        log_bytes: What :attr:`log` counts against ``tail_bytes``.
        logged: Events ever added to its log: the index the next one gets.
        dropped_events: Events dropped from the head of its log.
        dropped_bytes: UTF-8 data bytes of those.
    """

    __slots__ = (
        "current",
        "cut",
        "dropped_bytes",
        "dropped_events",
        "ended_at",
        "error",
        "errors",
        "events",
        "execution_time",
        "exit_code",
        "first_timestamp",
        "gaps",
        "last_timestamp",
        "limits",
        "log",
        "log_bytes",
        "logged",
        "missing",
        "percent",
        "progress_elapsed",
        "run",
        "seen_at",
        "source",
        "stderr_bytes",
        "stdout_bytes",
        "success",
        "total",
        "truncated",
        "version",
    )

    def __init__(self, run: str, source: str, now: float, timestamp: float) -> None:
        self.run = run
        self.source = source
        self.seen_at = now
        self.ended_at: float | None = None
        self.first_timestamp = timestamp
        self.last_timestamp = timestamp
        self.events = 0
        self.stdout_bytes = 0
        self.stderr_bytes = 0
        self.exit_code: int | None = None
        self.execution_time: float | None = None
        self.success: bool | None = None
        self.cut = False
        self.limits: list[str] = []
        self.errors = 0
        self.error: str | None = None
        self.percent: float | None = None
        self.current: int | None = None
        self.total: int | None = None
        self.progress_elapsed = 0.0
        self.gaps = 0
        self.missing = 0
        self.truncated = 0
        self.version = 0
        self.log: collections.deque[Event] = collections.deque()
        self.log_bytes = 0
        self.logged = 0
        self.dropped_events = 0
        self.dropped_bytes = 0

    @property
    def state(self) -> str:
        """One of :data:`STATES`."""
        if self.success is None:
            return "truncated" if self.cut else "running"
        if "timeout" in self.limits:
            return "expired"
        if "output" in self.limits:
            return "truncated"
        return "succeeded" if self.success else "failed"

    @property
    def finished(self) -> bool:
        """Whether the run is over: completed, or cut short."""
        return self.success is not None or self.cut

    @property
    def first_held(self) -> int:
        """The log index of the oldest held event."""
        return self.logged - len(self.log)

    def duration(self, now: float) -> float:
        """Seconds the run took, or has taken so far at board time ``now``.

        A finished run's ``execution_time`` if its ``result`` gave one, else
        the event time from its first event to its last (right for a
        replayed recording too); a running run's board time since its first
        event.
        """
        if self.ended_at is None:
            return max(now - self.seen_at, 0.0)
        if self.execution_time is not None:
            return self.execution_time
        return max(self.last_timestamp - self.first_timestamp, 0.0)

    def eta(self) -> float | None:
        """Seconds left by the progress reported, None when it cannot tell."""
        percent = self.percent
        if self.ended_at is not None or percent is None:
            return None
        if percent >= 100.0:
            return 0.0
        if percent <= 0.0 or self.progress_elapsed <= 0.0:
            return None
        return self.progress_elapsed * (100.0 - percent) / percent

    def row(self, now: float) -> dict[str, Any]:
        """Return the run's table row, JSON-ready (see ``docs/dashboard.md``)."""
        duration = self.duration(now)
        events = self.events
        return {
            "run": self.run,
            "source": self.source,
            "state": self.state,
            "percent": self.percent,
            "current": self.current,
            "total": self.total,
            "eta": self.eta(),
            "events": events,
            "bytes": self.stdout_bytes + self.stderr_bytes,
            "stdout_bytes": self.stdout_bytes,
            "stderr_bytes": self.stderr_bytes,
            "rate": events / duration if duration > 0.0 else None,
            "duration": duration,
            "exit_code": self.exit_code,
            "limits": list(self.limits),
            "errors": self.errors,
            "error": self.error,
            "gaps": self.gaps,
            "missing": self.missing,
            "truncated": self.truncated,
            "started_at": self.first_timestamp,
            "updated_at": self.last_timestamp,
            "seen_at": self.seen_at,
            "ended_at": self.ended_at,
            "held_events": len(self.log),
            "dropped_events": self.dropped_events,
            "dropped_bytes": self.dropped_bytes,
            "logged": self.logged,
            "version": self.version,
        }

    def held(self, start: int = 0) -> Iterator[Event]:
        """Yield the held events of the log from index ``start`` on (or the oldest)."""
        skip = max(start - self.first_held, 0)
        return itertools.islice(self.log, skip, None)


class Changes:
    """What changed on a board since the last :meth:`Board.take_changes`.

    Attributes:
        version: The board's version when taken.
        runs: The records that changed, still on the board.
        removed: The runs let go (finished runs beyond ``keep_runs``).
    """

    __slots__ = ("removed", "runs", "version")

    def __init__(self, version: int, runs: list[RunRecord], removed: list[str]) -> None:
        self.version = version
        self.runs = runs
        self.removed = removed


class Board:
    """Runs as the dashboard shows them; see the module's docstring.

    Args:
        keep_runs: Finished runs kept, at most (running runs always are).
        tail_bytes: What each run's log holds at most: UTF-8 data bytes plus
            :data:`EVENT_OVERHEAD` an event.

    Raises:
        ValueError: If ``keep_runs`` is negative or ``tail_bytes`` below
            :data:`EVENT_OVERHEAD`.
    """

    def __init__(self, *, keep_runs: int = 500, tail_bytes: int = 262_144) -> None:
        if keep_runs < 0:
            raise ValueError(f"keep_runs must be at least 0, got {keep_runs!r}")
        if tail_bytes < EVENT_OVERHEAD:
            raise ValueError(
                f"tail_bytes must be at least {EVENT_OVERHEAD}, got {tail_bytes!r}"
            )
        self.keep_runs = keep_runs
        self.tail_bytes = tail_bytes
        #: Every run on the board, in order of first appearance.
        self.runs: dict[str, RunRecord] = {}
        #: Bumped by every change; each record keeps the version of its last.
        self.version = 0
        #: Events the record feed took, ever.
        self.total_events = 0
        #: Whether :meth:`end` was called and no event came since.
        self.ended = False
        # Finished runs, oldest finished first: who goes past keep_runs.
        self._finished: collections.OrderedDict[str, None] = collections.OrderedDict()
        self._changed: dict[str, None] = {}
        self._removed: list[str] = []
        # Throughput: counts per second, the latest second last.
        self._seconds: collections.deque[int] = collections.deque(
            [0] * THROUGHPUT_SECONDS, maxlen=THROUGHPUT_SECONDS
        )
        self._second: int | None = None

    # Feeding --------------------------------------------------------------------

    def feed(
        self,
        events: Iterable[Event],
        now: float,
        *,
        source: str = "",
        record: bool = True,
        log: bool = True,
    ) -> None:
        """Take a batch of events that arrived at board time ``now``.

        Args:
            events: The batch, in order.
            now: Board time (seconds; the dashboard uses the wall clock).
            source: The label of the feed, for runs it starts.
            record: Count the events into their runs' records, and the
                throughput: the source's view.
            log: Add the events to their runs' logs: the view shown.
        """
        self.version += 1
        self.ended = False
        if record:
            batch = events if isinstance(events, list) else list(events)
            self._record(batch, now, source, log)
        elif log:
            self._log_only(events)

    def _record(self, events: list[Event], now: float, source: str, log: bool) -> None:
        # The hot path of the dashboard: every event of the record feed goes
        # through it. The batch is split by run first (one run's batch, what
        # most sources give, is taken whole), so that each run's events are
        # counted in a tight loop with its record at hand.
        names = list(map(_RUN, events))
        groups: dict[str, list[Event]]
        if names and names.count(names[0]) == len(names):
            groups = {names[0]: events}
        else:
            groups = {}
            get = groups.get
            for name, event in zip(names, events, strict=True):
                group = get(name)
                if group is None:
                    groups[name] = [event]
                else:
                    group.append(event)
        version = self.version
        runs = self.runs
        changed = self._changed
        for run, group in groups.items():
            record = runs.get(run)
            if record is None or (
                record.ended_at is not None and group[0].type == "started"
            ):
                record = self._start(run, source, now, group[0].timestamp)
            record.version = version
            changed[run] = None
            self._record_each(record, group, now, source, log)
        self._count(now, len(events))

    def _record_each(
        self,
        record: RunRecord,
        group: list[Event],
        now: float,
        source: str,
        log: bool,
    ) -> None:
        """Record one run's events one by one (and log them, if ``log``)."""
        run = record.run
        version = self.version
        append = self._append
        events_n = out_b = err_b = 0
        for event in group:
            kind = event.type
            if kind == "stdout":
                events_n += 1
                data = event.data
                out_b += len(data) if data.isascii() else len(data.encode())
                # Two substring searches cost far less than the expression.
                if "%" in data or "/" in data:
                    self._parse(record, data, event.timestamp)
            elif kind == "stderr":
                events_n += 1
                data = event.data
                err_b += len(data) if data.isascii() else len(data.encode())
                if "%" in data or "/" in data:
                    self._parse(record, data, event.timestamp)
            elif kind in _LIFECYCLE:
                if kind == "started" and record.ended_at is not None:
                    # The run's id is used again: a new life.
                    self._flush(record, events_n, out_b, err_b, event.timestamp)
                    events_n = out_b = err_b = 0
                    record = self._start(run, source, now, event.timestamp)
                    record.version = version
                if event.timestamp > record.last_timestamp:
                    record.last_timestamp = event.timestamp
                self._lifecycle(record, event, now)
            elif kind != "gap":
                events_n += 1
            if log:
                append(record, event)
        self._flush(record, events_n, out_b, err_b, group[-1].timestamp)

    @staticmethod
    def _flush(
        record: RunRecord, events: int, stdout: int, stderr: int, timestamp: float
    ) -> None:
        record.events += events
        record.stdout_bytes += stdout
        record.stderr_bytes += stderr
        if timestamp > record.last_timestamp:
            record.last_timestamp = timestamp

    def _log_only(self, events: Iterable[Event]) -> None:
        version = self.version
        runs = self.runs
        changed = self._changed
        for event in events:
            record = runs.get(event.run)
            if record is None:
                continue
            if record.version != version:
                record.version = version
                changed[record.run] = None
            if event.type == "progress":
                self._progress(record, event)
            self._append(record, event)

    def _start(self, run: str, source: str, now: float, timestamp: float) -> RunRecord:
        if run in self.runs:
            # A finished run starting again (a re-used id): a new life.
            self._finished.pop(run, None)
            del self.runs[run]
        record = self.runs[run] = RunRecord(run, source, now, timestamp)
        return record

    def _lifecycle(self, record: RunRecord, event: Event, now: float) -> None:
        kind = event.type
        attrs = event.attrs
        if kind == "progress":
            self._progress(record, event)
            return
        record.events += 1
        if kind == "result":
            exit_code = attrs.get("exit_code")
            if isinstance(exit_code, int) and not isinstance(exit_code, bool):
                record.exit_code = exit_code
            seconds = attrs.get("execution_time")
            if isinstance(seconds, int | float) and not isinstance(seconds, bool):
                record.execution_time = float(seconds)
        elif kind == "error":
            record.errors += 1
            record.error = event.data[:_ERROR_CHARS]
        elif kind == "resource_limit":
            if len(record.limits) < _MAX_LIMITS:
                record.limits.append(str(attrs.get("limit", "")))
        elif kind == "completed":
            record.success = bool(attrs.get("success", False))
            self._finish(record, now)

    def _finish(self, record: RunRecord, now: float) -> None:
        record.ended_at = now
        finished = self._finished
        finished.pop(record.run, None)
        finished[record.run] = None
        while len(finished) > self.keep_runs:
            # Not next(iter(a dict)): that walks past every entry deleted
            # from the front since the dict last grew, O(n) a call.
            oldest, _ = finished.popitem(last=False)
            del self.runs[oldest]
            self._changed.pop(oldest, None)
            self._removed.append(oldest)

    def _parse(self, record: RunRecord, data: str, timestamp: float) -> None:
        last = (record.percent, record.current, record.total)
        found = parse_progress(data, last)
        if found != last:
            record.percent, record.current, record.total = found
            record.progress_elapsed = max(timestamp - record.first_timestamp, 0.0)

    def _progress(self, record: RunRecord, event: Event) -> None:
        attrs = event.attrs
        percent = attrs.get("percent")
        if not isinstance(percent, int | float) or isinstance(percent, bool):
            return
        current, total = attrs.get("current"), attrs.get("total")
        record.percent = float(percent)
        record.current = current if isinstance(current, int) else record.current
        record.total = total if isinstance(total, int) else record.total
        elapsed = attrs.get("elapsed")
        record.progress_elapsed = (
            float(elapsed)
            if isinstance(elapsed, int | float)
            else event.timestamp - record.first_timestamp
        )

    def _append(self, record: RunRecord, event: Event) -> None:
        kind = event.type
        if kind == "progress":
            # Shown as the bar, not as output: a chain may make thousands.
            return
        if kind == "gap":
            record.gaps += 1
            first, last = (
                event.attrs.get("first_missing"),
                event.attrs.get("last_missing"),
            )
            if isinstance(first, int) and isinstance(last, int) and last >= first:
                record.missing += last - first + 1
        elif kind == "truncated":
            record.truncated += 1
        data = event.data
        log = record.log
        log.append(event)
        record.logged += 1
        record.log_bytes += (
            len(data) if data.isascii() else len(data.encode())
        ) + EVENT_OVERHEAD
        if record.log_bytes > self.tail_bytes:
            limit = self.tail_bytes
            # Always keep the newest event, even one larger than the limit.
            while record.log_bytes > limit and len(log) > 1:
                old = log.popleft().data
                size = len(old) if old.isascii() else len(old.encode())
                record.log_bytes -= size + EVENT_OVERHEAD
                record.dropped_events += 1
                record.dropped_bytes += size

    def _count(self, now: float, count: int) -> None:
        self.total_events += count
        second = int(now)
        if second != self._second:
            self._roll(second)
        self._seconds[-1] += count

    def _roll(self, second: int) -> None:
        seconds = self._seconds
        if self._second is None or second - self._second >= THROUGHPUT_SECONDS:
            seconds.extend([0] * THROUGHPUT_SECONDS)
        elif second > self._second:
            seconds.extend([0] * (second - self._second))
        else:
            # The clock went back: count into the latest second.
            return
        self._second = second

    def end(self, now: float) -> None:
        """The feed ended: every run still running is cut short (``truncated``)."""
        self.version += 1
        self.ended = True
        for record in list(self.runs.values()):
            if record.ended_at is None:
                record.cut = True
                record.version = self.version
                self._changed[record.run] = None
                self._finish(record, now)

    # Reading --------------------------------------------------------------------

    def get(self, run: str) -> RunRecord | None:
        """Return the record of ``run``, None if it is not on the board."""
        return self.runs.get(run)

    def rows(
        self, now: float, states: Iterable[str] | None = None
    ) -> list[dict[str, Any]]:
        """Return the table rows, in order of first appearance.

        Args:
            now: Board time, for the durations of running runs.
            states: Only the runs in these states; None for all.
        """
        wanted = None if states is None else frozenset(states)
        return [
            record.row(now)
            for record in self.runs.values()
            if wanted is None or record.state in wanted
        ]

    def counts(self) -> dict[str, int]:
        """Return the number of runs on the board by state, every state listed."""
        counts = dict.fromkeys(STATES, 0)
        for record in self.runs.values():
            counts[record.state] += 1
        return counts

    def take_changes(self) -> Changes:
        """Return what changed since the last call, and start afresh."""
        runs = self.runs
        changed = [runs[run] for run in self._changed if run in runs]
        removed = self._removed
        self._changed = {}
        self._removed = []
        return Changes(self.version, changed, removed)

    def throughput(self, now: float) -> tuple[int, list[int]]:
        """Return ``(first second, counts)``: events a second up to ``now``.

        The counts cover the :data:`THROUGHPUT_SECONDS` seconds ending with
        the one holding ``now`` (the last one still filling).
        """
        second = int(now)
        if self._second is None or second != self._second:
            self._roll(second)
            if self._second is None:
                self._second = second
        return self._second - THROUGHPUT_SECONDS + 1, list(self._seconds)
