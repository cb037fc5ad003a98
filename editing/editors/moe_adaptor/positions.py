"""Which token positions get the bypass: all of them, the subject's, or the subject's and after.

Token spans come from decoding growing prefixes of the ids, so they agree with the decoded
text the subject index searches.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from torch import Tensor

BypassTokens = Literal["all", "subject", "from_subject"]


def char_spans(tokenizer: Any, ids: list[int]) -> tuple[str, list[tuple[int, int]]]:
    """(decoded text, [start, end) of each token in it). Special tokens get empty spans."""
    spans, previous = [], ""
    for k in range(len(ids)):
        text = str(tokenizer.decode(ids[: k + 1], skip_special_tokens=True))
        start = min(len(previous), len(text))
        spans.append((start, len(text)))
        previous = text
    return previous, spans


def span_mask(spans: list[tuple[int, int]], start: int, end: int, mode: BypassTokens) -> Tensor:
    """(L,) bool: tokens overlapping [start, end) (mode subject) or from its first token on (from_subject)."""
    hit = [s < end and e > start for s, e in spans]
    mask = torch.tensor(hit, dtype=torch.bool)
    if mode == "from_subject" and bool(mask.any()):
        first = int(mask.nonzero()[0])
        mask[first:] = True
    if not bool(mask.any()):  # the subject was not found in the tokens (should not happen): all positions
        mask[:] = True
    return mask
