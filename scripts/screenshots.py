"""Make the README's screenshots from a real run: ``python scripts/screenshots.py``.

Runs a few programs on the local executor through a chain into a dashboard,
as ``eventkit run --dashboard`` wires it, and while they run:

- opens the page in Debian's chromium (Playwright, no browser download) at
  1280x800, follows one run, and saves ``docs/images/dashboard.png``;
- reads the same dashboard's API as ``eventkit top`` does, renders its table
  with ``eventkit top``'s own code, and saves it as ``docs/images/top.png``
  (the terminal drawn by chromium from rich's SVG export).

Needs ``chromium`` (``apt-get install chromium``) and the test extra
(Playwright).
"""

from __future__ import annotations

import asyncio
import io
import os
import shutil
import sys
import tempfile
from pathlib import Path

import aiohttp
from rich.console import Console

import eventkit
from eventkit import pipe, sinks, sources
from eventkit.cli.commands import top

ROOT = Path(__file__).resolve().parent.parent
IMAGES = ROOT / "docs" / "images"

PROGRAMS = {
    "train-model": (
        "import time\n"
        "for epoch in range(1, 41):\n"
        "    print(f'epoch {epoch}/40 loss={1 / epoch:.4f}', flush=True)\n"
        "    time.sleep(0.25)\n"
    ),
    "fetch-data": (
        "import sys, time\n"
        "for i in range(0, 101, 5):\n"
        "    sys.stdout.write(f'\\r\\x1b[36mdownloading\\x1b[0m {i:3d}% '"
        " + '#' * (i // 5))\n"
        "    sys.stdout.flush()\n"
        "    time.sleep(0.1)\n"
        "print()\n"
        "print('\\x1b[1;32m✔ saved\\x1b[0m data.csv (2.1 MB)')\n"
    ),
    "flaky-test": (
        "import sys, time\n"
        "print('collected 12 items', flush=True)\n"
        "time.sleep(0.6)\n"
        "print('test_parse PASSED', flush=True)\n"
        "print('test_network FAILED', flush=True)\n"
        "print('AssertionError: expected 200, got 503', file=sys.stderr, flush=True)\n"
        "sys.exit(1)\n"
    ),
    "report": (
        "import time\n"
        "for step in range(1, 9):\n"
        "    print(f'rendering page {step}/8', flush=True)\n"
        "    time.sleep(0.2)\n"
    ),
    "slow-query": "import time\nprint('SELECT ...', flush=True)\ntime.sleep(30)\n",
}

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


async def main() -> None:
    """Run the programs, take both screenshots, stop."""
    from playwright.async_api import async_playwright

    chromium = os.environ.get("EVENTKIT_CHROMIUM") or shutil.which("chromium")
    if chromium is None:
        sys.exit("chromium is not installed (apt-get install chromium)")
    IMAGES.mkdir(parents=True, exist_ok=True)
    board = sinks.dashboard(source="local")
    await board.start()
    assert board.url is not None
    runs = [
        sources.local(code, run=name, timeout=2.5 if name == "slow-query" else 60)
        for name, code in PROGRAMS.items()
    ]
    pipeline = asyncio.create_task(
        eventkit.run(
            eventkit.merge(*runs) | pipe.tap(board.upstream),
            pipe.buffer_bytes(4096, max_age=0.1),
            pipe.track_progress(),
            board.watch(),
            sink=board,
        )
    )
    try:
        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch_persistent_context(
                tempfile.mkdtemp(prefix="eventkit-screenshots-"),
                executable_path=chromium,
                headless=True,
                args=CHROMIUM_ARGS,
                viewport={"width": 1280, "height": 800},
            )
            page = await browser.new_page()
            await page.goto(board.url + "#run=fetch-data")
            # Wait for the moment worth showing: one failure, one expiry, the
            # training half-way, the download finished.
            await page.locator('[data-count="expired"]', has_text="1").wait_for(
                timeout=30_000
            )
            await page.locator("#output .mark-completed").wait_for()
            await asyncio.sleep(1.2)  # one more metrics message: the sparkline
            await page.screenshot(path=IMAGES / "dashboard.png")
            await terminal(browser, board.url)
            await browser.close()
    finally:
        pipeline.cancel()
        await asyncio.gather(pipeline, return_exceptions=True)
        await board.stop()
    for name in ("dashboard.png", "top.png"):
        print(f"{IMAGES / name}: {(IMAGES / name).stat().st_size:,} bytes")


async def terminal(browser: object, url: str) -> None:
    """Render ``eventkit top``'s view of ``url`` as a terminal picture."""
    from playwright.async_api import BrowserContext

    assert isinstance(browser, BrowserContext)
    base, token = top._target(url, None)
    async with aiohttp.ClientSession() as session:
        runs, metrics = await top._fetch(session, base, token)
    console = Console(
        record=True, width=110, height=16, force_terminal=True, file=io.StringIO()
    )
    console.print(top._view(base, runs, metrics, None, rows=10, width=110))
    svg = console.export_svg(title="eventkit top")
    page = await browser.new_page()
    await page.set_content(
        "<html><body style='margin:0;background:#fff'>" + svg + "</body></html>"
    )
    await page.locator("svg").screenshot(path=IMAGES / "top.png")
    await page.close()


if __name__ == "__main__":
    asyncio.run(main())
