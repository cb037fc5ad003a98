"""rledit edit cost against one forward+backward of the model, on the same batch, same process.

For batch sizes 1, 8 and 32 (CounterFact val prompts and their new targets) it times, after a
warm-up, the median over `--repeats` of:
  - fb:      one forward + backward of the model (mean CE over the target tokens, full logits,
             gradients for every parameter: an ordinary training step without the update);
  - compute: `editor.compute(batch)` (state pass, normaliser, network, refinement, ridge solve);
  - apply:   `editor.apply(artifact)` plus `editor.restore(undo)` (so the model stays at the base);
and reports compute/fb and edits per second = batch / (compute + apply + restore).

  FACTPATCH_DATA_DIR=/tmp/fpdata python bench/hypernet_speed.py --threads 1 [--set refine_steps=0]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch


def _median_seconds(fn: Callable[[], Any], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def forward_backward(host: Any, pairs: list[tuple[str, str]]) -> None:
    tokens = host.encode_pairs(pairs)
    params = list(host.model.parameters())
    for p in params:
        p.requires_grad_(True)
    try:
        logp = host.token_logprobs(host.logits(tokens), tokens)  # (B, L-1)
        loss = -logp.sum() / tokens.target_mask.sum()
        loss.backward()
    finally:
        for p in params:
            p.requires_grad_(False)
            p.grad = None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--editor", default="rledit")
    parser.add_argument("--checkpoint", default=None)
    parser.add_argument("--data", type=Path, default=Path("/work/shared/data/counterfact-val.json"))
    parser.add_argument("--sizes", default="1,8,32")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="editor config override (JSON value), e.g. refine_steps=0; repeatable")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    from contract.config import Settings
    from editing.data import load_cases
    from editing.editors.base import EditBatch
    from editing.loading import load_host
    from editing.registry import build_editor

    host = load_host(Settings(dtype="float32"))
    overrides: dict[str, Any] = {"checkpoint": args.checkpoint} if args.checkpoint else {}
    overrides.update({key: json.loads(value) for key, value in (item.split("=", 1) for item in args.set)})
    editor = build_editor(args.editor, host=host, overrides=overrides)
    cases = load_cases(args.data)
    rows = []
    for size in (int(s) for s in args.sizes.split(",")):
        specs = tuple(c.to_spec(with_probes=False) for c in cases[:size])
        batch = EditBatch(f"b{size}", specs)
        pairs = batch.pairs
        forward_backward(host, pairs)  # warm-up
        editor.restore(editor.apply(editor.compute(batch)))
        fb = _median_seconds(lambda: forward_backward(host, pairs), args.repeats)  # noqa: B023
        compute = _median_seconds(lambda: editor.compute(batch), args.repeats)  # noqa: B023
        artifact = editor.compute(batch)

        def apply_once() -> None:
            editor.restore(editor.apply(artifact))  # noqa: B023

        apply = _median_seconds(apply_once, args.repeats)
        rows.append({"batch": size, "answer_tokens": artifact.meta["answer_tokens"], "fb_s": round(fb, 4),
                     "compute_s": round(compute, 4), "apply_restore_s": round(apply, 4),
                     "compute_over_fb": round(compute / fb, 2),
                     "edits_per_s": round(size / (compute + apply), 2)})
        print(json.dumps(rows[-1]), flush=True)  # noqa: T201 - a bench script reports on stdout
    info = {"threads": torch.get_num_threads(), "device": str(host.device), "editor": args.editor,
            "modules": len(editor.tracked_parameters()), "overrides": overrides}
    print(json.dumps(info))  # noqa: T201


if __name__ == "__main__":
    main()
