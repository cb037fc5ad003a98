"""LEMoE key matching ("KV anchor routing") with per-expert projections, as plain tensor maths.

    z_i(e) = unit_rms(e - center_i)
    v_i(e) = z_i + W_up,i SiLU(W_down,i z_i)          (residual bottleneck d -> d/ratio -> d)
    s_i(e) = cos(k_i, v_i(e))

Every expert keeps its own centre, projection and key, frozen with it, so inserting or removing
an expert never changes another expert's scores.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.nn import functional as nnf

from editing.editors.moe_adaptor.anchor import unit_rms

ROUTER = ("center", "key", "proj_down", "proj_up", "tau")


def stack(routers: list[dict[str, Tensor]]) -> dict[str, Tensor]:
    """Per-expert routing tensors stacked on a leading expert axis t."""
    return {name: torch.stack([r[name].float() for r in routers]) for name in ROUTER}


def scores(e: Tensor, router: dict[str, Tensor]) -> Tensor:
    """(B, t) cosine scores.

    e (B, d); router stacked: center, key (t, d), proj_down (t, p, d), proj_up (t, d, p).
    """
    z = unit_rms(e.float().unsqueeze(1) - router["center"].unsqueeze(0))  # (B, t, d)
    hidden = nnf.silu(torch.einsum("btd,tpd->btp", z, router["proj_down"]))  # (B, t, p)
    v = z + torch.einsum("btp,tdp->btd", hidden, router["proj_up"])  # (B, t, d)
    return nnf.cosine_similarity(v, router["key"].unsqueeze(0), dim=-1)


def score_one(e: Tensor, router: dict[str, Tensor]) -> Tensor:
    """(B,) scores of a single (unstacked) expert's router."""
    return scores(e, {k: v.unsqueeze(0) for k, v in router.items() if k != "tau"} | {"tau": router["tau"]})[:, 0]


def new_router(*, positives: Tensor, center: Tensor, ratio: int, generator: torch.Generator) -> dict[str, Tensor]:
    """fp32 router of a new expert: key = normalised mean of its positives (a prototype),
    projection starting as the identity (zero up-projection)."""
    d = positives.shape[-1]
    z = unit_rms(positives.float() - center)  # (n, d)
    return {
        "center": center.float().clone(),  # (d,)
        "key": nnf.normalize(z.mean(dim=0), dim=0),  # (d,)
        "proj_down": torch.randn(max(d // ratio, 1), d, generator=generator) * d**-0.5,  # (p, d)
        "proj_up": torch.zeros(d, max(d // ratio, 1)),  # (d, p)
        "tau": torch.tensor(-2.0),  # below any cosine: always in scope
    }
