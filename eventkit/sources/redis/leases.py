"""The lease policy of a Redis Streams worker: which shards to hold, and when to let go.

Sans-I/O: decisions on plain data, the time passed in (``time.monotonic()``
seconds), no event loop, no client. The session
(:mod:`eventkit.sources.redis.session`) performs what :class:`LeasePolicy`
decides, with the scripts of :mod:`eventkit.sources.redis.scripts`, and tells
it what the server answered. ``docs/redis.md`` tells the model; in short:

- **Fair share.** Each live worker holds ``ceil(shards / live workers)``
  shards (:meth:`LeasePolicy.heard`). A worker with fewer takes free ones,
  looking from a place of its own so that workers do not all go for shard 0
  (:meth:`LeasePolicy.free_keys`), but not for ``claim_idle_ms`` after an
  outage, while every lease looks stale (:meth:`LeasePolicy.shards_to_take`).
- **Handovers.** A worker with more hands the extra shards over, those with
  the fewest runs in progress first; a shard being handed over is released
  once its runs are over, or ``claim_idle_ms`` after the handover began,
  whichever comes first (:meth:`LeasePolicy.rebalance`,
  :meth:`LeasePolicy.releasable`).
- **Validity.** A lease surely holds until ``claim_idle_ms`` after the request
  that set it was sent (:meth:`LeasePolicy.acquired`,
  :meth:`LeasePolicy.renewed`); a shard is read only while a tenth of that
  is still left, and a read waits no longer than that
  (:meth:`LeasePolicy.readable`, :meth:`LeasePolicy.read_block_ms`).
- **Takeovers.** A renewal the server refused (someone acquired the shard
  since) means the shard is lost: forgotten at once, its runs left to the
  new owner.

Failure behaviour: none of its own; it raises :exc:`ValueError` for a worker
without keys, or a lease time that is not positive.
"""

from __future__ import annotations

import math
import zlib
from typing import TYPE_CHECKING, Generic, TypeVar

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

__all__ = ["Lease", "LeasePolicy"]


class Lease:
    """What a worker knows of its lease on one shard.

    Args:
        key: The shard's key, as the server names it.

    Attributes:
        key: The shard's key.
        valid_until: Until when (monotonic) the lease surely holds: its
            expiry counted from before the request that set it, so never
            after the server's; ``-inf`` until acquired.
        leave_by: While the shard is being handed over: the time (monotonic)
            to release it by; else None.
        lost: Whether the shard is no longer ours (released, or taken by
            another worker): its entries are not to be delivered any more.
    """

    __slots__ = ("key", "leave_by", "lost", "valid_until")

    def __init__(self, key: bytes) -> None:
        self.key = key
        self.valid_until = -math.inf
        self.leave_by: float | None = None
        self.lost = False


#: The leases a policy holds: :class:`Lease` or a subclass carrying more.
L = TypeVar("L", bound=Lease)


