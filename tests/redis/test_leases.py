"""Tests for :mod:`eventkit.sources.redis.leases`: the lease policy, no server, no loop.

The time is passed in: plain numbers of seconds.
"""

from __future__ import annotations

import math
import zlib
from typing import TYPE_CHECKING

import pytest
from hypothesis import given, strategies as st

from eventkit.sources.redis.leases import Lease, LeasePolicy

if TYPE_CHECKING:
    import random

KEYS = ["s:0", "s:1", "s:2", "s:3"]
#: Ten seconds of lease: a margin of 1 s, exact in floating point.
CLAIM_IDLE_MS = 10_000


class Held(Lease):
    """A lease whose shard has ``runs`` runs in progress, as the test sets them."""

    __slots__ = ("runs",)

    def __init__(self, key: str, runs: int = 0) -> None:
        super().__init__(key.encode())
        self.runs = runs


def make_policy(
    keys: list[str] = KEYS, consumer: str = "c", claim_idle_ms: int = CLAIM_IDLE_MS
) -> LeasePolicy[Held]:
    """A policy counting the runs of :class:`Held` leases."""
    return LeasePolicy(
        keys, consumer, claim_idle_ms, open_runs=lambda lease: lease.runs
    )


def take(
    policy: LeasePolicy[Held],
    count: int,
    sent: float = 0.0,
    runs: list[int] | None = None,
) -> list[Held]:
    """Acquire the first ``count`` free keys, as the server would grant them."""
    candidates = policy.start_acquiring(Held)[:count]
    for number, lease in enumerate(candidates):
        lease.runs = 0 if runs is None else runs[number]
        policy.acquired(lease, sent)
    policy.done_acquiring()
    return candidates


def test_times_follow_claim_idle_ms() -> None:
    """Ticks every third of the lease; a tenth kept in hand for the network."""
    policy = make_policy(claim_idle_ms=3000)
    assert 3.0 == policy.lease_seconds
    assert 1.0 == policy.tick_interval
    assert 0.3 == policy.margin


@pytest.mark.parametrize(
    ("live", "share"), [(0, 4), (1, 4), (2, 2), (3, 2), (4, 1), (5, 1)]
)
def test_share_is_ceil_of_keys_over_live_workers(live: int, share: int) -> None:
    """Each live worker's share is ceil(keys / live workers); all before any news."""
    policy = make_policy()
    assert 4 == policy.share
    policy.heard(live)
    assert share == policy.share


def test_free_keys_from_the_consumer_offset() -> None:
    """Free keys come round the ring from a place of the consumer's own."""
    names = [f"worker-{n}" for n in range(8)]
    offsets = {make_policy(consumer=name).offset for name in names}
    # Workers do not all go for the same key first.
    assert len(offsets) > 1
    policy = make_policy(consumer="c")
    offset = zlib.crc32(b"c") % 4
    assert offset == policy.offset
    ring = [KEYS[(offset + step) % 4] for step in range(4)]
    assert ring == policy.free_keys()
    taken = take(policy, 2)
    assert [key.encode() for key in ring[:2]] == [lease.key for lease in taken]
    assert ring[2:] == policy.free_keys()


def test_shards_to_take_up_to_the_share() -> None:
    """A worker takes free shards until it holds its share, never fewer than 0."""
    policy = make_policy()
    policy.heard(2)
    assert 2 == policy.shards_to_take(100.0, -math.inf)
    take(policy, 1)
    assert 1 == policy.shards_to_take(100.0, -math.inf)
    take(policy, 1)
    assert 0 == policy.shards_to_take(100.0, -math.inf)
    policy.heard(4)
    assert 0 == policy.shards_to_take(100.0, -math.inf)


def test_no_shard_taken_just_after_an_outage() -> None:
    """For claim_idle_ms after reconnecting, the others get to renew theirs first."""
    policy = make_policy()
    policy.heard(1)
    assert 0 == policy.shards_to_take(109.5, reconnected_at=100.0)
    assert 4 == policy.shards_to_take(110.0, reconnected_at=100.0)


def test_lease_surely_holds_from_before_the_request() -> None:
    """Valid until claim_idle_ms after the acquisition was sent; read until a margin."""
    policy = make_policy()
    (lease,) = take(policy, 1, sent=20.0)
    assert 30.0 == lease.valid_until
    assert {lease.key: lease} == policy.owned
    assert [lease] == policy.readable(28.5)
    # The last tenth of the lease is the network's.
    assert [] == policy.readable(29.0)
    assert [] == policy.readable(31.0)


def test_read_waits_no_longer_than_the_leases_hold() -> None:
    """BLOCK is cut to the shortest lease read, minus the margin; at least 1 ms."""
    policy = make_policy()
    (early,) = take(policy, 1, sent=-5.0)
    (late,) = take(policy, 1, sent=0.0)
    both = [early, late]
    assert 2000 == policy.read_block_ms(both, 2.0, 60_000)
    assert 1000 == policy.read_block_ms(both, 2.0, 1000)
    assert 7000 == policy.read_block_ms([late], 2.0, 60_000)
    assert 1 == policy.read_block_ms(both, 4.0, 60_000)


def test_renewal_extends_the_lease() -> None:
    """A lease the server renewed holds from the renewal's sending on."""
    policy = make_policy()
    (lease,) = take(policy, 1, sent=0.0)
    assert [] == policy.renewed([lease], [1], sent=5.0)
    assert 15.0 == lease.valid_until
    assert not lease.lost


