"""factpatch train: meta-train the rledit / malmen hypernetwork on an edit dataset."""

from __future__ import annotations

import argparse
import logging
import shlex
import sys
from pathlib import Path

HELP = "train the rledit or malmen hypernetwork for a model on an edit dataset (CPU or CUDA)"
logger = logging.getLogger("factpatch")

# (flag, TrainConfig field, type, help)
_TRAIN_FLAGS: tuple[tuple[str, str, type, str], ...] = (
    ("--modules", "modules", str,
     "edited modules: preset (A-F; F = down_proj:4-8, the default), 'gate_proj:10-14,up_proj:17-23' or dotted names"),
    ("--key-site", "key_site", str, "where keys are read: subject (last token of the subject) or answer"),
    ("--turns", "turns", int, "T: turns per trajectory"),
    ("--edits-per-turn", "edits_per_turn", int, "n: edits per turn"),
    ("--back-depth", "back_depth", int, "J: backtracked batches (rledit)"),
    ("--decay", "decay", float, "μ: backtracking decay"),
    ("--loc-coef", "loc_coef", float, "c_loc: locality KL weight"),
    ("--reg-coef", "reg_coef", float, "η: ‖ΔW‖² weight"),
    ("--rank", "rank", int, "low-rank width of each block"),
    ("--blocks", "blocks", int, "residual blocks"),
    ("--lr", "lr", float, "initial edit step α"),
    ("--meta-lr", "meta_lr", float, "Adam learning rate of the network"),
    ("--alpha-lr", "alpha_lr", float, "Adam learning rate of α relative to its initial value"),
    ("--lambda-lr", "lambda_lr", float, "Adam learning rate of the log ridge weights"),
    ("--prime-batches", "prime_batches", int, "base-model batches that fill the normaliser first"),
    ("--keep-rank", "keep_rank", int, "rank of the keep basis (0: the spec's plain ridge)"),
    ("--keep-coef", "keep_coef", float, "μ: weight of the keep term (outputs of ordinary keys stay put)"),
    ("--keep-cases", "keep_cases", int, "training cases whose ordinary inputs estimate the keep basis"),
    ("--steps", "steps", int, "optimizer steps, each a fresh trajectory from the base model"),
    ("--seed", "seed", int, "seed of initialisation and data order"),
    ("--checkpoint-every", "checkpoint_every", int, "write a resumable checkpoint every K steps"),
    ("--save-dtype", "save_dtype", str, "dtype of the stored network matrices (float16, float32)"),
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default=None, help="model alias, folder or hub id (default: the configured model)")
    parser.add_argument("--data", required=True, type=Path, help="training dataset file")
    parser.add_argument("--format", default="auto", help="dataset format: auto, counterfact, zsre, knowedit, wise, …")
    parser.add_argument("--editor", choices=("rledit", "malmen"), default="rledit", help="what to train")
    parser.add_argument("--trajectories", dest="steps", type=int, default=None, help="alias of --steps")
    for flag, dest, kind, text in _TRAIN_FLAGS:
        parser.add_argument(flag, dest=dest, type=kind, default=None, help=text)
    parser.add_argument("--device", default=None, help="auto, cpu, cuda, cuda:1 (default: the configured device)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--out", required=True, type=Path, help="output stem: writes OUT.safetensors and OUT.json")
    parser.add_argument("--resume", action="store_true", help="continue from OUT.resume.* if present")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar (log lines only)")


def run(args: argparse.Namespace) -> int:
    import torch

    from cli.main import configure_logging
    from contract.config import Settings
    from editing.editors.hypernet.config import TrainConfig
    from editing.editors.hypernet.runner import train
    from editing.loading import load_host

    overrides = {k: v for k, v in {"model": args.model, "device": args.device}.items() if v is not None}
    settings = Settings(**overrides, dtype="float32")
    configure_logging(settings.log_level)
    if args.threads:
        torch.set_num_threads(args.threads)
    fields = {dest: getattr(args, dest) for _, dest, _, _ in _TRAIN_FLAGS if getattr(args, dest) is not None}
    if args.steps is not None:
        fields["steps"] = args.steps
    config = TrainConfig(editor=args.editor, **fields)
    host = load_host(settings)
    command = "factpatch " + shlex.join(sys.argv[1:]) if sys.argv[1:2] == ["train"] else "factpatch train ..."
    logger.info("training %s for %s: %s", config.editor, settings.model, config.model_dump())
    path = train(host=host, config=config, data=args.data, fmt=args.format, out=args.out,
                 resume=args.resume and Path(f"{args.out}.resume.json").is_file(), command=command,
                 show_progress=not args.no_progress)
    logger.info("checkpoint written: %s", path)
    return 0
