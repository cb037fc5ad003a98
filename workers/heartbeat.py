"""Heartbeats: a worker announces its role, revision and device every few seconds."""

from __future__ import annotations

import threading
from collections.abc import Callable

from contract.protocol import WorkerInfo, utc_now
from store.queue import Transport
from workers.state import ModelState


def worker_info(*, worker_id: str, role: str, state: ModelState) -> WorkerInfo:
    """The heartbeat: role, revision, device, and the worker's metrics as exposition text."""
    state.metrics.serving(role=role, revision=state.revision)
    return WorkerInfo(
        id=worker_id, role=role, revision=state.revision, device=str(state.host.device),
        heartbeat_at=utc_now(), checksum=state.checksum, model=state.host.model_id, editor=state.editor.name,
        metrics=state.metrics.render(),
    )


def run_heartbeats(
    stop: threading.Event,
    *,
    transport: Transport,
    info: Callable[[], WorkerInfo],
    every: float,
    changed: threading.Condition | None = None,
) -> None:
    """Until `stop`: publish `info()` every period (and at once when `changed` is notified,
    e.g. on a new revision) with a time-to-live of three periods; remove it at the end."""
    last = info()
    try:
        while not stop.is_set():
            last = info()
            transport.registry.heartbeat(last, ttl=3 * every)
            if changed is None:
                stop.wait(every)
            else:
                with changed:
                    changed.wait(every)
    finally:
        transport.registry.remove(last.id)
