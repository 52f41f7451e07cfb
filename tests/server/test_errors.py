"""The server's error answers: JSON bodies and refusals."""

from __future__ import annotations

import json
from typing import Any

import pytest
from structlog.testing import capture_logs

from eventkit.server import hopx
from eventkit.server.errors import (
    REFUSALS,
    agent_error,
    count_refusal,
    json_error,
    unauthorized,
)
from eventkit.stats import server_stats


def test_json_error_shape() -> None:
    """The code and message, where the HOPX SDK and people read them."""
    response = json_error(404, "NOT_FOUND", "no such sandbox")
    assert 404 == response.status
    assert "application/json" == response.content_type
    assert response.text is not None
    assert {
        "error": {"code": "NOT_FOUND", "message": "no such sandbox"},
        "message": "no such sandbox",
    } == json.loads(response.text)


def test_unauthorized_asks_for_a_bearer_token() -> None:
    """401 with WWW-Authenticate: Bearer."""
    response = unauthorized("a token is required")
    assert (401, "Bearer") == (response.status, response.headers["WWW-Authenticate"])


@pytest.mark.parametrize(("code", "reason"), sorted(REFUSALS.items()))
def test_refusals_are_counted_by_reason(code: str, reason: str) -> None:
    """Each refusing answer counts once under its reason."""
    before = dict(server_stats().refusals)
    json_error(400, code, "refused")
    after = dict(server_stats().refusals)
    assert before.get(reason, 0) + 1 == after[reason]


@pytest.mark.parametrize("code", ["NOT_FOUND", "INTERNAL_ERROR", "HTTP_ERROR"])
def test_other_errors_are_no_refusals(code: str) -> None:
    """A 404, an internal error: answered, not counted as refusals."""
    before = dict(server_stats().refusals)
    count_refusal(code)
    assert before == dict(server_stats().refusals)


async def test_errors_are_json(client: Any) -> None:
    """Unknown paths and methods answer with JSON too."""
    async with client.session.get(f"{client.url}/nowhere") as response:
        assert 404 == response.status
        assert "NOT_FOUND" == (await response.json())["error"]["code"]
    async with client.session.put(f"{client.url}/v1/sandboxes") as response:
        assert 405 == response.status
        assert "METHOD_NOT_ALLOWED" == (await response.json())["error"]["code"]
    token = (await client.create_hopx())["auth_token"]
    async with client.session.get(
        f"{client.url}/execute/stream", headers={"Authorization": f"Bearer {token}"}
    ) as response:
        assert 400 == response.status
        assert "WebSocket upgrade" in (await response.json())["message"]


def test_agent_error_shape() -> None:
    """The agent's shape: error and message are the text, code beside them."""
    response = agent_error(404, "FILE_NOT_FOUND", "/a: gone", details={"path": "/a"})
    assert response.text is not None
    assert {
        "error": "/a: gone",
        "code": "FILE_NOT_FOUND",
        "message": "/a: gone",
        "details": {"path": "/a"},
    } == json.loads(response.text)


async def test_an_unexpected_failure_is_a_json_500(
    client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A handler that breaks: JSON 500, logged as request_failed, no traceback sent."""

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("secret detail")

    monkeypatch.setattr(hopx, "parse_env", broken)
    with capture_logs() as logs:
        async with client.session.post(
            f"{client.url}/v1/sandboxes", json={}, headers={"X-API-Key": "k"}
        ) as response:
            assert 500 == response.status
            text = await response.text()
    assert "secret detail" not in text
    assert "INTERNAL_ERROR" == json.loads(text)["error"]["code"]
    assert ["request_failed"] == [log["event"] for log in logs]
