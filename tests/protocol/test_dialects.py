"""Tests for :mod:`eventkit.protocol.dialects`, and of every line dialect at once."""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING, Any

import pytest
from hypothesis import example, given, strategies as st

from eventkit.exceptions import LineTooLongError
from eventkit.protocol import jsonl
from eventkit.protocol.aicomputer import AiComputerDecoder
from eventkit.protocol.dialects import DIALECTS, decoder_for
from eventkit.protocol.e2b import E2bDecoder
from eventkit.protocol.jsonl import EventkitDecoder
from eventkit.protocol.lines import INVALID_LINE

if TYPE_CHECKING:
    from collections.abc import Callable

    from eventkit.protocol.lines import LineDecoder

#: The local clock of every decoder made here.
NOW = 1700000000.5


def clock() -> float:
    """Return the fixed local time."""
    return NOW


def aicomputer() -> AiComputerDecoder:
    """Return an AI Computer decoder on the fixed clock."""
    return AiComputerDecoder("r", clock=clock)


def e2b() -> E2bDecoder:
    """Return an E2B decoder on the fixed clock."""
    return E2bDecoder("r", clock=clock)


# decoder_for


@pytest.mark.parametrize(
    ("dialect", "kind"),
    [
        ("aicomputer", AiComputerDecoder),
        ("e2b", E2bDecoder),
        ("eventkit", EventkitDecoder),
    ],
)
def test_decoder_for(dialect: str, kind: type[Any]) -> None:
    """Each dialect name gives its decoder, with the run id given."""
    decoder = decoder_for(dialect, "r1")
    assert isinstance(decoder, kind)
    assert decoder.run == "r1"


def test_decoder_for_passes_max_line() -> None:
    """The decoder made splits lines with the ``max_line`` given."""
    decoder = decoder_for("e2b", max_line=8)
    assert decoder.max_line == 8
    with pytest.raises(LineTooLongError):
        decoder.receive(b"x" * 9 + b"\n")


def test_dialects_are_the_names_known() -> None:
    """Every name of DIALECTS gives a decoder."""
    assert {"aicomputer", "e2b", "eventkit"} == set(DIALECTS)
    for dialect in DIALECTS:
        decoder_for(dialect)


def test_decoder_for_unknown_dialect() -> None:
    """An unknown dialect is refused."""
    with pytest.raises(ValueError, match="hopx"):
        decoder_for("hopx", None)


# Garbage never raises

DECODERS: list[Callable[[], LineDecoder]] = [
    aicomputer,
    e2b,
    lambda: EventkitDecoder("own", clock=clock),
]

json_like = st.builds(lambda text: b"{" + text.encode() + b"}", st.text())
garbage = st.binary() | json_like | st.text().map(str.encode)


@pytest.mark.parametrize("make", DECODERS, ids=["aicomputer", "e2b", "eventkit"])
@given(lines=st.lists(garbage, max_size=10))
@example(lines=[b"{\x00}", b'{"type":"stdout","data":"\\u0000"}', b"\xc3"])
def test_garbage_never_raises(
    make: Callable[[], LineDecoder], lines: list[bytes]
) -> None:
    """Any line gives at most one event, an error if it is not a valid one."""
    decoder = make()
    for line in lines:
        # Garbage may hold newlines: then it is several lines, each counted.
        before = decoder.lines
        events = decoder.receive(line + b"\n")
        assert len(events) <= decoder.lines - before
        for event in events:
            jsonl.encode(event)  # every event can be written out again
            if event.type == "error" and "code" in event.attrs:
                assert event["code"] == INVALID_LINE
    decoder.close()
    decoder.abort("gone")


@given(st.binary(), st.lists(st.integers(min_value=0), max_size=6))
def test_garbage_stream_through_splitter(data: bytes, cuts: list[int]) -> None:
    """A garbage body with a small max_line gives events or LineTooLongError only."""
    points = sorted({cut % (len(data) + 1) for cut in cuts})
    chunks = [data[a:b] for a, b in itertools.pairwise([0, *points, len(data)])]
    decoder = AiComputerDecoder(clock=clock, max_line=32)
    try:
        for chunk in chunks:
            decoder.receive(chunk)
        decoder.close()
    except LineTooLongError:
        return
