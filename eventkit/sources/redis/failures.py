"""The failure policy of a Redis Streams worker: which runs are poison, sans-I/O.

When the pipeline a worker feeds raises (an operator, or the sink), the
worker's caller tells the source
(:meth:`~eventkit.sources.redis.source.RedisStreamSource.failed`), which
charges the failure to the runs it can tie it to, with a
:class:`FailurePolicy`, and iterates again: the runs not acknowledged are
delivered again from their first entry. What the policy decides:

- **Which runs.** A sink's failure names the event it failed on: its run.
  Any other failure is charged to every run of the batch the pipeline was
  processing; a failure with no batch in flight (a stage's timer) is tied
  to no run (:data:`UNATTRIBUTED`).
- **Suspects go alone.** A run charged once is a suspect: its events are
  delivered in batches of their own (:meth:`FailurePolicy.suspect`), so
  that its next failure is its own, and its neighbours go through.
- **Poison.** A run whose failures reach ``max_deliveries``, the last one
  charged to it alone, is poison (:data:`POISON`): the worker puts its
  entries in the dead-letter stream with the error
  (:meth:`FailurePolicy.condemned`), acknowledges them and goes on.
- **Outage.** A pipeline failing for every run is not a poison run. Two
  signs: a failure charged to other runs than the previous one, with no
  batch through in between (the pipeline fails on whatever it is given);
  and, for the sink, a failure of a run on which it failed before, with
  no other batch taken since that first failure (nothing shows that the
  sink works for others). Either is an :data:`OUTAGE`: nothing is counted,
  the delay before trying again grows, and the runs wait
  (:meth:`FailurePolicy.waiting`): the worker delivers them after it has
  read new entries, least recently failed first, so that other runs show
  whether the pipeline works, and a failing pipeline meets a different
  run each time.

Every failure is retried after :attr:`Failure.delay`: from 0.1 s, doubling
up to 30 s, back to the start once a batch goes through. Runs that finish
are forgotten; a bounded number of suspects and of poison runs is
remembered (the oldest forgotten first).

Nothing here raises but :exc:`ValueError` for nonsense arguments.
"""

from __future__ import annotations

import random
from collections import OrderedDict
from typing import TYPE_CHECKING, Final, NamedTuple

from eventkit.exceptions import SinkError
from eventkit.protocol.redis_entries import DeadLetter

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator, Sequence

__all__ = [
    "OUTAGE",
    "POISON",
    "PROCESSING_FAILED",
    "RETRY",
    "UNATTRIBUTED",
    "Failure",
    "FailurePolicy",
    "delays",
]

#: What :meth:`FailurePolicy.failed` decides: the runs charged are delivered
#: again; the (one) run charged is poison; the sink fails for every run;
#: the failure is tied to no run.
RETRY: Final = "retry"
POISON: Final = "poison"
OUTAGE: Final = "outage"
UNATTRIBUTED: Final = "unattributed"

#: The ``reason`` of a poison run's entries in the dead-letter stream.
PROCESSING_FAILED: Final = "processing_failed"
#: Suspects and poison runs remembered, each.
REMEMBERED: Final = 10_000
#: Characters of an error message kept in a dead letter.
_MESSAGE_LIMIT: Final = 1000


def delays(
    initial: float = 0.1,
    maximum: float = 30.0,
    *,
    jitter: Callable[[], float] = random.random,
) -> Iterator[float]:
    """Yield the delays before successive tries of a failing pipeline, in seconds.

    Doubling from ``initial`` up to ``maximum``, each drawn between half the
    base and the base.
    """
    delay = initial
    while True:
        yield delay * (1.0 + jitter()) / 2.0
        delay = min(delay * 2.0, maximum)


class Failure(NamedTuple):
    """What :meth:`FailurePolicy.failed` decided.

    Attributes:
        outcome: :data:`RETRY`, :data:`POISON`, :data:`OUTAGE` or
            :data:`UNATTRIBUTED`.
        runs: The runs the failure was charged to (none for an outage or an
            unattributed failure, whose runs are not counted).
        deliveries: The most failed deliveries among ``runs``.
        delay: Seconds to wait before delivering again.
    """

    outcome: str
    runs: tuple[str, ...]
    deliveries: int
    delay: float


class _Suspect:
    """A run charged with a failure, or met in an outage."""

    __slots__ = ("failed_at", "failures", "mark", "own", "waiting")

    def __init__(self, passes: int) -> None:
        #: Failures counted against the run.
        self.failures = 0
        #: Batches through the pipeline when the run first failed.
        self.mark = passes
        #: Batches of the run's own through the pipeline since then.
        self.own = 0
        #: Whether its last failure was taken for an outage.
        self.waiting = False
        #: The number of the last failure it was met in.
        self.failed_at = 0


