"""The chain the flags build, the outputs, and publishing before the chain."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pytest

import eventkit
from eventkit import pipe, sinks, sources
from eventkit.cli import main
from eventkit.cli.arguments import build_parser
from eventkit.cli.pipeline import Tap, build_chain
from eventkit.summary import SummaryTracker
from tests.factories import ev

if TYPE_CHECKING:
    from eventkit import Event

DEMO = Path(__file__).parents[2] / "recipes" / "data" / "demo.jsonl"


def test_bad_chain_argument(capsys: pytest.CaptureFixture[str]) -> None:
    """A nonsense --buffer-bytes is refused with exit status 2."""
    assert main(["replay", str(DEMO), "--buffer-bytes", "2"]) == 2
    _, err = capsys.readouterr()
    assert "limit" in err


def test_chain_applies_in_documented_order() -> None:
    """Stages come in the order of the chain flags in --help, not on the line."""
    args = build_parser().parse_args(
        [
            "replay",
            "run.jsonl",
            "--log",
            "json",
            "--progress",
            "--buffer-bytes",
            "64",
            "--only",
            "stdout,completed",
            "--cap-output",
            "100,20",
            "--lines",
            "--reorder",
        ]
    )
    assert [
        "reorder",
        "only('stdout', 'completed')",
        "lines",
        "buffer_bytes(64)",
        "cap_output(100, 20)",
        "track_progress",
        "log_events",
    ] == [stage.name for stage in build_chain(args)]


@pytest.mark.parametrize(
    ("value", "sizes"), [("4096", (4096, 4096)), ("10,0", (10, 0))]
)
def test_cap_output_takes_head_and_tail(value: str, sizes: tuple[int, int]) -> None:
    """--cap-output HEAD[,TAIL]: the tail defaults to the head."""
    args = build_parser().parse_args(["replay", "x.jsonl", "--cap-output", value])
    assert sizes == args.cap_output


@pytest.mark.parametrize("value", ["abc", "1,x", "-1", "5,-2"])
def test_cap_output_refuses_nonsense(
    value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A value that is not HEAD[,TAIL] in bytes is a usage error (status 2)."""
    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args(["replay", "x.jsonl", "--cap-output", value])
    assert 2 == exited.value.code
    assert "--cap-output" in capsys.readouterr().err


def test_no_chain_flags_no_stages() -> None:
    """Without chain flags the events go through untouched."""
    args = build_parser().parse_args(["replay", "run.jsonl"])
    assert [] == build_chain(args)


class Recorder(sinks.Sink):
    """Writes down what the publisher is asked to do, in order."""

    def __init__(self, log: list[str]) -> None:
        self.log = log

    async def open(self) -> None:
        self.log.append("open")

    async def send(self, event: Event) -> None:
        self.log.append(f"send {event.sequence}")

    async def close(self) -> None:
        self.log.append("close")


async def test_tap_publishes_each_batch_before_passing_it_on() -> None:
    """The publisher sees each event first, and is closed at the end."""
    log: list[str] = []
    events = [ev("stdout", "a\n", 0), ev("completed", sequence=1)]
    tap = Tap(sources.iterate(events), SummaryTracker(), Recorder(log))
    async for event in tap:
        log.append(f"yield {event.sequence}")
    assert ["open", "send 0", "send 1", "yield 0", "yield 1", "close"] == log


async def test_tap_closes_the_publisher_when_left_early() -> None:
    """A consumer that stops early still gets the publisher closed."""
    log: list[str] = []
    events = [ev("stdout", "a\n", 0), ev("completed", sequence=1)]
    batches = Tap(sources.iterate(events), SummaryTracker(), Recorder(log)).batches()
    async for _ in batches:
        break
    await batches.aclose()  # type: ignore[attr-defined]
    assert ["open", "send 0", "send 1", "close"] == log


async def test_tap_counts_the_source_events_into_the_summaries() -> None:
    """The tracker sees every event the source gives, whatever reads them after."""
    tracker = SummaryTracker()
    events = [ev("stdout", "a\n", 0), ev("result", sequence=1, exit_code=4)]
    await eventkit.run(Tap(sources.iterate(events), tracker), pipe.only("stdout"))
    (run,) = tracker.summaries()
    assert 4 == run.exit_code
    assert {"stdout": 1, "result": 1} == run.events


def test_only_and_exclude_take_lists_and_repeats() -> None:
    """--only a,b --only c and --exclude d,e give one stage each, types in order."""
    args = build_parser().parse_args(
        [
            *("replay", "--only", "stdout,stderr", "--only", "completed", "run.jsonl"),
            *("--exclude", "stderr", "--exclude", "result,error"),
        ]
    )
    assert "run.jsonl" == args.file
    assert ["stdout", "stderr", "completed"] == args.only
    assert ["stderr", "result", "error"] == args.exclude
    names = [stage.name for stage in build_chain(args, warn=pytest.fail)]
    assert [
        "only('stdout', 'stderr', 'completed')",
        "exclude('stderr', 'result', 'error')",
    ] == names


def test_unknown_type_is_warned_about_and_kept() -> None:
    """A type eventkit does not make gets one warning naming the known ones."""
    args = build_parser().parse_args(["replay", "run.jsonl", "--only", "stdot,mine"])
    warnings: list[str] = []
    (stage,) = build_chain(args, warn=warnings.append)
    assert "only('stdot', 'mine')" == stage.name
    (warning,) = warnings
    assert warning.startswith("--only stdot,mine: not an event type")
    assert "stdout, stderr" in warning


def test_unknown_type_warning_is_one_line_on_stderr(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The command prints the warning on stderr, then runs with the type."""
    assert 0 == main(["replay", str(DEMO), "--only", "stdot", "--json"])
    out, err = capsys.readouterr()
    assert "" == out
    (warning,) = [line for line in err.splitlines() if "warning" in line]
    assert warning.startswith("warning: --only stdot: not an event type")


@pytest.mark.parametrize("flag", ["--only", "--exclude"])
def test_empty_type_list_is_a_usage_error(
    flag: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--only ,`` names no type: argparse refuses it with status 2."""
    with pytest.raises(SystemExit) as stopped:
        build_parser().parse_args(["replay", "run.jsonl", flag, ","])
    assert 2 == stopped.value.code
    assert "no event type" in capsys.readouterr().err
