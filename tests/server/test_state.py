"""What the handlers share: the agent URL a sandbox advertises."""

from __future__ import annotations

from typing import Any, cast

from aiohttp.test_utils import make_mocked_request

from eventkit.server.state import State


def state(**options: Any) -> State:
    """A state with nothing behind it: public_host reads none of it."""
    nothing = cast("Any", None)
    return State(
        limits=nothing,
        auth=nothing,
        sandboxes=nothing,
        admission=nothing,
        executions=nothing,
        **options,
    )


def test_public_host_is_the_server_url() -> None:
    """Listening on one address, the agent is where the server is."""
    request = make_mocked_request("GET", "/", headers={"Host": "other:1"})
    assert "http://127.0.0.1:7777" == state(url="http://127.0.0.1:7777").public_host(
        request
    )


def test_public_host_follows_the_client_on_a_wildcard() -> None:
    """Listening everywhere, the agent is at the address the client used."""
    request = make_mocked_request("GET", "/", headers={"Host": "10.0.0.5:7777"})
    assert "http://10.0.0.5:7777" == state(
        url="http://127.0.0.1:7777", wildcard=True
    ).public_host(request)


def test_agent_url_ends_like_a_hopx_host() -> None:
    """A sandbox's agent is under the server, at a path the SDK can parse."""
    request = make_mocked_request("GET", "/")
    sandbox = cast("Any", type("S", (), {"id": "sbx-1"}))
    assert "http://127.0.0.1:7777/agent/sbx-1.local.vms.hopx.dev" == state(
        url="http://127.0.0.1:7777"
    ).agent_url(request, sandbox)
