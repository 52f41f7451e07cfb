"""The HOPX page's JavaScript examples, under Node, with ``@hopx-ai/sdk`` 0.5.1.

Each example of the HOPX "Streaming execution" page (``shared/seeds/``), in
JavaScript, runs as the page has it against the local sandbox server, with
``baseURL`` pointed at it, the Python indentation the page lost restored and
the sleeps shortened (the files beside this module say what else); each
prints what its code says it prints.

The SDK is installed from npm once, into a cache directory under the
system's temporary directory, and reused. Skipped, saying so, where ``node``
or ``npm`` is missing (``.ci/run`` installs them).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Final

import pytest

from eventkit.server import LocalSandboxServer

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

EXAMPLES: Final = Path(__file__).parent
SDK: Final = "@hopx-ai/sdk"
SDK_VERSION: Final = "0.5.1"
#: Where the SDK is installed, kept between runs.
CACHE: Final = Path(tempfile.gettempdir()) / f"eventkit-tests-hopx-sdk-{SDK_VERSION}"


@pytest.fixture(scope="session")
def node_modules() -> Path:
    """The ``node_modules`` holding ``@hopx-ai/sdk`` 0.5.1, installed if need be."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.skip("node and npm are needed for the JavaScript SDK's examples")
    installed = CACHE / "node_modules" / SDK / "package.json"
    if (
        installed.exists()
        and json.loads(installed.read_text())["version"] == SDK_VERSION
    ):
        return CACHE / "node_modules"
    CACHE.mkdir(parents=True, exist_ok=True)
    (CACHE / "package.json").write_text('{"private": true}\n')
    subprocess.run(
        [
            *(npm, "install", "--no-audit", "--no-fund", "--loglevel=error"),
            f"{SDK}@{SDK_VERSION}",
        ],
        cwd=CACHE,
        check=True,
        timeout=300,
    )
    return CACHE / "node_modules"


@pytest.fixture
async def server() -> AsyncIterator[LocalSandboxServer]:
    """The local sandbox server on a free port."""
    async with LocalSandboxServer(port=0) as running:
        yield running


async def run_example(
    name: str, server: LocalSandboxServer, node_modules: Path, tmp_path: Path
) -> tuple[str, str]:
    """Run the example ``name`` under Node against ``server``; stdout, stderr.

    The example runs from a directory of its own whose ``node_modules`` is the
    cached one: Node finds ES modules' packages beside the importing file.
    """
    script = tmp_path / name
    shutil.copyfile(EXAMPLES / name, script)
    (tmp_path / "node_modules").symlink_to(node_modules)
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp_path),
        "HOPX_API_KEY": "test-key",
        "HOPX_BASE_URL": server.url,
    }
    process = await asyncio.create_subprocess_exec(
        "node",
        str(script),
        env=env,
        cwd=tmp_path,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert 0 == process.returncode, err.decode()
    # Node's own warnings about the SDK (MaxListenersExceededWarning: it adds
    # a listener per message) are not the example's output.
    told = [
        line
        for line in err.decode().splitlines(keepends=True)
        if not line.startswith(("(node:", "(Use `node --trace-warnings"))
    ]
    return out.decode(), "".join(told)


async def test_basic_streaming(
    server: LocalSandboxServer, node_modules: Path, tmp_path: Path
) -> None:
    """The steps stream, then the exit code, the time and the completion line."""
    out, err = await run_example("basic_streaming.mjs", server, node_modules, tmp_path)
    lines = out.splitlines()
    assert [f"Step {i}/5" for i in range(1, 6)] + ["Done!", ""] == lines[:7]
    assert "Exit code: 0" == lines[7]
    assert re.fullmatch(r"Execution time: \d+(\.\d+)?(e-\d+)?s", lines[8])
    assert ["", "✅ Execution completed"] == lines[9:]
    assert "" == err


async def test_message_types(
    server: LocalSandboxServer, node_modules: Path, tmp_path: Path
) -> None:
    """Each type is labelled: stdout on stdout, stderr on stderr, then result."""
    out, err = await run_example("message_types.mjs", server, node_modules, tmp_path)
    # A label per message, and the server sends the output as it comes: two
    # lines may share a message, or a line be cut in two.
    output, _, rest = out.partition("\n[RESULT] ")
    assert output.startswith("[STDOUT] ")
    assert "This is stdout\nThis is also stdout\n" == output.replace("[STDOUT] ", "")
    result, completion = rest.splitlines()
    assert re.fullmatch(r"Exit: 0, Time: \d+(\.\d+)?(e-\d+)?s", result)
    assert "[COMPLETE] Execution finished" == completion
    assert "[STDERR] This is stderr\n" == err


async def test_progress_monitoring(
    server: LocalSandboxServer, node_modules: Path, tmp_path: Path
) -> None:
    """Twenty progress lines, the last step, the completion line."""
    out, _ = await run_example(
        "progress_monitoring.mjs", server, node_modules, tmp_path
    )
    expected = [f"Progress: {(i + 1) / 20 * 100:.1f}% ({i + 1}/20)" for i in range(20)]
    assert [
        *expected,
        "All steps completed!",
        "",
        "✅ Task completed successfully",
    ] == out.splitlines()


async def test_environment_variables(
    server: LocalSandboxServer, node_modules: Path, tmp_path: Path
) -> None:
    """The code sees the variables the call passed."""
    out, _ = await run_example(
        "environment_variables.mjs", server, node_modules, tmp_path
    )
    assert "API key: sk-123\nDebug mode: true\n" == out


async def test_error_handling(
    server: LocalSandboxServer, node_modules: Path, tmp_path: Path
) -> None:
    """The traceback on stderr, the exit code and the failed completion."""
    out, err = await run_example("error_handling.mjs", server, node_modules, tmp_path)
    assert [
        "Starting...",
        "",
        "❌ Execution failed with exit code: 1",
        "",
        "❌ Execution completed with errors",
    ] == out.splitlines()
    assert err.startswith("ERROR: Traceback (most recent call last):")
    assert "NameError: name 'undefined_variable' is not defined" in err
    assert "This won't be reached" not in out


async def test_complete_example(
    server: LocalSandboxServer, node_modules: Path, tmp_path: Path
) -> None:
    """Every tenth item, the totals, the summary and the completion line.

    The page's Python code calls ``print(..., file=sys.stderr)`` without
    importing sys: the example adds the import, or a warning would end the
    run with a NameError.
    """
    out, err = await run_example("complete_example.mjs", server, node_modules, tmp_path)
    lines = out.splitlines()
    assert [
        "🚀 Starting streaming execution...",
        "",
        "Starting data processing...",
    ] == (lines[:3])
    assert [f"Processed {i}/100 items" for i in range(0, 100, 10)] == lines[3:13]
    assert ["Processing complete!", "Total items processed: 100", "", ""] == lines[
        13:17
    ]
    assert ["📊 Execution Summary:", " Exit code: 0"] == lines[17:19]
    assert re.fullmatch(r" Execution time: \d+\.\d\ds", lines[19])
    assert ["", "✅ Streaming completed"] == lines[20:]
    # The example prefixes each stderr message: warnings written a moment
    # apart (random items, 2 ms each) may come in one message, as one read of
    # the pipe holds them both.
    warnings = err.splitlines()
    for warning in warnings:
        assert re.fullmatch(r"(⚠️ )?Warning: Issue with item \d+", warning)
    assert not warnings or warnings[0].startswith("⚠️ ")
