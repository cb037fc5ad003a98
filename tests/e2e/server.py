"""Run the embedded service (API + writer, in-process transport) on a free port in this process."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import httpx
import uvicorn

from editing.config import Settings
from editing.log import EditLog, open_log
from editing.queue import MemoryTransport
from service.main import create_app
from workers.runtime import WriterRuntime, build_writer


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Embedded:
    url: str
    runtime: WriterRuntime
    log: EditLog

    def client(self, **kwargs: object) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=120.0, **kwargs)  # type: ignore[arg-type]


@contextmanager
def embedded_service(settings: Settings) -> Iterator[Embedded]:
    """What `factpatch serve` runs, with uvicorn in a thread instead of the main loop."""
    log = open_log(settings)
    transport = MemoryTransport()
    runtime = build_writer(settings, log=log, transport=transport)
    runtime.start()
    port = free_port()
    app = create_app(settings, log=log, transport=transport)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, access_log=False))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        _wait_started(server)
        yield Embedded(url=f"http://127.0.0.1:{port}", runtime=runtime, log=log)
    finally:
        server.should_exit = True
        thread.join(10)
        runtime.stop()
        log.close()


def _wait_started(server: uvicorn.Server, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not server.started:
        if time.monotonic() > deadline:
            raise TimeoutError("uvicorn did not start")
        time.sleep(0.02)
