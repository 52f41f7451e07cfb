"""Tests for :mod:`eventkit.sources.local.meter`: synchronous, no process, no loop."""

from __future__ import annotations

import signal
from typing import Final

import pytest

from eventkit.sources.local.meter import LAST_WORDS, MEMORY_SIGNALS, OutputMeter

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


#: What runtimes write as they die out of memory, with their exit codes.
DYING_WORDS: Final = [
    ("Traceback (most recent call last):\n  ...\nMemoryError\n", 1),
    ("Traceback (most recent call last):\n  ...\nMemoryError: no room\n", 1),
    ("main.sh: line 3: xrealloc: cannot allocate 97857536 bytes\n", 2),
    ("bash: xrealloc: ../bash/subst.c:11: cannot allocate 1048576 bytes\n", 1),
    ("bash: xmalloc: cannot allocate 64 bytes (0 bytes allocated)\n", 2),
    ("OSError: [Errno 12] Cannot allocate memory\n", 1),
    ("FATAL ERROR: Reached heap limit JavaScript heap out of memory\n", 134),
    (
        "terminate called after throwing an instance of 'std::bad_alloc'\n"
        "  what():  std::bad_alloc\n",
        3,
    ),
]


def test_every_pattern_has_an_example() -> None:
    """Each pattern of LAST_WORDS matches one of the dying words tested here."""
    for pattern, _ in LAST_WORDS:
        lines = [line for words, _ in DYING_WORDS for line in words.splitlines()]
        assert any(pattern.search(line) for line in lines), pattern


@pytest.mark.parametrize(("words", "exit_code"), DYING_WORDS)
def test_last_words_of_memory_exhaustion(words: str, exit_code: int) -> None:
    """A runtime's dying words about memory, with its exit code: the cap was hit."""
    meter = OutputMeter(watch_memory=True)
    meter.feed("stderr", words.encode())
    assert meter.ran_out_of_memory(exit_code)


def test_memory_error_with_another_exit_code_is_not_memory() -> None:
    """Python's MemoryError comes with exit code 1: with 3, it is only text."""
    meter = OutputMeter(watch_memory=True)
    meter.feed("stderr", b"MemoryError\n")
    assert not meter.ran_out_of_memory(3)
    assert meter.ran_out_of_memory(1)


@pytest.mark.parametrize(
    "printed",
    [
        "warning: MemoryError seen in the logs\n",
        "Traceback (most recent call last):\nValueError: MemoryError\n",
        "MemoryError\nbut then\nsomething\nelse failed\n",
        "retrying after: out of memory\n" + "line\n" * 5,
    ],
)
def test_memory_words_the_program_printed_are_not_memory(printed: str) -> None:
    """A marker in the middle of stderr, or quoted in another error, is only text."""
    meter = OutputMeter(watch_memory=True)
    meter.feed("stderr", printed.encode())
    assert not meter.ran_out_of_memory(1)


def test_last_words_split_across_reads() -> None:
    """Dying words that two reads split are still found."""
    meter = OutputMeter(watch_memory=True)
    meter.feed("stderr", b"x" * 10_000 + b"\nMemory")
    assert not meter.ran_out_of_memory(0)
    meter.feed("stderr", b"Error\n")
    assert meter.ran_out_of_memory(1)


def test_last_words_split_inside_a_character() -> None:
    """A read that splits a character before the words does not hide them."""
    meter = OutputMeter(watch_memory=True)
    words = "\u20ac\nstd::bad_alloc\n".encode()
    meter.feed("stderr", words[:2])
    meter.feed("stderr", words[2:])
    assert meter.ran_out_of_memory(1)


def test_last_words_are_the_last_lines() -> None:
    """The last few lines of stderr that are not blank are the program's last words."""
    meter = OutputMeter(watch_memory=True)
    meter.feed("stderr", b"a\nb\n\n  \nc\nd\n\n")
    assert ["b", "c", "d"] == meter.last_words()


def test_memory_words_in_stdout_do_not_count() -> None:
    """Only stderr is searched."""
    meter = OutputMeter(watch_memory=True)
    meter.feed("stdout", b"MemoryError\n")
    assert not meter.ran_out_of_memory(1)


def test_memory_is_not_watched_without_a_cap() -> None:
    """Without watch_memory, no words or signal mean memory."""
    meter = OutputMeter()
    meter.feed("stderr", b"MemoryError\n")
    assert not meter.ran_out_of_memory(1)
    assert not meter.ran_out_of_memory(-signal.SIGKILL)


@pytest.mark.parametrize("exit_code", sorted(MEMORY_SIGNALS))
def test_memory_signals(exit_code: int) -> None:
    """Death by SIGKILL, SIGSEGV, SIGABRT or SIGBUS under a cap means memory."""
    assert OutputMeter(watch_memory=True).ran_out_of_memory(exit_code)


@pytest.mark.parametrize("exit_code", [1, 2, -signal.SIGTERM, -signal.SIGINT])
def test_other_failures_are_not_memory(exit_code: int) -> None:
    """Other exit codes and signals, without dying words, are no memory limit."""
    assert not OutputMeter(watch_memory=True).ran_out_of_memory(exit_code)


def test_signal_with_memory_words_is_judged_by_the_signal() -> None:
    """A death by SIGINT is no memory limit, whatever stderr says."""
    meter = OutputMeter(watch_memory=True)
    meter.feed("stderr", b"MemoryError\n")
    assert not meter.ran_out_of_memory(-signal.SIGINT)


def test_success_is_never_memory() -> None:
    """A run that exits with 0 did not hit its memory cap, whatever it printed."""
    meter = OutputMeter(watch_memory=True)
    meter.feed("stderr", b"MemoryError\n")
    assert not meter.ran_out_of_memory(0)
