"""The loopback guard: which hosts are this machine, and the Host check."""

from __future__ import annotations

from typing import Any

import pytest

from eventkit.server.loopback import host_of, is_loopback


@pytest.mark.parametrize(
    "host", ["localhost", "LOCALHOST", "127.0.0.1", "127.3.2.1", "::1", "[::1]"]
)
def test_loopback_names_and_addresses(host: str) -> None:
    """localhost, 127.0.0.0/8 and ::1 (bracketed or not) are this machine only."""
    assert is_loopback(host)


@pytest.mark.parametrize(
    "host", ["", "0.0.0.0", "::", "192.0.2.1", "example.com", "localhost.evil.example"]
)
def test_other_hosts_are_not_loopback(host: str) -> None:
    """Wildcards, other addresses and names (a rebinding one included) are not."""
    assert not is_loopback(host)


async def test_foreign_host_header_is_refused(client: Any) -> None:
    """A Host that is not loopback (DNS rebinding) gets 403."""
    async with client.session.post(
        f"{client.url}/dev/token", headers={"Host": "evil.example:80"}
    ) as response:
        assert 403 == response.status
        assert "FORBIDDEN" == (await response.json())["error"]["code"]
    async with client.session.post(
        f"{client.url}/dev/token", headers={"Host": "localhost"}
    ) as response:
        assert 200 == response.status


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("127.0.0.1:7777", "127.0.0.1"),
        ("localhost", "localhost"),
        ("[::1]:80", "::1"),
        ("[::1]", "::1"),
        ("::1", None),
        ("[::1", None),
        ("[nonsense]:1", None),
        ("host:port", None),
        ("a b", None),
        ("", None),
    ],
)
def test_host_of(header: str, expected: str | None) -> None:
    """Names, addresses and bracketed IPv6 are read; ambiguous or broken ones not."""
    assert expected == host_of(header)
