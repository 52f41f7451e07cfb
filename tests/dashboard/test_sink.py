"""The dashboard sink: settings it refuses, when it serves, its two feeds."""

from __future__ import annotations

import socket

import aiohttp
import pytest

import eventkit
from eventkit import pipe, sinks, sources
from tests.factories import ev, out


async def answers(url: str) -> bool:
    """Tell whether the dashboard at ``url`` answers."""
    try:
        async with aiohttp.ClientSession() as session, session.get(url) as response:
            return response.status == 200
    except aiohttp.ClientConnectionError:
        return False


@pytest.mark.parametrize("host", ["0.0.0.0", "192.0.2.1", "example.com", ""])
def test_a_public_host_without_a_token_is_refused(host: str) -> None:
    """Anything but loopback needs a token: ValueError naming the flag."""
    with pytest.raises(ValueError, match="--dashboard-token"):
        sinks.dashboard(host=host)


def test_invalid_settings_are_refused() -> None:
    """An empty token, a port out of range or bad bounds raise ValueError."""
    with pytest.raises(ValueError, match="empty"):
        sinks.dashboard(token="")
    with pytest.raises(ValueError, match="port"):
        sinks.dashboard(70000)
    with pytest.raises(ValueError, match="keep_runs"):
        sinks.dashboard(keep_runs=-1)


def test_public_with_a_token_is_allowed() -> None:
    """A non-loopback host with a token is fine (nothing listens yet)."""
    assert "0.0.0.0" == sinks.dashboard(host="0.0.0.0", token="t").host


async def test_a_port_in_use_raises_oserror() -> None:
    """Starting on a port that is taken raises OSError."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        dashboard = sinks.dashboard(taken.getsockname()[1])
        with pytest.raises(OSError, match=r"address already in use|Errno"):
            await dashboard.start()
        assert not dashboard.serving


async def test_as_a_plain_sink_it_serves_while_the_run_does() -> None:
    """Opened by the run, it serves; closed with it, it stops and ends the runs."""
    seen: list[bool] = []
    dashboard = sinks.dashboard()

    async def check(event: eventkit.Event) -> None:
        assert dashboard.url is not None
        seen.append(await answers(dashboard.url + "api/runs"))

    await eventkit.run(
        sources.iterate([ev("started", run="a"), out(1, run="a")]),
        sink=sinks.tee(dashboard, sinks.call(check)),
    )
    assert [True, True] == seen
    assert not dashboard.serving
    assert "truncated" == dashboard.board.rows(0.0)[0]["state"]


async def test_after_start_it_serves_until_stop() -> None:
    """start() before the run: the page stays after it, until stop()."""
    dashboard = sinks.dashboard(source="test")
    await dashboard.start()
    try:
        await eventkit.run(
            sources.iterate([ev("started"), ev("completed", "", 1, success=True)]),
            sink=dashboard,
        )
        assert dashboard.url is not None
        assert await answers(dashboard.url + "api/runs")
        row = dashboard.board.rows(0.0)[0]
        assert ("succeeded", "test") == (row["state"], row["source"])
    finally:
        await dashboard.stop()
    assert not dashboard.serving
    await dashboard.stop()  # twice: nothing happens


async def test_upstream_records_and_the_sink_logs() -> None:
    """Tapped before the chain, the upstream feed's state holds what the chain drops."""
    dashboard = sinks.dashboard()
    events = [
        ev("started", run="a"),
        out(1, run="a"),
        ev("stderr", "bad\n", 2, run="a"),
        ev("result", "", 3, run="a", exit_code=7),
        ev("completed", "", 4, run="a", success=False),
    ]
    await eventkit.run(
        sources.iterate(events),
        pipe.tap(dashboard.upstream),
        pipe.only("stderr"),
        dashboard.watch(),
        sink=dashboard,
    )
    record = dashboard.board.get("a")
    assert record is not None
    assert ("failed", 7, 5) == (record.state, record.exit_code, record.events)
    assert ["bad\n"] == [event.data for event in record.log]
    stages = dashboard.app.metrics()["stages"]
    assert [("0:only", 5, 1)] == [
        (s["stage"], s["received"], s["sent"]) for s in stages
    ]
    assert not dashboard.serving
    assert "<upstream of <dashboard sink 127.0.0.1:0>>" == repr(dashboard.upstream)


async def test_send_takes_one_event() -> None:
    """send() is send_batch() of one event, on both feeds."""
    dashboard = sinks.dashboard()
    await dashboard.upstream.send(ev("started", run="a"))
    await dashboard.send(out(1, run="a"))
    record = dashboard.board.get("a")
    assert record is not None
    assert (1, 1) == (record.events, record.logged)
