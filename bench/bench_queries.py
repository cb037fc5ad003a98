"""Query throughput and latency of the batched workers, against plain transformers, in one run.

    python bench/bench_queries.py --model smollm2 --clients 1,4,8,16 --seconds 15 \
        --baseline-ref a055f08 --out runs/bench-queries-smollm2.json

Every stack runs at once (idle between its measurements), and the measurements are interleaved
in `--rounds` rounds, so that a change in the machine's load (2 shared cores here) hits all of
them alike; ratios are taken within a round, then the median over rounds. One round:

1. *peers* (this process): transformers `generate` on the same 8 prompts the clients send,
   greedy, `--new-tokens` each, as one left-padded batch (the peer a user would write by hand;
   median of `--repeats`) and one after another; measured before and after the round's service
   windows, and the mean of the two is the round's peer.
2. *embedded* (`factpatch serve`) and *redis* (redis-server + `factpatch api` + one writer
   worker): C closed-loop client threads post `/v1/generate` (greedy, `--new-tokens`, distinct
   prompts); after `--warmup-seconds`, the answers (HTTP 200) that complete within `--seconds`
   are counted, for each C in `--clients`.
3. *baseline*: the same service at `--baseline-ref` (git archive of that commit: the code before
   batching), embedded, 1 client; the 1-client window of the new embedded service is next to it.

After the rounds, *edits under load* (embedded): `--edits` edits one at a time (`?wait=60`)
with no queries, then again while 8 clients query; the latency of each.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_redis import Stack, build_tiny, free_port, summary, wait_http, wait_workers  # noqa: E402
from results_out import emit  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
PEER_PROMPTS = [f"Question {k}-0: the capital of" for k in range(8)]


# ---- the peer: plain transformers ----------------------------------------------------------------


class Peer:
    """Plain transformers on the same prompts, in this process."""

    def __init__(self, model_path: str, new_tokens: int) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.torch, self.new_tokens = torch, new_tokens
        self.tokenizer = AutoTokenizer.from_pretrained(model_path, padding_side="left")
        self.model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32).eval()
        tok = self.tokenizer
        self.pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        self.run(PEER_PROMPTS[:2])  # warm-up

    def run(self, prompts: list[str]) -> float:
        batch = self.tokenizer(prompts, return_tensors="pt", padding=True)
        start = time.perf_counter()
        with self.torch.no_grad():
            self.model.generate(**batch, max_new_tokens=self.new_tokens, do_sample=False, pad_token_id=self.pad)
        return time.perf_counter() - start

    def measure(self, repeats: int) -> dict[str, float]:
        """Median of `repeats` batches of 8, and the 8 prompts one after another (once)."""
        batched = statistics.median(self.run(PEER_PROMPTS) for _ in range(repeats))
        one_by_one = sum(self.run([p]) for p in PEER_PROMPTS)
        return {"batch_of_8_s": round(batched, 3), "one_at_a_time_8_s": round(one_by_one, 3)}


def mean_peers(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """The peers measured before and after a round's service windows: their mean, as throughputs."""
    batched = (before["batch_of_8_s"] + after["batch_of_8_s"]) / 2
    one_by_one = (before["one_at_a_time_8_s"] + after["one_at_a_time_8_s"]) / 2
    return {"before": before, "after": after, "batch_queries_per_s": round(8 / batched, 3),
            "one_at_a_time_queries_per_s": round(8 / one_by_one, 3)}


# ---- servers -------------------------------------------------------------------------------------


