"""The service objects behind the routes, kept on `app.state`: edits, queries and state.

Routes parse and call one method here. Methods that block (the log, the transport) run in
threads, so the event loop never waits: `async` methods offload explicitly, and plain methods are
called from plain `def` routes, which FastAPI runs in its threadpool. Long blocking waits (a
query's round trip, a `?wait=` step) use their own thread limiter so they cannot starve the
short log calls of other requests.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import anyio.to_thread
from anyio import CapacityLimiter
from fastapi import Request, Response
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from contract.config import Settings
from contract.errors import (
    EditNotFoundError,
    NotFoundError,
    QueueFullError,
    RevisionNotFoundError,
    RollbackNotFoundError,
    UnknownEditorError,
    WorkerUnavailableError,
)
from contract.protocol import (
    FINAL_STATUSES,
    Command,
    CommandKind,
    CommandRecord,
    CommandStatus,
    GenerateJob,
    NewCommand,
    Problem,
    QueryChunk,
    ScoreJob,
    canonical_hash,
    new_id,
)
from service.metrics import HttpMetrics, StateCollector
from service.problems import FieldError, RequestInvalidError
from service.querying import QueryClient, QueryStream, sse
from service.schemas import (
    EditBatchPublic,
    EditCreate,
    EditPage,
    EditPublic,
    FactPage,
    GenerateRequest,
    GenerateResponse,
    ModelPublic,
    ReplayPublic,
    RevisionPage,
    RevisionPublic,
    RollbackCreate,
    RollbackPublic,
    ScoreRequest,
    ScoreResponse,
    WorkerPublic,
    check_prompt_or_messages,
)
from store.log import EditLog
from store.queue import Transport

logger = logging.getLogger(__name__)

LONG_WAIT_THREADS = 128
Doc = TypeVar("Doc", bound=BaseModel)


@dataclass(frozen=True)
class Accepted(Generic[Doc]):
    """The answer to a POST that creates commands: 202 while pending, 200 when settled or repeated."""

    body: Doc
    status_code: int
    location: str | None

    def respond(self, response: Response) -> Doc:
        response.status_code = self.status_code
        if self.location is not None:
            response.headers["Location"] = self.location
        return self.body


@dataclass(frozen=True)
class Submission:
    records: list[CommandRecord]
    created: bool

    @property
    def status_code(self) -> int:
        settled = all(r.status in FINAL_STATUSES for r in self.records)
        return 200 if settled or not self.created else 202


class Waiter:
    """Waits for commands to reach a final status, woken by transport events instead of polling."""

    def __init__(self, *, log: EditLog, transport: Transport, limiter: CapacityLimiter) -> None:
        self._log, self._events, self._limiter = log, transport.events, limiter

    def _snapshot(self, ids: Sequence[str]) -> tuple[int, list[CommandRecord]]:
        seen = self._events.generation()
        return seen, self._log.get_commands(ids)

    async def until_final(self, ids: Sequence[str], timeout: float) -> list[CommandRecord]:
        deadline = time.monotonic() + timeout
        while True:
            seen, records = await run_in_threadpool(self._snapshot, ids)
            left = deadline - time.monotonic()
            if left <= 0 or all(r.status in FINAL_STATUSES for r in records):
                return records
            await anyio.to_thread.run_sync(self._events.wait, seen, min(left, 1.0), limiter=self._limiter)


class EditService:
    """Writer commands: edits, rollbacks and replays. Durable in the log before they are queued."""

    def __init__(
        self, *, log: EditLog, transport: Transport, settings: Settings, limiter: CapacityLimiter
    ) -> None:
        self._log, self._transport, self._settings = log, transport, settings
        self._waiter = Waiter(log=log, transport=transport, limiter=limiter)

    # -- submitting -------------------------------------------------------------------------
    async def submit_edits(
        self, *, edits: Sequence[EditCreate], batch: bool, body: Any, idempotency_key: str | None,
        actor: str | None, wait: float | None,
    ) -> Accepted[EditPublic] | Accepted[EditBatchPublic]:
        """Accept edits. A batch answers `{"items": [...]}` without `Location` (there are several)."""
        await run_in_threadpool(self._check_editor, edits)
        await run_in_threadpool(self._check_supersedes, edits, batch)
        commands = [
            NewCommand(id=new_id("ed"), kind="edit", body=e.body(), actor=actor) for e in edits
        ]
        done = await self._submit(commands, body=body, idempotency_key=idempotency_key, wait=wait)
        docs = [EditPublic.from_record(r) for r in done.records]
        if batch:
            return Accepted(EditBatchPublic(items=docs), done.status_code, None)
        return Accepted(docs[0], done.status_code, f"/v1/edits/{docs[0].id}")

    async def submit_rollback(
        self, *, rollback: RollbackCreate, body: Any, idempotency_key: str | None, actor: str | None,
        wait: float | None,
    ) -> Accepted[RollbackPublic]:
        await run_in_threadpool(self._check_rollback, rollback)
        command = NewCommand(id=new_id("rb"), kind="rollback", body=rollback.model_dump(exclude_none=True),
                             actor=actor)
        done = await self._submit([command], body=body, idempotency_key=idempotency_key, wait=wait)
        doc = RollbackPublic.from_record(done.records[0])
        logger.warning("rollback %s %s by %s: %s", doc.id, doc.status, actor or "anonymous", doc.request)
        return Accepted(doc, done.status_code, f"/v1/rollbacks/{doc.id}")

    async def submit_replay(
        self, *, body: Any, idempotency_key: str | None, actor: str | None, wait: float | None
    ) -> Accepted[ReplayPublic]:
        command = NewCommand(id=new_id("rp"), kind="replay", body={}, actor=actor)
        body = body if body is not None else {}
        done = await self._submit([command], body=body, idempotency_key=idempotency_key, wait=wait)
        doc = ReplayPublic.from_record(done.records[0])
        logger.warning("replay %s %s by %s", doc.id, doc.status, actor or "anonymous")
        return Accepted(doc, done.status_code, f"/v1/replay/{doc.id}")

    async def _submit(
        self, commands: list[NewCommand], *, body: Any, idempotency_key: str | None, wait: float | None
    ) -> Submission:
        records, created = await run_in_threadpool(self._accept, commands, body, idempotency_key)
        if wait:
            records = await self._waiter.until_final([r.id for r in records], wait)
        return Submission(records=records, created=created)

    def _accept(
        self, commands: list[NewCommand], body: Any, idempotency_key: str | None
    ) -> tuple[list[CommandRecord], bool]:
        """Bound the queue, write to the log (the durability point), then queue what is new.

        The bound is checked before the write, so it is soft under concurrent POSTs."""
        pending, bound = self._log.count_pending(), self._settings.limits.max_queue
        if pending + len(commands) > bound:
            message = f"{pending} requests are waiting (at most {bound}); retry later"
            raise QueueFullError(message, pending=pending)
        records, created = self._log.accept(
            commands, idempotency_key=idempotency_key, body_hash=canonical_hash(body)
        )
        if created:
            self._enqueue(records)
        return records, created

    def _enqueue(self, records: Sequence[CommandRecord]) -> None:
        """Queue what the log accepted. A failure is logged, not raised: the request is durable and
        the writer re-enqueues pending commands from the log when it starts."""
        for record in records:
            try:
                self._transport.commands.put(Command(kind=record.kind, id=record.id))
            except Exception:
                logger.exception("could not queue %s %s; the writer will pick it up from the log",
                                 record.kind, record.id)

    # -- checks -----------------------------------------------------------------------------
    def _active_editor(self) -> str | None:
        lineage = self._log.lineage()
        return lineage.editor if lineage is not None else self._settings.editor

    def _check_supersedes(self, edits: Sequence[EditCreate], batch: bool) -> None:
        """An edit's `supersedes` must name an edit (whether it is still applied, the writer decides)."""
        named = [(i, e.supersedes) for i, e in enumerate(edits) if e.supersedes is not None]
        if not named:
            return
        kinds = {r.id: r.kind for r in self._log.get_commands([n for _, n in named])}
        errors = [
            FieldError(field=f"edits[{i}].supersedes" if batch else "supersedes",
                       message=f"no edit with id {edit_id}", type="edit_not_found")
            for i, edit_id in named if kinds.get(edit_id) != "edit"
        ]
        if errors:
            raise RequestInvalidError(errors, code="edit_not_found")

    def _check_editor(self, edits: Sequence[EditCreate]) -> None:
        """An edit may name its editor; it must then be the active one (when one is known)."""
        asked = {e.editor for e in edits if e.editor is not None}
        active = self._active_editor() if asked else None
        wrong = sorted(asked - {active}) if active is not None else []
        if wrong:
            message = f"editor {wrong[0]!r} is not active here; the active editor is {active!r}"
            raise UnknownEditorError(message, field="editor", editor=wrong[0], active_editor=active)

    def _check_rollback(self, rollback: RollbackCreate) -> None:
        if rollback.to_revision is not None:
            self._check_revision(rollback.to_revision)
        if rollback.edit_ids is not None:
            self._check_edit_ids(rollback.edit_ids)

    def _check_revision(self, revision: int) -> None:
        try:
            head = self._log.head().revision
        except RevisionNotFoundError:
            head = None
        if head is None or revision > head:
            message = f"revision {revision} does not exist yet (head is {head})"
            raise RequestInvalidError([FieldError(field="to_revision", message=message, type="beyond_head")])

    def _check_edit_ids(self, edit_ids: Sequence[str]) -> None:
        kinds = {r.id: r.kind for r in self._log.get_commands(edit_ids)}
        errors = [
            FieldError(field=f"edit_ids[{i}]", message=f"no edit with id {edit_id}", type="edit_not_found")
            for i, edit_id in enumerate(edit_ids)
            if kinds.get(edit_id) != "edit"
        ]
        if errors:
            raise RequestInvalidError(errors, code="edit_not_found")

    # -- reading ----------------------------------------------------------------------------
    def _command(self, command_id: str, kind: CommandKind, missing: type[NotFoundError]) -> CommandRecord:
        """The command `command_id` when it is of `kind`; `missing` (a 404) otherwise."""
        try:
            record = self._log.get_command(command_id)
        except NotFoundError:
            record = None
        if record is None or record.kind != kind:
            raise missing(f"no {kind} with id {command_id}", **{f"{kind}_id": command_id})
        return record

    def get_edit(self, edit_id: str) -> EditPublic:
        return EditPublic.from_record(self._command(edit_id, "edit", EditNotFoundError))

    def list_edits(self, *, status: CommandStatus | None, limit: int, cursor: str | None) -> EditPage:
        start = int(cursor) if cursor is not None else None
        records, after = self._log.list_commands(kind="edit", status=status, limit=limit, cursor=start)
        return EditPage(items=[EditPublic.from_record(r) for r in records],
                        next_cursor=str(after) if after is not None else None)

    def list_facts(
        self, *, subject: str, status: CommandStatus | None, limit: int, cursor: str | None
    ) -> FactPage:
        """A subject's edits, newest first (the subject each edit names, else the one inferred)."""
        start = int(cursor) if cursor is not None else None
        records, after = self._log.list_subject_edits(subject, status=status, limit=limit, cursor=start)
        return FactPage(subject=subject, items=[EditPublic.from_record(r) for r in records],
                        next_cursor=str(after) if after is not None else None)

    def get_rollback(self, rollback_id: str) -> RollbackPublic:
        return RollbackPublic.from_record(self._command(rollback_id, "rollback", RollbackNotFoundError))

    def get_replay(self, replay_id: str) -> ReplayPublic:
        return ReplayPublic.from_record(self._command(replay_id, "replay", NotFoundError))


