"""Query latency of an edited model against the unedited one, in the same process.

Two resident copies of SmolLM2: the plain model and one with the editor attached and its state
loaded (from `moe_stream.py --save-state`). Calls alternate between them, after warm-up, so
CPU contention hits both alike; the ratio of medians is reported for prompts that mention an
edited subject and for unrelated ones, for `generate` (greedy, KV cache) and `score`.

    python bench/moe_latency.py --editor lemoe --state runs/moe/lemoe.safetensors --config '{...}'
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from contract.config import Settings
from editing.artifacts import tensors_from_bytes
from editing.data import load_cases
from editing.host import ModelHost
from editing.loading import load_host
from editing.registry import build_editor

DATA = "/work/shared/data/counterfact-val.json"


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def compare(
    plain: ModelHost, edited: ModelHost, calls: Sequence[Callable[[ModelHost], object]], reps: int
) -> dict[str, float]:
    """Median latency of each host over alternating calls, and their ratio."""
    times: dict[str, list[float]] = {"plain": [], "edited": []}
    for call in calls[:3]:  # warm-up
        call(plain), call(edited)
    for _ in range(reps):
        for call in calls:
            times["plain"].append(timed(lambda: call(plain)))  # noqa: B023
            times["edited"].append(timed(lambda: call(edited)))  # noqa: B023
    plain_ms, edited_ms = (statistics.median(times[k]) * 1e3 for k in ("plain", "edited"))
    return {
        "plain_ms": round(plain_ms, 2),
        "edited_ms": round(edited_ms, 2),
        "ratio": round(edited_ms / plain_ms, 4),
    }


def main() -> None:
    cli = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    cli.add_argument("--editor", required=True)
    cli.add_argument("--config", default="{}")
    cli.add_argument("--state", required=True, help="safetensors editor state")
    cli.add_argument("--offset", type=int, default=0, help="first edited case of the state")
    cli.add_argument("--cases", type=int, default=100, help="edited cases in the state")
    cli.add_argument("--prompts", type=int, default=10)
    cli.add_argument("--reps", type=int, default=5)
    cli.add_argument("--tokens", type=int, default=16)
    cli.add_argument("--threads", type=int, default=1)
    cli.add_argument("--out", default=None)
    args = cli.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(args.threads)
    settings = Settings(data_dir="/tmp/fpdata")
    plain, edited = load_host(settings), load_host(settings)
    editor = build_editor(args.editor, host=edited, overrides=json.loads(args.config))
    editor.load_state_tensors(tensors_from_bytes(Path(args.state).read_bytes()))
    cases = load_cases(DATA)[args.offset : args.offset + args.cases]
    step = max(len(cases) // args.prompts, 1)
    groups = {
        "edited_subject": [c.rephrases[0] for c in cases[::step]][: args.prompts],
        "unrelated": [c.locality[0].prompt for c in cases[::step]][: args.prompts],
    }
    result: dict[str, object] = {
        "editor": args.editor,
        "config": json.loads(args.config),
        "state": args.state,
    }
    for group, prompts in groups.items():
        gen = [lambda h, p=p: h.generate(p, max_new_tokens=args.tokens) for p in prompts]
        score = [lambda h, p=p: h.score(p, ["Paris", "London"]) for p in prompts]
        result[f"generate/{group}"] = compare(plain, edited, gen, args.reps)
        result[f"score/{group}"] = compare(plain, edited, score, args.reps)
        logging.info("%s %s", group, {k: v for k, v in result.items() if group in k})
    result["adaptor_mb"] = round(sum(t.numel() * t.element_size() for t in editor.state_tensors().values()) / 2**20, 3)
    line = json.dumps(result)
    logging.info("RESULT %s", line)
    if args.out:
        with Path(args.out).open("a") as fh:
            fh.write(line + "\n")


if __name__ == "__main__":
    main()
