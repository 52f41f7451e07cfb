"""The AI Computer endpoints, spoken to directly."""

from __future__ import annotations

import json
import os
from typing import Any

import pytest

AUTH = {"Authorization": "Bearer test-key"}


async def post_stream(client: Any, sandbox_id: str, body: Any) -> list[dict[str, Any]]:
    """POST to execute/stream; return the NDJSON lines, decoded."""
    async with client.session.post(
        f"{client.url}/api/v1/sandbox/{sandbox_id}/execute/stream",
        json=body,
        headers=AUTH,
    ) as response:
        assert 200 == response.status, await response.text()
        assert "application/x-ndjson" == response.content_type
        return [json.loads(line) async for line in response.content]


async def test_token_create_status_delete(client: Any) -> None:
    """The calls setup() and cleanup() make, with the answers they read."""
    async with client.session.post(f"{client.url}/dev/token") as response:
        token = (await response.json())["access_token"]
    headers = {"Authorization": f"Bearer {token}"}
    base = f"{client.url}/api/v1/sandbox"
    async with client.session.post(f"{base}/create", headers=headers) as response:
        sandbox_id = (await response.json())["sandbox_id"]
    async with client.session.get(f"{base}/{sandbox_id}/status", headers=headers) as r:
        assert "ready" == (await r.json())["status"]
    async with client.session.delete(f"{base}/{sandbox_id}", headers=headers) as r:
        assert 200 == r.status
    async with client.session.get(f"{base}/{sandbox_id}/status", headers=headers) as r:
        assert 404 == r.status


async def test_stream_lines_hold_only_type_and_data(client: Any) -> None:
    """Output lines hold exactly type and data; completed adds the outcome."""
    sandbox_id = await client.create_aicomputer()
    lines = await post_stream(
        client,
        sandbox_id,
        {
            "code": "import os, sys\n"
            "print(os.environ['A'])\n"
            "print('e', file=sys.stderr)",
            "timeout": 10,
            "environment": {"A": "seen"},
        },
    )
    assert all({"type", "data"} == set(line) for line in lines[:-1])
    assert "seen\n" == "".join(x["data"] for x in lines if x["type"] == "stdout")
    assert "e\n" == "".join(x["data"] for x in lines if x["type"] == "stderr")
    assert {"type": "completed", "data": "", "exit_code": 0, "success": True} == (
        lines[-1]
    )
    assert "error" not in [line["type"] for line in lines]


async def test_failure_is_one_error_just_before_completed(client: Any) -> None:
    """A traceback goes to stderr; the error line is last before completed."""
    sandbox_id = await client.create_aicomputer()
    lines = await post_stream(client, sandbox_id, {"code": "print(undefined)"})
    assert "NameError" in "".join(x["data"] for x in lines if x["type"] == "stderr")
    assert [
        {"type": "error", "data": "process exited with code 1"},
        {"type": "completed", "data": "", "exit_code": 1, "success": False},
    ] == lines[-2:]
    assert 1 == [line["type"] for line in lines].count("error")


async def test_execute_answers_at_the_end(client: Any) -> None:
    """The non-streaming call answers with the output and the sandbox id."""
    sandbox_id = await client.create_aicomputer()
    async with client.session.post(
        f"{client.url}/api/v1/sandbox/{sandbox_id}/execute",
        json={"code": "print('a')\nprint('b')"},
        headers=AUTH,
    ) as response:
        answer = await response.json()
    assert {
        "output": "a\nb\n",
        "sandbox_id": sandbox_id,
        "exit_code": 0,
        "success": True,
        "error": None,
        "truncated": False,
    } == answer


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b"", "a JSON request body is required"),
        (b"{not json", "not valid JSON"),
        (b'{"code": 5}', "code must be a string"),
        (b'{"code": "1", "timeout": 0}', "timeout must be in"),
        (b'{"code": "1", "timeout": "soon"}', "timeout must be a number"),
        (b'{"code": "1", "environment": ["A"]}', "environment must be an object"),
    ],
)
async def test_invalid_bodies_are_400(client: Any, body: bytes, expected: str) -> None:
    """Invalid bodies get 400 with a JSON message; nothing runs."""
    sandbox_id = await client.create_aicomputer()
    async with client.session.post(
        f"{client.url}/api/v1/sandbox/{sandbox_id}/execute/stream",
        data=body,
        headers={**AUTH, "Content-Type": "application/json"},
    ) as response:
        assert 400 == response.status
        answer = await response.json()
    assert expected in answer["message"]
    assert "INVALID_REQUEST" == answer["error"]["code"]
    assert (0, 0) == (client.server.admission.running, client.server.admission.waiting)


