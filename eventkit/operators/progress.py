"""Track each run's progress from its output and report it as ``progress`` events."""

from __future__ import annotations

import re
import sys
from typing import TYPE_CHECKING, Any, Final

from eventkit.events import OUTPUT_TYPES, TERMINAL_TYPES, Event, EventType
from eventkit.operators._base import Internals, Stateless

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = ["Progress", "TrackProgress", "parse_progress"]

_PROGRESS_TYPE: Final = str(EventType.PROGRESS)
# Plain str sets: membership tests then compare exact strings, the fast path.
_OUTPUT_TYPES: Final = frozenset(str(t) for t in OUTPUT_TYPES)
_TERMINAL_TYPES: Final = frozenset(str(t) for t in TERMINAL_TYPES)

#: A progress report in program output: ``45%``, ``45.0% (9/20)`` or ``9/20``.
#:
#: A number before ``%`` must not continue a word or a number (``x12%``,
#: ``1.5.0%``). A fraction must stand alone, so that paths and dates do not
#: read as progress: neither number may touch a word character or a ``/``
#: (``a/1/2``, ``2024/11/22``, ``step1/2``), nor a ``.`` that joins it to more of
#: a word (``1.2/3``, ``1/2.5``, ``3/4.txt``); a ``.`` ending a sentence is fine
#: (``Done 3/4.``). Numbers of more than 18 digits are not progress: they
#: are refused by the pattern, never handed to :func:`int` (whose digit limit
#: would raise).
_PROGRESS_RE: Final = re.compile(
    # Both forms start with a digit: saying so first lets the engine skip
    # the other characters fast.
    r"(?=\d)(?:"
    r"(?<![\w.])(?P<percent>\d{1,18}(?:\.\d{1,18})?)%"
    r"(?:\s*\(\s*(?P<part>\d{1,18})/(?P<whole>\d{1,18})\s*\))?"
    r"|(?<![\w/])(?<![\w/]\.)(?P<current>\d{1,18})/(?P<total>\d{1,18})"
    r"(?![\w/]|\.[\w/])"
    r")"
)

#: ``(percent, current, total)``, each None until a report said it.
Progress = tuple[float | None, int | None, int | None]


#: Characters looked through, back from a ``%`` or ``/``, for the start of
#: the run holding it, before the whole text is searched instead (see
#: :func:`parse_progress`).
_RUN_SCAN: Final = 200
#: ``%`` and ``/`` looked at from the end, and runs searched, before the rest
#: of the text is searched at once.
_MARKS_TRIED: Final = 64
_RUNS_TRIED: Final = 8
#: The most digits a number of a report has.
_MAX_DIGITS: Final = 18
_ASCII_DIGITS: Final = "0123456789"
#: ASCII characters a report can be made of: digits, spaces (``\s``: the
#: control characters ``\x1c`` to ``\x1f`` too), ``.%/()``.
_REPORT_CHARS: Final = frozenset(
    char
    for char in map(chr, range(128))
    if char.isdecimal() or char.isspace() or char in ".%/()"
)
#: A character no report can hold: what ends a run.
_OUTSIDE: Final = re.compile(r"[^\d\s.%/()]")


