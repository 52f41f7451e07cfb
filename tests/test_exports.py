"""Tests of the public namespaces and of the layering of the package."""

from __future__ import annotations

import ast
import importlib
import inspect
import json
import subprocess
import sys
import types
from pathlib import Path
from typing import Final

import pytest

import eventkit

PACKAGE: Final = Path(eventkit.__file__).parent
#: The sans-I/O layers, which must run without an event loop or I/O library.
SANS_IO: Final = ("protocol", "operators")
#: What the sans-I/O layers must never import, even indirectly.
FORBIDDEN: Final = frozenset(
    {
        "aiohttp",
        "aiostream",
        "asyncio",
        "httpx",
        "prometheus_client",
        "redis",
        "structlog",
        "websockets",
    }
)
#: The eventkit modules each sans-I/O layer may import: its own layer or below.
ALLOWED: Final = {
    "protocol": ("eventkit.events", "eventkit.exceptions", "eventkit.protocol"),
    "operators": (
        "eventkit.events",
        "eventkit.exceptions",
        "eventkit.protocol",
        "eventkit.operators",
    ),
}
#: Namespaces with an explicit ``__all__`` that re-export from elsewhere.
NAMESPACES: Final = ("eventkit", "eventkit.sinks", "eventkit.sources")


def sans_io_files() -> list[Path]:
    """Return every Python file of the sans-I/O layers."""
    return sorted(path for layer in SANS_IO for path in (PACKAGE / layer).rglob("*.py"))


def module_name(path: Path) -> str:
    """Return the dotted name of the module at ``path``."""
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def imported_modules(path: Path) -> set[str]:
    """Return the absolute names of the modules ``path`` imports, anywhere in it."""
    package = module_name(path).rpartition(".")[0]
    if path.name == "__init__.py":
        package = module_name(path)
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.rsplit(".", node.level - 1)[0]
                base = f"{parent}.{base}" if base else parent
            names.add(base)
    return names


def in_layer(module: str, prefixes: tuple[str, ...]) -> bool:
    """Tell whether ``module`` is one of ``prefixes`` or inside one."""
    return any(module == p or module.startswith(f"{p}.") for p in prefixes)


@pytest.mark.parametrize("name", NAMESPACES)
def test_all_names_exist(name: str) -> None:
    """Every name in ``__all__`` exists, once."""
    module = importlib.import_module(name)
    missing = [item for item in module.__all__ if not hasattr(module, item)]
    assert not missing
    assert sorted(set(module.__all__)) == sorted(module.__all__)


@pytest.mark.parametrize("name", NAMESPACES)
def test_nothing_public_is_missing_from_all(name: str) -> None:
    """Every public name of a namespace, other than a submodule, is in ``__all__``."""
    module = importlib.import_module(name)
    public = {
        item
        for item, value in vars(module).items()
        if not item.startswith("_") and not isinstance(value, types.ModuleType)
    }
    assert set() == public - set(module.__all__)


@pytest.mark.parametrize("name", ["eventkit.pipe", "eventkit.stream"])
def test_operator_modules_export_what_they_define(name: str) -> None:
    """``pipe`` and ``stream`` list every public function they define in ``__all__``."""
    module = importlib.import_module(name)
    defined = {
        item
        for item, value in vars(module).items()
        if not item.startswith("_")
        and inspect.isfunction(value)
        and value.__module__ == name
    }
    assert defined == set(module.__all__)


def test_pipe_and_stream_have_the_same_operators() -> None:
    """Every operator of ``eventkit.pipe`` is in ``eventkit.stream``, and back."""
    assert sorted(eventkit.pipe.__all__) == sorted(eventkit.stream.__all__)


@pytest.mark.parametrize("name", sorted(eventkit.pipe.__all__))
def test_pipe_and_stream_take_the_same_parameters(name: str) -> None:
    """``stream.NAME(source, ...)`` takes what ``pipe.NAME(...)`` takes."""
    piped = inspect.signature(getattr(eventkit.pipe, name))
    streamed = inspect.signature(getattr(eventkit.stream, name))
    source, *rest = streamed.parameters.values()
    assert source.name == "source"
    assert list(piped.parameters.values()) == rest


@pytest.mark.parametrize("name", sorted(eventkit.pipe.__all__))
def test_pipe_and_stream_document_every_operator(name: str) -> None:
    """Each operator has a docstring in both namespaces."""
    assert inspect.getdoc(getattr(eventkit.pipe, name))
    assert inspect.getdoc(getattr(eventkit.stream, name))


def test_sans_io_files_are_found() -> None:
    """The layering checks below see the files they are meant to check."""
    names = {module_name(path) for path in sans_io_files()}
    assert {"eventkit.operators.reorder", "eventkit.protocol.jsonl"} <= names


@pytest.mark.parametrize(
    "path", sans_io_files(), ids=lambda path: module_name(path).partition(".")[2]
)
def test_sans_io_imports_no_io(path: Path) -> None:
    """protocol/ and operators/ import no asyncio, I/O library or logging/metrics."""
    found = {name for name in imported_modules(path) if name.split(".")[0] in FORBIDDEN}
    assert set() == found


@pytest.mark.parametrize(
    "path", sans_io_files(), ids=lambda path: module_name(path).partition(".")[2]
)
def test_sans_io_imports_only_its_layer_or_below(path: Path) -> None:
    """protocol/ and operators/ import no eventkit module from a layer above."""
    layer = module_name(path).split(".")[1]
    above = {
        name
        for name in imported_modules(path)
        if name.split(".")[0] == "eventkit" and not in_layer(name, ALLOWED[layer])
    }
    assert set() == above


# Imports every sans-I/O module without running eventkit/__init__.py, which
# imports every layer, then reports what ended up loaded.
_PROBE: Final = """
import importlib, json, sys, types
package = types.ModuleType("eventkit")
package.__path__ = [sys.argv[1]]
sys.modules["eventkit"] = package
for name in sys.argv[2:]:
    importlib.import_module(name)
print(json.dumps(sorted(sys.modules)))
"""


def test_sans_io_loads_no_io_even_indirectly() -> None:
    """Importing protocol/ and operators/ loads nothing forbidden, nor upper layers."""
    names = [module_name(path) for path in sans_io_files()]
    result = subprocess.run(
        [sys.executable, "-c", _PROBE, str(PACKAGE), *names],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    loaded: list[str] = json.loads(result.stdout)
    assert set(names) <= set(loaded)
    forbidden = sorted(name for name in loaded if name.split(".")[0] in FORBIDDEN)
    assert not forbidden
    above = sorted(
        name
        for name in loaded
        if name.startswith("eventkit.") and not in_layer(name, ALLOWED["operators"])
    )
    assert not above
