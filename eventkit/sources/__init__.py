"""Where events come from. Every source is an aiostream stream of events."""

from eventkit.sources.files import jsonl
from eventkit.sources.memory import iterate

__all__ = ["iterate", "jsonl"]
