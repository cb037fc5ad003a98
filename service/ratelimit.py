"""Per-key rate limits for edits and queries: GCRA (a token bucket kept as one timestamp).

Each (kind, actor) pair has a bucket that refills at `per_minute / 60` per second and holds a
minute's worth. A request of cost n (an edit batch costs its number of edits) passes when the
bucket holds n; otherwise it is refused with the seconds until it would pass (`Retry-After`). A
request larger than the whole bucket passes only when the bucket is full.

`MemoryRateLimiter` keeps the buckets in this process (embedded mode, or one API process);
`RedisRateLimiter` keeps them in Redis (one Lua call, Redis's clock), so every API process of a
deployment shares them. When Redis is away, requests pass (the limiter protects capacity, not
data) and a warning is logged.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any, Literal, Protocol

from contract.config import RateLimitConfig

logger = logging.getLogger(__name__)

LimitKind = Literal["edits", "queries"]


class RateLimiter(Protocol):
    def charge(self, kind: LimitKind, actor: str, cost: int = 1) -> float:
        """Take `cost` from the bucket; 0.0 when allowed, else the seconds to wait."""
        ...


def _window(config: RateLimitConfig, kind: LimitKind) -> tuple[float, float] | None:
    """(seconds per unit, bucket size in seconds), or None when the kind is unlimited."""
    per_minute = config.edits_per_minute if kind == "edits" else config.queries_per_minute
    if per_minute <= 0:
        return None
    interval = 60.0 / per_minute
    return interval, 60.0


def gcra(tat: float, now: float, *, interval: float, window: float, cost: int) -> tuple[float, float]:
    """(new theoretical arrival time, seconds to wait); a wait > 0 leaves the bucket unchanged."""
    start = max(tat, now)
    new = start + cost * interval
    over = new - now - max(window, cost * interval)
    return (tat, over) if over > 0 else (new, 0.0)


class MemoryRateLimiter:
    """Buckets in this process. Buckets that have refilled are dropped, so memory stays bounded."""

    def __init__(self, config: RateLimitConfig, clock: Callable[[], float] = time.monotonic) -> None:
        self._config, self._clock = config, clock
        self._tat: dict[tuple[str, str], float] = {}
        self._lock = threading.Lock()

    def charge(self, kind: LimitKind, actor: str, cost: int = 1) -> float:
        window = _window(self._config, kind)
        if window is None:
            return 0.0
        now = self._clock()
        with self._lock:
            tat, wait = gcra(self._tat.get((kind, actor), now), now, interval=window[0], window=window[1], cost=cost)
            self._tat[(kind, actor)] = tat
            if len(self._tat) > 10_000:
                self._tat = {k: v for k, v in self._tat.items() if v > now}
        return wait


# KEYS[1] bucket; ARGV: interval, window, cost (seconds, seconds, units). Returns the wait as text.
_GCRA_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local interval, window, cost = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local new = tat + cost * interval
local over = new - now - math.max(window, cost * interval)
if over > 0 then return tostring(over) end
redis.call('SET', KEYS[1], tostring(new), 'PX', math.ceil((new - now) * 1000) + 1000)
return '0'
"""


class RedisRateLimiter:
    """Buckets in Redis under `<prefix>:ratelimit:<kind>:<actor>`, shared by every API process."""

    def __init__(self, client: Any, *, config: RateLimitConfig, key: Callable[[str, str], str]) -> None:
        self._config, self._key = config, key
        self._script = client.register_script(_GCRA_LUA)
        self._last_warning = 0.0

    def charge(self, kind: LimitKind, actor: str, cost: int = 1) -> float:
        window = _window(self._config, kind)
        if window is None:
            return 0.0
        try:
            wait = self._script(keys=[self._key(kind, actor)], args=[window[0], window[1], cost])
        except Exception as exc:  # noqa: BLE001 - Redis away: let the request through, say so
            self._warn(exc)
            return 0.0
        return float(wait)

    def _warn(self, exc: Exception) -> None:
        now = time.monotonic()
        if now - self._last_warning > 10.0:
            self._last_warning = now
            logger.warning("rate limits not enforced: Redis did not answer (%s)", type(exc).__name__)
