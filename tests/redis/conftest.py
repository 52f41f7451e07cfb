"""A real ``redis-server`` for the Redis Streams tests, restartable."""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import redis
import redis.asyncio

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator

#: Seconds a start may take until the server answers PING.
START_TIMEOUT = 10.0


def free_port() -> int:
    """Return a TCP port free on the loopback interface now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class RedisServer:
    """One ``redis-server`` process on 127.0.0.1, restartable on its port and dir.

    Every write is in the append-only file before it is acknowledged
    (``--appendfsync always``), so a restart, even after SIGKILL, keeps
    whatever a client saw acknowledged.
    """

    def __init__(self, executable: str, directory: Path) -> None:
        self.executable = executable
        self.directory = directory
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start the server and wait until it answers PING."""
        assert self.process is None, "already running"
        command = [
            self.executable,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--protected-mode", "no",
            "--daemonize", "no",
            "--dir", str(self.directory),
            "--save", "",
            "--appendonly", "yes",
            "--appendfsync", "always",
            "--logfile", str(self.directory / "redis.log"),
        ]  # fmt: skip
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL)
        client = redis.Redis.from_url(self.url, socket_timeout=1.0)
        deadline = time.monotonic() + START_TIMEOUT
        try:
            while True:
                try:
                    if client.ping():
                        return
                except redis.exceptions.BusyLoadingError:
                    pass
                except redis.ConnectionError:
                    if self.process.poll() is not None:
                        raise RuntimeError(
                            f"redis-server exited with {self.process.returncode}: "
                            + self.log()
                        ) from None
                if time.monotonic() > deadline:
                    raise RuntimeError("redis-server did not answer PING in time")
                time.sleep(0.01)
        finally:
            client.close()

    def stop(self) -> None:
        """SIGTERM the server and wait for it to exit."""
        process = self._take()
        process.terminate()
        process.wait(timeout=10)

    def kill(self) -> None:
        """SIGKILL the server and wait for it to exit."""
        process = self._take()
        process.kill()
        process.wait(timeout=10)

    def log(self) -> str:
        """Return the server's log so far."""
        path = self.directory / "redis.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def _take(self) -> subprocess.Popen[bytes]:
        process, self.process = self.process, None
        assert process is not None, "not running"
        return process


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    """A fresh server in a temporary directory, gone at the end of the test."""
    executable = shutil.which("redis-server")
    if executable is None:
        pytest.skip("redis-server is not on PATH (CI installs it)")
    with tempfile.TemporaryDirectory(prefix="eventkit-redis-") as directory:
        server = RedisServer(executable, Path(directory))
        server.start()
        try:
            yield server
        finally:
            if server.process is not None:
                server.kill()


@pytest.fixture
async def client(redis_server: RedisServer) -> AsyncIterator[redis.asyncio.Redis]:
    """A plain client of the server, to set things up and look at them."""
    client = redis.asyncio.Redis.from_url(redis_server.url)
    try:
        yield client
    finally:
        await client.aclose()
