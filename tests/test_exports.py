"""Tests of the public namespaces (the layers are checked in test_layers.py)."""

from __future__ import annotations

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
#: Namespaces with an explicit ``__all__`` that re-export from elsewhere.
NAMESPACES: Final = ("eventkit", "eventkit.sinks", "eventkit.sources")


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


_KINDS_OF_PUBLIC_NAMES: Final = """
import importlib, json, pathlib, sys
name, first = sys.argv[1], sys.argv[2] == "submodules"
module = importlib.import_module(name)
if first:
    package = pathlib.Path(module.__file__).parent
    for path in package.rglob("*.py"):
        parts = path.relative_to(package).with_suffix("").parts
        if parts[-1] != "__init__" and not any(p.startswith("_") for p in parts):
            importlib.import_module(".".join((name, *parts)))
kinds = {item: type(getattr(module, item)).__name__ for item in module.__all__}
print(json.dumps(kinds))
"""


@pytest.mark.parametrize("name", NAMESPACES)
def test_no_module_shadows_a_public_name(name: str) -> None:
    """Importing submodules first leaves every public name of a namespace as it is.

    A submodule named like a lazily loaded public name (``eventkit/merge.py``
    beside ``eventkit.merge``) would replace it once imported.
    """

    def kinds(order: str) -> object:
        result = subprocess.run(
            [sys.executable, "-c", _KINDS_OF_PUBLIC_NAMES, name, order],
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        )
        return json.loads(result.stdout)

    assert kinds("attributes") == kinds("submodules")
