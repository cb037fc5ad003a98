"""The wrapped MLP: `MoEAdaptorLayer(base_layer=mlp)` adds a routed bypass to the frozen MLP.

    h = base_layer(x) + scale * bypass(x, plan)

The plan is decided once per sequence at prefill (see `routing.py`) and kept in a thread-local
`RoutingContext`, so every generated token of a sequence reuses it and the KV cache stays valid.
Without a plan the layer is exactly the base MLP. Injected parameters are prefixed `moe_`;
attribute look-ups the wrapper does not know (`down_proj`, ...) fall through to the base layer,
so dotted names such as `model.layers.3.mlp.down_proj` still resolve.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as nnf

from editing.editors.moe_adaptor.codec import tensor_json
from editing.editors.moe_adaptor.experts import EXPERT_FIELDS, dispatch, swiglu, top_k_gate


@dataclass(frozen=True)
class AnchorPlan:
    """MEMoE: a knowledge-anchor vector per sequence; inactive rows skip the bypass.

    `tokens` (B, L) marks the prefill positions that get the bypass (None = all); `later` says
    whether generated tokens get it.
    """

    anchors: Tensor  # (B, d) fp32
    active: Tensor  # (B,) bool
    tokens: Tensor | None = None  # (B, L) bool
    later: bool = True

    @property
    def rows(self) -> int:
        return int(self.active.shape[0])

    def select(self, index: Tensor) -> AnchorPlan:
        """The plan of the rows `index` (b,), in that order."""
        tokens = None if self.tokens is None else self.tokens[index.to(self.tokens.device)]
        at = index.to(self.anchors.device)
        return AnchorPlan(anchors=self.anchors[at], active=self.active[index.to(self.active.device)],
                          tokens=tokens, later=self.later)


@dataclass(frozen=True)
class ExpertPlan:
    """LEMoE: the one expert (batch id) each sequence goes through, or None; positions as above."""

    experts: tuple[str | None, ...]
    tokens: Tensor | None = None  # (B, L) bool
    later: bool = True

    @property
    def rows(self) -> int:
        return len(self.experts)

    def select(self, index: Tensor) -> ExpertPlan:
        """The plan of the rows `index` (b,), in that order."""
        tokens = None if self.tokens is None else self.tokens[index.to(self.tokens.device)]
        return ExpertPlan(experts=tuple(self.experts[int(i)] for i in index), tokens=tokens, later=self.later)


Plan = AnchorPlan | ExpertPlan


class RoutingContext:
    """The current plan, per thread; copies and pickles start empty."""

    def __init__(self) -> None:
        self._local = threading.local()

    def get(self) -> Plan | None:
        if getattr(self._local, "suspended", False):
            return None
        return getattr(self._local, "plan", None)

    def set(self, plan: Plan | None) -> None:
        """A new plan, decided at prefill."""
        self._local.plan = plan
        self._local.decoding = False

    def select(self, index: Tensor) -> None:
        """A decoding batch kept only the rows `index`: keep their plans, still decoding."""
        plan = getattr(self._local, "plan", None)
        if plan is not None:
            self._local.plan = plan.select(index)

    def mark_decoding(self) -> None:
        """The following forward passes extend the sequences the plan was made for."""
        self._local.decoding = True

    @property
    def decoding(self) -> bool:
        return bool(getattr(self._local, "decoding", False))

    @property
    def suspended(self) -> bool:
        return bool(getattr(self._local, "suspended", False))

    @contextmanager
    def suspend(self) -> Iterator[None]:
        """Run the model as the base model in this thread (for caching activations in training)."""
        before = self.suspended
        self._local.suspended = True
        try:
            yield
        finally:
            self._local.suspended = before

    def __deepcopy__(self, memo: dict[int, Any]) -> RoutingContext:
        return RoutingContext()

    def __reduce__(self) -> tuple[type[RoutingContext], tuple[()]]:
        return RoutingContext, ()


def mlp_dims(mlp: nn.Module) -> tuple[int, int]:
    """(d, d_ff) of a gated MLP, read from its down projection (d, d_ff)."""
    down = mlp.get_submodule("down_proj")
    assert isinstance(down, nn.Linear)
    return int(down.weight.shape[0]), int(down.weight.shape[1])


class MoEAdaptorLayer(nn.Module):
    """A frozen MLP plus a routed bypass; subclasses define the bypass."""

    base_layer: nn.Module

    def __init__(self, *, base_layer: nn.Module, scale: float) -> None:
        super().__init__()
        self.base_layer = base_layer
        self.moe_scale = scale
        self.moe_context = RoutingContext()

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            if name == "base_layer":
                raise
            return getattr(self.base_layer, name)

    def forward(self, x: Tensor) -> Tensor:
        out = self.base_layer(x)
        plan = self.moe_context.get()
        if plan is None or plan.rows != x.shape[0]:
            return out
        mask = None
        if self.moe_context.decoding:
            if not plan.later:
                return out
        elif plan.tokens is not None and plan.tokens.shape[1] == x.shape[1]:
            mask = plan.tokens.to(x.device).unsqueeze(-1)  # (B, L, 1)
        bypass = self.moe_bypass(x, plan)
        if mask is not None:
            bypass = bypass * mask
        return out + self.moe_scale * bypass.to(out.dtype)

    def moe_bypass(self, x: Tensor, plan: Plan) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError


class MEMoELayer(MoEAdaptorLayer):
    """E shared experts and a per-token top-k gate on [x ; anchor] (or on the anchor alone)."""

    def __init__(
        self, *, base_layer: nn.Module, scale: float, state: dict[str, Tensor], top_k: int, anchor_only: bool
    ) -> None:
        super().__init__(base_layer=base_layer, scale=scale)
        self.moe_top_k = top_k
        self.moe_anchor_only = anchor_only
        dtype = next(base_layer.parameters()).dtype
        self.moe_gate = nn.Parameter(state["gate"].clone(), requires_grad=False)  # (E, d or 2d) fp32
        self.moe_experts = nn.ParameterDict(
            {k: nn.Parameter(state[k].to(dtype), requires_grad=False) for k in EXPERT_FIELDS}
        )

    def load(self, state: dict[str, Tensor]) -> None:
        """Copy adaptor weights in place (shapes must match)."""
        with torch.no_grad():
            self.moe_gate.copy_(state["gate"])
            for k in EXPERT_FIELDS:
                self.moe_experts[k].copy_(state[k])

    def weights(self) -> dict[str, Tensor]:
        return {"gate": self.moe_gate, **{k: self.moe_experts[k] for k in EXPERT_FIELDS}}

    def moe_bypass(self, x: Tensor, plan: Plan) -> Tensor:
        assert isinstance(plan, AnchorPlan)
        rows = plan.active.nonzero().squeeze(-1)  # (b,)
        out = torch.zeros_like(x)
        if rows.numel() == 0:
            return out
        xs = x[rows]  # (b, L, d)
        y = memoe_bypass(
            xs,
            plan.anchors[rows].to(x.device),
            self.weights(),
            top_k=self.moe_top_k,
            anchor_only=self.moe_anchor_only,
        )
        return out.index_copy(0, rows, y.to(x.dtype))


def memoe_gate_logits(x: Tensor, anchors: Tensor, gate: Tensor, *, anchor_only: bool) -> Tensor:
    """(b, L, E) gate logits. x (b, L, d); anchors (b, d); gate (E, d) or (E, 2d)."""
    d = x.shape[-1]
    from_anchor = nnf.linear(anchors.float(), gate[:, -d:].float())  # (b, E)
    if anchor_only:
        return from_anchor.unsqueeze(1).expand(x.shape[0], x.shape[1], -1)
    return nnf.linear(x.float(), gate[:, :d].float()) + from_anchor.unsqueeze(1)


def memoe_bypass(
    x: Tensor,
    anchors: Tensor,
    weights: dict[str, Tensor],
    *,
    top_k: int,
    anchor_only: bool,
    noise: Tensor | None = None,
) -> Tensor:
    """MEMoE bypass for the active rows. x (b, L, d), anchors (b, d) -> (b, L, d)."""
    logits = memoe_gate_logits(x, anchors, weights["gate"], anchor_only=anchor_only)  # (b, L, E)
    if noise is not None:
        logits = logits + noise
    gate_w, index = top_k_gate(logits, top_k)  # (b, L, k)
    experts = {k: weights[k] for k in EXPERT_FIELDS}
    flat = x.reshape(-1, x.shape[-1]).to(experts["down_proj"].dtype)  # (b*L, d)
    y = dispatch(flat, gate_w.reshape(flat.shape[0], -1).to(flat.dtype), index.reshape(flat.shape[0], -1), experts)
    return y.reshape(x.shape)


ROUTER_FIELDS = ("center", "key", "proj_down", "proj_up", "tau")


class LEMoEExpert(nn.Module):
    """One batch's expert with its routing key, projection, threshold and anchors.

    Routing tensors stay fp32; the expert weights use the model's dtype.
    """

    gate_proj: nn.Parameter  # (r, d)
    up_proj: nn.Parameter  # (r, d)
    down_proj: nn.Parameter  # (d, r)
    key: nn.Parameter  # (d,)
    proj_down: nn.Parameter  # (p, d)
    proj_up: nn.Parameter  # (d, p)
    center: Tensor  # (d,)
    tau: Tensor  # ()
    anchors: Tensor  # (n, d)
    seq: Tensor  # () int64
    subjects: Tensor  # (bytes,) uint8 JSON list
    edits: Tensor  # (bytes,) uint8 JSON list of [prompt, target, subject] the expert was trained on

    def __init__(self, tensors: dict[str, Tensor], *, dtype: torch.dtype) -> None:
        super().__init__()
        for k in EXPERT_FIELDS:
            self.register_parameter(k, nn.Parameter(tensors[k].to(dtype), requires_grad=False))
        for k in ("key", "proj_down", "proj_up"):
            self.register_parameter(k, nn.Parameter(tensors[k].float(), requires_grad=False))
        self.register_buffer("center", tensors["center"].float())  # (d,)
        self.register_buffer("tau", tensors["tau"].float().reshape(()))  # ()
        self.register_buffer("anchors", tensors["anchors"].float())  # (n, d)
        self.register_buffer("seq", tensors["seq"].to(torch.int64).reshape(()))  # ()
        self.register_buffer("subjects", tensors["subjects"].to(torch.uint8))  # (bytes,)
        self.register_buffer("edits", tensors["edits"].to(torch.uint8))  # (bytes,)

    def edits_held(self) -> list[tuple[str, str, str]]:
        """(prompt, target, subject) of every edit this expert was trained on."""
        return [(str(p), str(t), str(s)) for p, t, s in tensor_json(self.edits) or []]

    def tensors(self) -> dict[str, Tensor]:
        """Every tensor of the expert: floats as fp32, the rest as stored."""
        out = {name: t.detach() for name, t in self.named_parameters()}
        out.update({name: t.detach() for name, t in self.named_buffers()})
        return {k: (v.float() if v.is_floating_point() else v) for k, v in out.items()}

    def forward_expert(self, x: Tensor) -> Tensor:
        """x (n, d) -> (n, d)."""
        return swiglu(x.to(self.down_proj.dtype), self.gate_proj, self.up_proj, self.down_proj)


LEMOE_FIELDS = (*EXPERT_FIELDS, "key", "proj_down", "proj_up", "center", "tau", "anchors", "seq", "subjects", "edits")


class LEMoELayer(MoEAdaptorLayer):
    """One expert per applied batch, keyed by batch id; one expert per sequence (top-1)."""

    def __init__(self, *, base_layer: nn.Module, scale: float) -> None:
        super().__init__(base_layer=base_layer, scale=scale)
        self.moe_experts = nn.ModuleDict()
        self.moe_version = 0  # bumped on every insertion/removal (invalidates stacked caches)

    def insert(self, batch_id: str, tensors: dict[str, Tensor]) -> None:
        dtype = next(self.base_layer.parameters()).dtype
        device = next(self.base_layer.parameters()).device
        self.moe_experts[batch_id] = LEMoEExpert(tensors, dtype=dtype).to(device)
        self.moe_version += 1

    def remove(self, batch_id: str) -> None:
        """Drop one expert; the others keep their order, renumbered 0 … t-2."""
        del self.moe_experts[batch_id]
        for i, (_, expert) in enumerate(self.ordered()):
            expert.seq.fill_(i)
        self.moe_version += 1

    def clear(self) -> None:
        self.moe_experts = nn.ModuleDict()
        self.moe_version += 1

    def ordered(self) -> list[tuple[str, LEMoEExpert]]:
        """Experts in insertion order (by their `seq`)."""
        items = [(k, v) for k, v in self.moe_experts.items() if isinstance(v, LEMoEExpert)]
        return sorted(items, key=lambda kv: int(kv[1].seq.item()))

    def moe_bypass(self, x: Tensor, plan: Plan) -> Tensor:
        assert isinstance(plan, ExpertPlan)
        out = torch.zeros_like(x)
        for key in dict.fromkeys(e for e in plan.experts if e is not None):
            if key not in self.moe_experts:
                continue
            rows = torch.tensor([i for i, e in enumerate(plan.experts) if e == key], device=x.device)
            expert = self.moe_experts[key]
            assert isinstance(expert, LEMoEExpert)
            xs = x[rows]  # (b, L, d)
            y = expert.forward_expert(xs.reshape(-1, x.shape[-1])).reshape(xs.shape)
            out = out.index_copy(0, rows, y.to(x.dtype))
        return out
