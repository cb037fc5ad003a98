"""Writing an evaluation run: results.json, results.md and one PNG of curves per metric family.

results.json (schema "factpatch.eval/1"):
    schema, created, wall_s
    config      turns, edits_per_turn, total_edits, offset, curve_every, seed, eval options,
                editors [{name, overrides}]
    dataset     path, sha256, format, records (in the file)      ┐ passed in by the caller
    model       id, device, dtype; git {commit, dirty}; environment {python, torch, transformers,
                threads}                                           ┘
    metric_definitions  {family: one-line definition} (full ones: evaluation/metrics.py)
    results     {name: {kind "baseline"|"editor", error, describe, final {family: {es, gs, ls,
                [ls_gold], mean}}, counts {family.metric: cases averaged}, curve [{turns, edits,
                eval_s, metrics}], timing {...}, turns [{turn, compute_s, apply_s, artifact_bytes,
                error}], diagnostics, per_case? [{case_id, turn, family.metric: value}]}}
"""

from __future__ import annotations

import json
import logging
import statistics
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from evaluation.lifelong import BASELINE, EditorResult, RunResult
from evaluation.metrics import FAMILIES, METRIC_DOCS, counts

logger = logging.getLogger(__name__)

SCHEMA = "factpatch.eval/1"
COLUMNS = {"es": "ES", "gs": "GS", "ls": "LS", "ls_gold": "LS gold", "mean": "mean"}
TITLES = {
    "token": "Token accuracy (teacher-forced; LS = agreement with the base model)",
    "cf": "CounterFact per-token comparison (new > true; LS: true > new)",
    "cf_prob": "Probability comparison P(new) > P(true) (ROME-style)",
    "em": "Autoregressive exact match, token ids (LS = greedy output unchanged)",
    "em_str": "Autoregressive exact match, string (LS = greedy text unchanged)",
}


def timing(result: EditorResult, edits_per_turn: int) -> dict[str, float | int] | None:
    """Per-turn compute/apply wall time, throughput and artifact sizes of one editor."""
    if not result.turns:
        return None
    compute = [t.compute_s for t in result.turns]
    apply = [t.apply_s for t in result.turns]
    size = [t.artifact_bytes for t in result.turns if t.error is None]
    edits = len(result.turns) * edits_per_turn
    return {
        "setup_s": result.setup_s, "turns": len(result.turns), "edits": edits,
        "failed_turns": sum(t.error is not None for t in result.turns),
        "compute_s_mean": statistics.fmean(compute), "compute_s_total": sum(compute),
        "apply_s_mean": statistics.fmean(apply), "apply_s_total": sum(apply),
        "edits_per_s": edits / max(sum(compute) + sum(apply), 1e-9),
        "artifact_bytes_mean": statistics.fmean(size) if size else 0.0, "artifact_bytes_total": sum(size),
        "eval_s_total": sum(p.eval_s for p in result.curve),
    }


