"""The live dashboard: every run as it happens, in a browser and in the terminal.

:func:`eventkit.sinks.dashboard` returns the sink; ``eventkit run``,
``replay`` and ``worker`` take ``--dashboard PORT``, and
``eventkit top URL`` shows the same runs in the terminal. The package, by
module:

- :mod:`~eventkit.dashboard.board`: the runs as shown, without I/O (states,
  progress, counts, the bounded logs, the throughput);
- :mod:`~eventkit.dashboard.selfmetrics`: the chain's per-stage counts and
  the process's counters, read when asked;
- :mod:`~eventkit.dashboard.app`: the aiohttp application: the page, the
  JSON API, the live stream, each browser's bounded queue;
- :mod:`~eventkit.dashboard.sink`: :class:`Dashboard`, the sink serving it;
- ``static/``: the page itself (vanilla JavaScript and CSS, no library).

The API is documented in ``docs/dashboard.md``.
"""

from __future__ import annotations

from eventkit.dashboard.sink import Dashboard, dashboard

__all__ = ["Dashboard", "dashboard"]
