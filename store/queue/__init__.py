"""Transports between the API and the workers. No torch.

`Transport` bundles four small interfaces: the writer's command queue, the query bus shared by
all workers, change events (so `?wait=` needs no polling) and worker heartbeats.
`MemoryTransport` joins API and writer inside one process (embedded mode).
"""

from store.queue.base import CommandQueue, Delivery, Events, QueryBus, Transport, WorkerRegistry
from store.queue.memory import MemoryTransport

__all__ = ["CommandQueue", "Delivery", "Events", "MemoryTransport", "QueryBus", "Transport", "WorkerRegistry"]