def parse_progress(data: str, last: Progress) -> Progress:
    """Return ``(percent, current, total)`` after the last report in ``data``.

    Only the last valid report counts, and the regular expression costs tens
    of nanoseconds a character in digit-heavy output (logs with times and
    counts), so the text is not searched whole. Every report holds a ``%``
    with a digit before it or a ``/`` with digits on both sides, and lies
    within a run of the characters a report can be made of (digits, spaces,
    ``.%/()``). So the ``%`` and ``/`` are looked at from the end: those
    without their digits (``ms/row``, ``100 %``) are passed over, a plain
    fraction is read by hand, and the run around each of the others is
    searched until one holds a valid report.
    Its matches are exactly those a search of the whole text finds there,
    since no match spans a character outside its run. Past many of them, or
    a very long run, the rest of the text is searched at once.

    Args:
        data: Program output.
        last: The values seen so far, kept where ``data`` says nothing new.

    Returns:
        ``last`` itself when ``data`` holds no valid report.
    """
    # No valid report lies at or after ``end``; ``searched`` is where the last
    # run searched starts (a run's edge, as the whole-text search needs).
    end = searched = len(data)
    runs = 0
    # The last % and the last / before ``end``, each looked for again only
    # once ``end`` passed it.
    percent_at = data.rfind("%")
    slash_at = data.rfind("/")
    for _ in range(_MARKS_TRIED):
        if percent_at >= end:
            percent_at = data.rfind("%", 0, end)
        if slash_at >= end:
            slash_at = data.rfind("/", 0, end)
        mark = max(percent_at, slash_at)
        if mark < 0:
            return last  # no report without one of them
        if not mark or not data[mark - 1].isdecimal():
            end = mark
            continue
        if data[mark] == "/":
            after = data[mark + 1 : mark + 2]
            if not (after and after.isdecimal()):
                end = mark
                continue
            found = _plain_fraction(data, mark)
            if found is not None:
                return found
        start = _run_start(data, mark)
        if start < 0:
            break  # a run too long to walk back: search what is left at once
        outside = _OUTSIDE.search(data, mark + 1)
        stop = len(data) if outside is None else outside.start()
        # The search sees one character past the run: what a number must
        # not run into.
        found = _last_report(data, start, last, stop + 1)
        if found is not None:
            return found
        end = searched = start
        runs += 1
        if runs == _RUNS_TRIED:
            break
    found = _last_report(data, 0, last, searched)
    return last if found is None else found


def _plain_fraction(data: str, mark: int) -> Progress | None:
    """Read the fraction around the ``/`` at ``mark`` by hand, if it is a plain one.

    The usual report, ``1234/5000`` among ASCII text, costs the expression
    most of a microsecond; read here when it is sure to be what the
    expression finds: ASCII digits on both sides standing alone as the
    expression asks, not inside ``NN% (c/t)``, and valid. Anything else
    (None) is left to the expression.
    """
    # The ASCII digits either side, one more than a number may have at most.
    head = data[max(mark - _MAX_DIGITS - 1, 0) : mark]
    first = mark - (len(head) - len(head.rstrip(_ASCII_DIGITS)))
    tail = data[mark + 1 : mark + _MAX_DIGITS + 2]
    stop = mark + 1 + (len(tail) - len(tail.lstrip(_ASCII_DIGITS)))
    if not (0 < mark - first <= _MAX_DIGITS and 0 < stop - mark - 1 <= _MAX_DIGITS):
        return None
    size = len(data)
    if first:
        before = data[first - 1]
        if not before.isascii() or _joins(before):
            return None
        if before == "." and first > 1 and _joins(data[first - 2]):
            return None  # a number that goes on: the expression refuses it
        if _after_percent(data, first):
            return None
    if stop < size:
        after = data[stop]
        if not after.isascii() or _joins(after):
            return None
        if after == "." and stop + 1 < size and _joins(data[stop + 1]):
            return None
    current, total = int(data[first:mark]), int(data[mark + 1 : stop])
    if total > 0 and current <= total:
        return (100.0 * current / total, current, total)
    return None


def _joins(char: str) -> bool:
    """Tell whether ``char`` would join a number to more: a word character or ``/``.

    Any character beyond ASCII counts, to be safe.
    """
    return not char.isascii() or char.isalnum() or char in "_/"


def _after_percent(data: str, first: int) -> bool:
    """Tell whether ``data[:first]`` may end as ``NN%`` and ``(``, spaces between."""
    index = first - 1
    while index >= 0 and data[index].isspace():
        index -= 1
    if index < 0 or data[index] != "(":
        return False
    index -= 1
    while index >= 0 and data[index].isspace():
        index -= 1
    return index >= 0 and data[index] == "%"


