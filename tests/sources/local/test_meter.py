"""Tests for :mod:`eventkit.sources.local.meter`: synchronous, no process, no loop."""

from __future__ import annotations

import signal

import pytest

from eventkit.sources.local.meter import MEMORY_MARKERS, MEMORY_SIGNALS, OutputMeter

# --- decoding ---------------------------------------------------------------------


def test_ascii_passes_through() -> None:
    """Each read comes out as its text, stream by stream."""
    meter = OutputMeter()
    assert "hello\n" == meter.feed("stdout", b"hello\n")
    assert "oops\n" == meter.feed("stderr", b"oops\n")
    assert "" == meter.end("stdout")
    assert "" == meter.end("stderr")
    assert not meter.capped


def test_character_split_across_reads_comes_out_whole() -> None:
    """The bytes of one character in two reads make it whole in the second."""
    meter = OutputMeter()
    assert "a" == meter.feed("stdout", b"a\xe2\x82")
    assert "\u20ac!" == meter.feed("stdout", b"\xac!")


def test_streams_are_decoded_apart() -> None:
    """A character begun on stdout is not completed by stderr's bytes."""
    meter = OutputMeter()
    assert "" == meter.feed("stdout", b"\xe2")
    assert "x" == meter.feed("stderr", b"x")
    assert "\u20ac" == meter.feed("stdout", b"\x82\xac")


def test_invalid_bytes_become_replacement_characters() -> None:
    """Bytes that are not UTF-8 become U+FFFD; so does a character cut by the end."""
    meter = OutputMeter()
    assert "a\ufffdb" == meter.feed("stdout", b"a\xffb\xe2")
    assert "\ufffd" == meter.end("stdout")


def test_unknown_stream() -> None:
    """Only stdout and stderr are streams."""
    with pytest.raises(KeyError):
        OutputMeter().feed("stdin", b"x")


# --- the output cap ---------------------------------------------------------------


def test_no_cap() -> None:
    """Without a cap, any amount comes out."""
    meter = OutputMeter(None)
    assert "x" * 100_000 == meter.feed("stdout", b"x" * 100_000)
    assert not meter.capped


def test_cap_reached_but_not_exceeded() -> None:
    """Exactly max_output_bytes bytes is no excess."""
    meter = OutputMeter(10)
    assert "x" * 10 == meter.feed("stdout", b"x" * 10)
    assert not meter.capped
    assert "" == meter.feed("stdout", b"")
    assert not meter.capped


def test_cap_cuts_exactly_and_counts_both_streams() -> None:
    """stdout and stderr share the cap; the read past it is cut at the byte."""
    meter = OutputMeter(100)
    assert "a" * 61 == meter.feed("stdout", b"a" * 61)
    assert "b" * 39 == meter.feed("stderr", b"b" * 60)
    assert meter.capped


def test_cap_never_splits_a_character() -> None:
    """A character the cap cuts in two is dropped, at the end too."""
    meter = OutputMeter(3)
    assert "ab" == meter.feed("stdout", "ab\u20ac".encode())
    assert meter.capped
    assert "" == meter.end("stdout")


def test_nothing_comes_out_after_the_cap() -> None:
    """Once capped, every read is discarded."""
    meter = OutputMeter(4)
    assert "abcd" == meter.feed("stdout", b"abcdef")
    assert "" == meter.feed("stdout", b"more")
    assert "" == meter.feed("stderr", b"more")
    assert "" == meter.end("stderr")
    assert meter.capped


def test_zero_cap() -> None:
    """A cap of 0 bytes: the first byte is past it."""
    meter = OutputMeter(0)
    assert "" == meter.feed("stdout", b"")
    assert not meter.capped
    assert "" == meter.feed("stdout", b"x")
    assert meter.capped


# --- the memory heuristic ---------------------------------------------------------


@pytest.mark.parametrize("marker", MEMORY_MARKERS)
def test_memory_markers_in_stderr(marker: str) -> None:
    """Each marker in stderr, with a failing exit, means the memory cap was hit."""
    meter = OutputMeter(watch_memory=True)
    meter.feed("stderr", f"Traceback...\n{marker}\n".encode())
    assert meter.memory_marker_seen
    assert meter.ran_out_of_memory(1)


def test_memory_marker_split_across_reads() -> None:
    """A marker that two reads split is still found."""
    meter = OutputMeter(watch_memory=True)
    meter.feed("stderr", b"x" * 1000 + b"Memory")
    assert not meter.ran_out_of_memory(1)
    meter.feed("stderr", b"Error\n")
    assert meter.memory_marker_seen


def test_memory_marker_split_inside_a_character() -> None:
    """A read that splits a character before a marker does not hide the marker."""
    meter = OutputMeter(watch_memory=True)
    meter.feed("stderr", "\u20acbad_al".encode()[:2])
    meter.feed("stderr", "\u20acbad_al".encode()[2:])
    meter.feed("stderr", b"loc")
    assert meter.memory_marker_seen


def test_memory_marker_in_stdout_does_not_count() -> None:
    """Only stderr is searched."""
    meter = OutputMeter(watch_memory=True)
    meter.feed("stdout", b"MemoryError")
    assert not meter.memory_marker_seen
    assert not meter.ran_out_of_memory(1)


def test_memory_is_not_watched_without_a_cap() -> None:
    """Without watch_memory, no marker or signal means memory."""
    meter = OutputMeter()
    meter.feed("stderr", b"MemoryError\n")
    assert not meter.memory_marker_seen
    assert not meter.ran_out_of_memory(1)
    assert not meter.ran_out_of_memory(-signal.SIGKILL)


@pytest.mark.parametrize("exit_code", sorted(MEMORY_SIGNALS))
def test_memory_signals(exit_code: int) -> None:
    """Death by SIGKILL, SIGSEGV, SIGABRT or SIGBUS under a cap means memory."""
    assert OutputMeter(watch_memory=True).ran_out_of_memory(exit_code)


@pytest.mark.parametrize("exit_code", [1, 2, -signal.SIGTERM, -signal.SIGINT])
def test_other_failures_are_not_memory(exit_code: int) -> None:
    """Other exit codes and signals, without a marker, are no memory limit."""
    assert not OutputMeter(watch_memory=True).ran_out_of_memory(exit_code)


def test_success_is_never_memory() -> None:
    """A run that exits with 0 did not hit its memory cap, markers or not."""
    meter = OutputMeter(watch_memory=True)
    meter.feed("stderr", b"MemoryError")
    assert meter.memory_marker_seen
    assert not meter.ran_out_of_memory(0)
