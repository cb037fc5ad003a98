"""Sequential-editing check for the hypernetwork editors (and ft) on SmolLM2, teacher-forced.

Applies T turns of n edits from the base model, then scores every edited case once with the
final model: efficacy (new-target token accuracy on the edit prompt), generalisation (same on
the rephrase) and locality (agreement of argmax tokens before/after on the locality prompt and
its answer). The quick check used to choose modules, α₀ and training settings
(docs/hypernet.md §4-§5): it can prime an untrained network's normaliser, which `factpatch eval`
does not; the full protocol with every metric family is `factpatch eval`. Not part of the package.

  FACTPATCH_DATA_DIR=/tmp/fpdata python bench/hypernet_stream.py --editor rledit --untrained \
      --modules A --lr 1e-4 --turns 20 --edits 10 --data /work/shared/data/counterfact-val.json
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path
from typing import Any

import torch


def accuracy(host: Any, pairs: list[tuple[str, str]], *, batch: int = 32) -> tuple[list[float], list[torch.Tensor]]:
    """Per pair: token accuracy of the continuation (teacher-forced) and the argmax tokens."""
    from editing.editors.hypernet.capture import answer_logits, answer_rows

    accs: list[float] = []
    argmaxes: list[torch.Tensor] = []
    with torch.no_grad():
        for start in range(0, len(pairs), batch):
            tokens = host.encode_pairs(pairs[start : start + batch])
            top = answer_logits(host.model, tokens).argmax(-1)  # (N,)
            example, labels = answer_rows(tokens)
            for i in range(tokens.input_ids.shape[0]):
                rows = example == i
                argmaxes.append(top[rows].cpu())
                accs.append(float((top[rows] == labels[rows]).float().mean()))
    return accs, argmaxes


def prime(editor: Any, cases: list[Any], n: int, batches: int) -> None:
    """Fill an untrained editor's normaliser from base-model batches (what training would have done)."""
    from editing.editors.hypernet.capture import collect

    for b in range(batches):
        chunk = cases[b * n : (b + 1) * n]
        tokens = editor.host.encode_pairs([(c.prompt, c.target_new) for c in chunk])
        factors, _ = collect(editor.host.model, editor.modules, tokens)
        editor._stats = editor.updated_stats(factors)
        editor._base_stats = {k: v.clone() for k, v in editor._stats.items()}


def run(args: argparse.Namespace) -> dict[str, Any]:
    from contract.config import Settings
    from editing.data import load_cases
    from editing.editors.base import EditBatch
    from editing.editors.hypernet.train import usable
    from editing.loading import load_host
    from editing.registry import build_editor

    host = load_host(Settings(dtype="float32"))
    cases = usable(load_cases(args.data))[args.offset : args.offset + args.turns * args.edits]
    loc_pairs = [(c.locality[0].prompt, c.locality[0].answer) for c in cases]
    _, loc_before = accuracy(host, loc_pairs)
    overrides: dict[str, Any] = {k: json.loads(v) for k, v in (kv.split("=", 1) for kv in args.set)}
    if args.untrained:
        overrides.update(untrained=True, modules=args.modules, lr=args.lr)
    if args.checkpoint:
        overrides["checkpoint"] = args.checkpoint
    editor = build_editor(args.editor, host=host, overrides=overrides)
    if args.untrained and args.prime:
        prime(editor, usable(load_cases(args.prime_data)), args.edits, args.prime)
    started = time.perf_counter()
    for t in range(args.turns):
        chunk = cases[t * args.edits : (t + 1) * args.edits]
        editor.apply(editor.compute(EditBatch(f"t{t}", tuple(c.to_spec(with_probes=False) for c in chunk))))
    edit_s = time.perf_counter() - started
    es, _ = accuracy(host, [(c.prompt, c.target_new) for c in cases])
    gs, _ = accuracy(host, [(c.rephrases[0], c.target_new) for c in cases])
    _, loc_after = accuracy(host, loc_pairs)
    ls = [float((a == b).float().mean()) for a, b in zip(loc_before, loc_after, strict=True)]
    result: dict[str, Any] = {"ES": _mean(es), "GS": _mean(gs), "LS": _mean(ls)}
    result["mean"] = sum(result.values()) / 3
    result.update(edit_seconds=round(edit_s, 1), turns=args.turns, edits=args.edits, editor=args.editor,
                  modules=args.modules, lr=args.lr, untrained=args.untrained, checkpoint=args.checkpoint,
                  set=args.set, label=args.label, prime=args.prime, data=str(args.data), offset=args.offset)
    return result


def _mean(values: list[float]) -> float:
    return round(sum(values) / max(len(values), 1), 4)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--editor", default="rledit")
    parser.add_argument("--data", type=Path, default=Path("/work/shared/data/counterfact-val.json"))
    parser.add_argument("--prime-data", type=Path, default=Path("/work/shared/data/counterfact-train.json"))
    parser.add_argument("--offset", type=int, default=0)
    parser.add_argument("--turns", type=int, default=20)
    parser.add_argument("--edits", type=int, default=10)
    parser.add_argument("--untrained", action="store_true")
    parser.add_argument("--modules", default="A")
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--prime", type=int, default=20, help="normaliser priming batches (untrained only)")
    parser.add_argument("--checkpoint", default=None)
    parser.add_argument("--set", action="append", default=[], help="editor config key=value")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", type=Path, default=None, help="append the result as a JSON line")
    parser.add_argument("--label", default="", help="a name for this run in the output")
    args = parser.parse_args()
    logging.basicConfig(level="WARNING")
    if args.threads:
        torch.set_num_threads(args.threads)
    result = run(args)
    line = json.dumps(result)
    if args.out:
        with args.out.open("a") as handle:
            handle.write(line + "\n")
    logging.getLogger("bench").warning("%s", line)


if __name__ == "__main__":
    main()
