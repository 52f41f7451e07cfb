"""``eventkit.cli.main``: dispatch to the commands, exit statuses, cheap start."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import TYPE_CHECKING

import pytest

from eventkit.cli import main
from eventkit.cli.arguments import COMMANDS
from eventkit.cli.errors import CommandExit

if TYPE_CHECKING:
    import argparse

#: What ``--help`` and ``--version`` must not load. (msgspec loads with
#: ``import eventkit``, for the Event.)
HEAVY = [
    "aiohttp",
    "aiostream",
    "prometheus_client",
    "redis",
    "rich",
    "structlog",
    "websockets",
]


def test_minimal_arguments_cover_every_command(
    minimal_args: dict[str, list[str]],
) -> None:
    """The minimal_args fixture names each command of the parser."""
    assert sorted(COMMANDS) == sorted(minimal_args)


@pytest.mark.parametrize("name", COMMANDS)
def test_main_runs_the_named_command(
    name: str, minimal_args: dict[str, list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each command's ``main`` gets the parsed arguments; its status is returned."""
    seen: list[argparse.Namespace] = []

    def command(args: argparse.Namespace) -> int:
        seen.append(args)
        return 7

    monkeypatch.setattr(f"eventkit.cli.commands.{name}.main", command)
    assert 7 == main([name, *minimal_args[name]])
    (args,) = seen
    assert name == args.command


def test_command_exit_gives_its_status(monkeypatch: pytest.MonkeyPatch) -> None:
    """A CommandExit raised in a command becomes the exit status."""

    def command(args: argparse.Namespace) -> int:
        raise CommandExit(3)

    monkeypatch.setattr("eventkit.cli.commands.replay.main", command)
    assert 3 == main(["replay", "run.jsonl"])


def test_interrupt_exits_130(monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl-C in a command gives exit status 130, not a traceback."""

    def command(args: argparse.Namespace) -> int:
        raise KeyboardInterrupt

    monkeypatch.setattr("eventkit.cli.commands.replay.main", command)
    assert 130 == main(["replay", "run.jsonl"])


@pytest.mark.parametrize("flag", ["--help", "--version"])
def test_help_and_version_load_no_heavy_library(flag: str) -> None:
    """``--help`` and ``--version`` import argparse, not the commands' libraries."""
    script = (
        "import json, sys\n"
        "from eventkit.cli import main\n"
        "try:\n"
        f"    main([{flag!r}])\n"
        "except SystemExit:\n"
        "    pass\n"
        "loaded = {name.partition('.')[0] for name in sys.modules}\n"
        f"print(json.dumps(sorted(loaded & set({HEAVY!r}))), file=sys.stderr)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    )
    assert [] == json.loads(done.stderr)
    assert "eventkit" in done.stdout
