"""Worker processes of the Redis deployment: the writer (or its hot standby) and replicas.

`--role writer`: load the model, then try the writer lease. Without it the process is a hot
**standby**: it follows the log like a replica, answers queries and heartbeats as `standby`,
and polls the lease. With it, it rebuilds the head from snapshot + log, takes a new fencing
epoch, resolves what is pending and runs the writer loop while a thread renews the lease. On
losing the lease it commits nothing more and exits (status 3), to come back as a standby.

`--role replica`: wait until a writer has started the log, load the model with the log's
editor, follow the log (apply stored artifacts, restore on jumps; never run the editor) and
answer queries. Every role heartbeats, so `/v1/model` lists it and `/readyz` sees the writer.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from contract.config import Settings
from contract.errors import FencedWriterError, LogMismatchError
from store.log import EditLog
from store.queue.redis import RedisTransport
from workers.follower import Follower, wait_for_lineage
from workers.heartbeat import run_heartbeats, worker_info
from workers.lease_keeper import LeaseKeeper
from workers.runtime import WorkerRuntime, build_worker

logger = logging.getLogger(__name__)

WorkerRole = Literal["writer", "replica"]
EXIT_OK, EXIT_MISMATCH, EXIT_FENCED = 0, 2, 3


@dataclass
class Node:
    """One worker process: the model state and its loops, under one stop event."""

    runtime: WorkerRuntime
    transport: RedisTransport
    log: EditLog
    stop: threading.Event
    role: str = "standby"
    fenced: bool = False
    threads: list[threading.Thread] = field(default_factory=list)

    @property
    def follower(self) -> Follower:
        return Follower(state=self.runtime.state, log=self.log)

    def spawn(self, name: str, target: Callable[[], None]) -> None:
        thread = threading.Thread(target=target, name=f"factpatch-{name}", daemon=True)
        thread.start()
        self.threads.append(thread)

    def start_heartbeats(self) -> None:
        state, every = self.runtime.state, self.runtime.settings.writer.heartbeat_seconds
        self.spawn("heartbeat", lambda: run_heartbeats(
            self.stop, transport=self.transport, every=every, changed=state.changed,
            info=lambda: worker_info(worker_id=self.runtime.worker_id, role=self.role, state=state),
        ))

    def start_queries(self) -> None:
        self.spawn("queries", lambda: self.runtime.queries.run(self.stop))

    def announce(self, role: str) -> None:
        """Change the role and heartbeat at once."""
        self.role = role
        with self.runtime.state.changed:
            self.runtime.state.changed.notify_all()

    def join(self, timeout: float = 30.0) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout)


def build_node(
    settings: Settings, *, role: WorkerRole, log: EditLog, transport: RedisTransport, stop: threading.Event
) -> Node | None:
    """Load the model for this role (a replica first waits for the log's lineage); None if stopped."""
    settings = settings.model_copy(update={"worker_id": transport.consumer})
    lineage = wait_for_lineage(log, stop) if role == "replica" else log.lineage()
    if lineage is None and role == "replica":
        return None
    if lineage is not None and role == "replica":
        settings = settings.model_copy(update={"editor": lineage.editor})  # a replica runs the log's editor
    runtime = build_worker(settings, log=log, transport=transport)
    return Node(runtime=runtime, transport=transport, log=log, stop=stop,
                role="replica" if role == "replica" else "standby")


def run_replica(node: Node) -> int:
    lineage = node.log.lineage()
    assert lineage is not None, "build_node waits for the lineage"
    node.follower.initialise(lineage)
    node.start_heartbeats()
    node.start_queries()
    every = node.transport.config.follow_seconds
    node.spawn("follow", lambda: node.follower.run(node.stop, events=node.transport.events, every=every))
    logger.info("replica %s ready at revision %d", node.runtime.worker_id, node.runtime.state.revision)
    node.stop.wait()
    return EXIT_OK


def run_writer(node: Node) -> int:
    keeper = LeaseKeeper(node.transport.lease(node.runtime.worker_id),
                         renew_every=node.transport.config.renew_seconds, on_lost=node.stop.set)
    node.start_heartbeats()
    if not _standby_until_lease(node, keeper):
        return EXIT_OK
    keeper.start(node.stop)
    _promote(node, keeper)
    node.stop.wait()
    if not keeper.lost.is_set():
        node.join()
        keeper.release()
    return EXIT_FENCED if keeper.lost.is_set() or node.fenced else EXIT_OK


def _standby_until_lease(node: Node, keeper: LeaseKeeper) -> bool:
    """Follow the log and answer queries until the lease is ours (True) or the node stops (False)."""
    poll = min(node.transport.config.renew_seconds, 0.5)
    following = False
    announced = False
    while not node.stop.is_set():
        if keeper.acquire():
            return True
        if not announced:
            logger.info("the writer lease is held; %s waits as a hot standby", node.runtime.worker_id)
            announced = True
        seen = node.transport.events.generation()
        following = _follow_once(node, following)
        node.transport.events.wait(seen, poll)
    return False


def _follow_once(node: Node, following: bool) -> bool:
    """One standby step: start following once the log has a lineage, else catch up."""
    try:
        if following:
            node.follower.catch_up()
            return True
        lineage = node.log.lineage()
        if lineage is None:
            return False
        node.follower.initialise(lineage)
        node.start_queries()
        return True
    except LogMismatchError:
        raise
    except Exception:
        logger.exception("the standby could not follow the log; retrying")
        return following


def _promote(node: Node, keeper: LeaseKeeper) -> None:
    """Rebuild from snapshot + log, take a new epoch, resolve what is pending, run the writer."""
    runtime = node.runtime
    runtime.writer.ctx.fence = keeper.check
    with runtime.state.host.lock:
        runtime.writer.start()
    if not any(t.name == "factpatch-queries" for t in node.threads):
        node.start_queries()
    node.spawn("writer", lambda: _write(node))
    node.announce("writer")
    logger.info("writer %s ready at revision %d (epoch %s)", runtime.worker_id, runtime.state.revision,
                runtime.writer.ctx.epoch)


def _write(node: Node) -> None:
    try:
        node.runtime.writer.run(node.stop)
    except FencedWriterError:
        node.fenced = True
    finally:
        node.stop.set()


def run_node(node: Node, *, role: WorkerRole) -> int:
    try:
        return run_replica(node) if role == "replica" else run_writer(node)
    except LogMismatchError as exc:
        logger.critical("%s", exc.detail)
        return EXIT_MISMATCH
    except FencedWriterError as exc:
        logger.critical("fenced while starting: %s", exc.detail)
        return EXIT_FENCED
    finally:
        node.join(timeout=10.0)