@contextmanager
def service(args: argparse.Namespace, *, mode: str, model: str, source: Path | None = None) -> Iterator[str]:
    """The service in `mode` (embedded | redis) from this tree, or from `source` (another checkout)."""
    folder = Path(tempfile.mkdtemp(prefix="fp-bench-q-"))
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("FACTPATCH_")}
    env.update(FACTPATCH_MODEL=model, FACTPATCH_MODELS_DIR=args.models_dir, FACTPATCH_DATA_DIR=str(folder / "data"),
               FACTPATCH_EDITOR=args.editor, FACTPATCH_PORT=str(port), FACTPATCH_LOG_LEVEL="WARNING",
               FACTPATCH_QUERY_TIMEOUT="120", FP_BENCH_TIMINGS=str(folder / "timings.jsonl"))
    if source is not None:
        env["PYTHONPATH"] = str(source)
    if args.threads:
        env.update(OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))
    run = Stack(folder, env)
    try:
        if source is not None:  # that commit's own `factpatch` entry point, not this tree's
            run.spawn("serve", [sys.executable, "-c", entry_point(source), "serve"])
        elif mode == "embedded":
            run.factpatch("serve", ["serve"])
        else:
            redis_port = free_port()
            run.spawn("redis", [shutil.which("redis-server") or "redis-server", "--port", str(redis_port),
                                "--save", "", "--appendonly", "no"])
            run.env["FACTPATCH_REDIS_URL"] = f"redis://127.0.0.1:{redis_port}/0"
            run.factpatch("api", ["api"])
            run.factpatch("writer", ["worker", "--role", "writer"], FACTPATCH_WORKER_ID="writer-1")
        url = f"http://127.0.0.1:{port}"
        wait_http(url)
        wait_workers(url, 1)
        yield url
    finally:
        run.stop()
        shutil.rmtree(folder, ignore_errors=True)


def entry_point(tree: Path) -> str:
    """Python code that runs the `factpatch` script as `tree`'s pyproject.toml declares it
    (the module moved between commits: `workers.cli:main` before the package split)."""
    scripts = tomllib.loads((tree / "pyproject.toml").read_text())["project"]["scripts"]
    module, function = scripts["factpatch"].split(":")
    return (f"import sys; sys.path.insert(0, {str(tree)!r}); "  # ahead of the cwd and this checkout
            f"from {module} import {function}; sys.exit({function}(sys.argv[1:]))")


def baseline_tree(ref: str) -> Path:
    """The repository at `ref`, unpacked from `git archive` into a temp folder."""
    folder = Path(tempfile.mkdtemp(prefix="fp-baseline-"))
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", ref], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive, check=True)
    return folder


# ---- load ----------------------------------------------------------------------------------------


class Load:
    """C closed-loop clients posting /v1/generate until stopped; (finish time, latency) of each answer."""

    def __init__(self, url: str, clients: int, new_tokens: int) -> None:
        self.url, self.clients, self.new_tokens = url, clients, new_tokens
        self.stop = threading.Event()
        self.answers: list[tuple[float, float]] = []
        self.errors: list[tuple[float, int]] = []
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._client, args=(k,)) for k in range(clients)]

    def __enter__(self) -> Load:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join()

    def _client(self, k: int) -> None:
        with httpx.Client(base_url=self.url, timeout=300) as client:
            i = 0
            while not self.stop.is_set():
                sent = time.monotonic()
                response = client.post("/v1/generate", json={"prompt": f"Question {k}-{i}: the capital of",
                                                             "max_new_tokens": self.new_tokens})
                i += 1
                now = time.monotonic()
                with self.lock:
                    if response.status_code == 200:
                        self.answers.append((now, now - sent))
                    else:
                        self.errors.append((now, response.status_code))

    def window(self, start: float, end: float) -> tuple[list[float], int]:
        with self.lock:
            return ([lat for t, lat in self.answers if start <= t < end],
                    sum(1 for t, _ in self.errors if start <= t < end))


def throughput(url: str, clients: int, args: argparse.Namespace) -> dict[str, Any]:
    with Load(url, clients, args.new_tokens) as load:
        time.sleep(args.warmup_seconds)
        start = time.monotonic()
        time.sleep(args.seconds)
        done, errors = load.window(start, time.monotonic())
    return {"clients": clients, "queries_per_s": round(len(done) / args.seconds, 3),
            "latency": summary(done) if done else {}, "errors": errors}


def edit_latencies(url: str, count: int, offset: int) -> list[float]:
    out = []
    with httpx.Client(base_url=url, timeout=120) as client:
        for i in range(count):
            body = {"prompt": f"The favourite colour of person {offset + i} is", "target": "green"}
            start = time.perf_counter()
            response = client.post("/v1/edits?wait=60", json=body)
            out.append(time.perf_counter() - start)
            assert response.status_code == 200 and response.json()["status"] in ("applied", "rejected"), response.text
    return out


def edits_under_load(url: str, args: argparse.Namespace) -> dict[str, Any]:
    idle = edit_latencies(url, args.edits, 0)
    with Load(url, 8, args.new_tokens) as load:
        time.sleep(args.warmup_seconds)
        start = time.monotonic()
        busy = edit_latencies(url, args.edits, 1000)
        served = len(load.window(start, time.monotonic())[0])
    return {"edits": args.edits, "idle": summary(idle), "with_8_clients_querying": summary(busy),
            "queries_answered_meanwhile": served}


