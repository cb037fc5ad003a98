"""Context fields on every log line (request_id, edit_id, revision, actor) and the JSON format.

A unit of work (an HTTP request, a writer command) opens a context with `scope(...)`; code
inside it adds fields with `bind(...)`. The context is a dict held in a contextvar: threads and
tasks started inside the scope copy the contextvar and so share the same dict, which is why a
field bound in a threadpool dependency still shows on the request's later lines.

`ContextFilter` copies the fields onto each record (missing ones as None, `request_id` as "-"
for the text format); `JsonFormatter` writes one JSON object per line. Only processes configure
logging (`configure_logging` below, called by each command); library code just binds.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

FIELDS = ("request_id", "edit_id", "revision", "actor")

_context: ContextVar[dict[str, Any] | None] = ContextVar("factpatch_log_context", default=None)


@contextmanager
def scope(**fields: Any) -> Iterator[dict[str, Any]]:
    """A fresh set of context fields for one unit of work (inherits nothing)."""
    token = _context.set({k: v for k, v in fields.items() if v is not None})
    try:
        yield _context.get() or {}
    finally:
        _context.reset(token)


def bind(**fields: Any) -> None:
    """Add fields to the current scope (a no-op outside one)."""
    current = _context.get()
    if current is not None:
        current.update({k: v for k, v in fields.items() if v is not None})


def current() -> dict[str, Any]:
    return dict(_context.get() or {})


class ContextFilter(logging.Filter):
    """Puts the context fields on every record that does not carry them already."""

    def filter(self, record: logging.LogRecord) -> bool:
        fields = _context.get() or {}
        for name in FIELDS:
            if not hasattr(record, name):
                setattr(record, name, fields.get(name))
        if record.request_id is None:  # type: ignore[attr-defined]
            record.request_id = "-"
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC), level, logger, message, the context fields, exception."""

    converter = time.gmtime

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in FIELDS:
            value = getattr(record, name, None)
            if value is not None and value != "-":
                doc[name] = value
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        return json.dumps(doc, ensure_ascii=False, default=str)



LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"


class _FactpatchHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Marks the handler `configure_logging` installed, so calling it twice adds nothing."""


def configure_logging(level: str = "INFO", fmt: str = "text") -> None:
    """Log to stderr with the request id on every line; `fmt="json"`: one JSON object per line
    with request_id, edit_id, revision and actor where known. Idempotent (a second call only
    changes the level and the format)."""
    root = logging.getLogger()
    root.setLevel(level.upper())
    handler = next((h for h in root.handlers if isinstance(h, _FactpatchHandler)), None)
    if handler is None:
        handler = _FactpatchHandler()
        handler.addFilter(ContextFilter())
        root.addHandler(handler)
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(LOG_FORMAT))
