"""Decoding with oneDNN-packed linear weights against torch's default matmul, in one process.

    python bench/bench_packed_linear.py --threads 1,2 --repeats 5 --out runs/bench-packed-linear.json

`ModelHost.generate_many` on SmolLM2 (fp32, CPU): the 8 prompts the query benchmark's clients send,
greedy, 16 new tokens, as one batch of 8 and as 8 batches of one, with `packed_linear` on and off
(alternating, median of `--repeats`), for each torch thread count; plain transformers `generate`
on the batch of 8 alongside. Also: whether the packed and default answers are the same text, and
the memory the packs hold.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path
from typing import Any

import torch
from results_out import emit  # the script's folder is on sys.path
from transformers import AutoModelForCausalLM, AutoTokenizer

from editing.generation import GenerationRequest, Sampling
from editing.host import ModelHost

PROMPTS = [f"Question {k}-0: the capital of" for k in range(8)]


def timed(fn: Any) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def decoders(host: ModelHost, new_tokens: int) -> dict[str, Any]:
    sampling = Sampling(max_new_tokens=new_tokens)
    requests = [GenerationRequest(ids=host.encode_prompt(p), sampling=sampling) for p in PROMPTS]
    batch = host.tokenizer(PROMPTS, return_tensors="pt", padding=True, padding_side="left")

    def transformers_batch() -> None:
        with torch.no_grad():
            host.model.generate(**batch, max_new_tokens=new_tokens, do_sample=False,  # type: ignore[operator]
                                pad_token_id=host.tokenizer.pad_token_id)

    return {
        "batch_of_8": lambda: host.generate_many(requests),
        "one_at_a_time_8": lambda: [host.generate_many([r]) for r in requests],
        "transformers_batch_of_8": transformers_batch,
    }


def measure(host: ModelHost, threads: int, args: argparse.Namespace) -> dict[str, Any]:
    torch.set_num_threads(threads)
    runs = decoders(host, args.new_tokens)
    times: dict[str, list[float]] = {}
    for _ in range(args.repeats + 1):  # the first round warms up and is not counted
        for name, fn in runs.items():
            for packed in ((True, False) if name != "transformers_batch_of_8" else (False,)):
                host.packs.enabled = packed
                times.setdefault(f"{name}{'_packed' if packed else ''}", []).append(timed(fn))
    out = {name: round(statistics.median(values[1:]), 3) for name, values in times.items()}
    out["speedup_batch_of_8"] = round(out["batch_of_8"] / out["batch_of_8_packed"], 2)
    out["speedup_one_at_a_time"] = round(out["one_at_a_time_8"] / out["one_at_a_time_8_packed"], 2)
    return out


def main() -> int:
    args = parse_args()
    path = Path(args.models_dir) / "smollm2-135m-instruct"
    tokenizer = AutoTokenizer.from_pretrained(path)
    host = ModelHost(model=AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32), tokenizer=tokenizer,
                     model_id="smollm2-135m-instruct")
    result: dict[str, Any] = {"new_tokens": args.new_tokens, "repeats": args.repeats, "threads": {}}
    for threads in (int(t) for t in args.threads.split(",")):
        result["threads"][str(threads)] = measure(host, threads, args)
    host.packs.enabled = True
    packed = host.greedy(PROMPTS, max_new_tokens=args.new_tokens)
    result["packs_mb"] = round(host.packs.nbytes / 1e6, 1)
    host.packs.enabled = False
    result["same_text"] = packed == host.greedy(PROMPTS, max_new_tokens=args.new_tokens)
    emit(result, args.out)
    return 0


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models-dir", default=str(Path.home() / ".factpatch" / "models"))
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--new-tokens", type=int, default=16)
    parser.add_argument("--out", type=Path, default=None)
    return parser.parse_args()


if __name__ == "__main__":
    raise SystemExit(main())