class LeasePolicy(Generic[L]):
    """The leases of one worker, and what to do about them at each step.

    The caller makes the leases (a :class:`Lease` subclass of its own, say,
    carrying what it reads) with :meth:`start_acquiring`, tells the policy
    what the server answered (:meth:`heard`, :meth:`acquired`,
    :meth:`renewed`), asks what to do (:meth:`shards_to_take`,
    :meth:`rebalance`, :meth:`releasable`, :meth:`readable`,
    :meth:`read_block_ms`) and does it.

    Args:
        keys: The keys of the stream, one per shard, in shard order.
        consumer: This worker's name in the group: where it starts looking
            for free shards depends on it.
        claim_idle_ms: How long a lease lasts unless renewed, in
            milliseconds.
        open_runs: Tells how many runs are in progress on a lease's shard.

    Attributes:
        keys: The keys of the stream.
        lease_seconds: How long a lease lasts unless renewed.
        tick_interval: Seconds between lease ticks: a third of the lease, so
            that a renewal can fail twice before the lease expires.
        margin: Seconds of a lease kept in hand for the network: a read is
            sent only if served before this much remains of its leases.
        offset: Where this worker starts looking for free shards.
        share: How many shards to hold: ``ceil(shards / live workers)``;
            every shard until the first heartbeat.
        owned: The leases held, by key, in the order acquired.
        acquiring: The leases being acquired, to release should the
            acquisition be cut short.
    """

    __slots__ = (
        "_open_runs",
        "acquiring",
        "keys",
        "lease_seconds",
        "margin",
        "offset",
        "owned",
        "share",
        "tick_interval",
    )

    def __init__(
        self,
        keys: Sequence[str],
        consumer: str,
        claim_idle_ms: int,
        *,
        open_runs: Callable[[L], int],
    ) -> None:
        if not keys:
            raise ValueError("a lease policy needs at least one key")
        if not claim_idle_ms > 0:
            raise ValueError(f"claim_idle_ms must be positive, not {claim_idle_ms!r}")
        self.keys = tuple(keys)
        self.lease_seconds = claim_idle_ms / 1000
        self.tick_interval = claim_idle_ms / 3000
        self.margin = claim_idle_ms / 10000
        offset = zlib.crc32(consumer.encode(errors="surrogatepass"))
        self.offset = offset % len(self.keys)
        self.share = len(self.keys)
        self.owned: dict[bytes, L] = {}
        self.acquiring: list[L] = []
        self._open_runs = open_runs

    # What the server said ------------------------------------------------------

    def heard(self, live: int) -> None:
        """Take the number of live workers, this one included; set the share."""
        self.share = -(-len(self.keys) // max(live, 1))

    def acquired(self, lease: L, sent: float) -> None:
        """Hold ``lease``, taken by a request sent at ``sent``."""
        lease.valid_until = sent + self.lease_seconds
        self.owned[lease.key] = lease

    def renewed(self, leases: Sequence[L], kept: Sequence[int], sent: float) -> list[L]:
        """Take the outcome of renewing ``leases`` by a request sent at ``sent``.

        Args:
            leases: The leases the request renewed, in order.
            kept: For each, whether the server renewed it (true) or someone
                else acquired the shard since (false).
            sent: When the request was sent.

        Returns:
            The leases lost by this renewal, forgotten now: their runs are
            the new owner's. A lease lost already is not returned again.
        """
        lost = []
        for lease, ok in zip(leases, kept, strict=True):
            if ok:
                lease.valid_until = sent + self.lease_seconds
            elif not lease.lost:
                self.forget(lease)
                lost.append(lease)
        return lost

    # What to do -----------------------------------------------------------------

    def free_keys(self) -> list[str]:
        """Return the keys not held, from this worker's offset on, round the ring."""
        keys = self.keys
        count = len(keys)
        ring = (keys[(self.offset + step) % count] for step in range(count))
        return [key for key in ring if key.encode() not in self.owned]

    def shards_to_take(self, now: float, reconnected_at: float) -> int:
        """Return how many free shards to try to take now; 0 for none.

        Args:
            now: The time.
            reconnected_at: When the last outage of the client ended;
                ``-inf`` if none did. Just after an outage every worker's
                heartbeat looks stale and every lease may have expired: the
                others are left ``claim_idle_ms`` to renew theirs (they may,
                as nobody took them) before this worker takes what looks
                free.
        """
        if now - reconnected_at < self.lease_seconds:
            return 0
        return max(self.share - len(self.owned), 0)

    def start_acquiring(self, make: Callable[[str], L]) -> list[L]:
        """Return a fresh lease for each free key, in order of preference.

        They count as being acquired (:attr:`acquiring`) until
        :meth:`done_acquiring`; those the server grants go to
        :meth:`acquired`.

        Args:
            make: Makes the lease of a key.
        """
        self.acquiring = [make(key) for key in self.free_keys()]
        return self.acquiring

    def done_acquiring(self) -> None:
        """The acquisition is over: every lease granted was :meth:`acquired`."""
        self.acquiring = []

    def rebalance(self, now: float) -> tuple[list[L], list[L]]:
        """Start or call off handovers, so that the shards kept match the share.

        Returns:
            The leases whose handover starts now (the fewest runs in
            progress first: they are free soonest), to be released by
            ``now`` plus the lease time; and the leases whose handover is
            called off, the share having grown back (the runs skipped
            meanwhile are still to read on those shards).
        """
        owned = list(self.owned.values())
        leaving = [lease for lease in owned if lease.leave_by is not None]
        excess = len(owned) - self.share
        started: list[L] = []
        called_off: list[L] = []
        if excess > len(leaving):
            staying = sorted(
                (lease for lease in owned if lease.leave_by is None),
                key=self._open_runs,
            )
            by = now + self.lease_seconds
            started = staying[: excess - len(leaving)]
            for lease in started:
                lease.leave_by = by
        elif excess < len(leaving):
            called_off = leaving[: len(leaving) - max(excess, 0)]
            for lease in called_off:
                lease.leave_by = None
        return started, called_off

    def releasable(self, now: float) -> list[L]:
        """Return the leases being handed over that are due for release now.

        Those whose runs in progress are over, and those whose time ran out
        (``claim_idle_ms`` after the handover began), runs in progress or
        not: the next owner processes those again.
        """
        return [
            lease
            for lease in self.owned.values()
            if lease.leave_by is not None
            and (self._open_runs(lease) == 0 or now >= lease.leave_by)
        ]

    def readable(self, now: float) -> list[L]:
        """Return the leases whose shards may be read now.

        Those that surely hold for more than :attr:`margin`: a read served
        after the lease expired could deliver entries after the next owner
        claimed the old ones, and no one would claim them then.
        """
        margin = self.margin
        return [
            lease for lease in self.owned.values() if lease.valid_until - now > margin
        ]

    def read_block_ms(self, leases: Sequence[L], now: float, block_ms: int) -> int:
        """Return how long a read of ``leases`` sent at ``now`` may wait, in ms.

        ``block_ms`` cut so that the read is served while every lease read
        still holds by :attr:`margin`; at least 1 (``BLOCK 0`` would wait
        without end).
        """
        margin = self.margin
        block = min(
            block_ms,
            *(int((lease.valid_until - now - margin) * 1000) for lease in leases),
        )
        return max(block, 1)

    def forget(self, lease: L) -> None:
        """Drop ``lease``: what its shard has not delivered is its next owner's.

        A newer lease of the same key (the shard lost, then taken again) is
        kept.
        """
        lease.lost = True
        if self.owned.get(lease.key) is lease:
            del self.owned[lease.key]

    def held(self) -> list[L]:
        """Return every lease that may be ours: those held and those being acquired."""
        return [*self.owned.values(), *self.acquiring]
