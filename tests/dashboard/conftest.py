"""A real browser for the dashboard's page: Debian's chromium, driven by Playwright.

The browser is the system's (``/usr/bin/chromium``, or ``$EVENTKIT_CHROMIUM``),
never one Playwright downloads: ``.ci/run`` installs Debian's ``chromium``.
"""

from __future__ import annotations

import os
import shutil
import struct
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path

    from playwright.async_api import BrowserContext

#: What chromium is started with: no sandbox (tests may run as root), no GPU,
#: nothing fetched in the background.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--no-first-run",
]


def chromium() -> str:
    """Return the chromium executable the tests drive."""
    path = os.environ.get("EVENTKIT_CHROMIUM") or shutil.which("chromium")
    if path is None:
        pytest.fail("chromium is not installed: .ci/run installs Debian's chromium")
    return path


@pytest.fixture
async def browser(tmp_path: Path) -> AsyncIterator[BrowserContext]:
    """A headless chromium with a fresh profile under the test's directory."""
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        context = await playwright.chromium.launch_persistent_context(
            str(tmp_path / "profile"),
            executable_path=chromium(),
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1280, "height": 800},
        )
        try:
            yield context
        finally:
            await context.close()


def png_size(path: Path) -> tuple[int, int]:
    """Return the width and height of the PNG at ``path``."""
    header = path.read_bytes()[:24]
    assert b"\x89PNG\r\n\x1a\n" == header[:8]
    width, height = struct.unpack(">II", header[16:24])
    return width, height