def _run_start(data: str, mark: int) -> int:
    """Return where the run of report characters holding ``mark`` starts.

    -1 when that is more than :data:`_RUN_SCAN` characters back.
    """
    report_chars = _REPORT_CHARS
    index = mark
    floor = max(mark - _RUN_SCAN, 0)
    while index > floor:
        char = data[index - 1]
        # Beyond ASCII, digits and spaces of other scripts match \d and \s.
        if char not in report_chars and (
            char.isascii() or not (char.isdecimal() or char.isspace())
        ):
            return index
        index -= 1
    return 0 if index == 0 else -1


def _last_report(
    data: str, start: int, last: Progress, stop: int = sys.maxsize
) -> Progress | None:
    """Return the last valid report in ``data[start:stop]``, or None.

    The search sees the characters before ``start`` (for the checks that
    a number does not continue a word), not those from ``stop`` on.
    """
    found: Progress | None = None
    # Invalid matches (a percent over 100, a fraction over its total) are
    # skipped as false positives.
    for match in _PROGRESS_RE.finditer(data, start, stop):
        # One call for every group: (percent, part, whole, current, total).
        percent_text, part, whole, current_text, total_text = match.groups()
        if percent_text is not None:
            percent = float(percent_text)
            if percent > 100.0:
                continue
            if part is not None and int(whole) > 0 and int(part) <= int(whole):
                found = (percent, int(part), int(whole))
            else:
                # A bare percent says nothing about the counts: keep them.
                found = (percent, last[1], last[2])
            continue
        current, total = int(current_text), int(total_text)
        if total > 0 and current <= total:
            found = (100.0 * current / total, current, total)
    return found


class _RunState:
    """What :class:`TrackProgress` knows about one run."""

    __slots__ = (
        "bytes",
        "changed",
        "events",
        "first_timestamp",
        "last",
        "last_report",
        "parsed",
    )

    def __init__(self, first: Event) -> None:
        self.events = 0
        self.bytes = 0
        self.first_timestamp = first.timestamp
        self.parsed: Progress = (None, None, None)
        # True while a change of ``parsed`` has not been reported yet.
        self.changed = False
        # Event time of the last report, None before the first.
        self.last_report: float | None = None
        # The run's latest event, which the report at flush() follows.
        self.last = first


