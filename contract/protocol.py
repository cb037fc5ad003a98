"""Versioned wire and record models shared by the service and the workers. No torch here.

Queue messages (`Command`, `QueryJob`, `JobResult`) carry `schema_version`; a consumer that
reads an unknown version answers with a problem instead of guessing. Records (`CommandRecord`,
`RevisionRecord`) are what the edit log stores and returns.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

SCHEMA_VERSION = 1

CommandKind = Literal["edit", "rollback", "replay"]
CommandStatus = Literal["queued", "applying", "applied", "failed", "rejected", "rolled_back", "superseded"]
RevisionKind = Literal["base", "edit", "rollback", "revert", "replay", "supersede"]
FINAL_STATUSES: frozenset[str] = frozenset({"applied", "failed", "rejected", "rolled_back", "superseded"})
PENDING_STATUSES: frozenset[str] = frozenset({"queued", "applying"})

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def new_id(prefix: str) -> str:
    """A sortable unique id: `<prefix>_` + 26 Crockford base32 chars (48-bit ms time + 80 random bits)."""
    value = (int(time.time() * 1000) << 80) | int.from_bytes(os.urandom(10), "big")
    chars = [_CROCKFORD[(value >> (5 * i)) & 31] for i in range(26)]
    return f"{prefix}_{''.join(reversed(chars))}"


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def canonical_hash(payload: Any) -> str:
    """sha256 of the canonical JSON form (sorted keys, no spaces) of a JSON-able value."""
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


class EditSpec(BaseModel):
    """One fact correction: the field names map one to one onto the field's vocabulary."""

    model_config = ConfigDict(extra="forbid")

    prompt: str
    target: str
    subject: str | None = None
    rephrases: list[str] = Field(default_factory=list)
    locality: list[str] = Field(default_factory=list)
    metadata: dict[str, Any] = Field(default_factory=dict)
    supersedes: str | None = None  # an applied edit's id this one replaces (else: same fact, contract.subjects)


class Problem(BaseModel):
    """RFC 9457 problem details; extra members are allowed and kept."""

    model_config = ConfigDict(extra="allow")

    type: str = "about:blank"
    title: str
    status: int
    detail: str | None = None
    code: str | None = None


class ProbeScore(BaseModel):
    prompt: str
    logprob_before: float
    logprob_after: float


class LocalityProbe(BaseModel):
    prompt: str
    before: str
    after: str
    changed: bool


class EditReport(BaseModel):
    """What one edit did, measured by the writer around apply."""

    target_logprob_before: float
    target_logprob_after: float
    rephrases: list[ProbeScore] = Field(default_factory=list)
    locality: list[LocalityProbe] = Field(default_factory=list)
    neighbours: list[LocalityProbe] = Field(
        default_factory=list, description="The guard's derived neighbours of this edit (other subjects, same prompt)."
    )
    standing_checked: int = Field(0, description="Standing facts the guard checked the batch on (all still right).")


class CommandRecord(BaseModel):
    """An accepted request as the log holds it: an edit, a rollback or a replay."""

    id: str
    seq: int
    kind: CommandKind
    status: CommandStatus
    body: dict[str, Any]
    revision: int | None = None
    report: dict[str, Any] | None = None
    error: Problem | None = None
    actor: str | None = None
    idempotency_key: str | None = None
    created_at: str
    applied_at: str | None = None
    subject: str | None = None  # an edit's subject: the one it names, else inferred from its prompt
    supersedes: str | None = None  # the edit this one replaced (set when it was applied)
    superseded_by: str | None = None  # while status is `superseded`: the edit that replaced this one


class NewCommand(BaseModel):
    """A request about to be accepted (the log assigns `seq`, status and times)."""

    id: str
    kind: CommandKind
    body: dict[str, Any]
    actor: str | None = None


class CommandOutcome(BaseModel):
    """The writer's verdict on one command, committed together with its revision (if any)."""

    id: str
    status: CommandStatus
    revision: int | None = None
    report: dict[str, Any] | None = None
    error: Problem | None = None
    supersedes: str | None = None  # applied: the edit it replaced
    superseded_by: str | None = None  # superseded: the edit that replaced it


class NewRevision(BaseModel):
    """A revision about to be appended; the log assigns its number (head + 1)."""

    kind: RevisionKind
    base_revision: int | None
    edit_ids: list[str] = Field(default_factory=list)
    removed_ids: list[str] = Field(default_factory=list)
    artifacts: list[str] = Field(default_factory=list)
    checksum: str
    command_id: str | None = None
    actor: str | None = None
    editor: str
    editor_version: str


class RevisionRecord(NewRevision):
    """One state of the model, as the log holds it: a NewRevision with its number and time.
    state(r) = apply(artifacts, onto state(base_revision))."""

    revision: int
    created_at: str


class Lineage(BaseModel):
    """What the log was started with; a worker refuses a log of another model or editor."""

    base_model: str
    editor: str
    base_checksum: str
    created_at: str


# ---- queue messages -------------------------------------------------------------------------


class Command(BaseModel):
    """A unit of writer work. The body lives in the log; the message carries only the id."""

    schema_version: int = SCHEMA_VERSION
    kind: CommandKind
    id: str


class ChatMessage(BaseModel):
    """One turn of a conversation; the worker renders the list with the model's chat template."""

    role: Literal["system", "user", "assistant"]
    content: str


class GenerateJob(BaseModel):
    """Continue `prompt`, or answer `messages` (chat template + generation prompt): exactly one is set."""

    schema_version: int = SCHEMA_VERSION
    kind: Literal["generate"] = "generate"
    id: str
    prompt: str | None = None
    messages: list[ChatMessage] | None = None
    max_new_tokens: int = 16
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int | None = None
    stop: list[str] = Field(default_factory=list)
    stream: bool = False  # the worker also sends `QueryChunk`s as text becomes final
    base: bool = False  # answer from the base model (revision 0), not the head
    min_revision: int | None = None
    deadline: float | None = None  # unix seconds; a worker drops the job, uncomputed, after it


class ScoreJob(BaseModel):
    schema_version: int = SCHEMA_VERSION
    kind: Literal["score"] = "score"
    id: str
    prompt: str | None = None
    messages: list[ChatMessage] | None = None
    candidates: list[str]
    min_revision: int | None = None
    deadline: float | None = None


QueryJob = Annotated[GenerateJob | ScoreJob, Field(discriminator="kind")]


class QueryChunk(BaseModel):
    """Part of a streamed answer: text that is final, at the revision the whole answer is computed at.

    The first chunk of a stream is sent when its batch starts (empty text); the `JobResult` ends it."""

    schema_version: int = SCHEMA_VERSION
    kind: Literal["chunk"] = "chunk"
    id: str
    text: str
    revision: int
    worker_id: str | None = None


class JobResult(BaseModel):
    """A worker's answer to a query (or a command, where a transport needs one)."""

    schema_version: int = SCHEMA_VERSION
    id: str
    ok: bool
    revision: int | None = None
    data: dict[str, Any] = Field(default_factory=dict)
    problem: Problem | None = None
    worker_id: str | None = None


class WorkerInfo(BaseModel):
    """A worker's heartbeat, as `/v1/model` lists it."""

    id: str
    role: Literal["writer", "replica", "standby"]
    revision: int
    device: str
    heartbeat_at: str
    checksum: str | None = None
    model: str | None = None
    editor: str | None = None
    metrics: str | None = None  # the worker's Prometheus exposition text (the API's /metrics merges it)
