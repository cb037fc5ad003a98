"""`factpatch train` end to end: data, trainer, progress bar, resumable checkpoints, the card."""

from __future__ import annotations

import json
import logging
import platform
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from contract.protocol import utc_now
from editing.data import load_cases
from editing.editors.hypernet.checkpoint import model_ref, save_checkpoint
from editing.editors.hypernet.config import TrainConfig
from editing.editors.hypernet.modules import resolve_modules, slots
from editing.editors.hypernet.network import HyperBank
from editing.editors.hypernet.normaliser import NormStats
from editing.editors.hypernet.train import Trainer, TurnMetrics, usable
from editing.host import ModelHost
from editing.model_source import sha256_file

logger = logging.getLogger(__name__)


@dataclass
class Progress:
    """What a resumable checkpoint remembers besides tensors."""

    step: int = 0  # optimizer steps done
    wall_time_s: float = 0.0
    history: list[dict[str, float]] | None = None


def summarise(metrics: list[TurnMetrics]) -> dict[str, float]:
    keys = ("edit_nll", "rephrase_ce", "locality_kl", "loss")
    return {k: sum(getattr(m, k) for m in metrics) / max(len(metrics), 1) for k in keys}


def _resume_paths(out: Path) -> tuple[Path, Path]:
    return Path(f"{out}.resume.safetensors"), Path(f"{out}.resume.json")


def save_resume(out: Path, trainer: Trainer, config: TrainConfig, progress: Progress) -> None:
    tensors: dict[str, torch.Tensor] = {f"bank/{k}": v.detach().cpu().contiguous()
                                        for k, v in trainer.bank.state_dict().items()}
    for shape, stats in trainer.stats.items():
        tensors.update({k: v.cpu() for k, v in stats.tensors(f"norm/{shape}").items()})
    for index, state in trainer.optimizer.state_dict()["state"].items():
        tensors.update({f"opt/{index}/{k}": torch.as_tensor(v).cpu() for k, v in state.items()})
    weights, meta = _resume_paths(out)
    save_file(tensors, str(weights))
    meta.write_text(json.dumps({"config": config.model_dump(mode="json"), "progress": asdict(progress)}, indent=1))


def load_resume(out: Path, trainer: Trainer, config: TrainConfig) -> Progress:
    weights, meta = _resume_paths(out)
    saved = json.loads(meta.read_text())
    ignore = {"steps", "checkpoint_every"}
    old = {k: v for k, v in saved["config"].items() if k not in ignore}
    new = {k: v for k, v in config.model_dump(mode="json").items() if k not in ignore}
    if old != new:
        diff = {k: (old.get(k), new.get(k)) for k in old if old.get(k) != new.get(k)}
        raise ValueError(f"cannot resume {weights}: training settings differ (saved, now): {diff}")
    tensors = load_file(str(weights))
    trainer.bank.load_state_dict({k.removeprefix("bank/"): v for k, v in tensors.items() if k.startswith("bank/")})
    trainer.stats = {s: NormStats.from_tensors(tensors, f"norm/{s}") for s in trainer.stats}
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        if key.startswith("opt/"):
            _, index, name = key.split("/")
            state.setdefault(int(index), {})[name] = value
    opt_state = trainer.optimizer.state_dict()
    trainer.optimizer.load_state_dict({"state": state, "param_groups": opt_state["param_groups"]})
    return Progress(**saved["progress"])


def build_trainer(host: ModelHost, config: TrainConfig, data: Path, fmt: str) -> Trainer:
    cases = usable(load_cases(data, fmt))
    module_slots = slots(host.model, resolve_modules(host.model, config.modules))
    bank = HyperBank(module_slots=module_slots, rank=config.rank, blocks=config.blocks, lr=config.lr,
                     seed=config.seed, keep_rank=config.keep_rank).to(host.device)
    return Trainer(host=host, config=config, cases=cases, bank=bank, stats=bank.empty_stats(host.device))


def train(*, host: ModelHost, config: TrainConfig, data: Path, fmt: str, out: Path, resume: bool = False,
          command: str = "", show_progress: bool = True) -> Path:
    """Train, checkpoint every K steps, and write `<out>.safetensors` + `<out>.json`."""
    from tqdm import tqdm

    torch.manual_seed(config.seed)
    trainer = build_trainer(host, config, data, fmt)
    if resume:
        progress = load_resume(out, trainer, config)
    else:
        progress = Progress(history=[])
        trainer.install_keep()
        trainer.prime(config.prime_batches)
    bar = tqdm(total=config.steps * config.turns, initial=progress.step * config.turns, unit="turn",
               disable=not show_progress, dynamic_ncols=True, desc=f"train {config.editor}")
    recent: list[TurnMetrics] = []

    def on_turn(m: TurnMetrics) -> None:
        recent.append(m)
        bar.set_postfix({k: f"{v:.3g}" for k, v in summarise(recent[-config.turns * 3 :]).items()})
        bar.update(1)

    started = time.monotonic() - progress.wall_time_s
    while progress.step < config.steps:
        metrics = trainer.run_step(progress.step, on_turn)
        progress.step += 1
        progress.wall_time_s = time.monotonic() - started
        assert progress.history is not None
        progress.history.append({"step": progress.step, **summarise(metrics), "alpha": _mean_alpha(trainer)})
        logger.info("step %d/%d %s", progress.step, config.steps, progress.history[-1])
        if progress.step % config.checkpoint_every == 0 or progress.step == config.steps:
            save_resume(out, trainer, config, progress)
    bar.close()
    return _write_final(trainer, config, data, fmt, out, progress, command)


def _mean_alpha(trainer: Trainer) -> float:
    alphas = torch.cat([n.alpha.detach() for n in trainer.bank.networks().values()])
    return float(alphas.mean())


def _write_final(trainer: Trainer, config: TrainConfig, data: Path, fmt: str, out: Path, progress: Progress,
                 command: str) -> Path:
    history = progress.history or []
    tail = history[-max(1, len(history) // 5) :]
    final = {k: sum(h[k] for h in tail) / len(tail) for k in tail[0] if k != "step"} if tail else {}
    metrics: dict[str, Any] = {"final": final, "final_steps": [tail[0]["step"], tail[-1]["step"]] if tail else [],
                               "first": history[0] if history else {}, "history": history}
    card = {
        "editor": config.editor, "model": model_ref(trainer.host.model, trainer.host.model_id).model_dump(),
        "modules": trainer.modules, "key_site": config.key_site,
        "shapes": {k: [n.d_k, n.d_v, n.alpha.numel()] for k, n in trainer.bank.networks().items()},
        "command": command, "train": config.model_dump(mode="json"),
        "data": {"path": str(data), "sha256": sha256_file(data), "format": fmt, "cases": len(trainer.cases)},
        "metrics": metrics, "wall_time_s": round(progress.wall_time_s, 1), "device": _device(trainer.host),
        "versions": {"torch": torch.__version__, "python": platform.python_version()}, "created_at": utc_now(),
    }
    path = save_checkpoint(out, bank=trainer.bank, stats=trainer.stats, card=card, matrix_dtype=config.save_dtype)
    logger.info("wrote %s (%d bytes) and its card", path, path.stat().st_size)
    return path


def _device(host: ModelHost) -> str:
    if host.device.type == "cuda":
        return torch.cuda.get_device_name(host.device)
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"