class QueryService:
    """Generation and scoring (`/v1/generate`, `/v1/score`), answered by any worker over the query bus."""

    def __init__(self, *, transport: Transport, settings: Settings, limiter: CapacityLimiter) -> None:
        self.client = QueryClient(bus=transport.queries, timeout=settings.query_timeout, limiter=limiter)

    def generate_job(self, body: GenerateRequest) -> GenerateJob:
        check_prompt_or_messages(body)
        return GenerateJob(id=new_id("q"), deadline=self.client.deadline(), **body.model_dump(exclude_none=True))

    async def generate(self, body: GenerateRequest, request: Request | None = None) -> GenerateResponse:
        result = await self.client.ask(self.generate_job(body), request)
        data = result.data
        return GenerateResponse(text=data["text"], revision=result.revision, model=data.get("model"),
                                finish_reason=data.get("finish_reason"))

    async def generate_stream(self, body: GenerateRequest) -> QueryStream:
        """A streamed `/v1/generate`: the worker's chunks, then its result (see `generate_events`)."""
        return await self.client.stream(self.generate_job(body))

    async def score(self, body: ScoreRequest, request: Request | None = None) -> ScoreResponse:
        check_prompt_or_messages(body)
        job = ScoreJob(id=new_id("q"), deadline=self.client.deadline(), **body.model_dump(exclude_none=True))
        result = await self.client.ask(job, request)
        return ScoreResponse.model_validate({"scores": result.data["scores"], "revision": result.revision})


