"""factpatch fetch-model: download and convert the default model ahead of time."""

from __future__ import annotations

import argparse
import logging

HELP = "download and convert the configured model into the data dir (serve does this on first start)"
logger = logging.getLogger("factpatch")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default=None, help="model alias, folder, .gguf file or hub id")


def run(args: argparse.Namespace) -> int:
    from cli.main import configure_logging
    from contract.config import Settings
    from editing.model_source import resolve_model

    settings = Settings()
    configure_logging(settings.log_level)
    path = resolve_model(args.model or settings.model, settings.model_cache())
    logger.info("model ready at %s", path)
    return 0
