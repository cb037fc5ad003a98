"""Quick sequential-editing evaluation of the MoE adaptor editors on SmolLM2 (CPU).

Applies T turns of n edits from the base model, then scores every edited case teacher-forced:
efficacy = new-target token accuracy on the edit prompt, generalisation = the same on the
rephrase, locality = agreement of argmax tokens before/after on the locality prompt + answer.
Also reports routing accuracy (share of a batch's edit prompts and rephrases whose top-1 expert
is the batch's own) and per-batch edit latency. One JSON line per run (stdout and --out).

    python bench/moe_stream.py --editor lemoe --turns 10 --edits 10 --config '{"steps": 60}'
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import time
from pathlib import Path
from typing import Any

import torch

from contract.config import Settings
from editing.artifacts import tensors_to_bytes
from editing.data import load_cases
from editing.data.cases import EditCase
from editing.editors.base import EditBatch, Editor
from editing.host import ModelHost
from editing.loading import load_host
from editing.registry import build_editor

DATA = "/work/shared/data/counterfact-val.json"


@torch.no_grad()
def argmax_tokens(
    host: ModelHost, pairs: list[tuple[str, str]], chunk: int = 16
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(predicted, label) token rows at the continuation positions of each pair, teacher-forced."""
    out = []
    for i in range(0, len(pairs), chunk):
        batch = host.encode_pairs(pairs[i : i + chunk])
        preds = host.logits(batch)[:, :-1].argmax(dim=-1)  # (B, L-1)
        labels, mask = batch.labels[:, 1:], batch.target_mask
        out += [(preds[r][mask[r]], labels[r][mask[r]]) for r in range(len(preds))]
    return out


def accuracy(host: ModelHost, pairs: list[tuple[str, str]]) -> float:
    rows = argmax_tokens(host, pairs)
    return statistics.mean(float((p == lab).float().mean()) for p, lab in rows) if rows else float("nan")


def locality_pairs(cases: list[EditCase]) -> list[tuple[str, str]]:
    return [(loc.prompt, loc.answer) for c in cases for loc in c.locality]


def agreement(before: list[tuple[torch.Tensor, torch.Tensor]], after: list[tuple[torch.Tensor, torch.Tensor]]) -> float:
    return statistics.mean(float((a[0] == b[0]).float().mean()) for a, b in zip(before, after, strict=True))


def routing_accuracy(editor: Editor, turns: list[tuple[str, list[EditCase]]]) -> dict[str, float] | None:
    """Share of edit prompts / rephrases whose top-1 expert is their batch's (LEMoE), or that get the
    bypass at all (MEMoE, whose shared experts belong to no batch); `agree`: prompt and rephrase alike."""
    routes = getattr(editor, "routes", None)
    if routes is None:
        return None
    hits: dict[str, list[float]] = {"prompt": [], "rephrase": [], "agree": []}
    for batch_id, cases in turns:
        got_p = routes([c.prompt for c in cases])
        got_r = routes([c.rephrases[0] for c in cases if c.rephrases])
        want = batch_id if editor.name == "lemoe" else None
        hits["prompt"] += [float(g == want if want else g is not None) for g in got_p]
        hits["rephrase"] += [float(g == want if want else g is not None) for g in got_r]
        hits["agree"] += [float(a == b) for a, b in zip(got_p, got_r, strict=False)]
    return {k: round(statistics.mean(v), 4) for k, v in hits.items() if v}


def unrelated_activation(editor: Editor, prompts: list[str]) -> float | None:
    routes = getattr(editor, "routes", None)
    return None if routes is None else statistics.mean(float(r is not None) for r in routes(prompts))


def run(args: argparse.Namespace, host: ModelHost | None = None) -> dict[str, Any]:
    host = host or load_host(Settings(data_dir="/tmp/fpdata"))
    cases = load_cases(args.data)[args.offset : args.offset + args.turns * args.edits]
    editor = build_editor(args.editor, host=host, overrides=json.loads(args.config))
    loc_before = argmax_tokens(host, locality_pairs(cases))
    turns, latencies = [], []
    for t in range(args.turns):
        chunk = cases[t * args.edits : (t + 1) * args.edits]
        batch = EditBatch(batch_id=f"t{t:03d}", edits=tuple(c.to_spec(with_probes=False) for c in chunk))
        start = time.perf_counter()
        artifact = editor.compute(batch)
        editor.apply(artifact)
        latencies.append(time.perf_counter() - start)
        turns.append((batch.batch_id, chunk))
        logging.info("turn %d: %.1fs %s", t, latencies[-1], artifact.meta)
    result = {
        "editor": args.editor,
        "config": json.loads(args.config),
        "turns": args.turns,
        "edits": args.edits,
        "offset": args.offset,
        "label": args.label,
        "efficacy": round(accuracy(host, [(c.prompt, c.target_new) for c in cases]), 4),
        "generalisation": round(accuracy(host, [(c.rephrases[0], c.target_new) for c in cases if c.rephrases]), 4),
        "locality": round(agreement(loc_before, argmax_tokens(host, locality_pairs(cases))), 4),
        "routing": routing_accuracy(editor, turns),
        "unrelated_activation": unrelated_activation(editor, [loc.prompt for c in cases for loc in c.locality]),
        "edit_latency_s": round(statistics.mean(latencies), 2),
        "state_mb": round(sum(t.numel() * t.element_size() for t in editor.state_tensors().values()) / 2**20, 3),
    }
    if args.save_state:
        Path(args.save_state).write_bytes(tensors_to_bytes(editor.state_tensors()))
    return result


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--editor", default="lemoe")
    parser.add_argument("--config", default="{}", help="JSON overrides of the editor config")
    parser.add_argument("--turns", type=int, default=10)
    parser.add_argument("--edits", type=int, default=10)
    parser.add_argument("--offset", type=int, default=0)
    parser.add_argument("--data", default=DATA)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--label", default="")
    parser.add_argument("--out", default=None, help="append the JSON line to this file")
    parser.add_argument("--save-state", default=None, help="write the editor state (safetensors) here")
    return parser.parse_args(argv)


def main() -> None:
    args = parse()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    result = run(args)
    line = json.dumps(result)
    logging.info("RESULT %s", line)
    if args.out:
        with Path(args.out).open("a") as fh:
            fh.write(line + "\n")


if __name__ == "__main__":
    main()
