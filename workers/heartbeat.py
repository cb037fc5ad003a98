"""Heartbeats: a worker announces its role, revision and device every few seconds."""

from __future__ import annotations

import threading
from collections.abc import Callable

from editing.protocol import WorkerInfo, utc_now
from editing.queue import Transport
from workers.state import ModelState


def worker_info(*, worker_id: str, role: str, state: ModelState) -> WorkerInfo:
    return WorkerInfo(
        id=worker_id, role=role, revision=state.revision, device=str(state.host.device),  # type: ignore[arg-type]
        heartbeat_at=utc_now(), checksum=state.checksum, model=state.host.model_id, editor=state.editor.name,
    )


def run_heartbeats(
    stop: threading.Event, *, transport: Transport, info: Callable[[], WorkerInfo], every: float
) -> None:
    """Until `stop`: publish `info()` with a time-to-live of three periods; remove it at the end."""
    last = info()
    try:
        while True:
            last = info()
            transport.registry.heartbeat(last, ttl=3 * every)
            if stop.wait(every):
                break
    finally:
        transport.registry.remove(last.id)
