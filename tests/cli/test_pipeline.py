"""The chain the flags build, the outputs, and publishing before the chain."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from eventkit import sinks, sources
from eventkit.cli import main
from eventkit.cli.arguments import build_parser
from eventkit.cli.pipeline import build_chain, published
from tests.factories import ev

if TYPE_CHECKING:
    import pytest

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
            "stdout",
            "completed",
            "--reorder",
        ]
    )
    assert [
        "reorder",
        "only('stdout', 'completed')",
        "buffer_bytes(64)",
        "track_progress",
        "log_events",
    ] == [stage.name for stage in build_chain(args)]


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


async def test_published_sends_each_event_before_passing_it_on() -> None:
    """The publisher sees each event first, and is closed at the end."""
    log: list[str] = []
    events = [ev("stdout", "a\n", 0), ev("completed", sequence=1)]
    source = sources.iterate(events)
    async for event in published(source, Recorder(log)):
        log.append(f"yield {event.sequence}")
    assert ["open", "send 0", "yield 0", "send 1", "yield 1", "close"] == log


async def test_published_closes_the_publisher_when_left_early() -> None:
    """A consumer that stops early still gets the publisher closed."""
    log: list[str] = []
    events = [ev("stdout", "a\n", 0), ev("completed", sequence=1)]
    stream = published(sources.iterate(events), Recorder(log))
    async for _ in stream:
        break
    await stream.aclose()
    assert ["open", "send 0", "close"] == log
