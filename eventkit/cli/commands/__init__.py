"""The commands of ``eventkit``: one module each, with ``main(args) -> int``.

:func:`eventkit.cli.main` imports a command's module only when that command
runs, so that the libraries it needs (rich, aiohttp, redis, ...) load then
and not for ``--help``.
"""

__all__: list[str] = []
