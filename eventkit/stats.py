"""Process-wide counters of the sources and the local server.

Plain Python integers, no Prometheus: sources and the server add to them on
their hot paths at the cost of an integer add, and
:mod:`eventkit.metrics` reads them when Prometheus scrapes. This module
depends on nothing above the event model, so any layer may count here.
"""

from __future__ import annotations

import contextlib
import threading
from typing import Protocol

from eventkit.operators.metrics import MAX_LABEL_VALUES

__all__ = [
    "Admissions",
    "ServerStats",
    "SourceStats",
    "all_source_stats",
    "current_server_stats",
    "server_stats",
    "source_stats",
]


class SourceStats:
    """Counters a kind of source keeps for the whole process.

    A source increments the :func:`source_stats` of its kind with plain
    integer arithmetic (no Prometheus call on the hot path); every collector
    with self-metrics reads them at scrape time, labelled ``source=kind``.
    Counters only grow; :attr:`open_connections` goes up and down.

    Each iteration of a source counts one connection when it is open: a
    WebSocket after its handshake, an NDJSON response once answered 2xx (for
    ``aicomputer``, its execute stream only), a local process once spawned.
    A refused handshake, an error status or a spawn failure opens none.

    Attributes:
        kind: The ``source`` label: ``"websocket"``, ``"ndjson"``, ``"local"``,
            ``"redis"``.
        connections: Connections (for the local executor, processes) opened.
        open_connections: Connections open now; a connection is closed once,
            however its stream ends (a consumer's break or cancellation too).
        frames: Frames received: WebSocket messages, NDJSON lines (blank ones
            and those after the run's end included), and for the local
            executor its ``stdout`` and ``stderr`` events.
        invalid_frames: Frames that could not be decoded (each also becomes
            an ``error`` event); added when the stream ends.
        closed_before_complete: Streams that ended before their run's
            ``completed`` because the other side closed (the connection, the
            body), whether raised or turned into events. Not a consumer that
            stops early, and never the local executor: its process's exit
            always gives the outcome, and a timeout or a cap is a resource
            limit (``eventkit_resource_limits_total``).
        reconnects: Connections opened again to resume a run after a lost
            one (``sources.websocket(reconnect=True)``).
    """

    __slots__ = (
        "closed_before_complete",
        "connections",
        "frames",
        "invalid_frames",
        "kind",
        "open_connections",
        "reconnects",
    )

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.connections = 0
        self.open_connections = 0
        self.frames = 0
        self.invalid_frames = 0
        self.closed_before_complete = 0
        self.reconnects = 0

    def __repr__(self) -> str:
        return (
            f"<SourceStats {self.kind}: {self.connections} connections "
            f"({self.open_connections} open), {self.frames} frames, "
            f"{self.invalid_frames} invalid, "
            f"{self.closed_before_complete} closed before complete, "
            f"{self.reconnects} reconnects>"
        )


class Admissions(Protocol):
    """What :meth:`ServerStats.track` reads: the server's admission control."""

    @property
    def running(self) -> int:
        """Executions holding a slot now."""
        ...

    @property
    def waiting(self) -> int:
        """Admitted executions waiting for a slot now."""
        ...


class ServerStats:
    """Counters and gauges of the local sandbox server, for the whole process.

    The server updates :func:`server_stats` when an execution starts and when
    it refuses a request, and hands its admission control to :meth:`track`
    so that the running and queued gauges are read from it at scrape time
    (or counts them by hand in :attr:`running` and :attr:`queued`); every
    collector with self-metrics reads them.

    Attributes:
        running: Executions running now, besides those of tracked admissions.
        queued: Executions waiting for a slot now, likewise.
        executions: Executions started, ever.
        refusals: Requests refused, by reason: a short fixed word such as
            ``"busy"`` (no slot and a full queue), ``"unauthorized"``,
            ``"invalid"``. Past 32 reasons the rest count as ``"other"``.
            The local server counts ``busy`` (429, or an error frame and close
            1013), ``unauthorized`` (401), ``invalid`` (400, 413, an execute
            message refused with close 1008 or 1009), ``sandbox_limit`` (429
            at ``max_sandboxes`` or ``max_sandboxes_per_key``) and
            ``forbidden`` (403, a ``Host`` it does not serve).
        aborts: What the server ended on its own, by reason, bounded the
            same way: the local server counts ``send_timeout`` (a client
            that stopped reading: its connection dropped, its run killed),
            ``body_timeout`` (a request body not received in time: 408) and
            ``sandbox_expired`` (a sandbox deleted, idle past its time to
            live or past its own timeout).
    """

    __slots__ = (
        "_tracked",
        "aborts",
        "executions",
        "queued",
        "refusals",
        "running",
    )

    def __init__(self) -> None:
        self.running = 0
        self.queued = 0
        self.executions = 0
        self.refusals: dict[str, int] = {}
        self.aborts: dict[str, int] = {}
        self._tracked: list[Admissions] = []

    def refuse(self, reason: str) -> None:
        """Count one refused request under ``reason``."""
        _count(self.refusals, reason)

    def abort(self, reason: str) -> None:
        """Count one connection or sandbox the server ended, under ``reason``."""
        _count(self.aborts, reason)

    def track(self, admissions: Admissions) -> None:
        """Read ``admissions.running`` and ``.waiting`` into the gauges from now on.

        Call :meth:`untrack` when the server stops.
        """
        self._tracked.append(admissions)

    def untrack(self, admissions: Admissions) -> None:
        """Stop reading ``admissions``; nothing happens if it was not tracked."""
        with contextlib.suppress(ValueError):
            self._tracked.remove(admissions)

    def gauges(self) -> tuple[int, int]:
        """Return ``(running, queued)`` now, tracked admissions included."""
        running, queued = self.running, self.queued
        for admissions in list(self._tracked):
            running += admissions.running
            queued += admissions.waiting
        return running, queued


def _count(counts: dict[str, int], reason: str) -> None:
    """Add one to ``counts[reason]``; past the bound, new reasons are "other"."""
    if reason not in counts and len(counts) >= MAX_LABEL_VALUES:
        reason = "other"
    counts[reason] = counts.get(reason, 0) + 1


# Made on first use, so that a process without sources or a server exposes
# none of their series.
_sources: dict[str, SourceStats] = {}
_server: ServerStats | None = None
_stats_lock = threading.Lock()


def source_stats(kind: str) -> SourceStats:
    """Return the process-wide counters of the sources of ``kind``.

    Sources call it once (per stream, say) and then update the counters;
    see :class:`SourceStats`.

    Args:
        kind: The ``source`` label value; keep it to a few fixed words.
    """
    with _stats_lock:
        stats = _sources.get(kind)
        if stats is None:
            stats = _sources[kind] = SourceStats(kind)
    return stats


def server_stats() -> ServerStats:
    """Return the process-wide numbers of the local server; see :class:`ServerStats`.

    Its series are exposed from the first call on.
    """
    global _server
    with _stats_lock:
        if _server is None:
            _server = ServerStats()
        return _server


def all_source_stats() -> list[SourceStats]:
    """Return the counters of every kind of source used so far."""
    with _stats_lock:
        return list(_sources.values())


def current_server_stats() -> ServerStats | None:
    """Return the local server's numbers, or None if no server ever counted."""
    with _stats_lock:
        return _server
