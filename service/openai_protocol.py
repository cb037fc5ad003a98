"""Request bodies of the OpenAI-compatible routes (`/v1/completions`, `/v1/chat/completions`).

The field names and defaults are OpenAI's. Unknown fields are refused (422 naming them); fields
OpenAI defines that factpatch does not implement are accepted only with their neutral value
(`unsupported_values`), so a client never gets a silently different answer. Extra fields of
ours: `min_revision` (answer only from that revision on).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from pydantic_core import PydanticCustomError

from service.problems import FieldError
from service.schemas import NewTokens, Prompt, Seed, Stops, _messages

# field -> the values it may have (OpenAI's neutral ones); anything else is a 422 naming the field
COMMON_UNSUPPORTED: dict[str, tuple[Any, ...]] = {
    "n": (None, 1), "presence_penalty": (None, 0, 0.0), "frequency_penalty": (None, 0, 0.0),
    "logit_bias": (None, {}),
}
COMPLETION_UNSUPPORTED = {**COMMON_UNSUPPORTED, "echo": (None, False), "logprobs": (None,), "best_of": (None, 1),
                          "suffix": (None, "")}
CHAT_UNSUPPORTED = {**COMMON_UNSUPPORTED, "logprobs": (None, False), "top_logprobs": (None,),
                    "tools": (None, []), "tool_choice": (None, "none"), "parallel_tool_calls": (None,),
                    "response_format": (None, {"type": "text"}), "functions": (None, []), "function_call": (None,),
                    "store": (None, False), "modalities": (None, ["text"]), "audio": (None,),
                    "prediction": (None,), "reasoning_effort": (None,)}


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    include_usage: bool = False


class _OpenAIRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str = Field(description="The served model, as `GET /v1/models` lists it.")
    temperature: float = Field(1.0, ge=0.0, le=2.0, description="0 = greedy.")
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    seed: Seed | None = None
    stop: Stops | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    user: str | None = Field(None, max_length=256, description="Accepted and not used (OpenAI: end-user id).")
    min_revision: int | None = Field(None, ge=0, description="factpatch: answer only from this revision on.")
    n: int | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    logit_bias: dict[str, float] | None = None


def _one_prompt(value: str | list[str]) -> str | list[str]:
    if isinstance(value, list) and len(value) != 1:
        raise PydanticCustomError("unsupported", "send one prompt per request (a string or a list of one)")
    return value


class CompletionRequest(_OpenAIRequest):
    prompt: Annotated[Prompt | list[Prompt], AfterValidator(_one_prompt)]
    max_tokens: NewTokens | None = Field(16, ge=1)
    echo: bool | None = None
    logprobs: int | None = None
    best_of: int | None = None
    suffix: str | None = None

    def text(self) -> str:
        return self.prompt if isinstance(self.prompt, str) else self.prompt[0]


class TextPart(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["text"]
    text: str


class ChatMessageOpenAI(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: Literal["system", "developer", "user", "assistant"]
    content: Prompt | list[TextPart]

    def plain(self) -> dict[str, str]:
        """{role, content} for the chat template (`developer` is the system turn; parts are joined)."""
        text = self.content if isinstance(self.content, str) else "".join(p.text for p in self.content)
        return {"role": "system" if self.role == "developer" else self.role, "content": text}


class ChatCompletionRequest(_OpenAIRequest):
    messages: Annotated[list[ChatMessageOpenAI], AfterValidator(_messages)] = Field(min_length=1)
    max_tokens: NewTokens | None = Field(None, ge=1)
    max_completion_tokens: NewTokens | None = Field(None, ge=1)
    logprobs: bool | None = None
    top_logprobs: int | None = None
    tools: list[Any] | None = None
    tool_choice: Any = None
    parallel_tool_calls: bool | None = None
    response_format: dict[str, Any] | None = None
    functions: list[Any] | None = None
    function_call: Any = None
    store: bool | None = None
    modalities: list[str] | None = None
    audio: Any = None
    prediction: Any = None
    reasoning_effort: str | None = None


def unsupported_values(body: BaseModel, allowed: dict[str, tuple[Any, ...]]) -> list[FieldError]:
    """A 422 entry for every field set to a value factpatch does not implement."""
    errors = []
    for name, values in allowed.items():
        value = getattr(body, name)
        if not any(value == v and type(value) is type(v) or value is v for v in values):
            shown = ", ".join("null" if v is None else repr(v) for v in values)
            errors.append(FieldError(field=name, message=f"not supported here; allowed: {shown}", type="unsupported"))
    return errors
