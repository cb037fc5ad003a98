"""Batched decoding on the tiny model: a row decodes as it would alone, stops on its own terms,
streams what is final, and a query batch answers at one revision with edits only between batches."""

from __future__ import annotations

import threading
from typing import Any

import pytest
import torch

from contract.protocol import GenerateJob, JobResult, QueryChunk, ScoreJob, new_id
from editing.generation import GenerationRequest, Sampling, _stable_end
from editing.host import ModelHost
from store.queue import MemoryTransport
from tests.tiny import new_host

PROMPTS = ["Hi", "The Eiffel Tower is located in the city of", "abc def", "Q: what is 2+2? A:", "x" * 40]


def reference(host: ModelHost, prompt: str, n: int) -> str:
    """transformers' own greedy `generate`, one prompt at a time, no padding."""
    ids = torch.tensor([host.encode_prompt(prompt)])
    out = host.model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=n,  # type: ignore[operator]
                              do_sample=False, pad_token_id=host.tokenizer.pad_token_id)
    return str(host.tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True))


def request(host: ModelHost, prompt: str, **sampling: Any) -> GenerationRequest:
    return GenerationRequest(ids=host.encode_prompt(prompt), sampling=Sampling(**sampling))


def test_a_left_padded_batch_of_mixed_lengths_decodes_as_each_prompt_alone(tiny_host: ModelHost) -> None:
    alone = [reference(tiny_host, p, 12) for p in PROMPTS]
    assert tiny_host.greedy(PROMPTS, max_new_tokens=12) == alone
    assert [tiny_host.generate(p, max_new_tokens=12) for p in PROMPTS] == alone


def test_every_row_keeps_its_own_budget_and_stop_strings(tiny_host: ModelHost) -> None:
    full = tiny_host.greedy(PROMPTS[:3], max_new_tokens=12)
    stop = full[1][4:6]  # a string the second row produces after its fourth character
    out = tiny_host.generate_many([
        request(tiny_host, PROMPTS[0], max_new_tokens=3),
        request(tiny_host, PROMPTS[1], max_new_tokens=12, stop=(stop,)),
        request(tiny_host, PROMPTS[2], max_new_tokens=12),
    ])
    assert out[0].finish_reason == "length" and out[0].tokens == 3 and full[0].startswith(out[0].text)
    assert out[1].finish_reason == "stop" and out[1].text == full[1][: full[1].index(stop)]
    assert out[2].text == full[2] and out[2].finish_reason == "length"


def test_the_end_of_sequence_token_finishes_a_row_with_stop(tiny_host: ModelHost) -> None:
    eos = int(tiny_host.tokenizer.eos_token_id)
    with torch.no_grad():
        tiny_host.model.lm_head.weight[eos] += 100.0  # type: ignore[index]  # EOS always wins
    out = tiny_host.generate_many([request(tiny_host, "Hi", max_new_tokens=8)])[0]
    assert (out.text, out.tokens, out.finish_reason) == ("", 0, "stop")


def test_finished_rows_leave_the_batch_and_listeners_hear_which_stay(tiny_host: ModelHost) -> None:
    kept: list[list[int]] = []
    tiny_host.on_rows_selected(lambda index: kept.append(index.tolist()))
    budgets = zip(PROMPTS[:3], (2, 6, 4), strict=True)
    tiny_host.generate_many([request(tiny_host, p, max_new_tokens=n) for p, n in budgets])
    assert kept == [[1, 2], [0]]  # after the 2nd token row 0 leaves; after the 4th, old row 2 leaves


def test_seeded_sampling_is_reproducible_inside_a_batch(tiny_host: ModelHost) -> None:
    def sampled(seed: int) -> str:
        rows = [request(tiny_host, PROMPTS[1], max_new_tokens=10, temperature=1.0, top_p=0.9, seed=seed),
                request(tiny_host, PROMPTS[0], max_new_tokens=10)]
        return tiny_host.generate_many(rows)[0].text

    assert sampled(7) == sampled(7)
    assert len({sampled(s) for s in range(4)}) > 1


def test_streamed_text_is_final_text_in_order(tiny_host: ModelHost) -> None:
    full = tiny_host.greedy([PROMPTS[1]], max_new_tokens=12)[0]
    stop = full[6:8]
    pieces: list[str] = []
    out = tiny_host.generate_many([
        GenerationRequest(ids=tiny_host.encode_prompt(PROMPTS[1]), on_text=pieces.append,
                          sampling=Sampling(max_new_tokens=12, stop=(stop,))),
        request(tiny_host, PROMPTS[0], max_new_tokens=12),
    ])[0]
    assert "".join(pieces) == out.text == full[: full.index(stop)]
    assert stop not in "".join(pieces)


def test_held_back_text_is_what_could_still_become_a_stop_string() -> None:
    assert _stable_end("Paris, Fra", ("France!",)) == len("Paris, ")
    assert _stable_end("Paris", ("\n\n",)) == 5
    assert _stable_end("Paris\n", ("\n\n",)) == 5
    assert _stable_end("Pa\ufffd", ()) == 2


