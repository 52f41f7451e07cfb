# ruff: noqa: E501 - the examples keep the pages' long lines.
"""The examples of shared/seeds/, as the pages write them, against the server.

Each example runs in a subprocess with the official SDK, unchanged but for
what pointing it at this server takes (``api_key`` and ``base_url`` for HOPX,
``base_url`` for AI Computer), shorter sleeps, and one fix to the HOPX
"Complete Example": its program writes to ``sys.stderr`` without importing
``sys``. The AI Computer "Event Structure" and "Progress Tracking" examples
read ``event.timestamp`` and ``event.sequence``, which the official client's
``StreamEvent`` does not have, so they cannot run with it (eventkit's recipes
show those patterns).
"""

from __future__ import annotations

import asyncio
import os
import sys
from typing import Any

HOPX_EXAMPLES = {
    "basic_streaming": '''
from hopx_ai import Sandbox
import asyncio

async def stream_execution():
    sandbox = Sandbox.create(template="code-interpreter")

    code = """
import time
for i in range(5):
    print(f"Step {i+1}/5")
    time.sleep(1)
print("Done!")
"""

    async for message in sandbox.run_code_stream(code):
        if message['type'] == 'stdout':
            print(message['data'], end='')
        elif message['type'] == 'stderr':
            print(f"ERROR: {message['data']}", end='', file=sys.stderr)
        elif message['type'] == 'result':
            print(f"\\nExit code: {message['exit_code']}")
            print(f"Execution time: {message['execution_time']}s")
        elif message['type'] == 'complete':
            print("\\n✅ Execution completed")
            break

    sandbox.kill()

asyncio.run(stream_execution())
''',
    "message_types": '''
from hopx_ai import Sandbox
import asyncio

async def handle_all_message_types():
    sandbox = Sandbox.create(template="code-interpreter")

    code = """
import sys
print("This is stdout")
print("This is also stdout", file=sys.stdout)
print("This is stderr", file=sys.stderr)
"""

    async for message in sandbox.run_code_stream(code):
        msg_type = message['type']

        if msg_type == 'stdout':
            print(f"[STDOUT] {message['data']}", end='')
        elif msg_type == 'stderr':
            print(f"[STDERR] {message['data']}", end='')
        elif msg_type == 'result':
            print(f"\\n[RESULT] Exit: {message['exit_code']}, Time: {message['execution_time']}s")
        elif msg_type == 'complete':
            print("[COMPLETE] Execution finished")
            break

    sandbox.kill()

asyncio.run(handle_all_message_types())
''',
    "progress_monitoring": '''
from hopx_ai import Sandbox
import asyncio

async def monitor_progress():
    sandbox = Sandbox.create(template="code-interpreter")

    code = """
import time
total_steps = 20
for i in range(total_steps):
    progress = (i + 1) / total_steps * 100
    print(f"Progress: {progress:.1f}% ({i+1}/{total_steps})")
    time.sleep(0.5)
print("All steps completed!")
"""

    async for message in sandbox.run_code_stream(code):
        if message['type'] == 'stdout':
            # Display progress in real-time
            print(message['data'], end='')
        elif message['type'] == 'complete':
            print("\\n✅ Task completed successfully")
            break

    sandbox.kill()

asyncio.run(monitor_progress())
''',
    "environment_variables": '''
from hopx_ai import Sandbox
import asyncio

async def stream_with_env():
    sandbox = Sandbox.create(template="code-interpreter")

    code = """
import os
print(f"API key: {os.getenv('API_KEY', 'not set')}")
print(f"Debug mode: {os.getenv('DEBUG', 'false')}")
"""

    async for message in sandbox.run_code_stream(
        code,
        env={"API_KEY": "sk-123", "DEBUG": "true"}
    ):
        if message['type'] == 'stdout':
            print(message['data'], end='')
        elif message['type'] == 'complete':
            break

    sandbox.kill()

asyncio.run(stream_with_env())
''',
    "error_handling": '''
from hopx_ai import Sandbox
import asyncio

async def handle_streaming_errors():
    sandbox = Sandbox.create(template="code-interpreter")

    code = """
print("Starting...")
print(undefined_variable) # This will cause an error
print("This won't be reached")
"""

    try:
        async for message in sandbox.run_code_stream(code):
            if message['type'] == 'stdout':
                print(message['data'], end='')
            elif message['type'] == 'stderr':
                print(f"ERROR: {message['data']}", end='')
            elif message['type'] == 'result':
                if message['exit_code'] != 0:
                    print(f"\\n❌ Execution failed with exit code: {message['exit_code']}")
            elif message['type'] == 'complete':
                if not message.get('success', False):
                    print("\\n❌ Execution completed with errors")
                break
    except Exception as e:
        print(f"Streaming error: {e}")
    finally:
        sandbox.kill()

asyncio.run(handle_streaming_errors())
''',
    "complete_example": '''
from hopx_ai import Sandbox
import asyncio

async def complete_streaming_example():
    sandbox = Sandbox.create(template="code-interpreter")

    code = """
import time
import random

print("Starting data processing...")

total_items = 100
for i in range(total_items):
    # Simulate processing
    time.sleep(0.1)

    # Generate some output
    if i % 10 == 0:
        print(f"Processed {i}/{total_items} items")

    # Simulate occasional errors
    if random.random() < 0.05:
        print(f"Warning: Issue with item {i}", file=sys.stderr)

print("Processing complete!")
print(f"Total items processed: {total_items}")
"""

    print("🚀 Starting streaming execution...\\n")

    async for message in sandbox.run_code_stream(
        code,
        language='python',
        timeout=120,
        env={"BATCH_SIZE": "10"}
    ):
        if message['type'] == 'stdout':
            print(message['data'], end='')
        elif message['type'] == 'stderr':
            print(f"⚠️ {message['data']}", end='')
        elif message['type'] == 'result':
            print(f"\\n\\n📊 Execution Summary:")
            print(f"   Exit code: {message['exit_code']}")
            print(f"   Execution time: {message['execution_time']:.2f}s")
        elif message['type'] == 'complete':
            print("\\n✅ Streaming completed")
            break

    sandbox.kill()

asyncio.run(complete_streaming_example())
''',
}

