"""Hypernetwork checkpoints: safetensors + a JSON card, loaded strictly (house-style §3.1).

`<stem>.safetensors` holds `net/<shape>/<parameter>` (the matrices in the card's dtype, the rest
fp32) and `norm/<shape>/{count,mean,var}`; `<stem>.json` says what the weights belong to (model
id, config hash, modules, shapes) and how they were made. Loading refuses, with
CheckpointMismatchError naming the difference, a file whose bytes, model, modules or any
tensor shape does not match.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict
from safetensors.torch import load as st_load
from torch import Tensor, nn

from contract.errors import CheckpointMismatchError, TargetNotFoundError
from editing.artifacts import tensors_to_bytes
from editing.editors.hypernet.modules import resolve_modules, shapes, slots
from editing.editors.hypernet.network import HyperBank
from editing.editors.hypernet.normaliser import NormStats

logger = logging.getLogger(__name__)

FORMAT = "factpatch-hypernet/1"
ARCH_KEYS = (
    "model_type", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
    "num_key_value_heads", "head_dim", "vocab_size", "hidden_act", "tie_word_embeddings", "mlp_bias",
)
MATRIX_NAMES = ("A", "B")


class ModelRef(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str
    config_sha256: str
    architecture: dict[str, Any]


class CheckpointCard(BaseModel):
    """The JSON card next to a checkpoint."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    format: str = FORMAT
    editor: str
    model: ModelRef
    modules: list[str]
    shapes: dict[str, list[int]]  # shape key -> [d_k, d_v, n_modules]
    rank: int
    blocks: int
    keep_rank: int = 0
    key_site: Literal["answer", "subject"] = "answer"
    matrix_dtype: str
    weights_sha256: str
    command: str = ""
    train: dict[str, Any] = {}
    data: dict[str, Any] = {}
    metrics: dict[str, Any] = {}
    wall_time_s: float | None = None
    device: str = ""
    versions: dict[str, str] = {}
    created_at: str = ""


def architecture(model: nn.Module) -> dict[str, Any]:
    config = getattr(model, "config", None)
    data = config.to_dict() if config is not None else {}
    return {key: data[key] for key in ARCH_KEYS if key in data}


