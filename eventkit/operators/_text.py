"""Cutting text by its UTF-8 size, never inside a character."""

from __future__ import annotations

__all__ = ["split_head", "split_tail"]


def split_head(data: str, size: int) -> tuple[str, str]:
    """Return ``(head, rest)``: the longest head of at most ``size`` UTF-8 bytes.

    The cut falls between characters: a character the limit would cut in two
    goes to ``rest``.
    """
    if data.isascii():
        return data[:size], data[size:]
    raw = data.encode()
    if len(raw) <= size:
        return data, ""
    cut = max(size, 0)
    # Back off continuation bytes (10xxxxxx) to the start of the character.
    while cut and raw[cut] & 0xC0 == 0x80:
        cut -= 1
    return raw[:cut].decode(), raw[cut:].decode()


def split_tail(data: str, size: int) -> tuple[str, str]:
    """Return ``(rest, tail)``: the longest tail of at most ``size`` UTF-8 bytes.

    The cut falls between characters: a character the limit would cut in two
    goes to ``rest``.
    """
    if data.isascii():
        cut = max(len(data) - size, 0)
        return data[:cut], data[cut:]
    raw = data.encode()
    if len(raw) <= size:
        return "", data
    cut = len(raw) - max(size, 0)
    # Move forward past continuation bytes to the next character's start.
    while cut < len(raw) and raw[cut] & 0xC0 == 0x80:
        cut += 1
    return raw[:cut].decode(), raw[cut:].decode()