class TrackProgress(Stateless):
    """Pass every event and report each run's progress as ``progress`` events.

    Every input event passes unchanged and in order. Progress is parsed from
    the ``data`` of ``stdout`` and ``stderr`` events: ``Progress: 45.0% (9/20)``,
    ``45%`` or ``9/20`` (percent 45.0 from the fraction), the last report in
    the data counting. A bare percent leaves current and total as last seen.
    Fractions that look like paths or dates (``a/1/2``, ``2024/11/22``) are not
    progress, nor are percents over 100 or fractions over their total.

    A ``progress`` event is emitted right after an event that changed the parsed
    ``(percent, current, total)``, at most one per ``interval`` seconds of event
    time (:attr:`~eventkit.events.Event.timestamp`) per run; a change held back
    by the interval is reported after the first later event of the run at least
    ``interval`` after the previous report. A report with ``done`` True always
    follows the run's terminal event (``completed``) and, at :meth:`flush`, the
    last event of every run that never completed.

    A progress event has the run, timestamp and sequence of the event it
    follows, empty ``data``, and ``attrs``:

    - ``events``: the run's input events so far, the terminal one included;
    - ``bytes``: UTF-8 bytes of the run's ``stdout`` and ``stderr`` data so far;
    - ``elapsed``: seconds from the run's first event to this one, by their
      timestamps (0.0 if timestamps go backwards);
    - ``rate``: ``events / elapsed`` per second, None while ``elapsed`` is 0;
    - ``percent``, ``current``, ``total``: the parsed progress, None until seen;
    - ``eta``: seconds left, ``elapsed * (100 - percent) / percent``; 0.0 at
      100 %, None while ``percent`` or ``elapsed`` is unknown or 0;
    - ``done``: True on the final report of a run.

    State is kept per run and deleted after the run's terminal event, so memory
    is bounded by the runs in progress; an event of the same run after that
    starts a fresh count. Events of type ``progress`` fed back in pass untouched
    and are not counted. No time-based behaviour: :meth:`deadline` is None.

    Args:
        interval: Least event time, in seconds, between two reports of a run
            other than the final one; 0 to report every change.

    Raises:
        ValueError: If ``interval`` is negative.
    """

    __slots__ = ("_interval", "_runs")

    def __init__(self, *, interval: float = 0.0) -> None:
        if interval < 0:
            raise ValueError(
                f"interval must be at least 0 seconds, got interval={interval!r}"
            )
        self._interval = interval
        self._runs: dict[str, _RunState] = {}

    #: The stage's name, as in :mod:`eventkit.pipe`.
    name = "track_progress"

    def internals(self) -> Internals:
        """Return the runs followed now (self-metrics)."""
        return Internals({}, {}, {("progress_active_runs", ()): self.active_runs})

    @property
    def active_runs(self) -> int:
        """Number of runs with state: seen, and not completed since."""
        return len(self._runs)

    def feed(self, events: list[Event]) -> list[Event]:
        """Count each event; return them, each followed by its progress event if due."""
        out: list[Event] = []
        emit = out.append
        runs = self._runs
        interval = self._interval
        for event in events:
            emit(event)
            type_ = event.type
            if type_ == _PROGRESS_TYPE:
                continue
            run = event.run
            state = runs.get(run)
            if state is None:
                state = runs[run] = _RunState(event)
            state.events += 1
            state.last = event
            if type_ in _OUTPUT_TYPES:
                data = event.data
                # data_size() inlined, as every output event comes this way.
                state.bytes += len(data) if data.isascii() else len(data.encode())
                # Cheap pre-check: most output holds neither character, and
                # parsing costs far more than two substring searches. A "/",
                # the commoner in logs, is looked for first.
                if "/" in data or "%" in data:
                    parsed = parse_progress(data, state.parsed)
                    if parsed != state.parsed:
                        state.parsed = parsed
                        state.changed = True
            if type_ in _TERMINAL_TYPES:
                del runs[run]
                emit(_report(state, event, done=True))
            elif state.changed and (
                state.last_report is None
                or event.timestamp - state.last_report >= interval
            ):
                state.changed = False
                state.last_report = event.timestamp
                emit(_report(state, event, done=False))
        return out

    def flush(self) -> list[Event]:
        """End of input: return a final report for every run that never completed.

        Each follows its run's last event; runs come in the order first seen.
        """
        reports = [
            _report(state, state.last, done=True) for state in self._runs.values()
        ]
        self._runs.clear()
        return reports


def _report(state: _RunState, after: Event, *, done: bool) -> Event:
    """Make the progress event of ``state`` that follows the event ``after``."""
    return Event(
        type=_PROGRESS_TYPE,
        data="",
        timestamp=after.timestamp,
        sequence=after.sequence,
        run=after.run,
        attrs=_attrs(state, after.timestamp, done=done),
    )


def _attrs(state: _RunState, now: float, *, done: bool) -> Mapping[str, Any]:
    """Return the ``attrs`` of a progress event of ``state`` at event time ``now``."""
    elapsed = max(0.0, now - state.first_timestamp)
    percent, current, total = state.parsed
    eta: float | None
    if percent is None:
        eta = None
    elif percent >= 100.0:
        eta = 0.0
    elif percent > 0.0 and elapsed > 0.0:
        eta = elapsed * (100.0 - percent) / percent
    else:
        eta = None
    return {
        "events": state.events,
        "bytes": state.bytes,
        "elapsed": elapsed,
        "rate": state.events / elapsed if elapsed > 0.0 else None,
        "percent": percent,
        "current": current,
        "total": total,
        "eta": eta,
        "done": done,
    }
