"""The official `openai` client against the embedded service on the tiny model (with a chat
template): completions, chat, streaming, models, refused parameters; `/v1/generate` with
`messages` and as server-sent events; the revision in every answer."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from contract.config import Settings
from tests.e2e.server import Embedded, embedded_service

QUESTION = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Where is the tower?"}]


@pytest.fixture(scope="module")
def chat_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.tiny import save_tiny

    return save_tiny(tmp_path_factory.mktemp("tiny-chat"), chat=True)


@pytest.fixture
def service(tiny_settings: Settings, chat_model_dir: Path) -> Iterator[Embedded]:
    settings = tiny_settings.model_copy(update={"model": str(chat_model_dir)})
    with embedded_service(settings) as running:
        yield running


@pytest.fixture
def client(service: Embedded) -> openai.OpenAI:
    return openai.OpenAI(base_url=service.url + "/v1", api_key="unused", max_retries=0, timeout=60)


def model_id(client: openai.OpenAI) -> str:
    return client.models.list().data[0].id


def sse_events(response: httpx.Response) -> list[Any]:
    events = []
    for block in response.text.split("\n\n"):
        data = [line.removeprefix("data: ") for line in block.splitlines() if line.startswith("data: ")]
        if data:
            events.append(data[0] if data[0] == "[DONE]" else json.loads(data[0]))
    return events


def test_models_lists_the_served_model_and_rejects_others(client: openai.OpenAI) -> None:
    models = client.models.list().data
    assert len(models) == 1 and models[0].owned_by == "factpatch"
    assert client.models.retrieve(models[0].id).id == models[0].id
    with pytest.raises(openai.NotFoundError):
        client.completions.create(model="gpt-4o", prompt="Hi", max_tokens=2)


def test_completion_answers_like_generate_and_names_the_revision(client: openai.OpenAI, service: Embedded) -> None:
    done = client.completions.create(model=model_id(client), prompt="The tower is in", max_tokens=6, temperature=0)
    choice = done.choices[0]
    assert done.object == "text_completion" and choice.finish_reason in ("stop", "length")
    assert done.model_extra is not None and done.model_extra["revision"] == 0
    assert done.usage is not None and done.usage.completion_tokens <= 6
    assert done.usage.total_tokens == done.usage.prompt_tokens + done.usage.completion_tokens
    with service.client() as http:
        plain = http.post("/v1/generate", json={"prompt": "The tower is in", "max_new_tokens": 6}).json()
    assert choice.text == plain["text"]


def test_chat_uses_the_template_and_matches_generate_with_messages(client: openai.OpenAI, service: Embedded) -> None:
    done = client.chat.completions.create(model=model_id(client), messages=QUESTION, max_tokens=8,  # type: ignore[arg-type]
                                          temperature=0)
    assert done.object == "chat.completion" and done.choices[0].message.role == "assistant"
    with service.client() as http:
        response = http.post("/v1/generate", json={"messages": QUESTION, "max_new_tokens": 8})
        raw = http.post("/v1/generate", json={"prompt": "<system>Be brief.\n<user>Where is the tower?\n<assistant>",
                                              "max_new_tokens": 8})
    assert response.status_code == 200 and response.headers["x-model-revision"] == "0"
    assert done.choices[0].message.content == response.json()["text"]
    assert raw.json()["text"] == response.json()["text"]  # the template, as the tiny tokenizer writes it


def test_streams_carry_the_same_text_as_the_plain_answers(client: openai.OpenAI) -> None:
    model = model_id(client)
    plain = client.chat.completions.create(model=model, messages=QUESTION, max_tokens=10, temperature=0)  # type: ignore[arg-type]
    chunks = list(client.chat.completions.create(model=model, messages=QUESTION, max_tokens=10, temperature=0,  # type: ignore[arg-type]
                                                 stream=True, stream_options={"include_usage": True}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == plain.choices[0].message.content
    assert chunks[0].choices[0].delta.role == "assistant"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == plain.choices[0].finish_reason
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == plain.usage.completion_tokens  # type: ignore[union-attr]
    pieces = list(client.completions.create(model=model, prompt="Hi", max_tokens=5, temperature=0, stream=True))
    again = client.completions.create(model=model, prompt="Hi", max_tokens=5, temperature=0)
    assert "".join(p.choices[0].text for p in pieces) == again.choices[0].text


def test_unknown_and_unsupported_parameters_are_named(client: openai.OpenAI) -> None:
    model = model_id(client)
    with pytest.raises(openai.UnprocessableEntityError) as unknown:
        client.completions.create(model=model, prompt="Hi", extra_body={"bogus": 1})
    assert unknown.value.body is not None and "bogus" in json.dumps(unknown.value.body)
    with pytest.raises(openai.UnprocessableEntityError) as unsupported:
        client.chat.completions.create(model=model, messages=QUESTION, n=2, logprobs=True)  # type: ignore[arg-type]
    fields = {e["field"] for e in unsupported.value.response.json()["errors"]}
    assert fields == {"n", "logprobs"}


def test_generate_streams_server_sent_events_revision_first(service: Embedded) -> None:
    body = {"prompt": "The tower is in", "max_new_tokens": 8}
    with service.client() as http:
        plain = http.post("/v1/generate", json=body).json()
        response = http.post("/v1/generate", json={**body, "stream": True})
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["x-model-revision"] == "0"
    events = sse_events(response)
    assert events[0] == {"text": "", "revision": 0} and events[-1] == "[DONE]"
    assert "".join(e["text"] for e in events[:-1]) == plain["text"]
    assert events[-2]["finish_reason"] == plain["finish_reason"]


def test_prompt_and_messages_exactly_one(service: Embedded) -> None:
    with service.client() as http:
        both = http.post("/v1/generate", json={"prompt": "Hi", "messages": QUESTION})
        neither = http.post("/v1/generate", json={"max_new_tokens": 2})
        bad_role = http.post("/v1/generate", json={"messages": [{"role": "robot", "content": "Hi"}]})
        score = http.post("/v1/score", json={"messages": QUESTION, "candidates": ["Paris"]})
    for response in (both, neither):
        assert response.status_code == 422 and response.headers["content-type"] == "application/problem+json"
        assert {e["field"] for e in response.json()["errors"]} == {"prompt", "messages"}
    assert bad_role.status_code == 422 and bad_role.json()["errors"][0]["field"] == "messages[0].role"
    assert score.status_code == 200 and score.json()["scores"][0]["tokens"] == len(" Paris")


def test_chat_after_an_edit_answers_at_the_new_revision(client: openai.OpenAI, service: Embedded) -> None:
    with service.client() as http:
        edit = http.post("/v1/edits?wait=60", json={"prompt": "The tower is in", "target": "Rome"}).json()
    assert edit["status"] == "applied"
    done = client.chat.completions.with_raw_response.create(model=model_id(client), messages=QUESTION,  # type: ignore[arg-type]
                                                            max_tokens=4, temperature=0,
                                                            extra_body={"min_revision": edit["revision"]})
    assert done.headers["x-model-revision"] == str(edit["revision"])
    assert done.parse().model_extra["revision"] == edit["revision"]  # type: ignore[index]
