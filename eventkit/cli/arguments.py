"""The command line of ``eventkit``: the parser and the flag groups commands share.

Building the parser loads argparse and nothing else, so that ``--help`` and
``--version`` stay cheap: each subcommand names its command module in
``args.command`` and :func:`eventkit.cli.main` imports that module only when
the command runs. The package version is read from the installed metadata
only when ``--version`` asks for it.

Failure behaviour: argparse's own. Invalid flags print the usage and exit with
status 2 (:exc:`SystemExit`); ``--help`` and ``--version`` print and exit 0.
An event type ``--only`` or ``--exclude`` names that eventkit does not know is
no error (programs may make their own types): the chain warns about it.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from eventkit.cli.dashboard import add_dashboard_flags

if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import TypeAlias

    # What add_subparsers() returns; argparse gives it no public name.
    _Subparsers: TypeAlias = argparse._SubParsersAction[argparse.ArgumentParser]

__all__ = ["COMMANDS", "add_chain_flags", "add_output_flags", "build_parser", "version"]

#: The subcommands, in the order ``--help`` lists them.
COMMANDS = ("run", "serve", "replay", "worker", "top")

#: The exit statuses, as ``--help`` tells them (see eventkit.cli.errors).
EXIT_STATUS = """\
exit status:
  run      the code's own exit status; 128+N if it was killed by signal N
  all      0 on success; 1 for a runtime failure (a sandbox, Redis or an
           output that cannot be reached); 2 for a usage error (bad flags, a
           missing input file); 128+N when stopped by signal N (130: Ctrl-C)
