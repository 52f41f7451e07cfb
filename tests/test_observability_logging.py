"""Structured logging as programs set it up: :func:`eventkit.logging.configure`.

The lines are read back from standard error and parsed. The library side
(what :func:`eventkit.pipe.log_events` logs) is tested with
:func:`structlog.testing.capture_logs` in ``tests/operators/test_log.py``.
"""

from __future__ import annotations

import datetime
import io
import json
import logging
import re
import time
from typing import TYPE_CHECKING, Any

import pytest
import structlog

import eventkit
from eventkit import pipe, sources
from eventkit.logging import _LevelTimeAndTraceback, configure
from tests.factories import ev

if TYPE_CHECKING:
    from collections.abc import Iterator

    from structlog.typing import EventDict

ISO = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z")


@pytest.fixture(autouse=True)
def reset() -> Iterator[None]:
    """Leave structlog as it was found: configure() changes global state."""
    yield
    structlog.reset_defaults()
    structlog.contextvars.clear_contextvars()


def lines(text: str) -> list[dict[str, Any]]:
    """Parse JSON lines; every line must be one JSON object."""
    parsed = [json.loads(line) for line in text.splitlines()]
    assert all(isinstance(entry, dict) for entry in parsed)
    return parsed


RUN = [
    ev("started"),
    ev("stdout", "hello\n", 1),
    ev("stderr", "oops\n", 2),
    ev("result", "", 3, exit_code=3, execution_time=0.25),
    ev("completed", "", 4, success=False),
]


@pytest.mark.parametrize(
    "nanoseconds",
    # Microseconds with leading zeros, truncated not rounded; the next
    # second; a second ending in zeros.
    [1_764_928_000_000_123_999, 1_764_928_001_999_999_999, 1_764_928_000_000_000_000],
)
def test_timestamps_to_the_microsecond(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    nanoseconds: int,
) -> None:
    """The timestamp is the time in UTC, to the microsecond, truncated."""
    configure("json")
    log = structlog.get_logger("eventkit")
    log.info("before")  # the date and time of the real second are cached
    monkeypatch.setattr(time, "time_ns", lambda: nanoseconds)
    log.info("then")
    [_, entry] = lines(capsys.readouterr().err)
    seconds, remainder = divmod(nanoseconds, 1_000_000_000)
    when = datetime.datetime.fromtimestamp(seconds, datetime.UTC).replace(
        microsecond=remainder // 1000
    )
    assert when.strftime("%Y-%m-%dT%H:%M:%S.%fZ") == entry["timestamp"]


def test_json_lines_on_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    """One JSON object per line on stderr, with level and an ISO UTC timestamp."""
    configure("json")
    structlog.get_logger("eventkit").info("hello", run="r", sequence=3, n=1.5)
    out, err = capsys.readouterr()
    assert "" == out
    [entry] = lines(err)
    timestamp = entry.pop("timestamp")
    assert {
        "event": "hello",
        "run": "r",
        "sequence": 3,
        "n": 1.5,
        "level": "info",
    } == entry
    assert ISO.fullmatch(timestamp)
    when = datetime.datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
    now = datetime.datetime.now(datetime.UTC)
    assert abs((now - when).total_seconds()) < 60


def test_level_filters(capsys: pytest.CaptureFixture[str]) -> None:
    """Entries below the level are dropped."""
    configure("json", level="warning")
    logger = structlog.get_logger("eventkit")
    logger.info("quiet")
    logger.warning("loud")
    logger.error("louder")
    assert ["loud", "louder"] == [e["event"] for e in lines(capsys.readouterr().err)]


def test_contextvars_are_merged(capsys: pytest.CaptureFixture[str]) -> None:
    """Context bound with bind_contextvars shows in every entry."""
    configure("json")
    structlog.contextvars.bind_contextvars(request="req-1")
    structlog.get_logger().info("with context")
    with structlog.contextvars.bound_contextvars(run="r-9"):
        structlog.get_logger().info("inside")
    entries = lines(capsys.readouterr().err)
    assert [("req-1", None), ("req-1", "r-9")] == [
        (e["request"], e.get("run")) for e in entries
    ]


def test_values_json_cannot_hold(capsys: pytest.CaptureFixture[str]) -> None:
    """Values without a JSON form are written as their repr; exceptions rendered."""

    class Point:
        def __structlog__(self) -> dict[str, int]:
            return {"x": 1}

    configure("json")
    try:
        raise ValueError("bad")
    except ValueError:
        structlog.get_logger().exception(
            "failed", thing=object, data=b"\x00", point=Point()
        )
    [entry] = lines(capsys.readouterr().err)
    assert "<class 'object'>" == entry["thing"]
    assert {"x": 1} == entry["point"]
    assert "ValueError: bad" in entry["exception"]
    assert "error" == entry["level"]


def test_console_format(capsys: pytest.CaptureFixture[str]) -> None:
    """The console format writes key=value lines, uncoloured off a terminal."""
    configure("console")
    structlog.get_logger().info("hello", run="r")
    err = capsys.readouterr().err
    assert "hello" in err
    assert "run=r" in err
    assert "\x1b[" not in err


def test_file() -> None:
    """``file`` sends the lines elsewhere."""
    sink = io.StringIO()
    configure("json", file=sink)
    structlog.get_logger().info("to a file")
    assert ["to a file"] == [e["event"] for e in lines(sink.getvalue())]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"format": "xml"}, "format"), ({"level": "loud"}, "level")],
)
def test_invalid_arguments(kwargs: dict[str, Any], match: str) -> None:
    """An unknown format or level raises ValueError."""
    with pytest.raises(ValueError, match=match):
        configure(**kwargs)