def test_callers_that_left_are_dropped_while_decoding(tiny_host: ModelHost, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("editing.generation.CHECK_EVERY_S", 0.0)
    out = tiny_host.generate_many([request(tiny_host, p, max_new_tokens=20) for p in PROMPTS[:2]],
                                  alive=lambda index: [i != 0 for i in index])
    assert out[0].finish_reason == "cancelled" and out[0].tokens == 1
    assert out[1].finish_reason == "length" and out[1].tokens == 20


def test_scores_of_several_queries_in_one_batch_match_one_at_a_time(tiny_host: ModelHost) -> None:
    items = [(tiny_host.encode_prompt("The capital of France is"), ["Paris", "Rome and more"]),
             (tiny_host.encode_prompt("Hi"), ["there"])]
    together = tiny_host.score_many(items)
    alone = [tiny_host.score("The capital of France is", ["Paris", "Rome and more"]), tiny_host.score("Hi", ["there"])]
    for got, want in zip(together, alone, strict=True):
        assert [n for _, n in got] == [n for _, n in want]
        assert [lp for lp, _ in got] == pytest.approx([lp for lp, _ in want], abs=1e-4)


# ---- the query server ----------------------------------------------------------------------------


class Worker:
    """A query server on the tiny model with an in-process bus; edits are simulated on the host."""

    def __init__(self, max_batch: int = 8, batch_wait_ms: float = 0) -> None:
        from contract.config import QueryConfig
        from workers.queries import QueryServer

        self.host = new_host()
        self.state = _State(self.host)
        self.transport = MemoryTransport(max_query_backlog=64)
        self.server = QueryServer(state=self.state, transport=self.transport, worker_id="w",  # type: ignore[arg-type]
                                  max_wait=2.0, config=QueryConfig(max_batch=max_batch, batch_wait_ms=batch_wait_ms))

    def submit(self, job: Any) -> str:
        self.transport.queries.submit(job, timeout=10)
        return str(job.id)

    def result(self, job_id: str) -> JobResult:
        while True:
            event = self.transport.queries.next_event(job_id, 5)
            if isinstance(event, JobResult):
                return event


class _State:
    def __init__(self, host: ModelHost) -> None:
        self.host, self.revision, self.changed = host, 0, threading.Condition()


def gen(prompt: str, **fields: Any) -> GenerateJob:
    return GenerateJob(id=new_id("q"), prompt=prompt, max_new_tokens=fields.pop("max_new_tokens", 6), **fields)


def test_waiting_queries_run_as_one_batch_and_answer_like_alone() -> None:
    worker = Worker()
    ids = [worker.submit(gen(p, max_new_tokens=8)) for p in PROMPTS]
    score = worker.submit(ScoreJob(id=new_id("q"), prompt="Hi", candidates=["there"]))
    assert worker.server.step(timeout=1) == len(PROMPTS) + 1
    results = [worker.result(i) for i in ids]
    assert [r.data["text"] for r in results] == [reference(worker.host, p, 8) for p in PROMPTS]
    assert all(r.revision == 0 and r.data["finish_reason"] == "length" for r in results)
    assert [r.data["prompt_tokens"] for r in results] == [len(worker.host.encode_prompt(p)) for p in PROMPTS]
    assert worker.result(score).data["scores"][0]["tokens"] == len(" there")


def test_an_edit_between_batches_changes_the_revision_of_the_next_batch_only() -> None:
    worker = Worker(max_batch=2)
    first = [worker.submit(gen(p)) for p in PROMPTS[:2]]
    later = [worker.submit(gen(p)) for p in PROMPTS[:2]]
    assert worker.server.step(timeout=1) == 2  # the first two; the others wait for the next batch
    with worker.host.lock:  # what the writer does: change the weights and the revision under the lock
        with torch.no_grad():
            worker.host.model.lm_head.weight.mul_(-1.0)  # type: ignore[union-attr]
        worker.state.revision = 1
    assert worker.server.step(timeout=1) == 2
    before, after = [worker.result(i) for i in first], [worker.result(i) for i in later]
    assert {r.revision for r in before} == {0} and {r.revision for r in after} == {1}
    assert [r.data["text"] for r in before] != [r.data["text"] for r in after]


def test_callers_just_answered_rejoin_the_queued_ones_in_one_batch() -> None:
    # The first callers come back 0.3 s after their answers: later than one `batch_wait_ms` (so plain
    # gathering would not wait for them), well inside the rejoin window (20 x 50 ms after the batch),
    # leaving 0.7 s for a loaded machine to run the timer late.
    worker = Worker(max_batch=8, batch_wait_ms=50)
    first = [worker.submit(gen(p)) for p in PROMPTS[:4]]
    assert worker.server.step(timeout=1) == 4
    queued = [worker.submit(gen(p)) for p in PROMPTS[:4]]  # arrived while the first batch ran
    back = threading.Timer(0.3, lambda: [worker.submit(gen(p)) for p in PROMPTS[:4]])  # the first 4, again
    back.start()
    assert worker.server.step(timeout=1) == 8  # one batch, not two cohorts taking turns
    back.join()
    assert all(worker.result(i).ok for i in first + queued)


def test_a_query_for_a_later_revision_waits_without_holding_up_the_others() -> None:
    worker = Worker()
    future = worker.submit(gen("Hi", min_revision=1))
    now = worker.submit(gen("Hi"))
    assert worker.server.step(timeout=1) == 1
    assert worker.result(now).revision == 0 and len(worker.server.parked) == 1
    worker.state.revision = 1
    assert worker.server.step(timeout=0.1) == 1
    assert worker.result(future).revision == 1


def test_a_query_whose_caller_left_or_whose_deadline_passed_is_never_computed() -> None:
    worker = Worker()
    gone = worker.submit(gen("Hi"))
    worker.transport.queries.cancel(gone)
    late = gen("Hi", deadline=1.0)  # 1970
    worker.transport.queries.submit(late, timeout=10)
    kept = worker.submit(gen("Hi"))
    assert worker.server.step(timeout=1) == 1
    assert worker.result(kept).ok


def test_a_streamed_query_sends_its_revision_first_then_final_text() -> None:
    worker = Worker()
    job = worker.submit(gen(PROMPTS[1], stream=True, max_new_tokens=10))
    other = worker.submit(gen(PROMPTS[0], max_new_tokens=3))
    worker.server.step(timeout=1)
    events = []
    while not isinstance(events[-1] if events else None, JobResult):
        events.append(worker.transport.queries.next_event(job, 5))
    chunks = [e for e in events if isinstance(e, QueryChunk)]
    assert chunks[0].text == "" and chunks[0].revision == 0
    assert "".join(c.text for c in chunks) == events[-1].data["text"]
    assert worker.result(other).ok


def test_a_full_backlog_is_refused_with_queue_full() -> None:
    from contract.errors import QueueFullError

    worker = Worker()
    worker.transport.queries.max_backlog = 2
    worker.submit(gen("a"))
    worker.submit(gen("b"))
    with pytest.raises(QueueFullError):
        worker.submit(gen("c"))


def test_a_bad_query_fails_alone() -> None:
    worker = Worker()
    chat = worker.submit(GenerateJob(id=new_id("q"), messages=[{"role": "user", "content": "Hi"}]))
    ok = worker.submit(gen("Hi"))
    worker.server.step(timeout=1)
    failed = worker.result(chat)
    assert not failed.ok and failed.problem is not None and failed.problem.status == 422
    assert failed.problem.model_dump().get("field") == "messages"
    assert worker.result(ok).ok


# ---- adaptor editors: routing stays per row inside a batch ---------------------------------------


@pytest.mark.parametrize("name", ["lemoe", "memoe"])
def test_adaptor_routing_stays_per_row_while_rows_finish(name: str) -> None:
    from contract.protocol import EditSpec
    from editing.editors.base import EditBatch
    from editing.registry import build_editor
    from tests.helpers import TINY_EDITOR_CONFIGS

    host = new_host()
    editor = build_editor(name, host=host, overrides=TINY_EDITOR_CONFIGS[name])
    spec = EditSpec(prompt="The Eiffel Tower is located in", target="Rome", subject="Eiffel Tower")
    editor.apply(editor.compute(EditBatch(batch_id="b0", edits=(spec,))))
    prompts = ["Bananas are", "The Eiffel Tower is located in", "Hi", "Where is the Eiffel Tower? It is in"]
    budgets = (2, 9, 5, 12)  # rows leave the batch at different steps; the plan must follow them
    alone = [host.generate(p, max_new_tokens=n) for p, n in zip(prompts, budgets, strict=True)]
    together = host.generate_many([request(host, p, max_new_tokens=n) for p, n in zip(prompts, budgets, strict=True)])
    assert [g.text for g in together] == alone
    assert alone[1].startswith(" Rome")


# ---- the HTTP side of a full backlog (embedded mode) ---------------------------------------------


def test_a_full_embedded_backlog_is_a_503_with_retry_after(tmp_path: Any) -> None:
    from fastapi.testclient import TestClient

    from contract.config import Settings
    from service.main import create_app
    from store.log import SqliteEditLog

    transport = MemoryTransport(max_query_backlog=1)
    transport.queries.submit(gen("waiting"), timeout=10)  # nobody takes it
    log = SqliteEditLog(":memory:")
    app = create_app(Settings(data_dir=tmp_path, _env_file=None), log=log, transport=transport)
    with TestClient(app) as client:
        for path, body in (("/v1/generate", {"prompt": "Hi"}), ("/v1/score", {"prompt": "Hi", "candidates": ["a"]})):
            response = client.post(path, json=body)
            assert response.status_code == 503 and response.headers["retry-after"]
            assert response.headers["content-type"] == "application/problem+json"
            assert response.json()["code"] == "queue_full"
    log.close()