"""


def build_parser() -> argparse.ArgumentParser:
    """Return the parser of the ``eventkit`` command and its subcommands.

    Each subcommand sets ``command`` to its name (one of :data:`COMMANDS`).
    """
    parser = argparse.ArgumentParser(
        prog="eventkit",
        description="Process code-execution sandbox event streams.",
        epilog=EXIT_STATUS,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action=_VersionAction)
    commands = parser.add_subparsers(title="commands", required=True)
    _add_run(commands)
    _add_serve(commands)
    _add_replay(commands)
    _add_worker(commands)
    _add_top(commands)
    return parser


def _add_run(commands: _Subparsers) -> None:
    run = commands.add_parser(
        "run",
        help="run code in a sandbox (the local one by default) and show its events",
        description="Run code in a sandbox and show its events as they come. "
        "Runs on the local executor unless --url or --aicomputer names a remote "
        "sandbox. The exit status is the code's own.",
        epilog=EXIT_STATUS,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    code = run.add_mutually_exclusive_group(required=True)
    code.add_argument("file", nargs="?", help="the program to run, or - for stdin")
    code.add_argument("-c", dest="code", metavar="CODE", help="the code to run")
    run.add_argument(
        "--language",
        help="python, bash or javascript (default: from the file name, else python)",
    )
    remote = run.add_mutually_exclusive_group()
    remote.add_argument(
        "--url",
        metavar="WS_URL",
        help="a HOPX agent: ws(s)://host:port/execute/stream or http(s)://host:port",
    )
    remote.add_argument(
        "--aicomputer", metavar="BASE_URL", help="an AI Computer API base URL"
    )
    run.add_argument("--token", help="bearer token for the remote sandbox")
    run.add_argument(
        "--reconnect",
        action="store_true",
        help="with --url: resume the run after a lost connection, the code "
        "running once and no output lost or repeated (an eventkit serve "
        "extension; other agents run as without it)",
    )
    run.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="K=V",
        help="an environment variable for the code (repeatable)",
    )
    run.add_argument(
        "--timeout", type=float, default=60.0, metavar="S", help="seconds (default 60)"
    )
    run.add_argument(
        "--isolate",
        action="store_true",
        help="run the local code in a bubblewrap sandbox (see docs/security.md)",
    )
    add_chain_flags(run)
    add_output_flags(run)
    add_dashboard_flags(run, keep=True)
    run.set_defaults(command="run")


def _add_serve(commands: _Subparsers) -> None:
    serve = commands.add_parser(
        "serve",
        help="serve a local sandbox the official HOPX and AI Computer SDKs can use",
        description="Serve a local sandbox: the HOPX public API and agent "
        "(WebSocket /execute/stream) and the AI Computer API, on one port. Point "
        "the official SDKs at it with base_url=http://HOST:PORT.",
    )
    serve.add_argument("--host", default="127.0.0.1", help="default 127.0.0.1")
    serve.add_argument("--port", type=int, default=7777, help="default 7777")
    key = serve.add_mutually_exclusive_group()
    key.add_argument(
        "--api-key",
        metavar="KEY",
        help="the only key (and /dev/token tokens) accepted; required for any "
        "address but loopback. Visible to other users in ps: prefer "
        "--api-key-file or EVENTKIT_API_KEY",
    )
    key.add_argument(
        "--api-key-file",
        metavar="PATH",
        help="read the API key from PATH (its first line); EVENTKIT_API_KEY in "
        "the environment is used when neither is given",
    )
    serve.add_argument(
        "--max-concurrent",
        type=int,
        default=8,
        metavar="N",
        help="executions running at once (default 8); more wait or are refused",
    )
    serve.add_argument(
        "--max-queue",
        type=int,
        default=64,
        metavar="N",
        help="executions waiting for a slot before refusals (default 64)",
    )
    serve.add_argument(
        "--max-timeout",
        type=float,
        default=300.0,
        metavar="S",
        help="the longest timeout an execution gets (default 300)",
    )
    serve.add_argument(
        "--max-code-bytes",
        type=int,
        default=1 << 20,
        metavar="B",
        help="the largest program accepted (default 1 MiB)",
    )
    serve.add_argument(
        "--max-output-bytes",
        type=int,
        default=64 << 20,
        metavar="B",
        help="cap on one execution's output, stdout and stderr together "
        "(default 64 MiB); the non-streaming execute answers hold at most this",
    )
    serve.add_argument(
        "--max-file-bytes",
        type=int,
        default=32 << 20,
        metavar="B",
        help="the largest file the files API reads or writes (default 32 MiB)",
    )
    serve.add_argument(
        "--max-sandboxes",
        type=int,
        default=1024,
        metavar="N",
        help="sandboxes alive at once (default 1024)",
    )
    serve.add_argument(
        "--max-sandboxes-per-key",
        type=int,
        default=256,
        metavar="N",
        help="sandboxes alive at once for one API key or issued token (default 256)",
    )
    serve.add_argument(
        "--sandbox-ttl",
        type=float,
        default=3600.0,
        metavar="S",
        help="seconds a sandbox may stay idle before it is deleted (default 3600)",
    )
    serve.add_argument(
        "--send-timeout",
        type=float,
        default=30.0,
        metavar="S",
        help="seconds a send may wait for a client that does not read before "
        "its connection is dropped and its execution killed (default 30)",
    )
    serve.add_argument(
        "--idle-timeout",
        type=float,
        default=30.0,
        metavar="S",
        help="seconds a connection may stay without a whole request, idle or "
        "still sending its headers (default 30)",
    )
    serve.add_argument(
        "--body-timeout",
        type=float,
        default=30.0,
        metavar="S",
        help="seconds a request body may take to arrive (default 30)",
    )
    serve.add_argument(
        "--output-policy",
        choices=("kill", "truncate"),
        default="kill",
        help="a run over --max-output-bytes: kill it (default), or truncate: "
        "stdout and stderr each keep their first and last half of the cap, the "
        "run goes on, and its complete frame says truncated",
    )
    serve.add_argument(
        "--resume-buffer-bytes",
        type=int,
        default=16 << 20,
        metavar="B",
        help="frames a resumable execution keeps for a client that reconnects "
        "(default 16 MiB)",
    )
    serve.add_argument(
        "--resume-window",
        type=float,
        default=60.0,
        metavar="S",
        help="seconds a resumable execution waits for its client to reconnect "
        "(the run goes on meanwhile) and is kept once ended (default 60)",
    )
    serve.add_argument(
        "--resume-buffer-total",
        type=int,
        default=256 << 20,
        metavar="B",
        help="frames all resumable executions keep together (default 256 MiB)",
    )
    isolation = serve.add_argument_group("isolation of the code (docs/security.md)")
    isolation.add_argument(
        "--isolation",
        choices=("auto", "bwrap", "none"),
        default="auto",
        help="auto (default): each run in a bubblewrap sandbox where one "
        "starts, else unisolated (said at start-up); bwrap: refuse to start "
        "without one; none: the code sees this machine as the server's user "
        "(refused on any address but loopback unless given)",
    )
    isolation.add_argument(
        "--no-network",
        action="store_true",
        help="isolated runs have no network at all",
    )
    isolation.add_argument(
        "--max-memory-bytes",
        type=int,
        metavar="B",
        help="memory a run may use, its whole tree where a cgroup can be made",
    )
    isolation.add_argument(
        "--max-processes",
        type=int,
        metavar="N",
        help="processes a run may have at once (fork bombs stop there)",
    )
    isolation.add_argument(
        "--interrupt-grace",
        type=float,
        default=2.0,
        metavar="S",
        help="seconds between SIGINT and SIGKILL when a run is stopped (default 2)",
    )
    add_dashboard_flags(serve, keep=False)
    serve.add_argument(
        "--metrics-port",
        type=int,
        metavar="P",
        help="serve Prometheus metrics (executions, refusals, queue) on "
        "127.0.0.1:P/metrics",
    )
    serve.set_defaults(command="serve")


def _add_replay(commands: _Subparsers) -> None:
    replay = commands.add_parser(
        "replay",
        help="run a recorded stream (eventkit JSON Lines) through the chain",
        description="Run a recorded stream (eventkit JSON Lines) through the chain.",
        epilog=EXIT_STATUS,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    replay.add_argument("file", help="the .jsonl file, or - for standard input")
    replay.add_argument(
        "--skip-invalid",
        action="store_true",
        help="skip lines that are not valid events (counted and reported on "
        "stderr) instead of stopping at the first",
    )
    add_chain_flags(replay)
    add_output_flags(replay)
    add_dashboard_flags(replay, keep=True)
    replay.set_defaults(command="replay")


def _add_worker(commands: _Subparsers) -> None:
    worker = commands.add_parser(
        "worker",
        help="process the events of a Redis stream as one of a consumer group",
        description="Read events from a Redis stream as a member of a consumer "
        "group, run them through the chain and acknowledge each run once its "
        "output is written, until stopped. SIGTERM or Ctrl-C stops gracefully: "
        "what was read is finished and acknowledged, the shards are handed over, "
        "the exit status is 0. Logs a summary line per run to stderr.",
    )
    worker.add_argument(
        "--redis", required=True, metavar="URL", help="redis://host:port/db"
    )
    worker.add_argument(
        "--stream",
        default="eventkit:events",
        help="the stream (default eventkit:events)",
    )
    worker.add_argument("--group", required=True, help="the consumer group")
    worker.add_argument(
        "--consumer", help="this worker's name in the group (default HOSTNAME-PID)"
    )
    worker.add_argument(
        "--shards",
        type=int,
        default=1,
        metavar="N",
        help="the shard keys STREAM:0..N-1, as producers write them (default 1)",
    )
    worker.add_argument(
        "--claim-idle-ms",
        type=int,
        default=10_000,
        metavar="MS",
        help="a worker silent this long loses its shards and their pending "
        "entries to the others (default 10000)",
    )
    worker.add_argument(
        "--max-deliveries",
        type=int,
        default=3,
        metavar="N",
        help="a run on which the chain or an output fails N times goes to the "
        "dead-letter stream STREAM:dead, and the worker goes on (default 3)",
    )
    worker.add_argument(
        "--idle-timeout",
        type=float,
        default=300.0,
        metavar="S",
        help="a run with no event for S seconds and no completed is ended with "
        "an error (code run_expired) and acknowledged (default 300)",
    )
    add_chain_flags(worker)
    # A worker's output group is its own: no --to-redis, no summary table.
    worker_output = worker.add_argument_group("output")
    worker_output.add_argument(
        "--jsonl",
        metavar="OUT",
        help="append the processed stream to OUT (JSON Lines; never truncated)",
    )
    worker_output.add_argument(
        "--json",
        action="store_true",
        help="machine-readable: the stream as JSON Lines on stdout, JSON logs "
        "and a JSON summary on stderr",
    )
    add_dashboard_flags(worker, keep=False)
    worker.set_defaults(command="worker")


def _add_top(commands: _Subparsers) -> None:
    top = commands.add_parser(
        "top",
        help="watch the runs of a dashboard (--dashboard) live in the terminal",
        description="Show the runs of an eventkit dashboard in the terminal, "
        "refreshing in place, like vector top: URL is the address a command "
        "with --dashboard printed. Quit with q or Ctrl-C. When standard output "
        "is not a terminal, prints the table once.",
    )
    top.add_argument("url", metavar="URL", help="the dashboard, http://HOST:PORT/")
    top.add_argument(
        "--token",
        help="the dashboard's token (default: from URL's ?token=, else "
        "$EVENTKIT_DASHBOARD_TOKEN)",
    )
    top.add_argument(
        "--interval",
        type=float,
        default=1.0,
        metavar="S",
        help="seconds between refreshes (default 1)",
    )
    top.set_defaults(command="top")


def add_chain_flags(parser: argparse.ArgumentParser) -> None:
    """Add the flags that build the chain, listed in the order stages apply.

    :func:`eventkit.cli.pipeline.build_chain` reads them.
    """
    chain = parser.add_argument_group("chain (applied in this order)")
    chain.add_argument(
        "--reorder",
        action="store_true",
        help="put each run's events in sequence order, reporting gaps",
    )
    chain.add_argument(
        "--only",
        action="extend",
        type=_types,
        metavar="TYPE[,TYPE...]",
        help="keep only these event types (comma-separated or repeated)",
    )
    chain.add_argument(
        "--exclude",
        action="extend",
        type=_types,
        metavar="TYPE[,TYPE...]",
        help="drop these event types (comma-separated or repeated)",
    )
    chain.add_argument(
        "--lines",
        action="store_true",
        help="regroup output into whole lines (an unfinished one shows after "
        "100 ms; a line redrawn with \\r keeps its last state)",
    )
    chain.add_argument(
        "--buffer-bytes",
        type=int,
        metavar="N",
        help="coalesce output into chunks of at most N bytes, none older than 100 ms",
    )
    chain.add_argument(
        "--cap-output",
        type=_head_and_tail,
        metavar="HEAD[,TAIL]",
        help="keep the first HEAD and the last TAIL bytes of each run's stdout "
        "and stderr (TAIL defaults to HEAD), with a truncated event between",
    )
    chain.add_argument(
        "--progress",
        action="store_true",
        help="track progress reported in the output (45%%, 9/20)",
    )
    chain.add_argument(
        "--metrics-port",
        type=int,
        metavar="P",
        help="serve Prometheus metrics on 127.0.0.1:P/metrics while running",
    )
    chain.add_argument(
        "--pushgateway",
        metavar="URL",
        help="push the metrics to a Prometheus Pushgateway at the end",
    )
    chain.add_argument(
        "--log",
        choices=("json", "console"),
        help="log to stderr with structlog: lifecycle events and a summary per run",
    )
    chain.add_argument(
        "--log-level", default="info", help="the lowest level logged (default info)"
    )
    chain.add_argument(
        "--log-events",
        action="store_true",
        help="with --log: log every event instead of the per-run summary",
    )
    chain.add_argument(
        "--log-every",
        type=int,
        default=1,
        metavar="N",
        help="with --log-events: log one output event in N (lifecycle always)",
    )


def add_output_flags(parser: argparse.ArgumentParser) -> None:
    """Add the output flags of ``run`` and ``replay``: Redis, JSON Lines, ``--json``.

    :func:`eventkit.cli.pipeline.process` reads them.
    """
    output = parser.add_argument_group("output")
    output.add_argument(
        "--to-redis",
        metavar="URL",
        help="also publish the events, as the source gives them, to a Redis stream",
    )
    output.add_argument(
        "--redis-timeout",
        type=_seconds,
        default=10.0,
        metavar="S",
        help="with --to-redis: give up after S seconds without Redis (default 10)",
    )
    output.add_argument(
        "--redis-stream",
        default="eventkit:events",
        metavar="S",
        help="with --to-redis: the stream (default eventkit:events)",
    )
    output.add_argument(
        "--shards",
        type=int,
        default=1,
        metavar="N",
        help="with --to-redis: spread runs over the keys S:0..N-1 (default 1: S)",
    )
    output.add_argument(
        "--jsonl",
        metavar="OUT",
        help="also record the processed stream to OUT (eventkit JSON Lines)",
    )
    output.add_argument(
        "--json",
        action="store_true",
        help="machine-readable: the stream as JSON Lines on stdout, the "
        "summary as JSON on stderr",
    )


def _types(text: str) -> list[str]:
    """The event types of one ``--only``/``--exclude`` value: ``stdout,stderr``."""
    types = [name.strip() for name in text.split(",") if name.strip()]
    if not types:
        raise argparse.ArgumentTypeError(f"no event type in {text!r}")
    return types


def _seconds(text: str) -> float:
    """A positive number of seconds."""
    try:
        seconds = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not seconds > 0:
        raise argparse.ArgumentTypeError(f"must be positive, not {text!r}")
    return seconds


def version() -> str:
    """Return the installed version of eventkit, ``"unknown"`` if not installed."""
    # importlib.metadata costs more than the whole parser: loaded on demand.
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("eventkit")
    except PackageNotFoundError:  # pragma: no cover - running from a bare checkout
        return "unknown"


class _VersionAction(argparse.Action):
    """``--version``: argparse's version action, reading the version when asked.

    argparse's own wants the text when the parser is built, which would load
    the package metadata for every command and for ``--help``.
    """

    def __init__(
        self,
        option_strings: Sequence[str],
        dest: str = argparse.SUPPRESS,
        default: Any = argparse.SUPPRESS,
        help: str = "show program's version number and exit",
    ) -> None:
        super().__init__(
            option_strings=option_strings,
            dest=dest,
            default=default,
            nargs=0,
            help=help,
        )

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: str | Sequence[Any] | None,
        option_string: str | None = None,
    ) -> None:
        print(f"eventkit {version()}")
        parser.exit()


def _head_and_tail(text: str) -> tuple[int, int]:
    """Read ``--cap-output HEAD[,TAIL]``: byte counts, TAIL defaulting to HEAD."""
    head, _, tail = text.partition(",")
    try:
        sizes = int(head), int(tail or head)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected HEAD[,TAIL] in bytes, not {text!r}"
        ) from None
    if min(sizes) < 0:
        raise argparse.ArgumentTypeError(f"sizes must be 0 or more, not {text!r}")
    return sizes
