"""Run the embedded service (API + writer, in-process transport) on a free port in this process."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import httpx
import uvicorn

from contract.config import Settings
from service.main import create_app
from store.log import EditLog, open_log
from store.queue import MemoryTransport
from tests.helpers import free_port, wait_until
from workers.runtime import WorkerRuntime, build_worker


@dataclass
class Embedded:
    url: str
    runtime: WorkerRuntime
    log: EditLog

    def client(self, **kwargs: object) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=120.0, **kwargs)  # type: ignore[arg-type]


@contextmanager
def embedded_service(settings: Settings) -> Iterator[Embedded]:
    """What `factpatch serve` runs, with uvicorn in a thread instead of the main loop."""
    log = open_log(settings)
    transport = MemoryTransport()
    runtime = build_worker(settings, log=log, transport=transport)
    runtime.start()
    port = free_port()
    app = create_app(settings, log=log, transport=transport)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, access_log=False))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        wait_until(lambda: server.started, timeout=20.0, what="uvicorn to start", every=0.02)
        yield Embedded(url=f"http://127.0.0.1:{port}", runtime=runtime, log=log)
    finally:
        server.should_exit = True
        thread.join(10)
        runtime.stop()
        log.close()
