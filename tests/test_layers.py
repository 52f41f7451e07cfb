"""The layer rules of ``docs/architecture.md``, checked on the package's source.

Imports are read from the source with :mod:`ast`: those at module level
(``TYPE_CHECKING`` blocks included) make the import graph, which must have no
cycle and must only go down the layers; imports inside functions load a
module late, on purpose, and count only for the rules about what a module
may use at all (I/O libraries, Prometheus, the runner, the CLI). Two probes
in fresh interpreters check what importing actually loads.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import textwrap
from functools import cache
from pathlib import Path
from typing import Final, NamedTuple

import pytest

import eventkit

PACKAGE: Final = Path(eventkit.__file__).parent

#: The layers, bottom up: each module's layer is that of the longest prefix
#: of its name listed here.
LAYERS: Final = (
    (
        "model",
        ("eventkit.events", "eventkit.exceptions", "eventkit._lazy", "eventkit._hosts"),
    ),
    ("protocol", ("eventkit.protocol",)),
    ("operators", ("eventkit.operators", "eventkit.summary")),
    ("counters", ("eventkit.stats",)),
    ("chain", ("eventkit.chain",)),
    ("metrics", ("eventkit.metrics",)),
    # The sink protocol is the face of every sink: the runner needs it.
    ("face", ("eventkit.streams", "eventkit._steps", "eventkit.sinks._base")),
    (
        "driver",
        (
            "eventkit.driver",
            "eventkit.fanin",
            "eventkit.runner",
            "eventkit.pipe",
            "eventkit.stream",
            "eventkit.tap",
        ),
    ),
    (
        "adapters",
        ("eventkit.sources", "eventkit.sinks", "eventkit._redis", "eventkit.dashboard"),
    ),
    ("server", ("eventkit.server",)),
    ("programs", ("eventkit.cli", "eventkit.logging", "eventkit.__main__")),
)
#: The package itself re-exports every layer: it sits on top, with the programs.
TOP: Final = "eventkit"
#: The layers that run without an event loop or any I/O library.
SANS_IO_LAYERS: Final = frozenset(
    {"model", "protocol", "operators", "counters", "chain"}
)
#: Modules of upper layers that are sans-I/O too: the policies their
#: adapters drive.
SANS_IO_MODULES: Final = frozenset(
    {
        "eventkit.sources.local.meter",
        "eventkit.dashboard.board",
        "eventkit.dashboard.selfmetrics",
        "eventkit.sources.redis.failures",
        "eventkit.sources.redis.leases",
    }
)
#: What sans-I/O code must never import, even indirectly.
IO_LIBRARIES: Final = frozenset(
    {
        "aiohttp",
        "aiostream",
        "asyncio",
        "httpx",
        "prometheus_client",
        "redis",
        "socket",
        "structlog",
        "subprocess",
        "websockets",
    }
)
#: What ``import eventkit`` (and its public namespaces) must not load.
HEAVY: Final = frozenset(
    {"aiohttp", "prometheus_client", "redis", "structlog", "websockets"}
)
#: The only modules that may import prometheus_client.
PROMETHEUS_USERS: Final = ("eventkit.metrics", "eventkit.sinks.prometheus")
#: What no source may import: the runner and what composes stages.
RUNNER: Final = (
    "eventkit.chain",
    "eventkit.driver",
    "eventkit.fanin",
    "eventkit.pipe",
    "eventkit.runner",
    "eventkit.stream",
    "eventkit.tap",
)


class Import(NamedTuple):
    """One import statement's target, and when it runs.

    Attributes:
        module: The module imported.
        top_level: Whether it runs when the module loads (or is read by a
            type checker then): not inside a function.
        typing_only: Whether it is in an ``if TYPE_CHECKING:`` block, so
            never runs.
    """

    module: str
    top_level: bool
    typing_only: bool = False


# Reading the package ------------------------------------------------------------


def module_name(path: Path, root: Path) -> str:
    """Return the dotted name of the module at ``path`` in the package ``root``."""
    parts = path.relative_to(root.parent).with_suffix("").parts
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


@cache
def modules(root: Path) -> dict[str, Path]:
    """Return every module of the package at ``root``, by name."""
    return {module_name(path, root): path for path in sorted(root.rglob("*.py"))}


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _top_level_nodes(tree: ast.Module) -> dict[int, bool]:
    """Return the import nodes that run when the module loads, by id.

    Module-level statements, and those in ``if``/``try``/``with`` blocks
    there: not those inside functions. The value tells whether the import is
    in an ``if TYPE_CHECKING:`` block.
    """
    found: dict[int, bool] = {}
    pending: list[tuple[ast.stmt, bool]] = [(node, False) for node in tree.body]
    while pending:
        node, typing_only = pending.pop()
        if isinstance(node, ast.Import | ast.ImportFrom):
            found[id(node)] = typing_only
        elif isinstance(node, ast.If):
            inner = typing_only or _is_type_checking(node.test)
            pending.extend((child, inner) for child in node.body)
            pending.extend((child, typing_only) for child in node.orelse)
        elif isinstance(node, ast.Try):
            for block in (node.body, node.orelse, node.finalbody):
                pending.extend((child, typing_only) for child in block)
            for handler in node.handlers:
                pending.extend((child, typing_only) for child in handler.body)
        elif isinstance(node, ast.With):
            pending.extend((child, typing_only) for child in node.body)
    return found


@cache
def imports_of(root: Path, name: str) -> tuple[Import, ...]:
    """Return the imports of module ``name`` of the package at ``root``.

    ``from package import name`` counts as importing ``package.name`` when
    that is a module of the package.
    """
    path = modules(root)[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    top = _top_level_nodes(tree)
    known = modules(root)
    found: list[Import] = []
    for node in ast.walk(tree):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.rsplit(".", node.level - 1)[0]
                base = f"{parent}.{base}" if base else parent
            targets = [
                f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base
                for alias in node.names
            ]
        found.extend(
            Import(target, id(node) in top, top.get(id(node), False))
            for target in targets
        )
    return tuple(found)


def layer_of(name: str) -> int:
    """Return the index in :data:`LAYERS` of the module ``name``'s layer."""
    if name == TOP:
        return len(LAYERS) - 1
    best, best_length = -1, -1
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if (name == prefix or name.startswith(f"{prefix}.")) and len(
                prefix
            ) > best_length:
                best, best_length = index, len(prefix)
    if best < 0:
        raise LookupError(f"{name} is in no layer of LAYERS")
    return best


