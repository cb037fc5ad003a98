"""Linear layers on oneDNN-packed weights: the same results as torch's default to float rounding,
a pack remade after every write, and nothing packed where it does not apply."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from editing.packed_linear import LinearPacks, supported
from tests.tiny import new_host

pytestmark = pytest.mark.skipif(not supported(), reason="this torch build has no oneDNN packed linear")


def layer(bias: bool = True) -> nn.Linear:
    torch.manual_seed(0)
    return nn.Linear(24, 40, bias=bias)


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("shape", [(1, 24), (7, 24), (3, 5, 24)])
def test_packed_results_equal_torch_to_rounding(bias: bool, shape: tuple[int, ...]) -> None:
    lin, packs, x = layer(bias), LinearPacks(), torch.randn(shape)
    with torch.no_grad():
        expected = lin(x)
        with packs.active():
            got = lin(x)
    assert got.shape == expected.shape
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    assert packs.nbytes > 0


def test_one_pack_per_weight_and_a_new_one_after_a_write() -> None:
    lin, packs, x = layer(), LinearPacks(), torch.randn(4, 24)
    with torch.no_grad(), packs.active():
        first = lin(x)
        size = packs.nbytes
        lin(x)
        assert packs.nbytes == size  # the pack was reused
        lin.weight.copy_(lin.weight * 2)  # what ModelHost.set_master does
        second = lin(x)
    with torch.no_grad():
        torch.testing.assert_close(second, lin(x), rtol=1e-5, atol=1e-5)
    assert not torch.allclose(first, second)


def test_a_weight_given_new_storage_is_packed_again() -> None:
    lin, packs, x = layer(), LinearPacks(), torch.randn(4, 24)
    with torch.no_grad(), packs.active():
        lin(x)
        lin.weight.data = torch.zeros_like(lin.weight)
        out = lin(x)
    torch.testing.assert_close(out, lin.bias.detach().expand(4, -1))


def test_with_gradients_or_temporary_weights_torch_runs_unchanged() -> None:
    lin, packs, x = layer(), LinearPacks(), torch.randn(4, 24)
    with packs.active():
        with_grad = lin(x)
        with torch.no_grad():
            sliced = nn.functional.linear(x, lin.weight[:, :24] * 1.0)  # a temporary, not a parameter
    assert with_grad.requires_grad
    assert torch.equal(with_grad.detach(), nn.functional.linear(x, lin.weight, lin.bias).detach())
    assert torch.equal(sliced, nn.functional.linear(x, lin.weight.detach()))
    assert packs.nbytes == 0


def test_an_input_onednn_refuses_is_answered_the_default_way(monkeypatch: pytest.MonkeyPatch) -> None:
    import editing.packed_linear as module

    def refuse(*args: object) -> torch.Tensor:
        raise RuntimeError("unsupported input")

    monkeypatch.setattr(module, "_packed_linear", refuse)
    lin, packs, x = layer(), LinearPacks(), torch.randn(4, 24)
    with torch.no_grad():
        with packs.active():
            got = lin(x)
        assert torch.equal(got, lin(x))


def test_disabled_packs_nothing() -> None:
    lin, packs = layer(), LinearPacks(enabled=False)
    with torch.no_grad(), packs.active():
        lin(torch.randn(2, 24))
    assert packs.nbytes == 0


def test_the_host_decodes_the_same_text_packed_and_sees_every_edit() -> None:
    host = new_host()
    prompts = ["Hi", "The Eiffel Tower is located in the city of", "abc def"]
    packed = host.greedy(prompts, max_new_tokens=12)
    assert host.packs.nbytes > 0
    host.packs.enabled = False
    assert host.greedy(prompts, max_new_tokens=12) == packed

    name = "model.layers.1.mlp.down_proj.weight"
    host.track([name])
    host.set_master(name, host.master(name) * -3.0)
    edited_default = host.greedy(prompts, max_new_tokens=12)
    host.packs.enabled = True
    assert host.greedy(prompts, max_new_tokens=12) == edited_default != packed


def test_the_setting_reaches_the_host(tiny_settings: object) -> None:
    from editing.loading import load_host

    assert load_host(tiny_settings.model_copy(update={"packed_linear": False})).packs.enabled is False  # type: ignore[attr-defined]
    assert load_host(tiny_settings).packs.enabled is supported()  # type: ignore[arg-type]
