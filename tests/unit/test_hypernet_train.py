"""Meta-training on the tiny model: the loss goes down, checkpoints round-trip and load strictly."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from contract.errors import CheckpointMismatchError
from editing.editors.hypernet.checkpoint import find_checkpoint, load_checkpoint, read_card
from editing.editors.hypernet.config import TrainConfig
from editing.editors.hypernet.runner import build_trainer, train
from tests.tiny import FACTS, TINY_TRAIN, new_host, train_tiny, write_dataset

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_tiny(tmp_path_factory.mktemp("hypernet"), save_dtype="float32")


def _mean_loss(metrics: list[Any]) -> float:
    return sum(m.loss for m in metrics) / len(metrics)


@pytest.mark.parametrize("editor", ["rledit", "malmen"])
def test_a_few_seconds_of_training_lower_the_loss(tmp_path: Path, editor: str) -> None:
    config = TrainConfig(editor=editor, **{**TINY_TRAIN, "steps": 12, "turns": 4})  # type: ignore[arg-type]
    trainer = build_trainer(new_host(), config, write_dataset(tmp_path), "auto")
    trainer.prime(4)
    before = _mean_loss(trainer.evaluate(0)) + _mean_loss(trainer.evaluate(1))
    for step in range(config.steps):
        trainer.run_step(step)
    after = _mean_loss(trainer.evaluate(0)) + _mean_loss(trainer.evaluate(1))
    assert after < 0.95 * before, (before, after)


def test_checkpoint_round_trip_is_bitwise_and_the_card_says_how(trained: Path, tmp_path: Path) -> None:
    from safetensors.torch import load_file

    saved = load_file(f"{str(trained).removesuffix('.safetensors')}.resume.safetensors")
    loaded = load_checkpoint(trained, model=new_host().model, model_id="tiny")
    for key, value in loaded.bank.state_dict().items():
        assert torch.equal(value, saved[f"bank/{key}"]), key
    for shape, stats in loaded.stats.items():
        for key, value in stats.tensors(f"norm/{shape}").items():
            assert torch.equal(value, saved[key]), key
    card = read_card(trained)
    assert (card.editor, card.model.id, card.modules) == ("rledit", "tiny", ["model.layers.0.mlp.up_proj",
                                                                            "model.layers.1.mlp.up_proj"])
    assert card.shapes == {"32x64": [32, 64, 2]} and (card.rank, card.blocks) == (4, 1)
    assert card.train["turns"] == 2 and card.data["cases"] == len(FACTS) and len(card.data["sha256"]) == 64
    assert card.command.startswith("factpatch train") and card.wall_time_s is not None and card.device
    assert len(card.metrics["history"]) == 2


def test_the_keep_basis_is_estimated_on_the_base_model_and_saved(trained: Path) -> None:
    net = load_checkpoint(trained, model=new_host().model, model_id="tiny").bank.networks()["32x64"]
    assert read_card(trained).keep_rank == TrainConfig().keep_rank and net.keep_basis.shape == (2, 32, 32)
    for index in range(2):
        basis, energy = net.keep_basis[index], net.keep_energy[index]  # (d_k, r), (r,)
        torch.testing.assert_close(basis.T @ basis, torch.eye(32), atol=1e-4, rtol=0)
        assert bool((energy[:-1] >= energy[1:]).all()) and float(energy[0]) > 0
        assert float(net.keep_coef[index]) == TrainConfig().keep_coef
    untouched = TrainConfig(**{**TINY_TRAIN, "keep_rank": 0})  # the spec's plain ridge
    assert build_trainer(new_host(), untouched, trained.parent / "facts.json", "auto").bank.net(
        "model.layers.0.mlp.up_proj").keep(0) is None


def test_fp16_checkpoints_store_matrices_in_half_precision(tmp_path: Path) -> None:
    path = train_tiny(tmp_path, steps=1)
    from safetensors.torch import load_file

    tensors = load_file(str(path))
    assert tensors["net/32x64/blocks.0.A"].dtype == torch.float16
    assert tensors["net/32x64/alpha"].dtype == torch.float32 and tensors["norm/32x64/mean"].dtype == torch.float32


def test_training_resumes_where_it_stopped(tmp_path: Path) -> None:
    host = new_host()
    config = TrainConfig(editor="rledit", **{**TINY_TRAIN, "steps": 2})  # type: ignore[arg-type]
    data = write_dataset(tmp_path)
    straight = train(host=host, config=config, data=data, fmt="auto", out=tmp_path / "a", show_progress=False)
    train(host=host, config=config.model_copy(update={"steps": 1}), data=data, fmt="auto", out=tmp_path / "b",
          show_progress=False)
    resumed = train(host=host, config=config, data=data, fmt="auto", out=tmp_path / "b", resume=True,
                    show_progress=False)
    a, b = (load_checkpoint(p, model=host.model, model_id="tiny") for p in (straight, resumed))
    for key, value in a.bank.state_dict().items():
        assert torch.equal(value, b.bank.state_dict()[key]), key


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"model_id": "other"}, "trained for model 'tiny'"),
        ({"overrides": {"hidden_size": 48}}, "hidden_size"),
        ({"modules": "down_proj:0-1"}, "edits modules"),
    ],
)
def test_loading_for_another_model_or_modules_fails_naming_the_difference(
    trained: Path, kwargs: dict[str, Any], message: str
) -> None:
    host = new_host(kwargs.get("model_id", "tiny"), **kwargs.get("overrides", {}))
    with pytest.raises(CheckpointMismatchError, match=message):
        load_checkpoint(trained, model=host.model, model_id=host.model_id, modules=kwargs.get("modules"))


def test_loading_a_checkpoint_with_other_shapes_or_bytes_fails(trained: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy.safetensors"
    copy.write_bytes(trained.read_bytes())
    card = json.loads(trained.with_suffix(".json").read_text())
    card["modules"] = ["model.layers.0.mlp.down_proj", "model.layers.1.mlp.down_proj"]
    copy.with_suffix(".json").write_text(json.dumps(card))
    with pytest.raises(CheckpointMismatchError, match="module shapes differ"):
        load_checkpoint(copy, model=new_host().model, model_id="tiny")
    copy.write_bytes(trained.read_bytes()[:-4] + b"\0\0\0\0")
    with pytest.raises(CheckpointMismatchError, match="sha256"):
        load_checkpoint(copy, model=new_host().model, model_id="tiny")


def test_the_default_lookup_finds_a_checkpoint_by_model_id_and_config_hash(trained: Path) -> None:
    from editing.editors.hypernet.checkpoint import config_sha256

    model = new_host().model
    found = find_checkpoint(editor="rledit", model_id="tiny", config_hash=config_sha256(model), folder=trained.parent)
    assert found == trained
    assert find_checkpoint(editor="rledit", model_id="tiny", config_hash="0" * 64, folder=trained.parent) is None
    assert find_checkpoint(editor="malmen", model_id="tiny", config_hash=config_sha256(model),
                           folder=trained.parent) is None


def _meta_gradient(tmp_path: Path, reg_coef: float) -> dict[str, torch.Tensor]:
    """∂L/∂θ after one rledit turn (the network's B made non-zero so that A gets gradient too)."""
    config = TrainConfig(editor="rledit", **{**TINY_TRAIN, "reg_coef": reg_coef, "max_grad_norm": 1e9})  # type: ignore[arg-type]
    trainer = build_trainer(new_host(), config, write_dataset(tmp_path), "auto")
    trainer.prime(2)
    for block in trainer.bank.nets["32x64"].blocks:
        block.B.data.copy_(torch.linspace(-0.01, 0.01, block.B.numel()).reshape(block.B.shape))
    from collections import deque

    trainer.turn(trainer.trajectory(0)[0], deque())
    return {name: p.grad.clone() for name, p in trainer.bank.named_parameters() if p.grad is not None}


def test_the_shift_regulariser_reaches_the_network(tmp_path: Path) -> None:
    plain, again, regularised = (_meta_gradient(tmp_path, eta) for eta in (0.0, 0.0, 1.0))
    assert plain.keys() == regularised.keys() and len(plain) == 7  # A, B, bias, scale, shift, alpha, log_lambda
    assert all(torch.equal(plain[k], again[k]) for k in plain)  # η = 0 is the unregularised run
    for name in ("nets.32x64.alpha", "nets.32x64.log_lambda", "nets.32x64.blocks.0.A", "nets.32x64.blocks.0.B"):
        assert not torch.allclose(plain[name], regularised[name]), name


def test_the_training_prefix_cache_gives_the_plain_logits() -> None:
    from editing.editors.hypernet.capture import answer_logits
    from editing.editors.hypernet.prefix import PrefixCache

    host = new_host(num_hidden_layers=3)
    cache = PrefixCache(host, ["model.layers.1.mlp.up_proj", "model.layers.2.mlp.down_proj"])
    assert cache.enabled and cache.start == 1
    pairs = [(p, t) for p, t, *_ in FACTS[:5]]
    for order in (pairs, pairs[::-1], pairs[1:3]):  # computed once, then served from the cache
        logits, tokens = cache.logits(order)
        torch.testing.assert_close(logits, answer_logits(host.model, tokens))
    assert len(host.model.model.layers) == 3