def is_sans_io(name: str) -> bool:
    """Tell whether the module ``name`` must run without I/O."""
    return name in SANS_IO_MODULES or LAYERS[layer_of(name)][0] in SANS_IO_LAYERS


def inside(name: str, prefixes: tuple[str, ...]) -> bool:
    """Tell whether ``name`` is one of ``prefixes`` or inside one."""
    return any(name == p or name.startswith(f"{p}.") for p in prefixes)


def graph(root: Path) -> dict[str, set[str]]:
    """Return the package's module-level import graph, between its own modules."""
    known = modules(root)
    return {
        name: {
            target.module
            for target in imports_of(root, name)
            if target.top_level and target.module in known and target.module != name
        }
        for name in known
    }


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Return the import cycles of ``edges``: strongly connected components."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(edges.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1 or node in edges.get(node, ()):
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def probe(*names: str, bare: bool = False) -> set[str]:
    """Import ``names`` in a fresh interpreter; return every module it loaded.

    With ``bare``, the package's ``__init__`` modules do not run: a module
    is loaded with what it imports itself, not with what its parent
    packages import (the sans-I/O policies inside I/O packages).
    """
    script = (
        "import importlib, json, pathlib, sys, types\n"
        "root = pathlib.Path(sys.argv[1])\n"
        "if sys.argv[2] == '1':\n"
        "    for init in sorted(root.rglob('__init__.py')):\n"
        "        parts = init.parent.relative_to(root.parent).parts\n"
        "        stub = types.ModuleType('.'.join(parts))\n"
        "        stub.__path__ = [str(init.parent)]\n"
        "        sys.modules[stub.__name__] = stub\n"
        "for name in sys.argv[3:]:\n"
        "    importlib.import_module(name)\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script, str(PACKAGE), "1" if bare else "0", *names],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    loaded: list[str] = json.loads(result.stdout)
    return set(loaded)


# The rules ----------------------------------------------------------------------

ALL: Final = sorted(modules(PACKAGE))


def test_every_module_has_a_layer() -> None:
    """Each module of the package is placed in a layer (a new one must be)."""
    for name in ALL:
        layer_of(name)


def test_no_import_cycles() -> None:
    """The module-level import graph, TYPE_CHECKING imports included, is acyclic."""
    assert [] == cycles(graph(PACKAGE))


@pytest.mark.parametrize("name", ALL)
def test_imports_go_down_the_layers(name: str) -> None:
    """A module imports, at module level, from its own layer or below only."""
    own = layer_of(name)
    above = sorted(
        target.module
        for target in imports_of(PACKAGE, name)
        if target.top_level
        and target.module.split(".")[0] == "eventkit"
        and target.module in modules(PACKAGE)
        and layer_of(target.module) > own
    )
    assert [] == above


@pytest.mark.parametrize("name", [name for name in ALL if is_sans_io(name)])
def test_sans_io_imports_no_io(name: str) -> None:
    """Sans-I/O modules import no asyncio, I/O library, logging or metrics, anywhere."""
    found = sorted(
        target.module
        for target in imports_of(PACKAGE, name)
        if target.module.split(".")[0] in IO_LIBRARIES
    )
    assert [] == found


def test_sans_io_loads_no_io_even_indirectly() -> None:
    """Importing every sans-I/O module loads no I/O library in a fresh interpreter."""
    names = [name for name in ALL if is_sans_io(name)]
    loaded = probe(*names, bare=True)
    assert set(names) <= loaded
    assert [] == sorted(name for name in loaded if name.split(".")[0] in IO_LIBRARIES)


@pytest.mark.parametrize("name", ALL)
def test_only_metrics_import_prometheus(name: str) -> None:
    """prometheus_client is imported by metrics/ and the Prometheus sinks only.

    A type checker may see it elsewhere (the ``registry`` parameter of
    ``export_metrics``), but nothing else loads it.
    """
    if inside(name, PROMETHEUS_USERS):
        return
    found = [
        target.module
        for target in imports_of(PACKAGE, name)
        if target.module.split(".")[0] == "prometheus_client" and not target.typing_only
    ]
    assert [] == found


@pytest.mark.parametrize("name", [n for n in ALL if inside(n, ("eventkit.sources",))])
def test_sources_do_not_import_the_runner(name: str) -> None:
    """A source shows the face of eventkit.streams; it never imports the runner."""
    found = sorted(
        target.module
        for target in imports_of(PACKAGE, name)
        if inside(target.module, RUNNER)
    )
    assert [] == found


def test_sources_load_no_runner() -> None:
    """Importing every source module loads neither the runner nor the driver."""
    names = [name for name in ALL if inside(name, ("eventkit.sources",))]
    loaded = probe(*names)
    assert [] == sorted(name for name in loaded if inside(name, RUNNER))


@pytest.mark.parametrize("name", ["eventkit.driver", "eventkit.runner"])
def test_runner_imports_the_sink_protocol_only(name: str) -> None:
    """The runner knows sinks by their protocol, never a sink module."""
    found = sorted(
        target.module
        for target in imports_of(PACKAGE, name)
        if inside(target.module, ("eventkit.sinks",))
        and target.module != "eventkit.sinks._base"
    )
    assert [] == found


@pytest.mark.parametrize("name", ALL)
def test_nothing_imports_the_cli(name: str) -> None:
    """Only ``python -m eventkit`` imports the CLI."""
    if inside(name, ("eventkit.cli", "eventkit.__main__")):
        return
    found = [
        target.module
        for target in imports_of(PACKAGE, name)
        if inside(target.module, ("eventkit.cli",))
    ]
    assert [] == found


def test_importing_eventkit_is_cheap() -> None:
    """``import eventkit`` and its namespaces load no I/O library nor structlog."""
    loaded = probe(
        "eventkit",
        "eventkit.pipe",
        "eventkit.stream",
        "eventkit.sinks",
        "eventkit.sources",
    )
    assert [] == sorted(name for name in loaded if name.split(".")[0] in HEAVY)


# The checks themselves fail when a rule is broken ---------------------------------


def make_package(root: Path, files: dict[str, str]) -> Path:
    """Write a package ``eventkit`` of ``files`` under ``root``; return its path."""
    package = root / "eventkit"
    for relative, text in files.items():
        path = package / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text), encoding="utf-8")
    return package


