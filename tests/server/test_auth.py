"""Public-API credentials and development tokens, on a fake clock."""

from __future__ import annotations

import string

import pytest
from aiohttp.test_utils import make_mocked_request

from eventkit.server import auth
from eventkit.server.auth import Auth, api_key_of, bearer_of


class Clock:
    """A clock that moves only when told."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_without_api_key_any_credential_passes() -> None:
    """No API key configured: any non-empty credential is accepted."""
    open_auth = Auth(None, token_ttl=60)
    assert open_auth.open
    assert open_auth.accepts("anything")
    assert not open_auth.accepts("")
    assert not open_auth.accepts(None)


def test_with_api_key_only_it_and_issued_tokens_pass() -> None:
    """With a key: the key, or a token issued and not expired."""
    clock = Clock()
    keyed = Auth("K", token_ttl=60, clock=clock)
    token, expiry = keyed.issue()
    assert 1060.0 == expiry
    assert keyed.accepts("K")
    assert keyed.accepts(token)
    assert not keyed.accepts("k")
    assert not keyed.accepts("guess")
    assert not keyed.is_key(token)
    clock.now = 1060.0
    assert not keyed.accepts(token)


def test_issued_tokens_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    """Past the bound, the oldest token is forgotten first."""
    monkeypatch.setattr(auth, "MAX_DEV_TOKENS", 2)
    keyed = Auth("K", token_ttl=60)
    first, _ = keyed.issue()
    second, _ = keyed.issue()
    third, _ = keyed.issue()
    assert [False, True, True] == [keyed.accepts(t) for t in (first, second, third)]


def test_invalid_configuration() -> None:
    """An empty key or a non-positive lifetime is refused."""
    with pytest.raises(ValueError, match="--api-key"):
        Auth(" ", token_ttl=60)
    with pytest.raises(ValueError, match="token_ttl"):
        Auth(None, token_ttl=0)


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"Authorization": "Bearer abc"}, "abc"),
        ({"Authorization": "bearer  abc "}, "abc"),
        ({"Authorization": "Basic abc"}, None),
        ({"Authorization": "Bearer "}, None),
        ({}, None),
    ],
)
def test_bearer_of(headers: dict[str, str], expected: str | None) -> None:
    """Only a non-empty Bearer token is read from Authorization."""
    assert expected == bearer_of(make_mocked_request("GET", "/", headers=headers))


def test_api_key_of() -> None:
    """X-API-Key is read, blank counting as missing."""
    assert "k" == api_key_of(
        make_mocked_request("GET", "/", headers={"X-API-Key": "k"})
    )
    assert None is api_key_of(
        make_mocked_request("GET", "/", headers={"X-API-Key": " "})
    )


def test_tokens_never_read_as_options() -> None:
    """A token is 64 hex digits: none starts with ``-``, as ``--token -x`` would."""
    tokens = {auth.new_token() for _ in range(2000)}
    assert 2000 == len(tokens)
    assert {64} == {len(token) for token in tokens}
    assert set("".join(tokens)) <= set(string.hexdigits)
