"""Refinement of the network's desired changes at the subject sites (docs/hypernet.md §5).

The network turns one gradient into a desired change D_m of each edited module's output at the
subject's last token. At mid layers the map from that change to the answer is far from linear,
so a single step rarely lands a fact the model is sure of. `refine` finishes it: a few Adam steps
on the changes themselves (not on any weight), each one forward + backward from the lowest edited
layer (all `steps` of them by default; optionally stopping once every edit's answer is likely
enough). An edit can also be fitted in more contexts than its own prompt (after neutral sentences,
inside the model's chat template: `contexts`; off by default, docs/hypernet.md §5a has what they
bought and cost), one change shared by all of them. The weights are then solved for
these changes exactly as for the network's (solve.py). With `steps = 0` the editor is the plain
one-shot hypernetwork.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import torch
from torch import Tensor, nn

from editing.editors.hypernet.capture import answer_rows, per_example_mean
from editing.host import ModelHost, TokenBatch


@contextmanager
def _added(model: nn.Module, changes: dict[str, Tensor], sites: Tensor, owner: Tensor) -> Iterator[None]:
    """Forward hooks that add changes[m][owner[r]] (d_v) to module m's output at row r's site."""
    rows, cols = sites.nonzero(as_tuple=True)  # one site per row, in row order

    def hook(name: str) -> Callable[[nn.Module, tuple[Tensor, ...], Tensor], Tensor]:
        def add(module: nn.Module, args: tuple[Tensor, ...], out: Tensor) -> Tensor:
            return out.index_put((rows, cols), out[rows, cols] + changes[name][owner].to(out.dtype))

        return add

    handles = [model.get_submodule(m).register_forward_hook(hook(m)) for m in changes]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def per_edit_nll(logits: Tensor, tokens: TokenBatch) -> Tensor:
    """(B,) mean answer-token NLL of each edit; `logits` (N, V) at the answer positions."""
    example, labels = answer_rows(tokens)
    nll = -torch.log_softmax(logits, dim=-1).gather(-1, labels[:, None]).squeeze(-1)
    return per_example_mean(nll, example, tokens.input_ids.shape[0])


def refine(
    model: nn.Module, tokens: TokenBatch, sites: Tensor, start: dict[str, Tensor], *, logits_fn: Callable[[], Tensor],
    steps: int, lr: float, stop_nll: float, owner: Tensor | None = None,
) -> tuple[dict[str, Tensor], int]:
    """(refined changes per module (B, d_v) fp32, steps taken). `tokens` holds R ≥ B rows: each edit in
    one or more contexts, row r belonging to edit `owner[r]` (default: row r is edit r), and the change
    of an edit is shared by all its rows. `logits_fn()` returns the (N, V) answer-position logits of
    `tokens` on the current model (hooks included). `lr` is the step of the whole change: each of the M
    modules moves by lr / M, so spreading an edit over more layers does not make it larger."""
    changes = {m: d.detach().clone().float().requires_grad_(True) for m, d in start.items()}
    if owner is None:
        owner = torch.arange(tokens.input_ids.shape[0], device=tokens.input_ids.device)
    optimiser = torch.optim.Adam(list(changes.values()), lr=lr / max(len(changes), 1))
    taken = 0
    for _ in range(steps):
        with _added(model, changes, sites, owner), torch.enable_grad():
            nll = per_edit_nll(logits_fn(), tokens)
            if float(nll.detach().max()) < stop_nll:
                break
            grads = torch.autograd.grad(nll.sum(), list(changes.values()))
        optimiser.zero_grad(set_to_none=True)
        for change, grad in zip(changes.values(), grads, strict=True):
            change.grad = grad
        optimiser.step()
        taken += 1
    return {m: c.detach() for m, c in changes.items()}, taken


def contexts(host: ModelHost, prompt: str, *, prefixes: Sequence[str], chat: bool) -> list[str]:
    """The prompts one edit is fitted in: itself, after each of `prefixes`, and (with `chat`, when the
    model has a chat template) as the start of the assistant's answer to the prompt asked as a
    user turn."""
    out = [prompt] + [prefix + prompt for prefix in prefixes]
    if chat and host.has_chat_template:
        out.append(host.chat_form(prompt))
    return out
