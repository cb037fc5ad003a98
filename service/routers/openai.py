"""OpenAI-compatible routes: `POST /v1/completions`, `POST /v1/chat/completions`, `GET /v1/models`.

An app written for the OpenAI API points its client at this service (`base_url=.../v1`) and
queries the edited model. Answers carry the revision as an extra `revision` field and in the
`X-Model-Revision` header; `"stream": true` answers as server-sent events. Unknown parameters,
and OpenAI parameters factpatch does not implement (with anything but their neutral value), are
a 422 naming them.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from service.deps import JsonBodyDep, SettingsDep, query_quota, require_reader
from service.openai_protocol import ChatCompletionRequest, CompletionRequest
from service.openai_serving import Call, OpenAIService, stream_events
from service.routers.queries import SSE_DOC, STREAM_HEADERS, revision_headers
from service.schemas import PROBLEM_RESPONSES, parse_body, request_body_doc

router = APIRouter(prefix="/v1", tags=["openai"], dependencies=[Depends(require_reader)],
                   responses=PROBLEM_RESPONSES)


def get_openai_service(request: Request) -> OpenAIService:
    service: OpenAIService = request.app.state.openai_service
    return service


OpenAIServiceDep = Annotated[OpenAIService, Depends(get_openai_service)]


def completion_body(body: JsonBodyDep, settings: SettingsDep) -> CompletionRequest:
    return parse_body(CompletionRequest, body, settings.limits)


def chat_body(body: JsonBodyDep, settings: SettingsDep) -> ChatCompletionRequest:
    return parse_body(ChatCompletionRequest, body, settings.limits)


async def _respond(service: OpenAIService, call: Call, request: Request) -> Response:
    if call.job.stream:
        stream = await service.stream(call)
        return StreamingResponse(stream_events(call, stream), media_type="text/event-stream",
                                 headers=revision_headers(stream.revision, STREAM_HEADERS))
    answer = await service.answer(call, request)
    return JSONResponse(answer, headers=revision_headers(answer["revision"]))


@router.post("/completions", openapi_extra=request_body_doc(CompletionRequest), responses=SSE_DOC,
             dependencies=[Depends(query_quota)])
async def completions(
    body: Annotated[CompletionRequest, Depends(completion_body)], service: OpenAIServiceDep, request: Request
) -> Response:
    """OpenAI's text completion: continue `prompt` (one prompt per request)."""
    return await _respond(service, service.completion_call(body), request)


@router.post("/chat/completions", openapi_extra=request_body_doc(ChatCompletionRequest), responses=SSE_DOC,
             dependencies=[Depends(query_quota)])
async def chat_completions(
    body: Annotated[ChatCompletionRequest, Depends(chat_body)], service: OpenAIServiceDep, request: Request,
    settings: SettingsDep,
) -> Response:
    """OpenAI's chat completion: the assistant's next turn, with the model's chat template."""
    return await _respond(service, service.chat_call(body, settings.limits.max_new_tokens), request)


@router.get("/models")
def list_models(service: OpenAIServiceDep) -> JSONResponse:
    """The served model (OpenAI's list shape), with the head revision."""
    return JSONResponse(service.models())


@router.get("/models/{model_id:path}")
def get_model_card(model_id: str, service: OpenAIServiceDep) -> JSONResponse:
    """One model by id; 404 for any model not served here."""
    return JSONResponse(service.model_card(model_id))