class FailurePolicy:
    """Charge the failures of a worker's pipeline to runs; tell the poison ones.

    Tell it each batch that went through (:meth:`passed`), each run that
    finished (:meth:`finished`) and each failure (:meth:`failed`); ask it
    which runs go alone (:meth:`suspect`), which wait for other runs first
    (:meth:`waiting`, in the order of :meth:`least_recent`) and which are
    poison (:meth:`condemned`).

    Args:
        max_deliveries: Failed deliveries that make a run poison.
        remembered: Suspects, and poison runs, remembered at most.
        jitter: The spread of the delays (see :func:`delays`).

    Raises:
        ValueError: If ``max_deliveries`` is not a positive integer.
    """

    __slots__ = (
        "_condemned",
        "_delays",
        "_failures",
        "_jitter",
        "_last_failure",
        "_passes",
        "_passes_then",
        "_remembered",
        "_suspects",
        "max_deliveries",
    )

    def __init__(
        self,
        max_deliveries: int,
        *,
        remembered: int = REMEMBERED,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        if type(max_deliveries) is not int or max_deliveries < 1:
            raise ValueError(
                f"max_deliveries must be a positive integer, not {max_deliveries!r}"
            )
        self.max_deliveries = max_deliveries
        self._remembered = remembered
        self._jitter = jitter
        # The delays of the failures since a batch last went through.
        self._delays: Iterator[float] | None = None
        self._suspects: OrderedDict[str, _Suspect] = OrderedDict()
        self._condemned: OrderedDict[str, DeadLetter] = OrderedDict()
        # Batches through the pipeline, ever; failures, ever.
        self._passes = 0
        self._failures = 0
        # The runs of the last failure, and the passes then.
        self._last_failure: frozenset[str] = frozenset()
        self._passes_then = 0

    @property
    def suspects(self) -> int:
        """How many runs go alone."""
        return len(self._suspects)

    def suspect(self, run: str) -> bool:
        """Tell whether ``run`` is to be delivered in batches of its own."""
        return run in self._suspects

    def waiting(self, run: str) -> bool:
        """Tell whether ``run`` is to be delivered after new entries are read."""
        suspect = self._suspects.get(run)
        return suspect is not None and suspect.waiting

    def least_recent(self, runs: Iterable[str]) -> list[str]:
        """Return ``runs``, suspects, the one that failed least recently first."""
        suspects = self._suspects

        def failed_at(run: str) -> int:
            suspect = suspects.get(run)
            return 0 if suspect is None else suspect.failed_at

        return sorted(runs, key=failed_at)

    def condemned(self, run: str) -> DeadLetter | None:
        """Return why ``run`` goes to the dead-letter stream, if it is poison."""
        return self._condemned.get(run)

    @property
    def any_condemned(self) -> bool:
        """Whether any run is remembered as poison."""
        return bool(self._condemned)

    def passed(self, run: str | None = None) -> None:
        """A batch went through the pipeline: ``run``'s alone, or not a suspect's."""
        self._passes += 1
        self._delays = None
        if run is not None:
            suspect = self._suspects.get(run)
            if suspect is not None:
                suspect.own += 1

    def finished(self, run: str) -> None:
        """``run`` went through whole: it is no suspect any more."""
        self._suspects.pop(run, None)

    def failed(
        self, runs: Sequence[str], error: BaseException, *, sink: bool
    ) -> Failure:
        """Charge a failure of the pipeline; return what to do.

        Args:
            runs: The runs it is tied to: the run of the event the sink
                failed on, or the runs of the batch in flight; none when it
                is tied to no batch.
            error: What was raised: the poison runs' dead letters tell its
                type and message.
            sink: Whether the sink failed (on the event of ``runs[0]``).
        """
        if not runs:
            return Failure(UNATTRIBUTED, (), 0, self._delay())
        self._failures += 1
        passes = self._passes
        charged = list(dict.fromkeys(runs[:1] if sink else runs))
        # With nothing through since, a failure on other runs than the last
        # one: the pipeline fails on whatever it is given.
        streak = passes == self._passes_then and self._last_failure not in (
            frozenset(),
            frozenset(charged),
        )
        self._last_failure, self._passes_then = frozenset(charged), passes
        suspects = [self._suspect(run) for run in charged]
        for suspect in suspects:
            suspect.failed_at = self._failures
        outage = streak
        if sink and not streak:
            (suspect,) = suspects
            # A failure again, with no other batch through since the first:
            # nothing shows that the sink takes other runs.
            outage = suspect.failures > 0 and passes - suspect.mark - suspect.own == 0
        for suspect in suspects:
            suspect.waiting = outage
        if outage:
            return Failure(OUTAGE, (), 0, self._delay())
        for suspect in suspects:
            suspect.failures += 1
        deliveries = max(suspect.failures for suspect in suspects)
        if len(charged) == 1 and deliveries >= self.max_deliveries:
            run = charged[0]
            self._suspects.pop(run, None)
            self._condemn(run, error, deliveries)
            return Failure(POISON, (run,), deliveries, 0.0)
        return Failure(RETRY, tuple(charged), deliveries, self._delay())

    def _delay(self) -> float:
        """Return the delay before the next try: longer at each failure in a row."""
        if self._delays is None:
            self._delays = delays(jitter=self._jitter)
        return next(self._delays)

    def _suspect(self, run: str) -> _Suspect:
        suspect = self._suspects.get(run)
        if suspect is None:
            suspect = self._suspects[run] = _Suspect(self._passes)
            if len(self._suspects) > self._remembered:
                self._suspects.popitem(last=False)
        return suspect

    def _condemn(self, run: str, error: BaseException, deliveries: int) -> None:
        # A sink's failure is told by the sink's own exception.
        cause = error
        if isinstance(error, SinkError) and error.__cause__ is not None:
            cause = error.__cause__
        fields = (
            (b"error_type", type(cause).__name__.encode()),
            (b"error", str(cause)[:_MESSAGE_LIMIT].encode(errors="replace")),
            (b"deliveries", str(deliveries).encode()),
        )
        self._condemned[run] = DeadLetter(PROCESSING_FAILED, fields)
        if len(self._condemned) > self._remembered:
            self._condemned.popitem(last=False)
