"""`factpatch serve`: the API and one writer in one process, joined by the in-process transport."""

from __future__ import annotations

import logging

from contract.config import Settings
from store.log import open_log
from store.queue import MemoryTransport
from workers.runtime import build_worker

logger = logging.getLogger(__name__)


def serve(settings: Settings) -> None:
    """Load the model, rebuild the head revision, then serve HTTP until interrupted."""
    import uvicorn

    from service.auth import listen_host
    from service.main import create_app

    log = open_log(settings)
    transport = MemoryTransport(max_query_backlog=settings.queue.max_query_backlog)
    runtime = build_worker(settings, log=log, transport=transport)
    runtime.start()
    app = create_app(settings, log=log, transport=transport)
    host, why = listen_host(settings.host, app.state.keyring)
    logger.log(logging.WARNING if host != settings.host else logging.INFO, "%s", why)
    config = uvicorn.Config(app, host=host, port=settings.port, log_config=None, access_log=False)
    server = uvicorn.Server(config)
    logger.info(
        "factpatch listening on http://%s:%d (model %s, editor %s, revision %d)",
        host, settings.port, settings.model, runtime.state.editor.name, runtime.state.revision,
    )
    try:
        server.run()
    finally:
        runtime.stop()
        log.close()
