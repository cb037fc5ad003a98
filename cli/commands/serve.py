"""factpatch serve: the API and one writer in one process (embedded mode)."""

from __future__ import annotations

import argparse
import logging

HELP = "run the API and the writer in one process on the configured model (embedded mode)"
logger = logging.getLogger("factpatch")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default=None, help="listen address (default FACTPATCH_HOST or 127.0.0.1)")
    parser.add_argument("--port", type=int, default=None, help="listen port (default FACTPATCH_PORT or 8000)")


def run(args: argparse.Namespace) -> int:
    from cli.embedded import serve
    from cli.main import configure_logging
    from contract.config import Settings
    from editing.loading import set_serving_threads

    overrides = {k: v for k, v in {"host": args.host, "port": args.port}.items() if v is not None}
    settings = Settings(**overrides)
    configure_logging(settings.log_level, settings.log_format)
    logger.info("configuration: %s", settings.redacted())
    set_serving_threads(settings)
    serve(settings)
    return 0