AICOMPUTER_EXAMPLES = {
    "basic_event_loop": """
import asyncio
from ai_computer import SandboxClient

async def handle_execution(code: str):
    client = SandboxClient()
    await client.setup()

    try:
        async for event in client.execute_code_stream(code):
            match event.type:
                case 'stdout':
                    print(f"Output: {event.data}")
                case 'stderr':
                    print(f"Error: {event.data}")
                case 'error':
                    print(f"Execution error: {event.data}")
                case 'completed':
                    print("Execution completed")
    finally:
        await client.cleanup()

asyncio.run(handle_execution("import sys\\nprint('Hello')\\nsys.exit('bye')"))
""",
    "output_buffering": """
import asyncio
from ai_computer import SandboxClient

async def buffer_output(code: str, buffer_size: int = 1024):
    buffer = []
    buffer_bytes = 0

    async for event in client.execute_code_stream(code):
        if event.type in ('stdout', 'stderr'):
            buffer.append(event.data)
            buffer_bytes += len(event.data)

            if buffer_bytes >= buffer_size:
                print("".join(buffer))
                buffer = []
                buffer_bytes = 0

        elif event.type == 'completed':
            if buffer:  # Flush remaining buffer
                print("".join(buffer))

async def main():
    global client
    client = SandboxClient()
    await client.setup()
    try:
        await buffer_output("for i in range(300):\\n    print(f'line {i}')")
    finally:
        await client.cleanup()

asyncio.run(main())
""",
}


def adapt(source: str, url: str) -> str:
    """Point an example at ``url`` and shorten its sleeps; nothing else."""
    replacements = {
        'Sandbox.create(template="code-interpreter")': (
            f'Sandbox.create(template="code-interpreter", api_key="seed-key", '
            f'base_url="{url}")'
        ),
        "SandboxClient()": f'SandboxClient(base_url="{url}")',
        "time.sleep(1)": "time.sleep(0.01)",
        "time.sleep(0.5)": "time.sleep(0.01)",
        "time.sleep(0.1)": "time.sleep(0.001)",
        # The page's program uses sys without importing it.
        "import random\n": "import random\nimport sys\n",
    }
    for old, new in replacements.items():
        source = source.replace(old, new)
    return source


