"""Assemble a worker from settings: model host, editor, state, writer, query server, heartbeats."""

from __future__ import annotations

import logging
import os
import socket
import threading
from dataclasses import dataclass, field

from contract.config import Settings
from editing.host import ModelHost
from editing.loading import load_host
from editing.registry import build_editor
from store.log import EditLog
from store.queue import Transport
from workers.context import WriterContext
from workers.heartbeat import run_heartbeats, worker_info
from workers.queries import QueryServer
from workers.state import ModelState
from workers.writer import Writer

logger = logging.getLogger(__name__)

DEFAULT_EDITOR = "lemoe"


def choose_editor(settings: Settings, log: EditLog | None = None) -> str:
    """The configured editor; else the one the edit log was started with; else lemoe.

    lemoe is the default because it changes the named fact and keeps the rest best of the five,
    through the API and on CounterFact (docs/benchmarks.md, "Edits that keep the rest"), and it
    needs no checkpoint trained for the model."""
    if settings.editor:
        return settings.editor
    lineage = log.lineage() if log is not None else None
    if lineage is not None:
        return lineage.editor
    logger.info("editor %s (the default; FACTPATCH_EDITOR picks another)", DEFAULT_EDITOR)
    return DEFAULT_EDITOR


def default_worker_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


@dataclass
class WorkerRuntime:
    """One worker's moving parts (a writer, a standby or a replica: the role decides which loops
    run); `start()` rebuilds state and launches the writer's loops."""

    state: ModelState
    writer: Writer
    queries: QueryServer
    transport: Transport
    settings: Settings
    worker_id: str
    stop_event: threading.Event = field(default_factory=threading.Event)
    threads: list[threading.Thread] = field(default_factory=list)

    def start(self) -> None:
        self.writer.start()
        every = self.settings.writer.heartbeat_seconds
        loops = {
            "writer": lambda: self.writer.run(self.stop_event),
            "queries": lambda: self.queries.run(self.stop_event),
            "heartbeat": lambda: run_heartbeats(
                self.stop_event, transport=self.transport, every=every, changed=self.state.changed,
                info=lambda: worker_info(worker_id=self.worker_id, role="writer", state=self.state),
            ),
        }
        for name, target in loops.items():
            thread = threading.Thread(target=target, name=f"factpatch-{name}", daemon=True)
            thread.start()
            self.threads.append(thread)
        logger.info("writer %s ready at revision %d", self.worker_id, self.state.revision)

    def stop(self, timeout: float = 30.0) -> None:
        """Finish the current command, then stop every loop."""
        self.stop_event.set()
        for thread in self.threads:
            thread.join(timeout)


def build_worker(
    settings: Settings, *, log: EditLog, transport: Transport, host: ModelHost | None = None
) -> WorkerRuntime:
    """Load the model (unless given), pick the editor, and assemble state, writer and query server."""
    host = host or load_host(settings)
    name = choose_editor(settings, log)
    editor = build_editor(name, host=host, overrides=settings.editors.get(name))
    state = ModelState(host=host, editor=editor, log=log)
    worker_id = settings.worker_id or default_worker_id()
    ctx = WriterContext(state=state, log=log, settings=settings, worker_id=worker_id)
    return WorkerRuntime(
        state=state,
        writer=Writer(ctx=ctx, transport=transport),
        queries=QueryServer(state=state, transport=transport, worker_id=worker_id,
                            max_wait=max(settings.query_timeout - 1.0, 0.1), config=settings.queries,
                            max_prompt_tokens=settings.limits.max_prompt_tokens),
        transport=transport,
        settings=settings,
        worker_id=worker_id,
    )
