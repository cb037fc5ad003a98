"""The `factpatch` command. Sub-commands import what they need lazily (`api` imports no torch)."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence

from editing.config import Settings

logger = logging.getLogger("factpatch")


def configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def _settings(args: argparse.Namespace) -> Settings:
    overrides = {k: v for k, v in {"host": args.host, "port": args.port}.items() if v is not None}
    return Settings(**overrides)


def cmd_serve(args: argparse.Namespace) -> int:
    from workers.embedded import serve

    settings = _settings(args)
    configure_logging(settings.log_level)
    logger.info("configuration: %s", settings.redacted())
    serve(settings)
    return 0


def cmd_fetch_model(args: argparse.Namespace) -> int:
    from editing.model_source import resolve_model

    settings = Settings()
    configure_logging(settings.log_level)
    path, _ = resolve_model(args.model or settings.model, settings.data_dir)
    logger.info("model ready at %s", path)
    return 0


def _add_listen(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default=None, help="listen address (default FACTPATCH_HOST or 127.0.0.1)")
    parser.add_argument("--port", type=int, default=None, help="listen port (default FACTPATCH_PORT or 8000)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="factpatch", description="Live model editing as a service.")
    sub = parser.add_subparsers(dest="command", required=True)
    commands: dict[str, tuple[str, Callable[[argparse.Namespace], int]]] = {
        "serve": ("API + writer in one process (embedded mode)", cmd_serve),
        "fetch-model": ("download and convert the default model into the data dir", cmd_fetch_model),
    }
    for name, (text, func) in commands.items():
        p = sub.add_parser(name, help=text, description=text)
        p.set_defaults(func=func)
        if name == "serve":
            _add_listen(p)
        if name == "fetch-model":
            p.add_argument("--model", default=None, help="model alias, folder, .gguf or hub id")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    raise SystemExit(main())