def test_renewal_refused_loses_the_shard() -> None:
    """Someone acquired the shard since: it is forgotten at once, reported once."""
    policy = make_policy()
    kept, lost = take(policy, 2, sent=0.0)
    assert [lost] == policy.renewed([kept, lost], [1, 0], sent=5.0)
    assert lost.lost
    assert not kept.lost
    assert {kept.key: kept} == policy.owned
    assert 15.0 == kept.valid_until
    assert 10.0 == lost.valid_until
    assert lost.key.decode() in policy.free_keys()
    # Refused again (a renewal sent before the loss was known): not news.
    assert [] == policy.renewed([lost], [0], sent=6.0)


def test_forget_keeps_a_newer_lease_of_the_key() -> None:
    """Forgetting an old lease of a key taken back does not drop the new one."""
    policy = make_policy(keys=["s"])
    (old,) = take(policy, 1)
    policy.forget(old)
    assert old.lost
    assert {} == policy.owned
    (new,) = take(policy, 1)
    policy.forget(old)
    assert {b"s": new} == policy.owned
    assert not new.lost


def test_handover_of_the_excess_fewest_runs_first() -> None:
    """Over its share, a worker hands over the shards with the fewest runs."""
    policy = make_policy()
    leases = take(policy, 4, runs=[3, 0, 2, 1])
    policy.heard(2)
    started, called_off = policy.rebalance(50.0)
    assert [leases[1], leases[3]] == started
    assert [] == called_off
    # To be released by the end of a lease time at the latest.
    assert [None, 60.0, None, 60.0] == [lease.leave_by for lease in leases]
    # Once is enough.
    assert ([], []) == policy.rebalance(51.0)
    assert [None, 60.0, None, 60.0] == [lease.leave_by for lease in leases]


def test_handover_ties_in_acquisition_order() -> None:
    """Shards with as many runs in progress are handed over in the order taken."""
    policy = make_policy()
    leases = take(policy, 4)
    policy.heard(4)
    started, _ = policy.rebalance(0.0)
    assert leases[:3] == started


def test_handover_called_off_when_the_share_grows() -> None:
    """Workers gone meanwhile: the shards still held are kept after all."""
    policy = make_policy()
    leases = take(policy, 4)
    policy.heard(4)
    policy.rebalance(0.0)
    assert [10.0, 10.0, 10.0, None] == [lease.leave_by for lease in leases]
    policy.heard(2)
    assert ([], [leases[0]]) == policy.rebalance(1.0)
    assert [None, 10.0, 10.0, None] == [lease.leave_by for lease in leases]
    policy.heard(1)
    assert ([], leases[1:3]) == policy.rebalance(2.0)
    assert [None] * 4 == [lease.leave_by for lease in leases]


def test_release_once_runs_are_over_or_time_is_up() -> None:
    """A shard handed over is released when its runs end, or at its time anyway."""
    policy = make_policy()
    idle, busy, staying = take(policy, 3, runs=[0, 2, 5])
    policy.heard(4)
    assert [idle, busy] == policy.rebalance(0.0)[0]
    assert [idle] == policy.releasable(1.0)
    busy.runs = 0
    assert [idle, busy] == policy.releasable(1.0)
    busy.runs = 1
    assert [idle, busy] == policy.releasable(10.0)
    # Not being handed over: never due, whatever its runs.
    staying.runs = 0
    assert staying not in policy.releasable(100.0)


def test_held_counts_leases_being_acquired() -> None:
    """Until the acquisition is over, its candidates may be ours: release them too."""
    policy = make_policy()
    (first,) = take(policy, 1)
    candidates = policy.start_acquiring(Held)
    assert [first, *candidates] == policy.held()
    policy.acquired(candidates[0], 0.0)
    policy.done_acquiring()
    assert [first, candidates[0]] == policy.held()


def test_arguments_checked() -> None:
    """A policy needs keys and a positive lease time."""
    with pytest.raises(ValueError, match="at least one key"):
        make_policy(keys=[])
    with pytest.raises(ValueError, match="claim_idle_ms must be positive"):
        make_policy(claim_idle_ms=0)


@given(st.integers(1, 8), st.integers(1, 5), st.randoms(use_true_random=False))
def test_workers_joining_share_the_shards(
    shards: int, workers: int, order: random.Random
) -> None:
    """Workers joining one by one end up each within its share, every shard held once.

    A server grants free shards only; shards handed over have no runs in
    progress, so they are released at the next step.
    """
    keys = [f"s:{n}" for n in range(shards)]
    owner: dict[str, str] = {}
    policies: dict[str, LeasePolicy[Held]] = {}
    now = 0.0

    def step(name: str, policy: LeasePolicy[Held]) -> None:
        policy.heard(len(policies))
        policy.rebalance(now)
        for lease in policy.releasable(now):
            del owner[lease.key.decode()]
            policy.forget(lease)
        want = policy.shards_to_take(now, -math.inf)
        granted = 0
        for lease in policy.start_acquiring(Held):
            key = lease.key.decode()
            if granted < want and key not in owner:
                owner[key] = name
                policy.acquired(lease, now)
                granted += 1
        policy.done_acquiring()

    for number in range(workers):
        policies[f"w{number}"] = make_policy(keys, f"w{number}")
        for _ in range(3):
            names = list(policies)
            order.shuffle(names)
            for name in names:
                step(name, policies[name])
            now += 1.0
    share = -(-shards // workers)
    assert set(keys) == set(owner)
    for name, policy in policies.items():
        held = {lease.key.decode() for lease in policy.owned.values()}
        assert held == {key for key, who in owner.items() if who == name}
        assert len(held) <= share
