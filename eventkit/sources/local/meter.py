"""What a local run's output amounts to, without I/O: text, the cap, memory.

An :class:`OutputMeter` is fed the bytes of a run's stdout and stderr as they
are read, and each pipe's end; it returns the text to deliver, and keeps
what the source needs to know about the run:

- Decoding: each stream is decoded as UTF-8 incrementally, so a character
  split across reads comes out whole with its last byte; invalid bytes
  become U+FFFD, a truncated character at a stream's end included.
- The output cap: stdout and stderr together may bring ``max_output_bytes``
  bytes, exactly. The read that goes past it is cut there, and
  :attr:`~OutputMeter.capped` is set: the source then kills the process and
  stops reading. A multi-byte character the cut splits is dropped rather
  than mangled, and nothing more comes out, a stream's end included.
- The memory heuristic (see :mod:`eventkit.sources.local`): stderr is
  searched for the markers of :data:`MEMORY_MARKERS`, also when a read
  splits one; after the exit, :meth:`~OutputMeter.ran_out_of_memory` weighs
  them with the exit code.

Plain synchronous code: no event loop, no process. Nothing here raises for
any bytes; a stream other than ``"stdout"`` or ``"stderr"`` is a
:exc:`KeyError`.
"""

from __future__ import annotations

import codecs
import signal
from typing import Final

__all__ = ["MEMORY_MARKERS", "MEMORY_SIGNALS", "OutputMeter"]

#: Stderr text that tells a process ran out of memory.
MEMORY_MARKERS: Final = (
    "MemoryError",  # Python
    "out of memory",  # V8, many C programs
    "Cannot allocate memory",  # ENOMEM
    "bad_alloc",  # C++
)
#: Deaths by signal that, with a memory cap set, mean it was hit.
MEMORY_SIGNALS: Final = frozenset(
    {-signal.SIGKILL, -signal.SIGSEGV, -signal.SIGABRT, -signal.SIGBUS}
)
#: The end of stderr kept for a marker that a read splits: one character
#: less than the longest marker, which the next read completes.
_MARKER_TAIL: Final = max(map(len, MEMORY_MARKERS)) - 1
_STDERR: Final = "stderr"


class OutputMeter:
    """Decodes a run's output, applies the output cap, watches for memory errors.

    Call :meth:`feed` with each read of a stream and :meth:`end` when its
    pipe ends; deliver the text they return, if any. Once :attr:`capped`,
    kill the process and stop: the rest is discarded. After the exit, ask
    :meth:`ran_out_of_memory`.

    Args:
        max_output_bytes: Cap on the bytes of stdout and stderr together;
            None for no cap.
        watch_memory: Whether the run has a memory cap, so that stderr is
            watched for memory errors; without one, no run is reported as
            out of memory.

    Attributes:
        capped: Whether the output went past the cap.
        memory_marker_seen: Whether stderr mentioned a memory error (watched
            only with ``watch_memory``).
    """

    __slots__ = (
        "_decoders",
        "_room",
        "_tail",
        "_watch_memory",
        "_watching",
        "capped",
        "memory_marker_seen",
    )

    def __init__(
        self, max_output_bytes: int | None = None, *, watch_memory: bool = False
    ) -> None:
        self._decoders = {
            "stdout": codecs.getincrementaldecoder("utf-8")(errors="replace"),
            "stderr": codecs.getincrementaldecoder("utf-8")(errors="replace"),
        }
        #: What the output cap still allows, in bytes.
        self._room = max_output_bytes
        self._watch_memory = watch_memory
        #: Whether stderr is still searched: watched, and no marker seen yet.
        self._watching = watch_memory
        #: The end of stderr so far, for markers split by a read.
        self._tail = ""
        self.capped = False
        self.memory_marker_seen = False

    def feed(self, stream: str, data: bytes) -> str:
        """Take one read of ``stream``; return its text (maybe empty).

        The text holds every complete character read so far and not yet
        returned; a character still incomplete waits for the next read.

        Args:
            stream: ``"stdout"`` or ``"stderr"``.
            data: The bytes read.
        """
        room = self._room
        if room is not None:
            if len(data) > room:
                data = data[:room]
                self.capped = True
            self._room = room - len(data)
        text = self._decoders[stream].decode(data)
        if text and stream == _STDERR and self._watching:
            self._look_for_markers(text)
        return text

    def end(self, stream: str) -> str:
        """Note that ``stream`` ended; return what its decoder still held.

        That is U+FFFD for a character cut short by the end, or nothing.
        After the cap, nothing: the character the cap cut stays dropped.
        """
        if self.capped:
            return ""
        text = self._decoders[stream].decode(b"", True)
        if text and stream == _STDERR and self._watching:
            self._look_for_markers(text)
        return text

    def ran_out_of_memory(self, exit_code: int) -> bool:
        """Tell whether a run that exited with ``exit_code`` hit its memory cap.

        Only with ``watch_memory``, and only for a failure: stderr mentioned
        a memory error, or the process died of a signal in
        :data:`MEMORY_SIGNALS`.

        Args:
            exit_code: The exit code, minus the signal number for a death by
                signal.
        """
        return (
            self._watch_memory
            and exit_code != 0
            and (self.memory_marker_seen or exit_code in MEMORY_SIGNALS)
        )

    def _look_for_markers(self, text: str) -> None:
        """Search stderr's ``text``, read after the tail, for memory markers."""
        window = self._tail + text
        if any(marker in window for marker in MEMORY_MARKERS):
            self.memory_marker_seen = True
            self._watching = False
        self._tail = window[-_MARKER_TAIL:]
