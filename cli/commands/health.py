"""factpatch health: a container healthcheck (exit 0 when healthy) that needs neither curl nor torch."""

from __future__ import annotations

import argparse
import logging
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from contract.config import Settings

HELP = ("exit 0 when this process is healthy: with FACTPATCH_WORKER_ID, that worker's heartbeat is in "
        "Redis; otherwise the API on FACTPATCH_PORT answers /healthz")
logger = logging.getLogger("factpatch")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--timeout", type=float, default=3.0, help="seconds to wait for an answer")


def run(args: argparse.Namespace) -> int:
    from contract.config import Settings

    settings = Settings()
    if settings.worker_id and settings.redis_url:
        return _worker_alive(settings)
    return _api_alive(settings.port, args.timeout)


def _worker_alive(settings: Settings) -> int:
    from contract.errors import UnavailableError
    from store.queue.redis import RedisTransport

    assert settings.redis_url is not None
    transport = RedisTransport.from_url(settings.redis_url, config=settings.queue)
    try:
        alive = any(w.id == settings.worker_id for w in transport.registry.workers())
    except UnavailableError:
        alive = False
    finally:
        transport.close()
    return 0 if alive else 1


def _api_alive(port: int, timeout: float) -> int:
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=timeout) as response:
            return 0 if response.status == 200 else 1
    except (urllib.error.URLError, OSError):
        return 1
