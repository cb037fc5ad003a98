"""The writer: takes commands in acceptance order, runs the editor, commits revisions to the log.

The log is the queue of record: a delivery only wakes the writer, which then resolves every
pending command in `seq` order. A duplicate or late delivery finds nothing left to do and is
acked, so delivery is at-least-once and application exactly-once.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from contract import logcontext
from contract.errors import FencedWriterError
from contract.protocol import CommandRecord
from store.queue import Transport
from workers.context import WriterContext
from workers.edits import run_edit_group
from workers.rollbacks import run_replay, run_rollback

logger = logging.getLogger(__name__)

Handler = Callable[[WriterContext, CommandRecord], None]
HANDLERS: dict[str, Handler] = {"rollback": run_rollback, "replay": run_replay}


class Writer:
    retry_seconds = 2.0

    def __init__(self, *, ctx: WriterContext, transport: Transport, reconcile_seconds: float = 5.0) -> None:
        self.ctx = ctx
        self.transport = transport
        self.reconcile_seconds = reconcile_seconds
        self._last_reconcile = 0.0

    def start(self) -> None:
        """Rebuild the head state, take a new fencing epoch, and resolve what was left pending."""
        self.ctx.state.initialise()
        self.ctx.epoch = self.ctx.log.acquire_epoch()
        self._catch_up()
        self.process_pending()

    def _catch_up(self) -> None:
        """A writer fenced out by our new epoch may have committed after we read the head."""
        head = self.ctx.log.head()
        if head.revision != self.ctx.state.revision:
            logger.info("revision %d was committed while this writer started; restoring it", head.revision)
            self.ctx.state.restore_to(head.revision)

    def run(self, stop: threading.Event, *, burst: bool = False) -> None:
        """Loop until `stop` is set (or, with `burst`, until nothing is pending)."""
        while not stop.is_set():
            try:
                if not self._step(burst=burst):
                    return
            except FencedWriterError:
                logger.critical("another writer took over the log; this writer stops")
                stop.set()
                raise
            except Exception:
                logger.exception("the writer failed; retrying in %.0f s (pending work stays in the log)",
                                 self.retry_seconds)
                stop.wait(self.retry_seconds)

    def _step(self, *, burst: bool) -> bool:
        """One wake-up; False when a burst run has nothing left to do."""
        delivery = self.transport.commands.get(timeout=0.5)
        if delivery is not None:
            self.process_pending()
            self.transport.commands.ack(delivery)
        elif burst and self.ctx.log.count_pending() == 0:
            return False
        else:
            self._reconcile_if_due()
        return True

    def _reconcile_if_due(self) -> None:
        """Accepted requests whose queue message was lost are found in the log and resolved."""
        now = time.monotonic()
        if now - self._last_reconcile >= self.reconcile_seconds:
            self._last_reconcile = now
            if self.ctx.log.count_pending():
                logger.info("reconciling pending commands from the log")
                self.process_pending()

    def process_pending(self) -> int:
        """Resolve every pending command in acceptance order; return how many were handled."""
        pending = self.ctx.log.pending_commands()
        done = 0
        while done < len(pending):
            command = pending[done]
            group = self._edit_group(pending, done) if command.kind == "edit" else [command]
            with logcontext.scope(edit_id=",".join(c.id for c in group), actor=command.actor,
                                  revision=self.ctx.state.revision):
                if command.kind == "edit":
                    self._run_edits(group)
                else:
                    HANDLERS[command.kind](self.ctx, command)
            done += len(group)
            self.transport.events.publish()
        return done

    def _run_edits(self, group: list[CommandRecord]) -> None:
        """Apply one edit group and record its figures (writer time, latency, guard refusals)."""
        started = time.perf_counter()
        run_edit_group(self.ctx, group)
        seconds = time.perf_counter() - started
        resolved = self.ctx.log.get_commands([c.id for c in group])
        self.ctx.state.metrics.edits_resolved(resolved, editor=self.ctx.editor.name, seconds=seconds)

    def _edit_group(self, pending: list[CommandRecord], start: int) -> list[CommandRecord]:
        """Consecutive edits from `start` by one caller, at most `max_batch_edits` (one revision,
        which names that caller as its actor)."""
        limit = self.ctx.settings.writer.max_batch_edits
        actor = pending[start].actor
        group: list[CommandRecord] = []
        for command in pending[start:]:
            if command.kind != "edit" or len(group) == limit or command.actor != actor:
                break
            group.append(command)
        return group
