"""factpatch eval: the lifelong editing protocol over one dataset, for several editors.

    factpatch eval --data counterfact-edit.json --editors ft,rledit --turns 50 --edits-per-turn 10 \
        --curve-every 10 --editor-config ft.steps=8 --out runs/eval-ft

Editor configs: the settings' `editors` block (FACTPATCH_EDITORS__FT__STEPS=8), then each
`--editor-config` in order: a JSON file {"ft": {"steps": 8}} or `name.key=value` (value parsed as
JSON when it parses, else a string; `name.a.b=1` sets a nested field). `none` in `--editors` is
accepted and ignored: the unedited model is always reported as the `none` row.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

HELP = "run the lifelong editing benchmark (T turns x n edits, scored after the last turn)"
logger = logging.getLogger("factpatch")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True, type=Path, help="dataset file (JSON array or JSON Lines)")
    parser.add_argument("--format", default="auto", help="dataset format (default: detect from the fields)")
    parser.add_argument("--editors", required=True, help="comma-separated editor names, e.g. ft,rledit")
    parser.add_argument("--turns", type=int, required=True, help="edit batches T")
    parser.add_argument("--edits-per-turn", type=int, required=True, help="edits per batch n")
    parser.add_argument("--offset", type=int, default=0, help="first case of the stream (default 0)")
    parser.add_argument("--curve-every", type=int, default=0, help="re-evaluate every K turns (0: last only)")
    parser.add_argument("--model", default=None, help="model alias, folder, .gguf or hub id")
    parser.add_argument("--data-dir", type=Path, default=None, help="model cache folder (default: settings)")
    parser.add_argument("--device", default=None, help="auto, cpu, cuda, cuda:1 (default: settings)")
    parser.add_argument("--dtype", default=None, choices=["auto", "float32", "bfloat16", "float16"])
    parser.add_argument("--editor-config", action="append", default=[], metavar="FILE|NAME.KEY=VALUE",
                        help="editor config overrides (repeatable)")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default runs/eval-<time>)")
    parser.add_argument("--seed", type=int, default=0, help="seed set before each editor is built")
    parser.add_argument("--per-case", action="store_true", help="store every case's scores in results.json")
    parser.add_argument("--eval-batch-size", type=int, default=32, help="sequences per evaluation forward")
    parser.add_argument("--pass-probes", action="store_true",
                        help="send rephrases and locality prompts with each edit (default: withheld)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--no-locality-em", action="store_true", help="skip greedy decoding of locality")


def parse_editors(spec: str) -> list[str]:
    names = [n.strip() for n in spec.split(",") if n.strip()]
    return [n for n in dict.fromkeys(names) if n != "none"]


def _set(target: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, leaf = dotted.split(".")
    for key in parents:
        target = target.setdefault(key, {})
    target[leaf] = value


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> None:
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = value


def parse_editor_config(
    items: list[str], base: dict[str, dict[str, Any]] | None = None
) -> dict[str, dict[str, Any]]:
    """{editor: overrides} from JSON files and `name.key=value` items, later ones winning."""
    out: dict[str, dict[str, Any]] = json.loads(json.dumps(base or {}))
    for item in items:
        if "=" not in item:
            _merge(out, json.loads(Path(item).read_text(encoding="utf-8")))
            continue
        key, raw = item.split("=", 1)
        if "." not in key:
            raise ValueError(f"--editor-config {item!r}: expected NAME.KEY=VALUE or a JSON file")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        _set(out, key.strip(), value)
    return out


def _settings(args: argparse.Namespace) -> Any:
    from contract.config import Settings

    fields = {"model": args.model, "data_dir": args.data_dir, "device": args.device, "dtype": args.dtype}
    return Settings(**{k: v for k, v in fields.items() if v is not None})


def _editor_runs(names: list[str], overrides: dict[str, dict[str, Any]]) -> list[Any]:
    """Fail fast: unknown names and invalid configs are reported before any model is loaded."""
    from editing.registry import get_editor
    from evaluation.lifelong import EditorRun

    runs = []
    for name in names:
        get_editor(name).config_cls.model_validate(overrides.get(name, {}))
        runs.append(EditorRun(name=name, overrides=overrides.get(name, {})))
    unused = sorted(set(overrides) - set(names))
    if unused:
        logger.warning("editor configs given for editors not run: %s", ", ".join(unused))
    return runs


def run(args: argparse.Namespace) -> int:
    from cli.main import configure_logging
    from editing.data import load_cases
    from editing.loading import load_host
    from evaluation.lifelong import StreamConfig, run_lifelong
    from evaluation.metrics import EvalOptions
    from evaluation.results import dataset_info, environment_info, git_info, write_report

    settings = _settings(args)
    configure_logging(settings.log_level)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    overrides = parse_editor_config(args.editor_config, settings.editors)
    runs = _editor_runs(parse_editors(args.editors), overrides)
    options = EvalOptions(batch_size=args.eval_batch_size, locality_em=not args.no_locality_em)
    config = StreamConfig(turns=args.turns, edits_per_turn=args.edits_per_turn, offset=args.offset,
                          curve_every=args.curve_every, seed=args.seed, options=options,
                          pass_probes=args.pass_probes)
    cases = load_cases(args.data, args.format, limit=args.offset + config.total_edits)
    out = args.out or Path("runs") / time.strftime("eval-%Y%m%d-%H%M%S")
    logger.info("eval: %d x %d edits, editors %s, out %s", config.turns, config.edits_per_turn,
                [r.name for r in runs] or "none", out)
    fixed = {"dataset": dataset_info(args.data, args.format), "git": git_info(), "environment": environment_info()}

    def report(result: Any) -> dict[str, Any]:
        """results.json/.md of the editors finished so far (rewritten after each one)."""
        meta = {**fixed, "model": dict(result.baseline.describe)}
        return write_report(result, out, meta, per_case=args.per_case)

    doc = report(run_lifelong(lambda: load_host(settings), cases, runs, config, on_editor=report))
    sys.stdout.write((out / "results.md").read_text(encoding="utf-8") + "\n")
    return 1 if any(r["error"] for r in doc["results"].values()) else 0
