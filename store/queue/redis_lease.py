"""The writer lease: `SET key owner NX PX ttl`, renewed and released only by its owner (Lua).

The lease says who *may* write; the edit log's fencing epoch is what makes a late write by a
former holder fail. Renewing re-takes a lease that vanished (a Redis restart without
persistence) as long as nobody else holds it: that is safe because a writer that took over in
between has a newer epoch, and ours can no longer commit.
"""

from __future__ import annotations

from typing import Any

import redis

_RENEW = """
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] then
    redis.call('PEXPIRE', KEYS[1], ARGV[2])
    return 1
elseif not holder then
    redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
    return 2
end
return 0
"""

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
    return redis.call('DEL', KEYS[1])
end
return 0
"""


class RedisLease:
    """One worker's handle on the lease key. Methods raise `redis.RedisError` when Redis is away."""

    def __init__(self, client: redis.Redis, *, key: str, owner: str, ttl_ms: int) -> None:
        self._client, self.key, self.owner, self.ttl_ms = client, key, owner, ttl_ms
        self._renew: Any = client.register_script(_RENEW)
        self._release: Any = client.register_script(_RELEASE)

    def try_acquire(self) -> bool:
        """Take the lease if nobody holds it (or we already do)."""
        if self._client.set(self.key, self.owner, nx=True, px=self.ttl_ms):
            return True
        return bool(self.renew())

    def renew(self) -> bool:
        """Extend our lease (or re-take a vanished one); False when another worker holds it."""
        return int(self._renew(keys=[self.key], args=[self.owner, self.ttl_ms])) > 0

    def release(self) -> bool:
        """Give the lease up at once (clean shutdown), so a standby need not wait for the TTL."""
        return int(self._release(keys=[self.key], args=[self.owner])) > 0

    def holder(self) -> str | None:
        value = self._client.get(self.key)
        return None if value is None else str(value)