def editor_json(result: EditorResult, run: RunResult, *, per_case: bool) -> dict[str, Any]:
    out: dict[str, Any] = {
        "kind": "baseline" if result.name == BASELINE else "editor",
        "error": result.error, "describe": result.describe, "final": result.final,
        "counts": counts(result.per_case) if result.per_case else {},
        "curve": [{"turns": p.turns, "edits": p.edits, "eval_s": p.eval_s, "metrics": p.metrics}
                  for p in result.curve],
        "timing": timing(result, run.config.edits_per_turn),
        "turns": [vars(t) for t in result.turns],
        "diagnostics": result.diagnostics,
    }
    if per_case:
        n = run.config.edits_per_turn
        out["per_case"] = [
            {"case_id": case.case_id, "turn": i // n, **scores}
            for i, (case, scores) in enumerate(zip(run.cases, result.per_case, strict=False))
        ]
    return out


def results_json(run: RunResult, meta: dict[str, Any], *, per_case: bool = False) -> dict[str, Any]:
    c = run.config
    config = {
        "turns": c.turns, "edits_per_turn": c.edits_per_turn, "total_edits": c.total_edits,
        "offset": c.offset, "curve_every": c.curve_every, "seed": c.seed, "pass_probes": c.pass_probes,
        "eval": vars(c.options),
        "editors": [{"name": r.name, "overrides": r.overrides} for r in run.runs],
    }
    doc: dict[str, Any] = {"schema": SCHEMA, "created": datetime.now(UTC).isoformat(timespec="seconds"),
                           "wall_s": run.wall_s, "config": config}
    doc.update(meta)
    doc["metric_definitions"] = dict(METRIC_DOCS)
    doc["results"] = {r.name: editor_json(r, run, per_case=per_case) for r in [run.baseline, *run.editors]}
    return doc


# ---- markdown -------------------------------------------------------------------------------------
def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _family_table(family: str, results: dict[str, Any]) -> list[str]:
    cols = [*FAMILIES[family], "mean"]
    lines = [f"### {TITLES[family]}", "", "| editor | " + " | ".join(COLUMNS[c] for c in cols) + " |",
             "|---|" + "---|" * len(cols)]
    for name, res in results.items():
        final = (res["final"] or {}).get(family, {})
        lines.append(f"| {name} | " + " | ".join(_fmt(final.get(c)) for c in cols) + " |")
    return [*lines, ""]


def _timing_table(results: dict[str, Any]) -> list[str]:
    head = ("| editor | turns | edits | compute s/turn | compute total s | apply s/turn | edits/s | "
            "artifact bytes/turn | eval total s | failed turns |")
    lines = ["### Timing (wall clock)", "", head, "|---|" + "---|" * 9]
    for name, res in results.items():
        t = res["timing"]
        if t is None:
            continue
        cells = [t["turns"], t["edits"], _fmt(t["compute_s_mean"], 2), _fmt(t["compute_s_total"], 1),
                 _fmt(t["apply_s_mean"], 4), _fmt(t["edits_per_s"], 2), f"{t['artifact_bytes_mean']:.0f}",
                 _fmt(t["eval_s_total"], 1), t["failed_turns"]]
        lines.append(f"| {name} | " + " | ".join(str(c) for c in cells) + " |")
    return [*lines, ""]


def results_markdown(doc: dict[str, Any]) -> str:
    c, data = doc["config"], doc.get("dataset", {})
    lines = [
        "# Lifelong editing evaluation", "",
        f"- data: `{data.get('path')}` ({data.get('format')}, sha256 `{str(data.get('sha256'))[:12]}`), "
        f"cases {c['offset']}…{c['offset'] + c['total_edits'] - 1}",
        f"- stream: {c['turns']} turns x {c['edits_per_turn']} edits = {c['total_edits']}, scored after the "
        f"last turn (retention)" + (f"; curve every {c['curve_every']} turns" if c["curve_every"] else ""),
        f"- model: `{doc.get('model', {}).get('id')}`; git {doc.get('git', {}).get('commit')}; "
        f"wall {doc['wall_s']:.0f} s",
        f"- `{BASELINE}` is the unedited model on the same cases. Definitions: evaluation/metrics.py.", "",
    ]
    errors = [f"- **{n}** failed: {r['error']}" for n, r in doc["results"].items() if r["error"]]
    lines += [*errors, ""] if errors else []
    for family in FAMILIES:
        lines += _family_table(family, doc["results"])
    lines += _timing_table(doc["results"])
    return "\n".join(lines)


# ---- plots ----------------------------------------------------------------------------------------
def plot_curves(doc: dict[str, Any], out_dir: Path) -> list[Path]:
    """One PNG per family: a panel per metric, edits on x, one line per editor."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    for family, metrics in FAMILIES.items():
        fig, axes = plt.subplots(1, len(metrics), figsize=(4 * len(metrics), 3.4), squeeze=False)
        for ax, metric in zip(axes[0], metrics, strict=True):
            _plot_metric(ax, doc["results"], family, metric)
        axes[0][0].legend(fontsize=8)
        fig.suptitle(TITLES[family], fontsize=10)
        fig.tight_layout()
        path = out_dir / f"curve_{family}.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        paths.append(path)
    return paths


def _plot_metric(ax: Any, results: dict[str, Any], family: str, metric: str) -> None:
    for name, res in results.items():
        points = [(p["edits"], p["metrics"][family][metric]) for p in res["curve"]
                  if p["metrics"][family][metric] is not None]
        if not points:
            continue
        xs, ys = zip(*points, strict=True)
        style = {"linestyle": "--", "color": "gray"} if name == BASELINE else {}
        ax.plot(xs, ys, marker="o", markersize=3, label=name, **style)
    ax.set_title(f"{family}.{metric}", fontsize=9)
    ax.set_xlabel("edits")
    ax.set_xlim(left=0)
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)


def write_report(
    run: RunResult, out_dir: Path, meta: dict[str, Any], *, per_case: bool = False
) -> dict[str, Any]:
    """results.json, results.md and curve_<family>.png in `out_dir`; returns the JSON document."""
    out_dir.mkdir(parents=True, exist_ok=True)
    doc = results_json(run, meta, per_case=per_case)
    (out_dir / "results.json").write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
    (out_dir / "results.md").write_text(results_markdown(doc), encoding="utf-8")
    plot_curves(doc, out_dir)
    logger.info("wrote %s", out_dir)
    return doc


# ---- provenance -----------------------------------------------------------------------------------
def dataset_info(path: Path, fmt: str) -> dict[str, Any]:
    """Path, sha256, resolved format and record count of a dataset file."""
    import hashlib

    from editing.data.loaders import detect_format, read_records

    records = read_records(path)
    if fmt == "auto" and records:
        fmt = detect_format(records[0])
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    return {"path": str(path.resolve()), "sha256": digest, "format": fmt, "records": len(records)}


def git_info() -> dict[str, Any]:
    """Commit and dirtiness of the checkout this package runs from (read-only git calls)."""
    import subprocess

    root = Path(__file__).resolve().parents[1]  # the repository (evaluation/results.py)

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": git("rev-parse", "HEAD"), "dirty": None if status is None else bool(status)}


def environment_info() -> dict[str, Any]:
    import platform

    import torch
    import transformers

    return {"python": platform.python_version(), "torch": torch.__version__,
            "transformers": transformers.__version__, "threads": torch.get_num_threads()}
