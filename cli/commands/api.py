"""factpatch api: the HTTP front end alone, joined to the workers over Redis. Never imports torch."""

from __future__ import annotations

import argparse
import logging
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fastapi import FastAPI

    from contract.config import Settings

HELP = "run the HTTP API alone (no model, no torch); workers join it over Redis (needs FACTPATCH_REDIS_URL)"
logger = logging.getLogger("factpatch")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default=None, help="listen address (default FACTPATCH_HOST or 127.0.0.1)")
    parser.add_argument("--port", type=int, default=None, help="listen port (default FACTPATCH_PORT or 8000)")


def build_app(settings: Settings) -> FastAPI:
    """The app over the Redis transport and the configured log (both opened lazily, closed at exit)."""
    from service.main import create_app

    return create_app(settings)


def run(args: argparse.Namespace) -> int:
    from cli.main import configure_logging
    from contract.config import Settings

    overrides = {k: v for k, v in {"host": args.host, "port": args.port}.items() if v is not None}
    settings = Settings(**overrides)
    configure_logging(settings.log_level, settings.log_format)
    if not settings.redis_url:
        logger.error("factpatch api needs FACTPATCH_REDIS_URL (workers run as separate processes); "
                     "for API and writer in one process run `factpatch serve`")
        return 2
    import uvicorn

    from service.auth import listen_host

    app = build_app(settings)
    host, why = listen_host(settings.host, app.state.keyring)
    logger.log(logging.WARNING if host != settings.host else logging.INFO, "%s", why)
    config = uvicorn.Config(app, host=host, port=settings.port, log_config=None, access_log=False)
    queue = app.state.transport.config
    logger.info("factpatch api listening on http://%s:%d (redis transport, key prefix %r)",
                host, settings.port, queue.prefix)
    uvicorn.Server(config).run()
    return 0
