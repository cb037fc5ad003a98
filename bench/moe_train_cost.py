"""Is caching the residual stream at the edited layer worth it? Time per optimisation step.

(a) full: the whole model forward (logits at every position) + backward, bypass added by a hook;
(b) tail: activations entering layer l cached once, then only layers l+1 … L-1, the final norm
    and the LM head at the target positions, forward + backward.
Both train the same rank-32 SwiGLU expert on 10 CounterFact-val edits.

    python bench/moe_train_cost.py --layers 9 17 23
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable

import torch

from contract.config import Settings
from editing.data import load_cases
from editing.editors.moe_adaptor.experts import init_expert, swiglu
from editing.editors.moe_adaptor.layer import MoEAdaptorLayer
from editing.editors.moe_adaptor.training_tail import capture_prefix, tail_logits, target_nll
from editing.host import ModelHost, TokenBatch
from editing.loading import load_host
from editing.registry import build_editor

DATA = "/work/shared/data/counterfact-val.json"


def alternate(first: Callable[[], None], second: Callable[[], None], steps: int) -> tuple[float, float]:
    """Median ms per call of two step functions, called alternately (contention hits both alike)."""
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(steps + 1):
        for fn, out in ((first, times[0]), (second, times[1])):
            start = time.perf_counter()
            fn()
            out.append(time.perf_counter() - start)
    return statistics.median(times[0][1:]) * 1e3, statistics.median(times[1][1:]) * 1e3


def expert_params() -> dict[str, torch.Tensor]:
    params = init_expert(d=576, width=32, generator=torch.Generator().manual_seed(0))
    params["down_proj"].normal_(0, 1e-3)
    return {k: v.requires_grad_(True) for k, v in params.items()}


def measure_layer(host: ModelHost, tokens: TokenBatch, layer: int, steps: int) -> dict[str, float]:
    """ms per step of the full and the tail variant, and the one-off capture, at one layer."""
    editor = build_editor("lemoe", host=host, overrides={"layer": layer})
    wrapper: MoEAdaptorLayer = editor.layer  # type: ignore[attr-defined]
    params = expert_params()

    def bypass(x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(-1, x.shape[-1])
        return swiglu(flat, params["gate_proj"], params["up_proj"], params["down_proj"]).reshape(x.shape)

    def full_step() -> None:
        handle = wrapper.base_layer.register_forward_hook(lambda m, a, out: out + bypass(a[0]))
        logits = host.model(input_ids=tokens.input_ids, attention_mask=tokens.attention_mask).logits
        logp = host.token_logprobs(logits.float(), tokens)
        (-logp.sum() / tokens.target_mask.sum()).backward()
        handle.remove()

    start = time.perf_counter()
    prefix = capture_prefix(host.model, layer=layer, wrapper=wrapper, tokens=tokens)
    capture_ms = (time.perf_counter() - start) * 1e3

    def tail_step() -> None:
        logits = tail_logits(host.model, layer=layer, prefix=prefix, bypass=bypass(prefix.x))
        target_nll(logits, prefix).backward()

    full_ms, tail_ms = alternate(full_step, tail_step, steps)
    host.model.get_submodule(f"model.layers.{layer}").mlp = wrapper.base_layer  # unwrap for the next layer
    editor._hook.remove()  # type: ignore[attr-defined]
    return {
        "layer": layer,
        "full_ms": round(full_ms, 1),
        "tail_ms": round(tail_ms, 1),
        "capture_ms": round(capture_ms, 1),
        "speedup": round(full_ms / tail_ms, 2),
    }


def main() -> None:
    cli = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    cli.add_argument("--layers", type=int, nargs="+", default=[17])
    cli.add_argument("--steps", type=int, default=6)
    cli.add_argument("--threads", type=int, default=1)
    args = cli.parse_args()
    torch.set_num_threads(args.threads)
    host = load_host(Settings(data_dir="/tmp/fpdata"))
    cases = load_cases(DATA)[:10]
    tokens = host.encode_pairs([(c.prompt, c.target_new) for c in cases])
    for layer in args.layers:
        print(json.dumps(measure_layer(host, tokens, layer, args.steps)))  # noqa: T201 - a script's output


if __name__ == "__main__":
    main()
