"""Event factories shared by the tests."""

from __future__ import annotations

from typing import Any

from eventkit import Event


def ev(
    type: str = "stdout",
    data: str = "",
    sequence: int = 0,
    *,
    run: str = "r",
    timestamp: float | None = None,
    **attrs: Any,
) -> Event:
    """Make an event; its timestamp is ``1000 + sequence`` unless given."""
    return Event(
        type=type,
        data=data,
        timestamp=1000.0 + sequence if timestamp is None else timestamp,
        sequence=sequence,
        run=run,
        attrs=attrs,
    )


def out(
    sequence: int,
    type: str = "stdout",
    *,
    run: str = "r",
    data: str | None = None,
    **attrs: Any,
) -> Event:
    """Make event ``sequence`` of ``run``; its data names it unless given."""
    return ev(
        type, f"{run}:{sequence}" if data is None else data, sequence, run=run, **attrs
    )