def config_sha256(model: nn.Module) -> str:
    text = json.dumps(architecture(model), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def model_ref(model: nn.Module, model_id: str) -> ModelRef:
    return ModelRef(id=model_id, config_sha256=config_sha256(model), architecture=architecture(model))


def shipped_dir() -> Path:
    """editing/checkpoints/: the checkpoints that ship with the package."""
    return Path(__file__).resolve().parents[2] / "checkpoints"


def card_path(path: Path) -> Path:
    return path.with_suffix(".json")


def read_card(path: Path) -> CheckpointCard:
    card = card_path(path)
    if not path.is_file() or not card.is_file():
        raise CheckpointMismatchError(f"no checkpoint at {path} (the .safetensors and its .json card are needed)")
    return CheckpointCard.model_validate_json(card.read_text())


def find_checkpoint(*, editor: str, model_id: str, config_hash: str, folder: Path | None = None) -> Path | None:
    """The checkpoint in `folder` (default: shipped) trained by `editor` for this model, if any."""
    folder = folder or shipped_dir()
    for card_file in sorted(folder.glob(f"*.{editor}.json")):
        try:
            card = CheckpointCard.model_validate_json(card_file.read_text())
        except ValueError:
            logger.warning("unreadable checkpoint card %s; skipped", card_file)
            continue
        if card.editor == editor and card.model.id == model_id and card.model.config_sha256 == config_hash:
            path = card_file.with_suffix(".safetensors")
            if path.is_file():
                return path
    return None


def default_stem(model_id: str, editor: str) -> str:
    """File stem of a checkpoint: `<model id, path-safe>.<editor>`."""
    safe = "".join(c if c.isalnum() or c in "-_." else "-" for c in Path(model_id).name.lower()) or "model"
    return f"{safe}.{editor}"


def train_command(*, editor: str, model_id: str) -> str:
    """The command that trains a checkpoint the default lookup will find."""
    out = shipped_dir() / default_stem(model_id, editor)
    return f"factpatch train --model {model_id} --editor {editor} --data /path/to/counterfact-train.json --out {out}"


@dataclass
class Checkpoint:
    """A loaded checkpoint: the network bank (fp32), the normaliser, the card and the file's sha256."""

    bank: HyperBank
    stats: dict[str, NormStats]
    card: CheckpointCard
    sha256: str


def save_checkpoint(stem: Path, *, bank: HyperBank, stats: dict[str, NormStats], card: dict[str, Any],
                    matrix_dtype: str = "float16") -> Path:
    """Write `<stem>.safetensors` and `<stem>.json`; returns the safetensors path."""
    dtype = getattr(torch, matrix_dtype)
    tensors: dict[str, Tensor] = {}
    for shape, net in bank.networks().items():
        for name, value in net.state_dict().items():
            cast = dtype if name.rsplit(".", 1)[-1] in MATRIX_NAMES else torch.float32
            tensors[f"net/{shape}/{name}"] = value.detach().to("cpu", cast).contiguous()
        tensors.update({k: v.cpu() for k, v in stats[shape].tensors(f"norm/{shape}").items()})
    data = tensors_to_bytes(tensors, {"format": FORMAT})
    path = Path(f"{stem}.safetensors")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    full = {**card, "rank": bank.rank, "blocks": bank.n_blocks, "keep_rank": bank.keep_rank,
            "matrix_dtype": matrix_dtype,
            "weights_sha256": hashlib.sha256(data).hexdigest()}
    card_path(path).write_text(CheckpointCard.model_validate(full).model_dump_json(indent=2) + "\n")
    return path


def load_checkpoint(path: Path, *, model: nn.Module, model_id: str, modules: str | None = None,
                    device: torch.device | str = "cpu") -> Checkpoint:
    """Load strictly for this model; CheckpointMismatchError says what differs."""
    card = read_card(path)
    data = path.read_bytes()
    sha = hashlib.sha256(data).hexdigest()
    if sha != card.weights_sha256:
        raise CheckpointMismatchError(f"{path.name}: file sha256 {sha[:12]} is not the card's "
                                      f"{card.weights_sha256[:12]} (file changed after training)")
    _check_model(path, card, model, model_id)
    module_slots = _check_modules(path, card, model, modules)
    bank = HyperBank(module_slots=module_slots, rank=card.rank, blocks=card.blocks, lr=0.0, keep_rank=card.keep_rank)
    tensors = st_load(data)
    _check_tensors(path, bank, tensors)
    for shape, net in bank.networks().items():
        net.load_state_dict({k: tensors[f"net/{shape}/{k}"].float() for k in net.state_dict()}, strict=True)
    stats = {shape: NormStats.from_tensors(tensors, f"norm/{shape}").to(device) for shape in bank.nets}
    return Checkpoint(bank=bank.to(device), stats=stats, card=card, sha256=sha)


def _check_model(path: Path, card: CheckpointCard, model: nn.Module, model_id: str) -> None:
    if card.model.id != model_id:
        raise CheckpointMismatchError(
            f"{path.name} was trained for model {card.model.id!r}, the loaded model is {model_id!r}")
    if card.model.config_sha256 != config_sha256(model):
        here = architecture(model)
        diff = {k: (card.model.architecture.get(k), here.get(k)) for k in set(here) | set(card.model.architecture)
                if card.model.architecture.get(k) != here.get(k)}
        raise CheckpointMismatchError(
            f"{path.name}: model config hash differs (checkpoint {card.model.config_sha256[:12]}, model "
            f"{config_sha256(model)[:12]}); differing fields (checkpoint, model): {diff}")


def _check_modules(path: Path, card: CheckpointCard, model: nn.Module, modules: str | None) -> dict[str, Any]:
    if modules is not None:
        wanted = resolve_modules(model, modules)
        if wanted != card.modules:
            raise CheckpointMismatchError(
                f"{path.name} edits modules {card.modules}, the config asks for {wanted}")
    try:
        module_slots = slots(model, card.modules)
    except TargetNotFoundError as exc:
        raise CheckpointMismatchError(f"{path.name}: {exc.detail}") from None
    found = {k: list(v) for k, v in shapes(module_slots).items()}
    if found != card.shapes:
        raise CheckpointMismatchError(
            f"{path.name}: module shapes differ (checkpoint {card.shapes}, model {found})")
    return module_slots


def _check_tensors(path: Path, bank: HyperBank, tensors: dict[str, Tensor]) -> None:
    nets = bank.networks()
    expected = {f"net/{s}/{k}": tuple(v.shape) for s, net in nets.items() for k, v in net.state_dict().items()}
    for shape, net in nets.items():
        size = net.d_k + net.d_v
        expected.update({f"norm/{shape}/count": (1,), f"norm/{shape}/mean": (size,), f"norm/{shape}/var": (size,)})
    missing, extra = sorted(set(expected) - set(tensors)), sorted(set(tensors) - set(expected))
    if missing or extra:
        raise CheckpointMismatchError(f"{path.name}: tensor names differ (missing {missing[:5]}, "
                                      f"unexpected {extra[:5]})")
    wrong = [f"{k}: {tuple(tensors[k].shape)} != {v}" for k, v in expected.items() if tuple(tensors[k].shape) != v]
    if wrong:
        raise CheckpointMismatchError(f"{path.name}: tensor shapes differ: {'; '.join(wrong[:5])}")
