"""The languages the local executor runs, and the environment it runs them in.

:func:`resolve` turns a language name (any accepted spelling, lower case)
into the command that runs a program file in that language;
:func:`child_env` builds the child's whole environment.

Failure behaviour: nothing here raises. A language that is unknown, or whose
interpreter is not installed, resolves to a sentence saying so, which the
source reports as an ``error`` event (``code="language_unavailable"``).
"""

from __future__ import annotations

import os
import shutil
import sys
from typing import TYPE_CHECKING, Final, NamedTuple

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = ["SAFE_PATH", "Language", "child_env", "resolve"]

#: Searched after the directory of ``sys.executable`` by the child's PATH.
SAFE_PATH: Final = "/usr/local/bin:/usr/bin:/bin"


class Language(NamedTuple):
    """How to run one language.

    Attributes:
        name: The canonical name (``"python"``, ``"bash"``, ``"sh"``,
            ``"javascript"``).
        argv: The command, ending with the program file's name.
        filename: The program file's name, in the working directory.
        env: Variables the language needs, added to the child's environment.
    """

    name: str
    argv: list[str]
    filename: str
    env: dict[str, str]


#: Accepted spellings -> (canonical name, interpreters to try, file name).
_LANGUAGES: Final[dict[str, tuple[str, tuple[str, ...], str]]] = {
    # An empty tuple means sys.executable: the interpreter eventkit runs on.
    "python": ("python", (), "main.py"),
    "python3": ("python", (), "main.py"),
    "py": ("python", (), "main.py"),
    "bash": ("bash", ("bash",), "main.sh"),
    "shell": ("bash", ("bash", "sh"), "main.sh"),
    "sh": ("sh", ("sh",), "main.sh"),
    "javascript": ("javascript", ("node", "nodejs"), "main.js"),
    "js": ("javascript", ("node", "nodejs"), "main.js"),
    "node": ("javascript", ("node", "nodejs"), "main.js"),
    "nodejs": ("javascript", ("node", "nodejs"), "main.js"),
}


def resolve(language: str) -> Language | str:
    """Return how to run ``language``, or why it cannot be run.

    Args:
        language: A spelling of the language, already stripped and in lower
            case.

    Returns:
        The :class:`Language`, or a sentence for the user when the language
        is unknown or its interpreter is not found on ``PATH``.
    """
    spec = _LANGUAGES.get(language)
    if spec is None:
        known = ", ".join(sorted({name for name, _, _ in _LANGUAGES.values()}))
        return f"unknown language {language!r}; known: {known}"
    name, programs, filename = spec
    if not programs:
        if not sys.executable:
            return "python: the interpreter running eventkit is unknown"
        # -u and PYTHONUNBUFFERED: output reaches the pipe as it is written,
        # also from python processes the code starts.
        return Language(
            name,
            [sys.executable, "-u", filename],
            filename,
            {"PYTHONUNBUFFERED": "1"},
        )
    for program in programs:
        found = shutil.which(program)
        if found is not None:
            return Language(name, [found, filename], filename, {})
    wanted = " or ".join(repr(program) for program in programs)
    return f"{name} needs {wanted}, which is not installed (not found on PATH)"


def child_env(
    language: Language, extra: Mapping[str, str], home: str
) -> dict[str, str]:
    """Return the child's whole environment: nothing of the parent's leaks.

    Args:
        language: The language run; its variables are added.
        extra: The caller's variables, added last (they win).
        home: ``HOME``: the working directory.
    """
    bindir = os.path.dirname(sys.executable)
    path = f"{bindir}:{SAFE_PATH}" if bindir else SAFE_PATH
    env = {"PATH": path, "HOME": home, "LANG": "C.UTF-8", **language.env}
    env.update(extra)
    return env
