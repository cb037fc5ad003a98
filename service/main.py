"""The app factory. Run the API alone with `uvicorn --factory service.main:create_app` (needs
`FACTPATCH_REDIS_URL`), or in-process next to a writer through `factpatch serve`.

Nothing happens at import time. The only place in `service/` that configures logging is
`logcontext.configure_logging`, called by `create_app` only when it builds its own settings (the
uvicorn factory path); callers that pass settings configure logging themselves.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Protocol

from anyio import CapacityLimiter
from fastapi import FastAPI

from contract import logcontext
from contract.config import Settings
from service.auth import KeyRing
from service.metrics import HttpMetrics
from service.middleware import MetricsMiddleware, RequestIdMiddleware
from service.openai_serving import OpenAIService
from service.problems import register_problem_handlers
from service.ratelimit import MemoryRateLimiter, RateLimiter, RedisRateLimiter
from service.routers import ROUTERS
from service.serving import LONG_WAIT_THREADS, EditService, QueryService, StateService
from store.log import EditLog, open_log
from store.queue import Transport

logger = logging.getLogger(__name__)


class _Closable(Protocol):
    def close(self) -> None: ...


def redis_transport(settings: Settings) -> Transport:
    """The production transport; imported lazily so the embedded service needs no redis package."""
    from store.queue.redis import RedisTransport

    assert settings.redis_url is not None
    transport: Transport = RedisTransport.from_url(settings.redis_url, config=settings.queue)
    return transport


def _default_transport(settings: Settings) -> Transport:
    if not settings.redis_url:
        raise ValueError(
            "embedded mode: pass the in-process transport (create_app(settings, transport=...)) and run a "
            "writer next to it, i.e. run `factpatch serve`; or set FACTPATCH_REDIS_URL for a standalone API"
        )
    return redis_transport(settings)


def _open_log(settings: Settings, opened: list[_Closable]) -> EditLog:
    """Open the configured log; if that fails, close what was opened before it."""
    try:
        return open_log(settings)
    except Exception:
        for resource in opened:
            _close(resource)
        raise


def create_app(
    settings: Settings | None = None, *, log: EditLog | None = None, transport: Transport | None = None
) -> FastAPI:
    """Build the API. What it opens itself (the log, the transport) it closes at shutdown.

    `app.state` holds `settings`, `log`, `transport`, `keyring`, `metrics`, `rate_limiter`,
    `edit_service`, `query_service` and `state_service`.
    """
    if settings is None:
        settings = Settings()
        logcontext.configure_logging(settings.log_level, settings.log_format)
    owned: list[_Closable] = []
    if transport is None:
        transport = _default_transport(settings)
        owned.append(transport)
    if log is None:
        log = _open_log(settings, owned)
        owned.append(log)
    app = FastAPI(title="factpatch", version="1", summary="Live fact editing of a resident language model.",
                  lifespan=_lifespan(settings, owned))
    _attach_state(app, settings=settings, log=log, transport=transport)
    register_problem_handlers(app)
    app.add_middleware(MetricsMiddleware, metrics=app.state.metrics)
    app.add_middleware(RequestIdMiddleware)
    for router in ROUTERS:
        app.include_router(router)
    return app


def _attach_state(app: FastAPI, *, settings: Settings, log: EditLog, transport: Transport) -> None:
    limiter = CapacityLimiter(LONG_WAIT_THREADS)
    metrics = HttpMetrics()
    app.state.settings, app.state.log, app.state.transport = settings, log, transport
    app.state.keyring = KeyRing(settings.api_keys, log, cache_seconds=settings.key_cache_seconds)
    app.state.metrics = metrics
    app.state.edit_service = EditService(log=log, transport=transport, settings=settings, limiter=limiter)
    app.state.query_service = QueryService(transport=transport, settings=settings, limiter=limiter)
    app.state.openai_service = OpenAIService(client=app.state.query_service.client, log=log)
    app.state.state_service = StateService(log=log, transport=transport, metrics=metrics)
    metrics.attach(app.state.state_service.collector())
    app.state.rate_limiter = _rate_limiter(settings, transport)


def _rate_limiter(settings: Settings, transport: Transport) -> RateLimiter:
    """Buckets in Redis when the API runs over Redis (shared by every API process), else in-process."""
    client, keys = getattr(transport, "client", None), getattr(transport, "keys", None)
    if settings.redis_url and client is not None and keys is not None:
        return RedisRateLimiter(client, config=settings.rate_limits, key=keys.ratelimit)
    return MemoryRateLimiter(settings.rate_limits)


def _lifespan(
    settings: Settings, owned: list[_Closable]
) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        logger.info("factpatch api starting; auth %s; config %s",
                    "on" if app.state.keyring.enabled else "off (no API keys)", settings.redacted())
        try:
            yield
        finally:
            for resource in reversed(owned):
                _close(resource)
            logger.info("factpatch api stopped")

    return lifespan


def _close(resource: _Closable) -> None:
    try:
        resource.close()
    except Exception:
        logger.exception("could not close %s", type(resource).__name__)
