"""Every Redis key, channel and group name factpatch uses, in one place. No redis import here.

With the default prefix `fp`:

| key | type | what |
|---|---|---|
| `fp:commands` | stream | writer commands (`data` = `Command` JSON); group `writers` |
| `fp:queries` | stream | queries (`data` = `QueryJob` JSON, `deadline` unix ms); group `workers`, NOACK |
| `fp:reply:<query id>` | list | one query's `QueryChunk`s then its `JobResult` (worker RPUSH, API BLPOP; expires) |
| `fp:cancel:<query id>` | string, PX TTL | its caller has gone: workers drop the query or stop decoding it |
| `fp:events` | pub/sub channel | "something changed": the new generation number |
| `fp:generation` | string (counter) | generation of the change events (INCR before every PUBLISH) |
| `fp:worker:<worker id>` | string, TTL | a worker's heartbeat (`WorkerInfo` JSON), lives three periods |
| `fp:workers` | set | ids of workers that heartbeat (entries whose key expired are pruned on read) |
| `fp:writer` | string, PX TTL | the writer lease: the id of the worker allowed to write |
| `fp:ratelimit:<kind>:<actor>` | string, PX TTL | a key's rate-limit bucket (`edits` or `queries`): GCRA time |
"""

from __future__ import annotations

from dataclasses import dataclass

COMMANDS_GROUP = "writers"
QUERIES_GROUP = "workers"


@dataclass(frozen=True)
class Keys:
    prefix: str = "fp"

    @property
    def commands(self) -> str:
        return f"{self.prefix}:commands"

    @property
    def queries(self) -> str:
        return f"{self.prefix}:queries"

    def reply(self, query_id: str) -> str:
        return f"{self.prefix}:reply:{query_id}"

    def cancelled(self, query_id: str) -> str:
        return f"{self.prefix}:cancel:{query_id}"

    @property
    def events(self) -> str:
        return f"{self.prefix}:events"

    @property
    def generation(self) -> str:
        return f"{self.prefix}:generation"

    def worker(self, worker_id: str) -> str:
        return f"{self.prefix}:worker:{worker_id}"

    @property
    def workers(self) -> str:
        return f"{self.prefix}:workers"

    @property
    def writer_lease(self) -> str:
        return f"{self.prefix}:writer"

    def ratelimit(self, kind: str, actor: str) -> str:
        return f"{self.prefix}:ratelimit:{kind}:{actor}"
