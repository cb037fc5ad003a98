"""factpatch worker: a model-holding process of the Redis deployment (writer, standby or replica)."""

from __future__ import annotations

import argparse
import logging
import signal
import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from contract.config import Settings
    from workers.distributed import WorkerRole

HELP = ("run a worker over Redis: --role writer (a second writer waits as hot standby) "
        "or --role replica (follows the log, answers queries); needs FACTPATCH_REDIS_URL")
logger = logging.getLogger("factpatch")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--role", choices=("writer", "replica"), default="writer",
                        help="writer: hold the lease and apply edits (or stand by); replica: follow, serve")


def _stop_on_signals(stop: threading.Event) -> None:
    """SIGTERM/SIGINT finish the current command, then the process exits."""
    def handler(signum: int, frame: object) -> None:
        logger.info("signal %d: stopping after the current command", signum)
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


def run(args: argparse.Namespace) -> int:
    from cli.main import configure_logging
    from contract.config import Settings
    from editing.loading import set_serving_threads

    settings = Settings()
    configure_logging(settings.log_level, settings.log_format)
    if not settings.redis_url:
        logger.error("factpatch worker needs FACTPATCH_REDIS_URL; for one process run `factpatch serve`")
        return 2
    logger.info("configuration: %s", settings.redacted())
    set_serving_threads(settings)
    stop = threading.Event()
    _stop_on_signals(stop)
    return _serve(settings, role=args.role, stop=stop)


def _serve(settings: Settings, *, role: WorkerRole, stop: threading.Event) -> int:
    from store.log import open_log
    from store.queue.redis import RedisTransport
    from workers.distributed import build_node, run_node
    from workers.runtime import default_worker_id

    assert settings.redis_url is not None
    consumer = settings.worker_id or default_worker_id()
    transport = RedisTransport.from_url(settings.redis_url, config=settings.queue, consumer=consumer)
    logger.info("worker %s (--role %s), queue config %s", consumer, role, transport.config.model_dump())
    log = open_log(settings)
    try:
        node = build_node(settings, role=role, log=log, transport=transport, stop=stop)
        if node is None:
            return 0
        if settings.metrics_port:
            from workers.metrics import serve_http

            serve_http(node.runtime.state.metrics, settings.metrics_port)
        return run_node(node, role=role)
    finally:
        transport.close()
        log.close()
