"""Limits and admission, without a server."""

from __future__ import annotations

import asyncio
import math

import pytest

from eventkit.server.limits import Admission, Limits, TooManyRequestsError


@pytest.mark.parametrize(
    "arguments",
    [
        {"max_concurrent": 0},
        {"max_queue": -1},
        {"max_timeout": 0},
        {"max_timeout": math.inf},
        {"max_code_bytes": 0},
        {"max_output_bytes": -1},
        {"max_file_bytes": 0},
        {"max_concurrent": True},
    ],
)
def test_invalid_limits(arguments: dict[str, object]) -> None:
    """Nonsense limits are refused when made."""
    with pytest.raises(ValueError, match=next(iter(arguments))):
        Limits(**arguments)  # type: ignore[arg-type]


async def test_admission_refuses_past_slots_and_queue() -> None:
    """Two slots and one queue place: the fourth request is refused."""
    admission = Admission(2, 1)
    tickets = [admission.admit() for _ in range(3)]
    with pytest.raises(TooManyRequestsError, match="0 running and 3 waiting"):
        admission.admit()
    tickets[0].release()
    tickets[0].release()  # idempotent
    with admission.admit():
        pass
    assert (0, 2) == (admission.running, admission.waiting)


async def test_admission_queues_in_order() -> None:
    """A queued run starts when a slot frees up, and counts as waiting meanwhile."""
    admission = Admission(1, 1)
    first, second = admission.admit(), admission.admit()
    order: list[str] = []

    async def run(name: str, ticket_release: asyncio.Event) -> None:
        ticket = first if name == "first" else second
        with ticket:
            async with ticket.running():
                order.append(name)
                await ticket_release.wait()

    release = asyncio.Event()
    tasks = [
        asyncio.create_task(run("first", release)),
        asyncio.create_task(run("second", release)),
    ]
    await asyncio.sleep(0)
    assert (1, 1) == (admission.running, admission.waiting)
    release.set()
    await asyncio.gather(*tasks)
    assert ["first", "second"] == order
    assert (0, 0) == (admission.running, admission.waiting)


def test_collected_output_is_always_capped() -> None:
    """Without an output cap, non-streaming answers still keep 64 MiB at most."""
    assert 64 << 20 == Limits(max_output_bytes=None).collected_output_bytes
    assert 5 == Limits(max_output_bytes=5).collected_output_bytes
    assert (64 << 20) == Limits().max_output_bytes
