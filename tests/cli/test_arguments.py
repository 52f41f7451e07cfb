"""The parser of ``eventkit``: commands, shared flag groups, --version and --help."""

from __future__ import annotations

from importlib.metadata import version as installed_version

import pytest

from eventkit.cli.arguments import COMMANDS, build_parser, version


def test_version_prints_the_installed_version(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """--version prints ``eventkit VERSION`` on stdout and exits 0."""
    with pytest.raises(SystemExit) as stopped:
        build_parser().parse_args(["--version"])
    assert 0 == stopped.value.code
    out, err = capsys.readouterr()
    assert f"eventkit {installed_version('eventkit')}\n" == out
    assert "" == err
    assert installed_version("eventkit") == version()


def test_help_lists_the_commands(capsys: pytest.CaptureFixture[str]) -> None:
    """--help describes every command and --version, and exits 0."""
    with pytest.raises(SystemExit) as stopped:
        build_parser().parse_args(["--help"])
    assert 0 == stopped.value.code
    out, _ = capsys.readouterr()
    assert "--version" in out
    for name in COMMANDS:
        assert name in out


@pytest.mark.parametrize("name", COMMANDS)
def test_each_command_names_itself(
    name: str, minimal_args: dict[str, list[str]]
) -> None:
    """A subcommand's arguments carry its name, for main() to dispatch on."""
    assert name == build_parser().parse_args([name, *minimal_args[name]]).command


def test_a_command_is_required(capsys: pytest.CaptureFixture[str]) -> None:
    """Without a command, argparse prints the usage and exits 2."""
    with pytest.raises(SystemExit) as stopped:
        build_parser().parse_args([])
    assert 2 == stopped.value.code
    assert "usage: eventkit" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["run", "replay"])
def test_run_and_replay_share_chain_and_output_flags(
    name: str, minimal_args: dict[str, list[str]]
) -> None:
    """The chain and output flags parse the same for run and replay."""
    args = build_parser().parse_args(
        [
            name,
            *minimal_args[name],
            "--reorder",
            "--only",
            "stdout",
            "--only",
            "completed",
            "--buffer-bytes",
            "64",
            "--log",
            "json",
            "--to-redis",
            "redis://h",
            "--shards",
            "3",
            "--jsonl",
            "out.jsonl",
            "--json",
        ]
    )
    assert args.reorder
    assert ["stdout", "completed"] == args.only
    assert 64 == args.buffer_bytes
    assert "json" == args.log
    assert "info" == args.log_level
    assert "redis://h" == args.to_redis
    assert "eventkit:events" == args.redis_stream
    assert 3 == args.shards
    assert "out.jsonl" == args.jsonl
    assert args.json


def test_worker_has_chain_flags_but_not_to_redis(
    minimal_args: dict[str, list[str]], capsys: pytest.CaptureFixture[str]
) -> None:
    """A worker takes the chain flags and --jsonl/--json, but publishes nowhere."""
    worker = ["worker", *minimal_args["worker"]]
    args = build_parser().parse_args([*worker, "--progress", "--jsonl", "o", "--json"])
    assert args.progress
    assert "o" == args.jsonl
    assert args.json
    with pytest.raises(SystemExit) as stopped:
        build_parser().parse_args([*worker, "--to-redis", "redis://h"])
    assert 2 == stopped.value.code
    assert "--to-redis" in capsys.readouterr().err


def test_invalid_choice_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    """A --log format other than json or console is refused by the parser."""
    with pytest.raises(SystemExit) as stopped:
        build_parser().parse_args(["replay", "run.jsonl", "--log", "xml"])
    assert 2 == stopped.value.code
    assert "invalid choice" in capsys.readouterr().err


@pytest.mark.parametrize("command", [[], ["run"], ["replay"]])
def test_help_tells_the_exit_statuses(
    command: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """``--help`` of eventkit, run and replay documents the exit statuses."""
    with pytest.raises(SystemExit):
        build_parser().parse_args([*command, "--help"])
    out, _ = capsys.readouterr()
    assert "exit status:" in out
    assert "the code's own exit status; 128+N if it was killed by signal N" in out
    assert "2 for a usage error" in out


def test_redis_timeout_is_positive_seconds(
    minimal_args: dict[str, list[str]], capsys: pytest.CaptureFixture[str]
) -> None:
    """--redis-timeout defaults to 10 s; zero or a word is a usage error."""
    run = ["run", *minimal_args["run"]]
    assert 10.0 == build_parser().parse_args(run).redis_timeout
    assert (
        2.5 == build_parser().parse_args([*run, "--redis-timeout", "2.5"]).redis_timeout
    )
    for bad in ("0", "soon"):
        with pytest.raises(SystemExit) as stopped:
            build_parser().parse_args([*run, "--redis-timeout", bad])
        assert 2 == stopped.value.code
    assert "--redis-timeout" in capsys.readouterr().err
