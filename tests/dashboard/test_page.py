"""The dashboard's page in a real browser, while a pipeline of local runs is going.

Each run is held at gates (files the test creates), so the page is checked
at known points of each run, never after a sleep.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING

import eventkit
from eventkit import pipe, sinks, sources
from tests.dashboard.conftest import png_size

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path

    from playwright.async_api import BrowserContext, Page

    from eventkit.dashboard import Dashboard

STEPS = 20


def gated(directory: Path, body: str) -> str:
    """Python code with ``wait(name)``: block until ``directory/name`` exists."""
    return (
        "import os, sys, time\n"
        "def wait(name):\n"
        f"    while not os.path.exists(os.path.join({str(directory)!r}, name)):\n"
        "        time.sleep(0.01)\n" + body
    )


def programs(directory: Path) -> dict[str, str]:
    """One run reporting progress, one failing, one drawing colours with \\r."""
    return {
        "progress": gated(
            directory,
            f"for i in range(1, {STEPS + 1}):\n"
            "    wait(f'step{i}')\n"
            f"    print(f'step {{i}}/{STEPS}', flush=True)\n",
        ),
        "failing": gated(
            directory,
            "print('working', flush=True)\n"
            "wait('fail')\n"
            "print('boom: it broke', file=sys.stderr, flush=True)\n"
            "sys.exit(3)\n",
        ),
        "colours": gated(
            directory,
            "for i in range(0, 101, 10):\n"
            "    sys.stdout.write(f'\\r\\x1b[32mloading\\x1b[0m {i:3d}%')\n"
            "    sys.stdout.flush()\n"
            "print()\n"
            "print('\\x1b[1;34mready\\x1b[0m and \\x1b[31mred\\x1b[0m')\n"
            "wait('finish')\n",
        ),
    }


@contextlib.asynccontextmanager
async def pipeline(directory: Path) -> AsyncIterator[Dashboard]:
    """The three runs merged, fed to a dashboard as ``eventkit run`` feeds it."""
    dashboard = sinks.dashboard(source="local")
    await dashboard.start()
    runs = [
        sources.local(code, run=name, timeout=60)
        for name, code in programs(directory).items()
    ]
    task = asyncio.create_task(
        eventkit.run(
            eventkit.merge(*runs) | pipe.tap(dashboard.upstream),
            pipe.track_progress(),
            dashboard.watch(),
            sink=dashboard,
        )
    )
    try:
        yield dashboard
    finally:
        for name in ("fail", "finish", *(f"step{i}" for i in range(1, STEPS + 1))):
            (directory / name).touch()
        await task
        await dashboard.stop()


def release(directory: Path, *names: str) -> None:
    """Open the gates ``names``."""
    for name in names:
        (directory / name).touch()


async def progress_of(page: Page, run: str) -> str | None:
    """The progress bar's value of ``run``'s row."""
    return await page.locator(
        f'tr[data-run="{run}"] [role="progressbar"]'
    ).get_attribute("aria-valuenow")


async def wait_progress(page: Page, run: str, percent: float) -> None:
    """Wait until ``run``'s bar shows ``percent``."""
    await page.wait_for_function(
        "([run, value]) => { const bar = document.querySelector("
        '`tr[data-run="${run}"] [role="progressbar"]`);'
        " return bar && Number(bar.getAttribute('aria-valuenow')) === value; }",
        arg=[run, percent],
    )


async def output_lines(page: Page) -> list[str]:
    """The lines of the output pane, markers included."""
    return await page.locator("#output > div").all_inner_texts()


async def screenshot(page: Page, path: Path, size: tuple[int, int]) -> None:
    """Save a screenshot and check it is a real picture of that size."""
    await page.screenshot(path=path)
    assert size == png_size(path)
    assert path.stat().st_size > 20_000  # noqa: ASYNC240 - a stat, once


