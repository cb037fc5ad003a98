"""HTTP schemas (the API's request and response bodies), separate from the queue's wire models.

Request bodies are validated by `parse_body` with the configured `LimitsConfig` in the
validation context, so length and count limits are ordinary field errors that name the field
(`edits[2].target`). Without a context the default limits apply.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, ValidationInfo
from pydantic_core import PydanticCustomError

from contract.config import LimitsConfig
from contract.protocol import CommandRecord, CommandStatus, EditSpec, RevisionKind, RevisionRecord, WorkerInfo
from service.problems import FieldError, RequestInvalidError, field_errors

Model = TypeVar("Model", bound=BaseModel)


# ---- limit-aware field types ---------------------------------------------------------------


def _limits(info: ValidationInfo) -> LimitsConfig:
    context = info.context if isinstance(info.context, dict) else {}
    limits = context.get("limits")
    return limits if isinstance(limits, LimitsConfig) else LimitsConfig()


def _text(value: str, limit: int) -> str:
    if not value.strip():
        raise PydanticCustomError("empty", "must not be empty or only whitespace")
    if len(value) > limit:
        raise PydanticCustomError("too_long", "at most {limit} characters (got {size})", {"limit": limit,
                                                                                        "size": len(value)})
    return value


def _count(value: list[Any], limit: int, what: str) -> list[Any]:
    if len(value) > limit:
        raise PydanticCustomError("too_many", "at most {limit} {what} (got {size})",
                                  {"limit": limit, "what": what, "size": len(value)})
    return value


def _prompt(value: str, info: ValidationInfo) -> str:
    return _text(value, _limits(info).max_prompt_chars)


def _target(value: str, info: ValidationInfo) -> str:
    return _text(value, _limits(info).max_target_chars)


def _subject(value: str | None, info: ValidationInfo) -> str | None:
    return None if value is None else _text(value, _limits(info).max_subject_chars)


def _probes(value: list[str], info: ValidationInfo) -> list[str]:
    return _count(value, _limits(info).max_probes, "prompts")


def _metadata(value: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
    size, limit = len(json.dumps(value, ensure_ascii=False).encode()), _limits(info).max_metadata_bytes
    if size > limit:
        raise PydanticCustomError("too_large", "at most {limit} bytes of JSON (got {size})",
                                  {"limit": limit, "size": size})
    return value


def _batch(value: list[Any], info: ValidationInfo) -> list[Any]:
    return _count(value, _limits(info).max_batch, "items")


def _candidates(value: list[Any], info: ValidationInfo) -> list[Any]:
    return _count(value, _limits(info).max_candidates, "candidates")


def _new_tokens(value: int, info: ValidationInfo) -> int:
    limit = _limits(info).max_new_tokens
    if value > limit:
        raise PydanticCustomError("too_large", "at most {limit}", {"limit": limit})
    return value


def _unique(value: list[str]) -> list[str]:
    if len(set(value)) != len(value):
        raise PydanticCustomError("duplicate", "must not repeat an id")
    return value


Prompt = Annotated[str, AfterValidator(_prompt)]
# torch takes seeds in [-2**63, 2**64); one outside failed the worker's whole query batch (a 500).
Seed = Annotated[int, Field(ge=-(2**63), le=2**64 - 1)]
Target = Annotated[str, AfterValidator(_target)]
Probes = Annotated[list[Prompt], AfterValidator(_probes)]


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


# ---- edits ---------------------------------------------------------------------------------


class EditCreate(_Request):
    """One fact correction, as submitted."""

    prompt: Prompt = Field(description="The prompt whose continuation should become `target`.")
    target: Target = Field(description="The new continuation.")
    subject: Annotated[str | None, AfterValidator(_subject)] = Field(None, description="The entity edited.")
    rephrases: Probes = Field(default_factory=list, description="Paraphrases of the prompt, for the report.")
    locality: Probes = Field(default_factory=list, description="Unrelated prompts that should not change.")
    metadata: Annotated[dict[str, Any], AfterValidator(_metadata)] = Field(default_factory=dict)
    editor: str | None = Field(None, description="When given, must name the active editor.")
    supersedes: str | None = Field(
        None, min_length=1, max_length=64,
        description="The id of an applied edit this one replaces (one revision reverts it and applies this). "
        "Without it, an edit replaces the applied edits of the same fact: same subject (given or inferred, "
        "case-insensitive) and same prompt once the subject is taken out.",
    )

    def spec(self) -> EditSpec:
        return EditSpec.model_validate(self.model_dump(exclude={"editor"}))

    def body(self) -> dict[str, Any]:
        """The edit as the log stores it (`supersedes` only when given)."""
        return self.spec().model_dump(exclude={"supersedes"} if self.supersedes is None else None)


class EditBatchCreate(_Request):
    """Several edits in one request; each gets its own id."""

    edits: Annotated[list[EditCreate], AfterValidator(_batch)] = Field(min_length=1)


class EditPublic(BaseModel):
    id: str
    status: CommandStatus
    revision: int | None
    request: dict[str, Any]
    report: dict[str, Any] | None
    error: dict[str, Any] | None
    created_at: str
    applied_at: str | None
    actor: str | None = Field(None, description="Name of the API key that sent it (`anonymous` without auth).")
    subject: str | None = Field(None, description="The subject it edits: the one it names, else the inferred one.")
    supersedes: str | None = Field(None, description="The applied edit this one replaced, once applied.")
    superseded_by: str | None = Field(None, description="While `superseded`: the edit that replaced this one.")

    @classmethod
    def from_record(cls, record: CommandRecord) -> EditPublic:
        return cls(**_command_fields(record), request=record.body, report=record.report, subject=record.subject,
                   supersedes=record.supersedes, superseded_by=record.superseded_by)


class EditBatchPublic(BaseModel):
    items: list[EditPublic]


class EditPage(BaseModel):
    items: list[EditPublic]
    next_cursor: str | None


class FactPage(BaseModel):
    """What the log holds about one subject: its edits, newest first, each with its status."""

    subject: str = Field(description="The subject asked for (matched case-insensitively, without a leading article).")
    items: list[EditPublic]
    next_cursor: str | None


# ---- queries -------------------------------------------------------------------------------


def _messages(value: list[Any], info: ValidationInfo) -> list[Any]:
    return _count(value, _limits(info).max_messages, "messages")


def _stops(value: str | list[str], info: ValidationInfo) -> list[str]:
    """`stop` as a list: one string or up to `max_stop`, each non-empty and at most a target long."""
    stops = [value] if isinstance(value, str) else value
    _count(stops, _limits(info).max_stop, "stop strings")
    limit = _limits(info).max_target_chars
    for stop in stops:
        if not stop or len(stop) > limit:
            raise PydanticCustomError("bad_stop", "every stop string has 1 to {limit} characters", {"limit": limit})
    return stops


class ChatMessageIn(_Request):
    """One turn of a conversation."""

    role: Literal["system", "user", "assistant"]
    content: Prompt


Messages = Annotated[list[ChatMessageIn], AfterValidator(_messages)]
Stops = Annotated[str | list[str], AfterValidator(_stops)]
NewTokens = Annotated[int, AfterValidator(_new_tokens)]


class GenerateRequest(_Request):
    """Exactly one of `prompt` (continued as written) and `messages` (the model's chat template)."""

    prompt: Prompt | None = Field(None, description="Text to continue.")
    messages: Messages | None = Field(
        None, min_length=1, description="A conversation, rendered with the model's chat template and its "
        "generation prompt; the answer is the assistant's next turn."
    )
    max_new_tokens: NewTokens = Field(16, ge=1)
    temperature: float = Field(0.0, ge=0.0, le=5.0, description="0 = greedy.")
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    seed: Seed | None = Field(None, description="Seed of sampled generation: any 64-bit integer.")
    stop: Stops = Field(default_factory=list, description="Stop at the first of these strings (not included).")
    stream: bool = Field(False, description="Answer as server-sent events; the first names the revision.")
    min_revision: int | None = Field(None, ge=0, description="Answer only from this revision or later.")
    base: bool = Field(False, description="Answer from the base model (revision 0): what it said before any edit.")


class GenerateResponse(BaseModel):
    text: str
    revision: int | None
    model: str | None = None
    finish_reason: Literal["stop", "length"] | None = None


class ScoreRequest(_Request):
    """Exactly one of `prompt` and `messages`; each candidate is scored after it and a leading space."""

    prompt: Prompt | None = None
    messages: Messages | None = Field(None, min_length=1)
    candidates: Annotated[list[Target], AfterValidator(_candidates)] = Field(min_length=1)
    min_revision: int | None = Field(None, ge=0)


class CandidateScore(BaseModel):
    candidate: str
    logprob: float
    tokens: int


class ScoreResponse(BaseModel):
    scores: list[CandidateScore]
    revision: int | None


# ---- rollbacks and replay ------------------------------------------------------------------


class RollbackCreate(_Request):
    """Exactly one of `to_revision` and `edit_ids`."""

    to_revision: int | None = Field(None, ge=0, description="Make the model what it was at this revision.")
    edit_ids: Annotated[list[str], AfterValidator(_batch), AfterValidator(_unique)] | None = Field(
        None, min_length=1, description="Revert these edits (the history without them)."
    )


class ReplayCreate(_Request):
    """No options yet; an empty body is accepted."""


class RollbackPublic(BaseModel):
    id: str
    status: CommandStatus
    revision: int | None
    request: dict[str, Any]
    error: dict[str, Any] | None
    created_at: str
    applied_at: str | None
    actor: str | None = Field(None, description="Name of the API key that sent it.")

    @classmethod
    def from_record(cls, record: CommandRecord) -> RollbackPublic:
        return cls(**_command_fields(record), request=record.body)


class ReplayPublic(BaseModel):
    id: str
    status: CommandStatus
    revision: int | None
    result: dict[str, Any] | None = Field(description='`{"checked": n, "mismatches": [...]}` once done.')
    error: dict[str, Any] | None
    created_at: str
    applied_at: str | None
    actor: str | None = Field(None, description="Name of the API key that sent it.")

    @classmethod
    def from_record(cls, record: CommandRecord) -> ReplayPublic:
        return cls(**_command_fields(record), result=record.report)


def _command_fields(record: CommandRecord) -> dict[str, Any]:
    error = record.error.model_dump(exclude_none=True) if record.error is not None else None
    return {"id": record.id, "status": record.status, "revision": record.revision, "error": error,
            "created_at": record.created_at, "applied_at": record.applied_at, "actor": record.actor}


# ---- state and operations ------------------------------------------------------------------


class RevisionPublic(BaseModel):
    revision: int
    kind: RevisionKind
    edit_ids: list[str]
    removed_ids: list[str]
    base_revision: int | None
    artifacts: list[str]
    checksum: str
    created_at: str
    actor: str | None

    @classmethod
    def from_record(cls, record: RevisionRecord) -> RevisionPublic:
        return cls.model_validate(record.model_dump(include=set(cls.model_fields)))


class RevisionPage(BaseModel):
    items: list[RevisionPublic]
    next_cursor: str | None


class WorkerPublic(BaseModel):
    id: str
    role: Literal["writer", "replica", "standby"]
    revision: int
    device: str
    heartbeat_at: str

    @classmethod
    def from_info(cls, info: WorkerInfo) -> WorkerPublic:
        return cls.model_validate(info.model_dump(include=set(cls.model_fields)))


class ModelPublic(BaseModel):
    base_model: str
    editor: str
    revision: int
    checksum: str
    edits_applied: int
    workers: list[WorkerPublic]


class HealthPublic(BaseModel):
    status: Literal["ok"] = "ok"


class ReadyPublic(BaseModel):
    status: Literal["ready"] = "ready"
    writer: str


class ProblemPublic(BaseModel):
    """RFC 9457 problem details, as every error answer carries them."""

    model_config = ConfigDict(extra="allow")

    type: str
    title: str
    status: int
    detail: str
    instance: str
    code: str
    request_id: str


_PROBLEM_CONTENT = {"application/problem+json": {"schema": {"$ref": "#/components/schemas/ProblemPublic"}}}
PROBLEM_RESPONSES: dict[int | str, dict[str, Any]] = {
    "4XX": {"model": ProblemPublic, "description": "Problem details (RFC 9457)", "content": _PROBLEM_CONTENT},
    "5XX": {"model": ProblemPublic, "description": "Problem details (RFC 9457)", "content": _PROBLEM_CONTENT},
}


# ---- parsing -------------------------------------------------------------------------------


def parse_body(model: type[Model], data: Any, limits: LimitsConfig) -> Model:
    """Validate a parsed JSON body against `model` and the limits; a 422 naming the fields otherwise."""
    try:
        return model.model_validate(data, context={"limits": limits})
    except ValidationError as exc:
        raise RequestInvalidError(field_errors(exc.errors(), strip_source=False)) from None


def parse_edits(data: Any, limits: LimitsConfig) -> tuple[list[EditCreate], bool]:
    """One edit or `{"edits": [...]}`: the edits and whether the body was a batch."""
    if isinstance(data, dict) and "edits" in data:
        return parse_body(EditBatchCreate, data, limits).edits, True
    return [parse_body(EditCreate, data, limits)], False


def check_prompt_or_messages(body: GenerateRequest | ScoreRequest) -> None:
    """Exactly one of `prompt` and `messages`; a 422 naming both otherwise."""
    if (body.prompt is None) == (body.messages is None):
        message = "give exactly one of prompt and messages"
        kind = "missing" if body.prompt is None else "conflict"
        raise RequestInvalidError([FieldError(field="prompt", message=message, type=kind),
                                   FieldError(field="messages", message=message, type=kind)])


def parse_rollback(data: Any, limits: LimitsConfig) -> RollbackCreate:
    body = parse_body(RollbackCreate, data, limits)
    if (body.to_revision is None) == (body.edit_ids is None):
        message = "give exactly one of to_revision and edit_ids"
        kind = "missing" if body.to_revision is None else "conflict"
        raise RequestInvalidError([FieldError(field="to_revision", message=message, type=kind),
                                   FieldError(field="edit_ids", message=message, type=kind)])
    return body


def request_body_doc(*models: type[BaseModel], required: bool = True) -> dict[str, Any]:
    """`openapi_extra` documenting a JSON body that is parsed by hand (self-contained schema)."""
    schemas = [_inline(model.model_json_schema()) for model in models]
    schema = schemas[0] if len(schemas) == 1 else {"anyOf": schemas}
    return {"requestBody": {"required": required, "content": {"application/json": {"schema": schema}}}}


def _inline(schema: Any, defs: dict[str, Any] | None = None) -> Any:
    """Replace `#/$defs/X` references by their definitions (our schemas are not recursive)."""
    if isinstance(schema, dict):
        defs = {**(defs or {}), **schema.get("$defs", {})}
        ref = schema.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            return _inline(defs[ref.removeprefix("#/$defs/")], defs)
        return {k: _inline(v, defs) for k, v in schema.items() if k != "$defs"}
    if isinstance(schema, list):
        return [_inline(item, defs) for item in schema]
    return schema
