"""Edits stacked with no guard: how much the editor alone disturbs what it was not asked to change.

The edits of bench/data/wellknown.json are applied one after another (one batch each, prompt,
target and subject only) straight through the editor, no service and no guard. Before and after,
greedy answers of the edit prompts (ES), the guard's standing facts (still answered right, of those
the base model answered right) and the benchmark's unrelated neighbours (kept) are compared.

    python bench/bench_stacked.py --editor rledit --set keep_coef=1000 --set refine_lr=0.25
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import torch
from bench_wellknown import DATA, names  # the same set and the same "names the answer" rule


def answers(host: Any, data: dict[str, Any], facts: list[Any]) -> dict[str, list[str]]:
    return {"standing": host.greedy([f.prompt for f in facts], max_new_tokens=6),
            "neighbours": host.greedy([n["prompt"] for n in data["neighbours"]], max_new_tokens=6),
            "edits": host.greedy([e["prompt"] for e in data["edits"]], max_new_tokens=6)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--editor", default="rledit")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="editor config override (JSON value); repeatable")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from contract.config import Settings
    from contract.protocol import EditSpec
    from editing.editors.base import EditBatch
    from editing.loading import load_host
    from editing.probes import answers_fact, load_standing, shipped_standing_path
    from editing.registry import build_editor

    overrides = {key: json.loads(value) for key, value in (item.split("=", 1) for item in args.set)}
    data = json.loads(DATA.read_text())
    host = load_host(Settings())
    facts = load_standing(shipped_standing_path())
    before = answers(host, data, facts)
    editor = build_editor(args.editor, host=host, overrides=overrides)
    started = time.perf_counter()
    for index, edit in enumerate(data["edits"]):
        spec = EditSpec(prompt=edit["prompt"], target=edit["target"], subject=edit["subject"])
        editor.apply(editor.compute(EditBatch(f"b{index}", (spec,))))
    seconds = time.perf_counter() - started
    after = answers(host, data, facts)
    right = [i for i, f in enumerate(facts) if answers_fact(before["standing"][i], f.answer)]
    known = [i for i, n in enumerate(data["neighbours"]) if names(before["neighbours"][i], n["answer"])]
    result = {
        "editor": args.editor, "overrides": overrides,
        "ES": round(sum(names(t, e["target"]) for t, e in zip(after["edits"], data["edits"], strict=True))
                    / len(data["edits"]), 3),
        "standing_kept": f"{sum(answers_fact(after['standing'][i], facts[i].answer) for i in right)}/{len(right)}",
        "neighbours_kept": f"{sum(names(after['neighbours'][i], data['neighbours'][i]['answer']) for i in known)}"
                           f"/{len(known)}",
        "edit_seconds": round(seconds, 1),
    }
    print(json.dumps(result))  # noqa: T201 - a bench script reports on stdout


if __name__ == "__main__":
    main()