@pytest.mark.server(max_code_bytes=1000)
async def test_code_over_the_limit_is_400(client: Any) -> None:
    """Code over max_code_bytes is refused with its size; a huge body is 413."""
    sandbox_id = await client.create_aicomputer()
    url = f"{client.url}/api/v1/sandbox/{sandbox_id}/execute/stream"
    async with client.session.post(
        url, json={"code": "#" * 1001}, headers=AUTH
    ) as response:
        assert 400 == response.status
        assert (
            "code is 1001 bytes, over the limit of 1000"
            == (await response.json())["message"]
        )
    async with client.session.post(
        url, json={"code": "#" * 10**6}, headers=AUTH
    ) as response:
        assert 413 == response.status
        assert "REQUEST_TOO_LARGE" == (await response.json())["error"]["code"]


async def test_credentials(client: Any) -> None:
    """No token is 401; another token does not see the sandbox (404)."""
    base = f"{client.url}/api/v1/sandbox"
    async with client.session.post(f"{base}/create") as response:
        assert 401 == response.status
        assert "bearer token" in (await response.json())["message"]
    sandbox_id = await client.create_aicomputer()
    async with client.session.post(
        f"{base}/{sandbox_id}/execute/stream",
        json={"code": "print(1)"},
        headers={"Authorization": "Bearer someone-else"},
    ) as response:
        assert 404 == response.status


@pytest.mark.server(api_key="K")
async def test_api_key_guards_tokens(client: Any) -> None:
    """With an API key: /dev/token needs it; the key and its tokens work."""
    async with client.session.post(f"{client.url}/dev/token") as response:
        assert 401 == response.status
    async with client.session.post(
        f"{client.url}/dev/token", headers={"Authorization": "Bearer K"}
    ) as response:
        token = (await response.json())["access_token"]
    for credential, status in (("K", 200), (token, 200), ("guess", 401)):
        async with client.session.post(
            f"{client.url}/api/v1/sandbox/create",
            headers={"Authorization": f"Bearer {credential}"},
        ) as response:
            assert status == response.status


async def test_workspace_that_is_a_file(client: Any) -> None:
    """/workspace made a file: execute 400, the stream an error; fixed, fine again."""
    sandbox_id = await client.create_aicomputer()
    lines = await post_stream(
        client,
        sandbox_id,
        {
            "code": "import os, shutil\nos.chdir('..')\nshutil.rmtree('workspace')\n"
            "open('workspace', 'w').close()"
        },
    )
    assert lines[-1]["success"], lines
    async with client.session.post(
        f"{client.url}/api/v1/sandbox/{sandbox_id}/execute",
        json={"code": "print(1)"},
        headers=AUTH,
    ) as response:
        assert 400 == response.status
        body = await response.json()
    assert "INVALID_WORKDIR" == body["error"]["code"]
    assert "/workspace: not a directory" in body["message"]
    lines = await post_stream(client, sandbox_id, {"code": "print(1)"})
    assert ["error", "completed"] == [line["type"] for line in lines]
    assert lines[0]["data"].startswith("INVALID_WORKDIR: workdir /workspace")
    assert {"type": "completed", "data": "", "success": False} == lines[-1]
    [sandbox] = client.server.sandboxes.owned("aicomputer", "test-key")
    os.remove(os.path.join(sandbox.root, "workspace"))
    lines = await post_stream(client, sandbox_id, {"code": "print('back')"})
    assert "back\n" == lines[0]["data"]
