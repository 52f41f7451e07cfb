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
- The memory heuristic, for a cap set with ``RLIMIT_AS`` (where no
  control group counts the memory, see :mod:`eventkit.sources.local`): the
  end of stderr is kept; after the exit,
  :meth:`~OutputMeter.ran_out_of_memory` weighs how the program died. Text
  alone never decides: a marker counts only among the program's last words
  (the last lines of stderr) and with the exit status its runtime gives
  that failure (:data:`LAST_WORDS`); or the program died of a signal a
  failed allocation brings (:data:`MEMORY_SIGNALS`).

Plain synchronous code: no event loop, no process. Nothing here raises for
any bytes; a stream other than ``"stdout"`` or ``"stderr"`` is a
:exc:`KeyError`.
"""

from __future__ import annotations

import codecs
import re
import signal
from typing import Final

__all__ = ["LAST_WORDS", "MEMORY_SIGNALS", "OutputMeter"]

#: How runtimes say they ran out of memory as they die: a pattern matched
#: against each of the last lines of stderr, and the exit codes that go
#: with it (None: any failure).
LAST_WORDS: Final[tuple[tuple[re.Pattern[str], frozenset[int] | None], ...]] = (
    # Python: an uncaught MemoryError is the traceback's last line; exit 1.
    (re.compile(r"^MemoryError(?::|$)"), frozenset({1})),
    # bash: "main.sh: line 3: xrealloc: cannot allocate 97857536 bytes", or
    # with bash's own source file named in between; exit 2 (1 in a subshell).
    (re.compile(r"\bx(?:m|re)alloc: (?:.*: )?cannot allocate \d+ bytes"), None),
    # ENOMEM's text, as C programs and Python's OSError give it.
    (re.compile(r"Cannot allocate memory"), None),
    # V8, many C programs.
    (re.compile(r"out of memory", re.IGNORECASE), None),
    # C++: "terminate called after throwing an instance of 'std::bad_alloc'".
    (re.compile(r"\bbad_alloc\b"), None),
)
#: Deaths by signal that, with a memory cap set, mean it was hit.
MEMORY_SIGNALS: Final = frozenset(
    {-signal.SIGKILL, -signal.SIGSEGV, -signal.SIGABRT, -signal.SIGBUS}
)
#: The end of stderr kept for the verdict, in characters...
_TAIL_CHARS: Final = 4096
#: ...of which the last lines (not empty) are the program's last words.
_LAST_LINES: Final = 3
_STDERR: Final = "stderr"


class OutputMeter:
    """Decodes a run's output, applies the output cap, watches for memory errors.

    Call :meth:`feed` with each read of a stream and :meth:`end` when its
    pipe ends; deliver the text they return, if any. Once :attr:`capped`,
    stop the process: the rest is discarded. After the exit, ask
    :meth:`ran_out_of_memory`.

    Args:
        max_output_bytes: Cap on the bytes of stdout and stderr together;
            None for no cap.
        watch_memory: Whether the run has a memory cap the heuristic judges
            (``RLIMIT_AS``), so that the end of stderr is kept; without one,
            no run is reported as out of memory.

    Attributes:
        capped: Whether the output went past the cap.
    """

    __slots__ = ("_decoders", "_room", "_tail", "_watch_memory", "capped")

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
        #: The end of stderr so far, for the verdict on memory.
        self._tail = ""
        self.capped = False

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
        if text and stream == _STDERR and self._watch_memory:
            self._tail = (self._tail + text)[-_TAIL_CHARS:]
        return text

    def end(self, stream: str) -> str:
        """Note that ``stream`` ended; return what its decoder still held.

        That is U+FFFD for a character cut short by the end, or nothing.
        After the cap, nothing: the character the cap cut stays dropped.
        """
        if self.capped:
            return ""
        text = self._decoders[stream].decode(b"", True)
        if text and stream == _STDERR and self._watch_memory:
            self._tail = (self._tail + text)[-_TAIL_CHARS:]
        return text

    def last_words(self) -> list[str]:
        """Return the last lines of stderr that are not empty, last one last."""
        lines = [line for line in self._tail.splitlines() if line.strip()]
        return lines[-_LAST_LINES:]

    def ran_out_of_memory(self, exit_code: int) -> bool:
        """Tell whether a run that exited with ``exit_code`` hit its memory cap.

        Only with ``watch_memory``, and only for a failure: the process died
        of a signal in :data:`MEMORY_SIGNALS`, or its last words say it ran
        out of memory, with the exit code that goes with them
        (:data:`LAST_WORDS`).

        Args:
            exit_code: The exit code, minus the signal number for a death by
                signal.
        """
        if not self._watch_memory or exit_code == 0:
            return False
        if exit_code in MEMORY_SIGNALS:
            return True
        if exit_code < 0:
            return False
        last = self.last_words()
        return any(
            (codes is None or exit_code in codes)
            and any(pattern.search(line) for line in last)
            for pattern, codes in LAST_WORDS
        )