async def run_example(source: str, url: str) -> str:
    """Run an example in a subprocess; return its stdout (it must exit 0)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        adapt(source, url),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONUTF8": "1"},
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert 0 == process.returncode, err.decode()
    return out.decode()


async def test_basic_streaming(server: Any) -> None:
    """Five steps, Done!, the exit code and time, the completion line."""
    out = await run_example(HOPX_EXAMPLES["basic_streaming"], server.url)
    assert out.startswith("Step 1/5\nStep 2/5\nStep 3/5\nStep 4/5\nStep 5/5\nDone!\n")
    assert "\nExit code: 0\nExecution time: " in out
    assert out.endswith("s\n\n✅ Execution completed\n")
    assert 0 == len(server.sandboxes)  # sandbox.kill() deleted it


async def test_message_types(server: Any) -> None:
    """Each kind of message is labelled, then the result and completion."""
    out = await run_example(HOPX_EXAMPLES["message_types"], server.url)
    # Output comes in chunks as the program writes (the agent's chunking is
    # not specified): a label starts each chunk, which may hold a part of a
    # line or several lines. Without the labels, the text is the program's.
    stdout, _, rest = out.partition("[STDERR] ")
    stderr, _, end = rest.partition("\n[RESULT] ")
    assert stdout.startswith("[STDOUT] ")
    assert "This is stdout\nThis is also stdout\n" == stdout.replace("[STDOUT] ", "")
    assert "This is stderr\n" == stderr.replace("[STDERR] ", "")
    assert end.startswith("Exit: 0, Time: ")
    assert end.endswith("s\n[COMPLETE] Execution finished\n")


async def test_progress_monitoring(server: Any) -> None:
    """Twenty progress lines in order, then the completion."""
    out = await run_example(HOPX_EXAMPLES["progress_monitoring"], server.url)
    lines = out.splitlines()
    expected = [f"Progress: {(i + 1) * 5:.1f}% ({i + 1}/20)" for i in range(20)]
    assert [*expected, "All steps completed!"] == lines[:21]
    assert out.endswith("\n✅ Task completed successfully\n")


async def test_environment_variables(server: Any) -> None:
    """The variables sent with the run are what the code prints."""
    out = await run_example(HOPX_EXAMPLES["environment_variables"], server.url)
    assert "API key: sk-123\nDebug mode: true\n" == out


async def test_error_handling(server: Any) -> None:
    """The NameError shows on stderr, then the exit code and failure."""
    out = await run_example(HOPX_EXAMPLES["error_handling"], server.url)
    assert out.startswith("Starting...\n")
    assert "ERROR: " in out
    assert "NameError: name 'undefined_variable' is not defined" in out
    assert "This won't be reached" not in out
    assert "\n❌ Execution failed with exit code: 1\n" in out
    assert out.endswith("\n❌ Execution completed with errors\n")


async def test_complete_example(server: Any) -> None:
    """Progress every ten items, warnings on stderr, the summary."""
    out = await run_example(HOPX_EXAMPLES["complete_example"], server.url)
    assert out.startswith("🚀 Starting streaming execution...\n\n")
    for i in range(0, 100, 10):
        assert f"Processed {i}/100 items\n" in out
    assert "Processing complete!\nTotal items processed: 100\n" in out
    assert "\n\n📊 Execution Summary:\n   Exit code: 0\n   Execution time: " in out
    assert out.endswith("s\n\n✅ Streaming completed\n")
    assert "Error" not in out.replace("Warning: Issue", "")


async def test_aicomputer_basic_event_loop(server: Any) -> None:
    """Output, the error of a failing exit, then the completion."""
    out = await run_example(AICOMPUTER_EXAMPLES["basic_event_loop"], server.url)
    assert "Output: Hello" in out
    assert "Error: bye" in out
    assert out.endswith(
        "Execution error: process exited with code 1\nExecution completed\n"
    )
    assert 0 == len(server.sandboxes)  # cleanup() deleted it


async def test_aicomputer_output_buffering(server: Any) -> None:
    """Buffered output comes out whole and in order."""
    out = await run_example(AICOMPUTER_EXAMPLES["output_buffering"], server.url)
    lines = [line for line in out.splitlines() if line]
    assert [f"line {i}" for i in range(300)] == lines