async def test_runs_progress_failure_and_output_live(
    browser: BrowserContext, tmp_path: Path
) -> None:
    """Rows appear, the bar moves, the failure shows, the output is in order."""
    gates = tmp_path / "gates"
    gates.mkdir()
    async with pipeline(gates) as dashboard:
        page = await browser.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        assert dashboard.url is not None
        await page.goto(dashboard.url)
        rows = page.locator("#rows tr")
        await rows.nth(2).wait_for()
        assert 3 == await rows.count()

        # The progress bar moves as the run reports progress.
        release(gates, *(f"step{i}" for i in range(1, 6)))
        await wait_progress(page, "progress", 25.0)
        release(gates, *(f"step{i}" for i in range(6, 11)))
        await wait_progress(page, "progress", 50.0)
        await page.locator(
            'tr[data-run="progress"] [data-field="state"]', has_text="running"
        ).wait_for()

        # The failing run shows failed, with its exit code.
        release(gates, "fail")
        failed = page.locator('tr[data-run="failing"]')
        await failed.locator('[data-field="state"]', has_text="failed").wait_for()
        assert "3" == await failed.locator('[data-field="exit_code"]').inner_text()
        await page.locator('[data-count="failed"]', has_text="1").wait_for()

        # Its output, in order, stderr marked.
        await failed.click()
        await page.locator("#output .mark-completed").wait_for()
        lines = await output_lines(page)
        assert [
            "▶ started",
            "working",
            "boom: it broke",
            "■ result: exit code 3",
            "✖ completed: failure",
        ] == [line.split(" (")[0].split(", ")[0] for line in lines]
        stderr = page.locator("#output .stderr")
        assert ["boom: it broke"] == await stderr.all_inner_texts()
        assert "#run=failing" == await page.evaluate("location.hash")
        download = await page.locator("#download").get_attribute("href")
        assert "/api/runs/failing/events.jsonl" == download

        # Colours rendered, the \r redraws drawn over in place.
        await page.locator('tr[data-run="colours"]').click()
        await page.locator("#output .fg-4.b", has_text="ready").wait_for()
        lines = await output_lines(page)
        assert ["loading 100%", "ready and red"] == lines[1:3]
        assert "loading" == await page.locator("#output .fg-2").first.inner_text()
        assert "red" == await page.locator("#output .fg-1").inner_text()
        await screenshot(page, tmp_path / "desktop.png", (1280, 800))

        # Sorting and filtering by state.
        await page.locator('.filters [data-state="failed"]').click()
        assert ["failing"] == await rows.evaluate_all(
            "rows => rows.filter(r => !r.hidden).map(r => r.dataset.run)"
        )
        await page.locator('.filters [data-state=""]').click()
        by_run = page.locator('th[data-key="run"]')
        for order, runs in (
            ("ascending", ["colours", "failing", "progress"]),
            ("descending", ["progress", "failing", "colours"]),
        ):
            await by_run.locator("button").click()
            assert order == await by_run.get_attribute("aria-sort")
            assert runs == await rows.evaluate_all(
                "rows => rows.map(r => r.dataset.run)"
            )
        assert [] == errors


async def test_the_page_stays_correct_after_a_reload_mid_run(
    browser: BrowserContext, tmp_path: Path
) -> None:
    """Reloaded mid-run, the page shows the same run, every line once, then more."""
    gates = tmp_path / "gates"
    gates.mkdir()
    async with pipeline(gates) as dashboard:
        page = await browser.new_page()
        assert dashboard.url is not None
        await page.goto(dashboard.url + "#run=progress")
        release(gates, *(f"step{i}" for i in range(1, 8)))
        await page.locator("#output div", has_text="step 7/20").wait_for()
        await page.reload()
        await page.locator("#output div", has_text="step 7/20").wait_for()
        release(gates, *(f"step{i}" for i in range(8, STEPS + 1)))
        await page.locator("#output .mark-completed").wait_for()
        lines = await output_lines(page)
        assert [f"step {i}/{STEPS}" for i in range(1, STEPS + 1)] == lines[1:-2]
        await page.locator(
            'tr[data-run="progress"] [data-field="state"]', has_text="succeeded"
        ).wait_for()
        assert "100" == (await progress_of(page, "progress") or "").split(".")[0]
        assert 3 == await page.locator("#rows tr").count()


async def test_keyboard_and_phone_width(
    browser: BrowserContext, tmp_path: Path
) -> None:
    """Rows are reached and opened with the keyboard; the page fits a phone."""
    gates = tmp_path / "gates"
    gates.mkdir()
    async with pipeline(gates) as dashboard:
        page = await browser.new_page()
        await page.set_viewport_size({"width": 390, "height": 844})
        assert dashboard.url is not None
        await page.goto(dashboard.url)
        await page.locator("#rows tr").nth(2).wait_for()
        await page.locator("#rows tr").first.focus()
        await page.keyboard.press("ArrowDown")
        focused = await page.evaluate("document.activeElement.dataset.run")
        await page.keyboard.press("Enter")
        assert f"#run={focused}" == await page.evaluate("location.hash")
        assert await page.locator("#detail").is_visible()
        # No horizontal scrolling of the page itself at phone width.
        assert await page.evaluate(
            "document.documentElement.scrollWidth <= window.innerWidth"
        )
        assert not await page.locator('th[data-key="source"]').is_visible()
        await screenshot(page, tmp_path / "phone.png", (390, 844))
        await page.keyboard.press("Escape")
        assert await page.locator("#detail").is_hidden()
