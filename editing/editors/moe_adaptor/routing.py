"""Deciding the route once per sequence: a forward pre-hook on the whole model.

Generation and scoring go through the plain Hugging Face forward. At prefill (no cached
tokens yet) the hook sees the full `input_ids` and asks the editor's planner for a plan, which
it stores in the layer's thread-local `RoutingContext`; decoding steps (cached tokens present)
reuse it. The worker serialises model use through `host.lock`; the thread-local context keeps
concurrent callers apart even without it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from torch import Tensor, nn
from torch.utils.hooks import RemovableHandle

from editing.editors.moe_adaptor.layer import Plan, RoutingContext
from editing.kvcache import cache_from_kwargs

logger = logging.getLogger(__name__)

Planner = Callable[[Tensor | None, Tensor | None, Tensor | None], Plan | None]
"""(input_ids (B, L) | None, attention_mask (B, L) | None, inputs_embeds (B, L, d) | None) -> plan."""


def cached_tokens(past: Any) -> int:
    """Tokens already in a KV cache (0 for none); unknown cache types count as non-empty."""
    if past is None:
        return 0
    length = getattr(past, "get_seq_length", None)
    return int(length()) if callable(length) else 1


class PrefillHook:
    """Plans at prefill, keeps the plan for the decoding steps of the same sequences."""

    def __init__(self, *, context: RoutingContext, planner: Planner) -> None:
        self.context = context
        self.planner = planner

    def install(self, model: nn.Module) -> RemovableHandle:
        return model.register_forward_pre_hook(self, with_kwargs=True)

    def __call__(self, module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        if self.context.suspended:
            return
        ids = kwargs.get("input_ids", args[0] if args else None)
        embeds = kwargs.get("inputs_embeds")
        if cached_tokens(cache_from_kwargs(kwargs)) == 0:
            self.context.set(self.planner(ids, kwargs.get("attention_mask"), embeds))
            return
        plan = self.context.get()
        rows = ids.shape[0] if ids is not None else (embeds.shape[0] if embeds is not None else -1)
        if plan is not None and plan.rows != rows:
            logger.debug("decoding %d rows with a plan for %d; skipping the adaptor", rows, plan.rows)
            self.context.set(None)
        self.context.mark_decoding()