def test_a_cycle_is_found(tmp_path: Path) -> None:
    """Two modules importing each other, one only for type checking, are a cycle."""
    package = make_package(
        tmp_path,
        {
            "__init__.py": "",
            "chain.py": "from eventkit.streams import EventStream\n",
            "streams.py": """
                from typing import TYPE_CHECKING
                if TYPE_CHECKING:
                    from eventkit import chain
            """,
        },
    )
    assert [["eventkit.chain", "eventkit.streams"]] == cycles(graph(package))


def test_a_late_import_is_no_cycle(tmp_path: Path) -> None:
    """An import inside a function loads late: it makes no edge of the graph."""
    package = make_package(
        tmp_path,
        {
            "__init__.py": "",
            "driver.py": "from eventkit.streams import EventStream\n",
            "streams.py": """
                def iterate():
                    from eventkit.driver import drive
            """,
        },
    )
    assert [] == cycles(graph(package))
    assert (Import("eventkit.driver", False),) == imports_of(
        package, "eventkit.streams"
    )


def test_an_upward_import_is_found(tmp_path: Path) -> None:
    """A protocol module importing the runner is an import up the layers."""
    package = make_package(
        tmp_path,
        {"__init__.py": "", "protocol/hopx.py": "from eventkit import runner\n"},
    )
    make_package(tmp_path, {"runner.py": ""})
    (target,) = imports_of(package, "eventkit.protocol.hopx")
    assert target == Import("eventkit.runner", top_level=True)
    assert layer_of(target.module) > layer_of("eventkit.protocol.hopx")
