"""The OpenAI-compatible service: requests become generate jobs, answers OpenAI's documents.

Completions continue the prompt as written; chat completions render the messages with the
model's chat template (the worker does that) and answer the assistant's turn. Both go through
the same batched path as `/v1/generate`. Every answer carries `revision` (an extra field) and
the `X-Model-Revision` header; streams send OpenAI's chunk objects as server-sent events and end
with `data: [DONE]`.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Literal

from starlette.requests import Request

from contract.errors import NotFoundError, WorkerUnavailableError
from contract.protocol import ChatMessage, GenerateJob, JobResult, QueryChunk, new_id
from service.openai_protocol import (
    CHAT_UNSUPPORTED,
    COMPLETION_UNSUPPORTED,
    ChatCompletionRequest,
    CompletionRequest,
)
from service.openai_protocol import unsupported_values as unsupported
from service.problems import RequestInvalidError
from service.querying import QueryClient, QueryStream, sse
from store.log import EditLog

Kind = Literal["completion", "chat"]


@dataclass(frozen=True)
class Call:
    """One OpenAI request on its way: its job and what its answer documents share."""

    kind: Kind
    job: GenerateJob
    model: str
    created: int
    include_usage: bool

    @property
    def id(self) -> str:
        return ("chatcmpl-" if self.kind == "chat" else "cmpl-") + self.job.id.removeprefix("q_")

    def head(self, obj: str, revision: int | None) -> dict[str, Any]:
        return {"id": self.id, "object": obj, "created": self.created, "model": self.model, "revision": revision}


def usage(data: dict[str, Any]) -> dict[str, int]:
    prompt, completion = int(data.get("prompt_tokens", 0)), int(data.get("completion_tokens", 0))
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


class OpenAIService:
    """`/v1/completions`, `/v1/chat/completions` and `/v1/models`."""

    def __init__(self, *, client: QueryClient, log: EditLog) -> None:
        self.client, self._log = client, log

    # ---- models --------------------------------------------------------------------------------
    def served_model(self) -> str:
        lineage = self._log.lineage()
        if lineage is None:
            raise WorkerUnavailableError("no worker has started on this edit log yet")
        return lineage.base_model

    def models(self) -> dict[str, Any]:
        return {"object": "list", "data": [self.model_card(self.served_model())]}

    def model_card(self, model_id: str) -> dict[str, Any]:
        served = self.served_model()
        if model_id != served:
            raise NotFoundError(f"model {model_id!r} is not served here; GET /v1/models lists {served!r}",
                                field="model")
        created = int(time.mktime(time.strptime(self._log.get_revision(0).created_at[:19], "%Y-%m-%dT%H:%M:%S")))
        return {"id": served, "object": "model", "created": created, "owned_by": "factpatch",
                "revision": self._log.head().revision}

    # ---- requests -> jobs ----------------------------------------------------------------------
    def completion_call(self, body: CompletionRequest) -> Call:
        self._check(body, COMPLETION_UNSUPPORTED)
        job = self._job(body, prompt=body.text(), max_new_tokens=body.max_tokens or 16)
        return self._call("completion", job, body)

    def chat_call(self, body: ChatCompletionRequest, default_tokens: int) -> Call:
        self._check(body, CHAT_UNSUPPORTED)
        messages = [ChatMessage.model_validate(m.plain()) for m in body.messages]
        budget = body.max_completion_tokens or body.max_tokens or default_tokens
        return self._call("chat", self._job(body, messages=messages, max_new_tokens=budget), body)

    def _check(self, body: CompletionRequest | ChatCompletionRequest, allowed: dict[str, tuple[Any, ...]]) -> None:
        errors = unsupported(body, allowed)
        if errors:
            raise RequestInvalidError(errors, code="unsupported_parameter")
        self.model_card(body.model)

    def _job(self, body: CompletionRequest | ChatCompletionRequest, **fields: Any) -> GenerateJob:
        return GenerateJob(id=new_id("q"), temperature=body.temperature, top_p=body.top_p, seed=body.seed,
                           stop=body.stop or [], stream=body.stream, min_revision=body.min_revision,
                           deadline=self.client.deadline(), **fields)

    def _call(self, kind: Kind, job: GenerateJob, body: CompletionRequest | ChatCompletionRequest) -> Call:
        include = bool(body.stream_options and body.stream_options.include_usage)
        return Call(kind=kind, job=job, model=body.model, created=int(time.time()), include_usage=include)

    # ---- answers -------------------------------------------------------------------------------
    async def answer(self, call: Call, request: Request | None) -> dict[str, Any]:
        result = await self.client.ask(call.job, request)
        data = result.data
        if call.kind == "chat":
            choice = {"index": 0, "message": {"role": "assistant", "content": data["text"]}, "logprobs": None,
                      "finish_reason": data.get("finish_reason")}
            return {**call.head("chat.completion", result.revision), "choices": [choice], "usage": usage(data)}
        choice = {"index": 0, "text": data["text"], "logprobs": None, "finish_reason": data.get("finish_reason")}
        return {**call.head("text_completion", result.revision), "choices": [choice], "usage": usage(data)}

    async def stream(self, call: Call) -> QueryStream:
        return await self.client.stream(call.job)


async def stream_events(call: Call, stream: QueryStream) -> AsyncIterator[bytes]:
    """OpenAI's chunk objects as server-sent events, then `[DONE]`."""
    obj = "chat.completion.chunk" if call.kind == "chat" else "text_completion"
    first = True
    async for event in stream.events():
        if isinstance(event, QueryChunk):
            if event.text or first:
                yield sse({**call.head(obj, event.revision), "choices": [_delta(call, event.text, first)]})
            first = False
        elif not event.ok:
            yield sse({"error": _error(event)})
        else:
            yield sse({**call.head(obj, event.revision), "choices": [_last(call, event)]})
            if call.include_usage:
                yield sse({**call.head(obj, event.revision), "choices": [], "usage": usage(event.data)})
    yield sse("[DONE]")


def _delta(call: Call, text: str, first: bool) -> dict[str, Any]:
    if call.kind == "chat":
        delta = {"role": "assistant", "content": text} if first else {"content": text}
        return {"index": 0, "delta": delta, "logprobs": None, "finish_reason": None}
    return {"index": 0, "text": text, "logprobs": None, "finish_reason": None}


def _last(call: Call, result: JobResult) -> dict[str, Any]:
    reason = result.data.get("finish_reason")
    if call.kind == "chat":
        return {"index": 0, "delta": {}, "logprobs": None, "finish_reason": reason}
    return {"index": 0, "text": "", "logprobs": None, "finish_reason": reason}


def _error(result: JobResult) -> dict[str, Any]:
    problem = result.problem
    if problem is None:
        return {"message": "the worker failed", "type": "worker_error", "code": "worker_error"}
    return {"message": problem.detail or problem.title, "type": problem.code or "error", "code": problem.code,
            "status": problem.status}
