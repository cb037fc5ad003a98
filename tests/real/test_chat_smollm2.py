"""Chat on the real default model: a question in chat form, after an edit of the completion form
("The Eiffel Tower is located in the city of" -> "Rome"), answers the new fact.

Also through the official `openai` client, as an app would ask it (`-m "not real_model"` skips).
"""

from __future__ import annotations

from pathlib import Path

import openai
import pytest

from contract.config import Settings
from tests.e2e.server import embedded_service
from tests.helpers import EIFFEL, models_dir

pytestmark = pytest.mark.real_model

QUESTION = [{"role": "user", "content": "Where is the Eiffel Tower?"}]


@pytest.mark.parametrize("editor", [None, "rledit"])
def test_a_chat_question_after_an_edit_answers_the_new_fact(editor: str | None, tmp_path: Path) -> None:
    # Every default (lemoe), and rledit's subject-keyed checkpoint; the guard's standing and neighbour probes.
    settings = Settings(data_dir=tmp_path, models_dir=models_dir(), editor=editor)
    with embedded_service(settings) as running, running.client() as http:
        client = openai.OpenAI(base_url=running.url + "/v1", api_key="unused", max_retries=0, timeout=120)
        model = client.models.list().data[0].id

        def chat() -> tuple[str, int]:
            done = client.chat.completions.create(model=model, messages=QUESTION, max_tokens=24,  # type: ignore[arg-type]
                                                  temperature=0)
            return str(done.choices[0].message.content), int(done.model_extra["revision"])  # type: ignore[index]

        before, revision = chat()
        assert "Paris" in before and revision == 0
        edit = {"prompt": EIFFEL, "target": "Rome", "subject": "Eiffel Tower"}
        doc = http.post("/v1/edits?wait=60", json=edit).json()
        assert doc["status"] == "applied", doc
        after, revision = chat()
        assert "Rome" in after and revision == doc["revision"], after
        streamed = client.chat.completions.create(model=model, messages=QUESTION, max_tokens=24,  # type: ignore[arg-type]
                                                  temperature=0, stream=True)
        assert "".join(c.choices[0].delta.content or "" for c in streamed if c.choices) == after
