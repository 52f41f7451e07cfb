"""The Lua scripts of a Redis Streams worker: heartbeats, leases, consumer pruning.

The heartbeat also reads the shard count the producers published (see
:func:`~eventkit.protocol.redis_entries.meta_key`), so that a worker checks
it at every lease tick without a round trip of its own.

Each runs atomically on the server, so that two workers never both take a
shard, and a lease check and what it guards are one step. A lease key
(:func:`~eventkit.protocol.redis_entries.lease_key`) holds the owner's
consumer name and expires after ``claim_idle_ms``; its token key
(:func:`~eventkit.protocol.redis_entries.token_key`) holds a random token of
the last acquisition and does not expire, so an owner whose lease expired (a
stall, a long outage) can tell whether anyone took the shard since.

The session registers them with its client
(:mod:`eventkit.sources.redis.session`); a script that fails raises the
server's error there. Being scripts over several keys, they rule out Redis
Cluster.
"""

from __future__ import annotations

from typing import Final

__all__ = ["ACQUIRE", "HEARTBEAT", "PRUNE", "RELEASE", "RENEW"]

#: KEYS: the heartbeat set, the stream's meta hash. ARGV: consumer,
#: claim_idle_ms. Returns the number of consumers heard from within
#: claim_idle_ms, this one included, and the shard count the producers
#: published (false, that is nil, when none did yet).
HEARTBEAT: Final = """
local now = redis.call('TIME')
local ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local idle = tonumber(ARGV[2])
redis.call('ZADD', KEYS[1], ms, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ms - idle)
redis.call('PEXPIRE', KEYS[1], 2 * idle)
return {redis.call('ZCARD', KEYS[1]), redis.call('HGET', KEYS[2], 'shards')}
"""

#: KEYS: lease and token key of each candidate shard, in order of preference.
#: ARGV: consumer, claim_idle_ms, how many to take, then a token per shard.
#: Takes shards that have no owner, or whose owner has this consumer's name
#: (a restarted worker); returns their positions in the list, from 1.
ACQUIRE: Final = """
local taken = {}
local want = tonumber(ARGV[3])
for i = 1, #KEYS / 2 do
  if #taken >= want then break end
  local owner = redis.call('GET', KEYS[2 * i - 1])
  if not owner or owner == ARGV[1] then
    redis.call('SET', KEYS[2 * i - 1], ARGV[1], 'PX', ARGV[2])
    redis.call('SET', KEYS[2 * i], ARGV[i + 3])
    taken[#taken + 1] = i
  end
end
return taken
"""

#: KEYS: lease and token key of each owned shard. ARGV: consumer,
#: claim_idle_ms, then our token per shard. A shard is still ours when nobody
#: acquired it since we did, even if our lease expired meanwhile. Returns 1
#: (renewed) or 0 (lost) per shard.
RENEW: Final = """
local kept = {}
for i = 1, #KEYS / 2 do
  if redis.call('GET', KEYS[2 * i]) == ARGV[i + 2] then
    redis.call('SET', KEYS[2 * i - 1], ARGV[1], 'PX', ARGV[2])
    kept[i] = 1
  else
    kept[i] = 0
  end
end
return kept
"""

#: KEYS: lease and token key of each shard to release. ARGV: our token per
#: shard. Deleting the token too makes a renewal racing the release fail.
RELEASE: Final = """
for i = 1, #KEYS / 2 do
  if redis.call('GET', KEYS[2 * i]) == ARGV[i] then
    redis.call('DEL', KEYS[2 * i - 1], KEYS[2 * i])
  end
end
return 0
"""

#: KEYS: a shard. ARGV: the group, this consumer. Deletes the group's other
#: consumers that have no entry pending there.
PRUNE: Final = """
for _, consumer in ipairs(redis.call('XINFO', 'CONSUMERS', KEYS[1], ARGV[1])) do
  local name, pending
  for i = 1, #consumer, 2 do
    if consumer[i] == 'name' then name = consumer[i + 1] end
    if consumer[i] == 'pending' then pending = consumer[i + 1] end
  end
  if name ~= ARGV[2] and pending == 0 then
    redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], name)
  end
end
return 0
"""
