"""Edit, rollback and replay timings through the real writer on the configured model.

    python bench/bench_foundation.py --edits 8 --out runs/bench-foundation.json

Each edit is one revision (accept → applied, with the report and guard), timed end to end;
the editor's own compute is timed separately, as is one forward+backward of the model on the
same prompt for scale. Rollbacks restore a revision from snapshot + artifacts; replay rebuilds
every revision from the base and verifies each checksum.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from contract.config import Settings
from contract.protocol import Command, NewCommand, new_id
from editing.data import load_cases
from store.log import SqliteEditLog
from store.queue import MemoryTransport
from workers.runtime import WorkerRuntime, build_worker

DEFAULT_DATA = "/work/shared/data/counterfact-val.json"


def submit(rt: WorkerRuntime, log: SqliteEditLog, kind: str, body: dict[str, Any]) -> str:
    command_id = new_id(kind[:2])
    log.accept([NewCommand(id=command_id, kind=kind, body=body)])  # type: ignore[arg-type]
    rt.transport.commands.put(Command(kind=kind, id=command_id))  # type: ignore[arg-type]
    return command_id


def timed(rt: WorkerRuntime, log: SqliteEditLog, kind: str, body: dict[str, Any]) -> tuple[float, str]:
    """Seconds from submission to resolution, and the status (an edit may be rejected by the guard)."""
    command_id = submit(rt, log, kind, body)
    start = time.perf_counter()
    rt.writer.process_pending()
    elapsed = time.perf_counter() - start
    status = log.get_command(command_id).status
    allowed = ("applied", "rejected") if kind == "edit" else ("applied",)
    assert status in allowed, f"{kind} ended {status}: {log.get_command(command_id).error}"
    return elapsed, status


def forward_backward(rt: WorkerRuntime, prompt: str, target: str) -> float:
    host = rt.state.host
    tokens = host.encode_pairs([(prompt, target)])
    start = time.perf_counter()
    weight = host.parameter(host.tracked[0])
    weight.requires_grad_(True)
    try:
        host.logits(tokens).sum().backward()
    finally:
        weight.requires_grad_(False)
        weight.grad = None
    return time.perf_counter() - start


def summary(values: list[float]) -> dict[str, float]:
    return {"mean_s": statistics.mean(values), "median_s": statistics.median(values),
            "min_s": min(values), "max_s": max(values), "n": len(values)}


def run(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(data_dir=Path(tmp), models_dir=Path(args.models_dir), editor=args.editor,
                            log={"snapshot_every": args.snapshot_every})
        log = SqliteEditLog(Path(tmp) / "log.sqlite3")
        rt = build_worker(settings, log=log, transport=MemoryTransport())
        rt.writer.start()
        cases = load_cases(args.data, limit=args.edits + 1)
        spec = cases[0].to_spec()
        forward_backward(rt, spec.prompt, spec.target)  # warm-up, discarded
        fb = [forward_backward(rt, c.prompt, c.target_new) for c in cases[: args.edits]]
        compute = []
        for case in cases[: args.edits]:
            start = time.perf_counter()
            rt.state.editor.compute(_batch(case))
            compute.append(time.perf_counter() - start)
        edits = [timed(rt, log, "edit", c.to_spec().model_dump()) for c in cases[: args.edits]]
        head = log.head().revision
        rollbacks = {
            "to_base": timed(rt, log, "rollback", {"to_revision": 0})[0],
            "to_middle": timed(rt, log, "rollback", {"to_revision": head // 2 + 1})[0],
            "to_head": timed(rt, log, "rollback", {"to_revision": head})[0],
        }
        replay = timed(rt, log, "replay", {})[0]
        revisions = log.head().revision
    return {
        "model": settings.model, "editor": args.editor, "edits": args.edits,
        "forward_backward": summary(fb), "editor_compute": summary(compute),
        "edit_revision": summary([t for t, _ in edits]),
        "edits_applied": sum(status == "applied" for _, status in edits),
        "edits_rejected_by_guard": sum(status == "rejected" for _, status in edits),
        "rollback_s": rollbacks,
        "replay": {"seconds": replay, "revisions_verified": revisions, "per_revision_s": replay / revisions},
    }


def _batch(case: Any) -> Any:
    from editing.editors.base import EditBatch

    return EditBatch(batch_id="bench", edits=(case.to_spec(),))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--edits", type=int, default=8)
    parser.add_argument("--editor", default="ft")
    parser.add_argument("--data", default=DEFAULT_DATA)
    parser.add_argument("--snapshot-every", type=int, default=25)
    parser.add_argument("--models-dir", default=str(Path.home() / ".factpatch" / "models"))
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    result = run(args)
    text = json.dumps(result, indent=2)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text)
    print(text)  # noqa: T201 - a benchmark script reports on stdout


if __name__ == "__main__":
    main()
