"""Keeping the writer lease: renew it in the background, and fence the writer the moment it is lost.

The lease is lost when another worker holds the key, or when it could not be renewed for a whole
TTL (Redis away: it may have expired there). From then on `check()` raises FencedWriterError, so
the writer commits nothing more; the log's fencing epoch guards the commit already in flight.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import redis

from contract.errors import FencedWriterError
from store.queue.redis_lease import RedisLease

logger = logging.getLogger(__name__)


class LeaseKeeper:
    def __init__(self, lease: RedisLease, *, renew_every: float, on_lost: Callable[[], None]) -> None:
        self.lease = lease
        self.renew_every = renew_every
        self.on_lost = on_lost
        self.lost = threading.Event()
        self._ttl = lease.ttl_ms / 1000.0
        self._renewed_at = 0.0  # monotonic time the last successful renewal was *sent*
        self._thread: threading.Thread | None = None

    def acquire(self) -> bool:
        """One attempt to take the lease; False when someone else holds it or Redis is away."""
        sent = time.monotonic()
        try:
            taken = self.lease.try_acquire()
        except redis.RedisError as exc:
            logger.debug("lease attempt failed: %s", exc)
            return False
        if taken:
            self._renewed_at = sent
            logger.info("holding the writer lease %s (ttl %.1f s)", self.lease.key, self._ttl)
        return taken

    def start(self, stop: threading.Event) -> threading.Thread:
        self._thread = threading.Thread(target=self._run, args=(stop,), name="factpatch-lease", daemon=True)
        self._thread.start()
        return self._thread

    def _run(self, stop: threading.Event) -> None:
        while not stop.wait(self.renew_every):
            sent = time.monotonic()
            try:
                if self.lease.renew():
                    self._renewed_at = sent
                    continue
                reason = f"worker {self.lease.holder()!r} holds it now"
            except redis.RedisError as exc:
                if sent - self._renewed_at < self._ttl:
                    logger.warning("could not renew the writer lease (%s); retrying", exc)
                    continue
                reason = f"it could not be renewed for {self._ttl:g} s"
            self._lose(reason)
            return

    def _lose(self, reason: str) -> None:
        if not self.lost.is_set():
            self.lost.set()
            logger.critical("lost the writer lease: %s; this writer commits nothing more", reason)
            self.on_lost()

    def check(self) -> None:
        """Raise FencedWriterError unless the lease is still ours (called before every commit)."""
        if time.monotonic() - self._renewed_at >= self._ttl:
            self._lose(f"the last renewal is more than {self._ttl:g} s old")
        if self.lost.is_set():
            raise FencedWriterError("this worker no longer holds the writer lease")

    def release(self) -> None:
        """Give the lease back on a clean stop, so a standby takes over without waiting for the TTL."""
        if self.lost.is_set():
            return
        try:
            if self.lease.release():
                logger.info("released the writer lease")
        except redis.RedisError as exc:
            logger.warning("could not release the writer lease (%s); it expires by itself", exc)