# ---- command line --------------------------------------------------------------------------------


def one_round(urls: dict[str, str], peer: Peer, args: argparse.Namespace) -> dict[str, Any]:
    before = peer.measure(args.repeats)
    out: dict[str, Any] = {"modes": {}}
    for mode in args.modes.split(","):
        out["modes"][mode] = [throughput(urls[mode], int(c), args) for c in args.clients.split(",")]
    out["peers"] = mean_peers(before, peer.measure(args.repeats))
    if "baseline" in urls:
        out["baseline"] = throughput(urls["baseline"], 1, args)
        out["embedded_next_to_baseline"] = throughput(urls["embedded"], 1, args)
    return out


def ratios(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """Per-round ratios (8 clients vs the peers; 1-client p50 vs the baseline), and their medians."""
    out: dict[str, Any] = {}
    for mode in rounds[0]["modes"]:
        at8 = [next((x["queries_per_s"] for x in r["modes"][mode] if x["clients"] == 8), None) for r in rounds]
        vs_batch = [q / r["peers"]["batch_queries_per_s"] for q, r in zip(at8, rounds, strict=True) if q]
        vs_seq = [q / r["peers"]["one_at_a_time_queries_per_s"] for q, r in zip(at8, rounds, strict=True) if q]
        if vs_batch:
            out[f"{mode}_8_clients_vs_hf_batch"] = [round(v, 3) for v in vs_batch]
            out[f"{mode}_8_clients_vs_hf_one_at_a_time"] = [round(v, 3) for v in vs_seq]
    if "baseline" in rounds[0]:
        p50 = [r["embedded_next_to_baseline"]["latency"]["p50_ms"] / r["baseline"]["latency"]["p50_ms"]
               for r in rounds]
        out["embedded_1_client_p50_vs_baseline"] = [round(v, 3) for v in p50]
    out["medians"] = {k: round(statistics.median(v), 3) for k, v in out.items() if v}
    return out


def main() -> int:
    args = parse_args()
    model = str(build_tiny(Path(tempfile.mkdtemp()))) if args.model == "tiny" else "smollm2-135m-instruct"
    model_path = model if args.model == "tiny" else str(Path(args.models_dir) / model)
    result: dict[str, Any] = {"model": args.model, "new_tokens": args.new_tokens, "seconds": args.seconds,
                              "threads": args.threads or "default", "rounds": []}
    tree = baseline_tree(args.baseline_ref) if args.baseline_ref else None
    try:
        with ExitStack() as stack:
            urls = {mode: stack.enter_context(service(args, mode=mode, model=model)) for mode in args.modes.split(",")}
            if tree is not None:
                urls["baseline"] = stack.enter_context(service(args, mode="embedded", model=model, source=tree))
            if args.threads:
                import torch

                torch.set_num_threads(args.threads)
            peer = Peer(model_path, args.new_tokens)
            for _ in range(args.rounds):
                result["rounds"].append(one_round(urls, peer, args))
            result["ratios"] = ratios(result["rounds"])
            if "embedded" in urls and args.edits:
                result["edits_under_load"] = edits_under_load(urls["embedded"], args)
    finally:
        if tree is not None:
            shutil.rmtree(tree, ignore_errors=True)
    emit(result, args.out)
    return 0


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=("tiny", "smollm2"), default="smollm2")
    parser.add_argument("--models-dir", default=str(Path.home() / ".factpatch" / "models"))
    parser.add_argument("--editor", default="rledit", help="editor of the served stacks (tiny: use ft)")
    parser.add_argument("--clients", default="1,4,8,16")
    parser.add_argument("--modes", default="embedded,redis")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--warmup-seconds", type=float, default=5.0)
    parser.add_argument("--new-tokens", type=int, default=16)
    parser.add_argument("--threads", type=int, default=0, help="torch threads per process (0: torch's default)")
    parser.add_argument("--repeats", type=int, default=3, help="peer batches per measurement (median)")
    parser.add_argument("--edits", type=int, default=5)
    parser.add_argument("--baseline-ref", default=None, help="git ref of the code to compare 1-client p50 with")
    parser.add_argument("--out", type=Path, default=None)
    return parser.parse_args()


if __name__ == "__main__":
    raise SystemExit(main())
