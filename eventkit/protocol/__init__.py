"""The wire dialects, without the wire: bytes to events and back, no I/O.

One module per dialect, holding both directions where eventkit has both:

=================== ==========================================================
module              holds
=================== ==========================================================
:mod:`.hopx`        HOPX ``/execute/stream``: :class:`~.hopx.HopxDecoder`
                    (one WebSocket message at a time),
                    :class:`~.hopx.HopxEncoder`, the ``execute`` message,
                    agent URLs, timestamps
:mod:`.aicomputer`  AI Computer ``execute/stream`` (NDJSON):
                    :class:`~.aicomputer.AiComputerDecoder`,
                    :class:`~.aicomputer.AiComputerEncoder`
:mod:`.e2b`         E2B ``/execute`` (NDJSON): :class:`~.e2b.E2bDecoder`
:mod:`.jsonl`       eventkit's own JSON Lines: ``encode``/``decode`` of one
                    line, :class:`~.jsonl.EventkitDecoder` for a stream
:mod:`.redis`       eventkit events as Redis stream entries
:mod:`.dialects`    the NDJSON dialects by name: ``decoder_for``
:mod:`.lines`       line splitting and the base of the NDJSON decoders
:mod:`.run`         numbering one run's events; ending a run cut short
=================== ==========================================================

Nothing here imports asyncio or an I/O library: sources and the server move
the bytes, these modules only translate them.

Run decoders
------------

Every decoder of a sandbox run (:class:`~.hopx.HopxDecoder`,
:class:`~.aicomputer.AiComputerDecoder`, :class:`~.e2b.E2bDecoder`,
:class:`~.jsonl.EventkitDecoder`) is driven the same way, and each call
returns the events to pass on, in order (often none):

1. ``start(attrs=NO_ATTRS) -> list[Event]`` once the request is accepted,
   before any input: the events that come before any data, i.e. the
   synthetic ``started`` (with ``attrs``, e.g. a sandbox id) of the dialects
   whose wire has none; nothing for eventkit's JSON Lines, which carry their
   own.
2. ``receive(data) -> list[Event]`` for each piece of input: one WebSocket
   message (``str`` or ``bytes``) for HOPX; any chunk of the body
   (``bytes``) for the line dialects, which split lines themselves, whatever
   the chunk boundaries.
3. ``close() -> list[Event]`` when the input ends: what the rest of it makes,
   i.e. the events of an unterminated last line (nothing for HOPX). It does
   not end the run.
4. ``abort(reason, code=None) -> list[Event]`` if the input ended, or broke
   off, before the decoder is ``finished``: an ``error`` event with
   ``attrs["code"] == "closed_before_complete"`` (and ``close_code`` and
   ``reason``; its data reads like
   :exc:`~eventkit.exceptions.StreamClosedError`'s message) then
   ``completed`` with ``attrs["success"] is False``, for each run left open.
   Nothing once ``finished``.

Attributes every run decoder has:

* ``run``: the run id of the events it makes (eventkit's JSON Lines keep
  their own runs; this one is for what the decoder makes itself);
* ``finished``: the terminal event was made (for eventkit's JSON Lines: every
  run seen has completed), so the input may end cleanly;
* ``done``: no further input can make an event, so the reader may stop
  reading (and should, since servers may keep the connection open): the same
  as ``finished`` for HOPX, AI Computer and E2B; always False for eventkit's
  JSON Lines, which are read to their end;
* counters named for the dialect's unit: ``frames`` and ``invalid_frames``
  (HOPX messages), ``lines`` and ``invalid_lines`` (lines of the line
  dialects, blank ones included), and ``ignored`` (input dropped after the
  run's end).

Failure behaviour of every decoder: bad input never raises; what cannot be
read becomes an ``error`` event (``attrs["code"]`` ``"invalid_frame"`` for
HOPX, ``"invalid_line"`` for the line dialects), is counted, and decoding
goes on. The one exception: a line longer than the line decoder's
``max_line`` raises :exc:`~eventkit.exceptions.LineTooLongError` from
``receive`` or ``close`` (no event of that chunk is returned; stop using the
decoder), so memory stays bounded.

Encoders
--------

The local server's encoders (:class:`~.hopx.HopxEncoder`,
:class:`~.aicomputer.AiComputerEncoder`) take one run's events in order:
``encode(event) -> list[bytes]`` returns what to send for it, one item per
WebSocket message or per ``\\n``-terminated line (often none). They never
raise on an event a local run makes.
"""

__all__: list[str] = []
