"""eventkit's own wire format: JSON Lines, one :class:`~eventkit.Event` per line.

Every field is written, so a stream recorded with :func:`encode` is read back
by :func:`decode` exactly as it was (``attrs`` values must be JSON values; a
tuple comes back as a list).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

import msgspec

from eventkit.events import Event
from eventkit.exceptions import DecodeError

__all__ = ["DecodeError", "decode", "encode"]


def _encode_other(value: Any) -> Any:
    # Mappings such as the shared empty attrs (a MappingProxyType) go as objects.
    if isinstance(value, Mapping):
        return dict(value)
    raise TypeError(f"cannot encode {type(value).__name__} as JSON")


_encoder: Final = msgspec.json.Encoder(enc_hook=_encode_other)
_decoder: Final = msgspec.json.Decoder(Event)


def encode(event: Event) -> bytes:
    """Return ``event`` as one JSON line, newline included."""
    return _encoder.encode(event) + b"\n"


def decode(line: bytes | str, *, lineno: int = 0) -> Event:
    """Parse one JSON line (trailing newline allowed) into an :class:`Event`.

    Args:
        line: The line's bytes or text.
        lineno: Its 1-based position in the file, named in errors.

    Raises:
        DecodeError: If the line is not a JSON object with the Event fields of
            the right types (``type`` is required).
    """
    try:
        return _decoder.decode(line)
    # ValidationError is a DecodeError; invalid UTF-8 and lone surrogates give
    # UnicodeError, absurd nesting RecursionError: all are bad input alike.
    except (msgspec.DecodeError, UnicodeError, RecursionError) as exc:
        text = (
            line.encode(errors="replace").decode()
            if isinstance(line, str)
            else line.decode(errors="replace")
        )
        reason = (
            f"{type(exc).__name__}: {exc}"
            if isinstance(exc, RecursionError)
            else str(exc)
        )
        raise DecodeError(reason, line=lineno, text=text.rstrip("\n")) from None