async def generate_events(stream: QueryStream) -> AsyncIterator[bytes]:
    """`/v1/generate` as server-sent events: `{"text", "revision"}` per piece of final text (the first
    one empty, as soon as the batch starts), then `{"text": "", "revision", "model", "finish_reason"}`,
    then `[DONE]`. A failure after the first event is an `event: error` with the problem document."""
    async for event in stream.events():
        if isinstance(event, QueryChunk):
            yield sse({"text": event.text, "revision": event.revision})
        elif not event.ok:
            problem = event.problem or Problem(title="Worker error", status=502)
            yield sse(problem.model_dump(exclude_none=True), event="error")
        else:
            yield sse({"text": "", "revision": event.revision, "model": event.data.get("model"),
                       "finish_reason": event.data.get("finish_reason")})
    yield sse("[DONE]")


class StateService:
    """The model's state, the revision log, readiness and metrics."""

    def __init__(self, *, log: EditLog, transport: Transport, metrics: HttpMetrics) -> None:
        self._log, self._transport, self._metrics = log, transport, metrics

    def model(self) -> ModelPublic:
        lineage = self._log.lineage()
        if lineage is None:
            raise WorkerUnavailableError("no worker has started on this edit log yet")
        head = self._log.head()
        return ModelPublic(
            base_model=lineage.base_model, editor=lineage.editor, revision=head.revision,
            checksum=head.checksum, edits_applied=self._log.count_commands(kind="edit", status="applied"),
            workers=[WorkerPublic.from_info(w) for w in self._transport.registry.workers()],
        )

    def list_revisions(self, *, limit: int, cursor: str | None) -> RevisionPage:
        start = int(cursor) if cursor is not None else None
        records, after = self._log.list_revisions(limit=limit, cursor=start)
        return RevisionPage(items=[RevisionPublic.from_record(r) for r in records],
                            next_cursor=str(after) if after is not None else None)

    def get_revision(self, revision: int) -> RevisionPublic:
        return RevisionPublic.from_record(self._log.get_revision(revision))

    def writer(self) -> str:
        """The id of the live writer, when the queue and the log answer; 503 otherwise."""
        try:
            reachable = self._transport.ping()
            self._log.head()
        except RevisionNotFoundError:
            raise WorkerUnavailableError("the edit log has no revision yet (no writer has started)") from None
        except Exception as exc:
            logger.warning("readiness check failed: %s", type(exc).__name__)
            reachable = False
        if not reachable:
            raise WorkerUnavailableError("the queue or the edit log is not reachable")
        writers = [w.id for w in self._transport.registry.workers() if w.role == "writer"]
        if not writers:
            raise WorkerUnavailableError("no writer heartbeat: no worker holds the model")
        return writers[0]

    def metrics_text(self) -> bytes:
        return self._metrics.render()

    def collector(self) -> StateCollector:
        """The scrape-time gauges and the workers' own figures, for the metrics registry."""
        return StateCollector(
            pending=self._log.count_pending, head=self.head_revision,
            edits_by_status=lambda status: self._log.count_commands(kind="edit", status=status),  # type: ignore[arg-type]
            workers=self._transport.registry.workers,
        )

    def head_revision(self) -> int | None:
        try:
            return self._log.head().revision
        except RevisionNotFoundError:
            return None
