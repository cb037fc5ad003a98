"""Where an edit's key is read: the last token of its subject in the prompt (docs/hypernet.md §5).

A mid-layer MLP input at the subject's last token describes the subject, not the question being
asked of it (ROME and MEMIT locate facts there), so a shift keyed on it moves this subject's
facts and leaves other subjects asked the same question alone, and it is the same key in every
phrasing that names the subject. The subject comes with the edit, or is inferred from the prompt
(the same inference the adaptor editors use); when it cannot be found in the prompt the key falls
back to the prompt's last token.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from contract.subjects import subject_span
from editing.host import ModelHost, TokenBatch


def last_token(host: ModelHost, prompt: str, end: int) -> int:
    """Index, in `host.encode_prompt(prompt)`, of the token that holds character `end - 1`."""
    text = prompt.rstrip()
    tokenizer = host.tokenizer
    if getattr(tokenizer, "is_fast", False):
        offsets = tokenizer(text, add_special_tokens=True, return_offsets_mapping=True)["offset_mapping"]
        inside = [i for i, (a, b) in enumerate(offsets) if b > a and a < end]
        if inside:
            return inside[-1]
    count = len(host.encode_prompt(text[:end]))
    return max(0, min(count, len(host.encode_prompt(text))) - 1)


def subject_positions(host: ModelHost, prompts: Sequence[str], subjects: Sequence[str | None]) -> list[int]:
    """Per prompt, the token index of its subject's last token (else of the prompt's last token)."""
    out = []
    for prompt, subject in zip(prompts, subjects, strict=True):
        span = subject_span(prompt.rstrip(), subject) if subject else None
        out.append(last_token(host, prompt, span[1]) if span else len(host.encode_prompt(prompt)) - 1)
    return out


def position_mask(tokens: TokenBatch, positions: Sequence[int]) -> Tensor:
    """(B, L-1) bool mask with one True per row, at its position (the layout of `target_mask`)."""
    mask = torch.zeros_like(tokens.target_mask)
    rows = torch.arange(len(positions), device=mask.device)
    mask[rows, torch.tensor(list(positions), device=mask.device)] = True
    return mask
