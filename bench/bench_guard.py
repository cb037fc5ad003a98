"""The guard's default probes on the real model: which single edits it rejects, and what they broke.

Each edit is sent the way apps send it (prompt, target, subject; no locality prompts), one at a
time from the base model: the editor computes and applies it, the guard's own code decides
(`editing.guard`: standing facts, derived neighbours, with the configured settings), and the
edit is undone. Independently of the guard, every neighbour of bench/data/wellknown.json (never
sent, never probed by the guard) is decoded before and after: an edit "breaks" one when the base
model named its answer first and the edited one does not. So the table says how many breaking
edits the guard rejects (true rejections) and how many non-breaking ones (false rejections
where the edit is clean, which `lemoe` edits should be).

Edits: the 26 of wellknown.json, and `--counterfact N` CounterFact edits (seeded sample).
`--writer-cost N` also times N of them through the real writer (one revision each, in-memory log),
with the default guard and with its default probes off (standing [] and neighbours 0).

    python bench/bench_guard.py --editor rledit --counterfact 24 --out runs/guard-rledit.json
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path
from typing import Any

import torch

from contract.config import Settings
from contract.protocol import EditSpec
from contract.subjects import edit_subject
from editing.editors.base import EditBatch, Editor
from editing.guard import StandingCache, guard_probes, guard_verdict, measure, watched
from editing.host import ModelHost
from editing.loading import load_host
from editing.probes import about_any, answers_fact
from editing.registry import build_editor

DATA = Path(__file__).parent / "data" / "wellknown.json"
COUNTERFACT = Path("/work/shared/data/counterfact-edit.json")


def edits(counterfact: int, seed: int) -> list[tuple[str, EditSpec]]:
    bench = json.loads(DATA.read_text())
    out = [("wellknown", EditSpec(prompt=e["prompt"], target=e["target"], subject=e["subject"]))
           for e in bench["edits"]]
    if counterfact:
        cases = json.loads(COUNTERFACT.read_text())
        random.Random(seed).shuffle(cases)
        out += [("counterfact", EditSpec(prompt=c["prompt"], target=c["target_new"], subject=c["subject"]))
                for c in cases[:counterfact]]
    return out


def neighbours() -> dict[str, str]:
    return {n["prompt"]: n["answer"] for n in json.loads(DATA.read_text())["neighbours"]}


def run_one(host: ModelHost, editor: Editor, settings: Settings, spec: EditSpec, cache: StandingCache,
            base: dict[str, str], checksum: str, index: int) -> dict[str, Any]:
    batch = EditBatch(batch_id=f"b{index}", edits=(spec,))
    guard = settings.guard
    probes = guard_probes(batch, guard)
    started = time.perf_counter()
    known = cache.get(checksum, [f.prompt for f in probes.standing])
    before = measure(host, batch, guard, probes, standing=probes.standing, known=known)
    cache.put(checksum, before.standing)
    guard_s = time.perf_counter() - started
    started = time.perf_counter()
    undo = editor.apply(editor.compute(batch))
    edit_s = time.perf_counter() - started
    started = time.perf_counter()
    facts = watched(probes, before)
    after = measure(host, batch, guard, probes, standing=facts)
    finding = guard_verdict(before, after, guard, facts)
    guard_s += time.perf_counter() - started
    truth = neighbours()
    subject = [s for s in (edit_subject(spec.prompt, spec.subject),) if s]
    asked = [p for p in truth if not about_any(p, subject)]
    now = dict(zip(asked, host.greedy(asked, max_new_tokens=6), strict=True))
    own = host.greedy([spec.prompt], max_new_tokens=6)[0]
    editor.restore(undo)
    assert host.checksum(editor.state_tensors()) == checksum, "the edit was not undone exactly"
    broke = [{"prompt": p, "before": base[p], "after": now[p]} for p in asked
             if answers_fact(base[p], truth[p]) and not answers_fact(now[p], truth[p])]
    return {"prompt": spec.prompt, "target": spec.target, "lands": answers_fact(own, spec.target),
            "rejected": finding is not None, "reason": finding.reason if finding else None,
            "guard_broken": finding.broken if finding else [], "breaks": broke,
            "probes": {"standing_watched": len(facts), "neighbours": len(probes.all_neighbours)},
            "edit_s": round(edit_s, 3), "guard_s": round(guard_s, 3)}


def summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    breaking = [r for r in rows if r["breaks"]]
    clean = [r for r in rows if not r["breaks"]]
    return {
        "edits": len(rows), "breaking": len(breaking),
        "rejected_breaking": sum(r["rejected"] for r in breaking),
        "rejected_not_breaking": sum(r["rejected"] for r in clean),
        "guard_s_median": sorted(r["guard_s"] for r in rows)[len(rows) // 2],
        "edit_s_median": sorted(r["edit_s"] for r in rows)[len(rows) // 2],
    }


def writer_cost(host: ModelHost, editor_name: str, count: int) -> dict[str, Any]:
    """Median writer seconds per edit (edits sent one at a time), default guard vs probes off."""
    from contract.protocol import NewCommand, new_id
    from store.log import SqliteEditLog
    from store.queue import MemoryTransport
    from workers.runtime import build_worker

    out: dict[str, Any] = {}
    for name, guard in (("default", {}), ("probes_off", {"standing": [], "neighbours": 0})):
        settings = Settings(_env_file=None, dtype="float32", editor=editor_name, guard=guard)
        log = SqliteEditLog(":memory:")
        runtime = build_worker(settings, log=log, transport=MemoryTransport(), host=host)
        runtime.writer.start()
        seconds, statuses = [], []
        for _, spec in edits(0, 0)[:count]:
            command_id = new_id("ed")
            log.accept([NewCommand(id=command_id, kind="edit", body=spec.model_dump())])
            started = time.perf_counter()
            runtime.writer.process_pending()
            seconds.append(time.perf_counter() - started)
            statuses.append(log.get_command(command_id).status)
        runtime.state.restore_to(0)
        log.close()
        out[name] = {"median_s": round(sorted(seconds)[len(seconds) // 2], 3),
                     "applied": statuses.count("applied"), "rejected": statuses.count("rejected")}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--editor", default="rledit")
    parser.add_argument("--counterfact", type=int, default=24, help="CounterFact edits besides wellknown.json")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--writer-cost", type=int, default=0, help="also time this many edits through the writer")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    settings = Settings(_env_file=None, dtype="float32")
    host = load_host(settings)
    editor = build_editor(args.editor, host=host, overrides=settings.editors.get(args.editor))
    checksum = host.checksum(editor.state_tensors())
    truth = list(neighbours())
    base = dict(zip(truth, host.greedy(truth, max_new_tokens=6), strict=True))
    cache, rows = StandingCache(), []
    for i, (source, spec) in enumerate(edits(args.counterfact, args.seed)):
        row = {"source": source, **run_one(host, editor, settings, spec, cache, base, checksum, i)}
        rows.append(row)
        print(json.dumps({k: row[k] for k in ("source", "prompt", "target", "rejected", "reason")}), flush=True)  # noqa: T201
    result = {"editor": args.editor, "guard": settings.guard.model_dump(mode="json", exclude={"standing"}),
              "by_source": {s: summary([r for r in rows if r["source"] == s]) for s in ("wellknown", "counterfact")
                            if any(r["source"] == s for r in rows)},
              "all": summary(rows), "rows": rows}
    if args.writer_cost:
        result["writer"] = writer_cost(host, args.editor, args.writer_cost)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1, ensure_ascii=False))
    print(json.dumps({k: v for k, v in result.items() if k != "rows"}, indent=1))  # noqa: T201


if __name__ == "__main__":
    main()