async def test_summary_mode_as_the_cli_logs(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """log_events(mode="summary") with JSON: lifecycle lines, then the summary."""
    configure("json")
    await eventkit.run(sources.iterate(RUN), pipe.log_events(mode="summary"))
    out, err = capsys.readouterr()
    assert "" == out
    entries = lines(err)
    assert ["started", "run_summary"] == [e["event"] for e in entries]
    assert all(ISO.fullmatch(e["timestamp"]) for e in entries)
    assert ("r", 0) == (entries[0]["run"], entries[0]["sequence"])
    summary = entries[-1]
    assert {
        "run": "r",
        "duration": 0.25,
        "exit_code": 3,
        "success": False,
        "completed": True,
        "events": {
            "started": 1,
            "stdout": 1,
            "stderr": 1,
            "result": 1,
            "completed": 1,
        },
        "bytes": {"stdout": 6, "stderr": 5},
        "gaps": 0,
        "missing": 0,
        "limits": [],
        "errors": 0,
        "level": "warning",
    } == {k: v for k, v in summary.items() if k not in ("event", "timestamp")}


async def test_every_event_sampled(capsys: pytest.CaptureFixture[str]) -> None:
    """Per-event logging with ``every``: output sampled, lifecycle kept."""
    configure("json")
    events = [ev("started")]
    events += [ev("stdout", f"{i}\n", i) for i in range(1, 21)]
    events += [ev("completed", "", 21, success=True)]
    await eventkit.run(sources.iterate(events), pipe.log_events(every=10))
    entries = lines(capsys.readouterr().err)
    assert [
        ("started", ""),
        ("stdout", "1\n"),
        ("stdout", "11\n"),
        ("completed", ""),
    ] == [(e["event"], e["data"]) for e in entries]
    assert ["info", "info", "info", "info"] == [e["level"] for e in entries]


def _replay(logger: Any) -> None:
    """Log through every way in, on its own and with bound context."""
    for log in (logger, logger.bind(task="t1", n=2), logger.bind(a=1).unbind("a")):
        log.debug("hidden", n=0)
        log.info("plain")
        log.info("fields", run="r", sequence=3, nested={"k": [1, 2]}, n=9)
        log.info("hello %s and %s", "you", "me", extra=1)
        log.info("hello %(who)s", {"who": "you"})
        log.warning("warned", level_was="w")
        log.warn("alias")
        log.error("failed", event_id=1)
        log.critical("down")
        log.fatal("alias")
        log.msg("message")
        log.log(logging.WARNING, "by number", n=1)
        log.info("drop me", n=1)
        try:
            raise KeyError("k")
        except KeyError:
            log.exception("caught")
            log.error("with exc_info", exc_info=True)


def _untimed(sink: io.StringIO) -> tuple[list[dict[str, Any]], list[str]]:
    """Return the entries written to ``sink`` without their timestamps, and those."""
    entries = lines(sink.getvalue())
    return entries, [entry.pop("timestamp") for entry in entries]


async def _replay_async(logger: Any) -> None:
    """Log through the async methods, which run in a thread of their own."""
    log = logger.bind(task="t2")
    await log.ainfo("async", n=1)
    await log.awarning("async %s", "args")
    await log.alog(logging.ERROR, "async by number")


async def test_its_lines_are_structlogs_own() -> None:
    """configure()'s leaner loggers and processors write what structlog's would.

    structlog's own: its filtering bound logger, add_log_level, an ISO UTC
    TimeStamper, format_exc_info and JSONRenderer; timestamps aside, the same
    entries through every way in.
    """

    def drop(_: Any, __: str, entry: EventDict) -> EventDict:
        if entry["event"] == "drop me":
            raise structlog.DropEvent
        return entry

    theirs = io.StringIO()
    structlog.configure(
        processors=[
            drop,
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
        logger_factory=structlog.WriteLoggerFactory(theirs),
    )
    _replay(structlog.get_logger())
    await _replay_async(structlog.get_logger())
    ours = io.StringIO()
    configure("json", file=ours)
    structlog.configure(processors=[drop, *structlog.get_config()["processors"]])
    _replay(structlog.get_logger())
    await _replay_async(structlog.get_logger())
    expected, their_stamps = _untimed(theirs)
    found, our_stamps = _untimed(ours)
    assert all(ISO.fullmatch(stamp) for stamp in their_stamps + our_stamps)
    assert 42 == len(expected)
    assert expected == found


def test_a_callers_keywords_are_left_alone(capsys: pytest.CaptureFixture[str]) -> None:
    """The entry is the call's own dict: neither the caller's nor the bound context."""
    configure("json")
    fields = {"n": 1}
    log = structlog.get_logger().bind(bound=True)
    log.info("first", **fields)
    log.info("second")
    assert {"n": 1} == fields
    assert [("first", 1), ("second", None)] == [
        (e["event"], e.get("n")) for e in lines(capsys.readouterr().err)
    ]
    assert {"bound": True} == structlog.get_context(log)


@pytest.mark.parametrize("method", ["debug", "info", "warn", "warning", "exception"])
def test_level_names_are_structlogs(method: str) -> None:
    """Every method name gets the level structlog's add_log_level gives it."""
    expected = structlog.processors.add_log_level(None, method, {})["level"]
    stamp = _LevelTimeAndTraceback()
    assert expected == stamp(None, method, {})["level"]
