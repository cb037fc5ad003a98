"""Batched decoding: many prompts, one left-padded batch, the KV cache, per-row settings.

Every row has its own `Sampling` (new-token budget, temperature, top-p, seed, stop strings).
Rows are left-padded, with an attention mask and position ids counted from each row's first
real token, so a row decodes exactly as it would alone (up to floating-point summation order).
A row that finishes (end of sequence, a stop string, its budget, or its caller gone) leaves the
batch: its KV-cache rows are dropped and the host's row listeners (e.g. an adaptor's per-row
routing plan) are told which rows remain, so finished rows stop costing.

Streaming callers pass `on_text`: it receives text as it becomes final. Text that could still
turn out to be the start of a stop string, or half of a multi-byte character, is held back.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import torch
from torch import Tensor

from editing.kvcache import cache_from_output, cache_kwarg

if TYPE_CHECKING:
    from editing.host import ModelHost

FinishReason = Literal["stop", "length", "cancelled"]
CHECK_EVERY_S = 0.25  # how often `alive` is asked whether rows are still wanted


@dataclass(frozen=True)
class Sampling:
    """How one row is decoded. Greedy when `temperature` is 0."""

    max_new_tokens: int = 16
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int | None = None
    stop: tuple[str, ...] = ()
    ignore_eos: bool = False  # decode past the end-of-sequence token (evaluation's fixed-length answers)


@dataclass(frozen=True)
class GenerationRequest:
    """Prompt token ids and how to continue them; `on_text` receives final text as it appears."""

    ids: Sequence[int]
    sampling: Sampling = Sampling()
    on_text: Callable[[str], None] | None = None


@dataclass(frozen=True)
class Generation:
    text: str
    tokens: int  # generated tokens (the stop string's tokens included, the end-of-sequence token not)
    finish_reason: FinishReason
    ids: tuple[int, ...] = ()  # the generated token ids


@dataclass
class _Row:
    request: GenerationRequest
    eos: frozenset[int]
    generator: torch.Generator | None
    ids: list[int] = field(default_factory=list)
    text: str = ""
    sent: int = 0  # characters of `text` handed to on_text
    finish: FinishReason | None = None

    @property
    def sampling(self) -> Sampling:
        return self.request.sampling

    def add(self, token: int, decode: Callable[[list[int]], str]) -> None:
        """Take one generated token and decide whether the row is finished."""
        if token in self.eos and not self.sampling.ignore_eos:
            self.finish = "stop"
            return
        self.ids.append(token)
        self.text = decode(self.ids)
        cut = _first_stop(self.text, self.sampling.stop)
        if cut is not None:
            self.text, self.finish = self.text[:cut], "stop"
        elif len(self.ids) >= self.sampling.max_new_tokens:
            self.finish = "length"

    def flush(self) -> None:
        """Hand the caller the text that can no longer change."""
        if self.request.on_text is None:
            return
        end = len(self.text) if self.finish is not None else _stable_end(self.text, self.sampling.stop)
        if end > self.sent:
            self.request.on_text(self.text[self.sent : end])
            self.sent = end

    def result(self) -> Generation:
        assert self.finish is not None
        return Generation(text=self.text, tokens=len(self.ids), finish_reason=self.finish, ids=tuple(self.ids))


def _first_stop(text: str, stops: Sequence[str]) -> int | None:
    hits = [i for i in (text.find(s) for s in stops if s) if i >= 0]
    return min(hits) if hits else None


def _stable_end(text: str, stops: Sequence[str]) -> int:
    """How much of `text` is final: not a possible stop-string start, not a broken character."""
    end = len(text)
    while end > 0 and text[end - 1] == "\ufffd":
        end -= 1
    for stop in stops:
        for k in range(min(len(stop) - 1, end), 0, -1):
            if text[:end].endswith(stop[:k]):
                end -= k
                break
    return end


def eos_ids(host: ModelHost) -> frozenset[int]:
    """Token ids that end a generation: the generation config's and the tokenizer's EOS."""
    found: set[int] = set()
    config = getattr(host.model, "generation_config", None)
    for value in (getattr(config, "eos_token_id", None), host.tokenizer.eos_token_id):
        if isinstance(value, int):
            found.add(value)
        elif isinstance(value, list | tuple):
            found.update(int(v) for v in value)
    return frozenset(found)


def pack_left(ids: Sequence[Sequence[int]], pad: int, device: torch.device) -> tuple[Tensor, Tensor]:
    """(input_ids, attention_mask), both (B, L), left-padded."""
    width = max(len(row) for row in ids)
    input_ids = torch.full((len(ids), width), pad, dtype=torch.long)
    mask = torch.zeros((len(ids), width), dtype=torch.long)
    for i, row in enumerate(ids):
        if row:
            input_ids[i, width - len(row) :] = torch.tensor(list(row), dtype=torch.long)
            mask[i, width - len(row) :] = 1
    return input_ids.to(device), mask.to(device)


def _generator(sampling: Sampling) -> torch.Generator | None:
    if sampling.temperature <= 0 or sampling.seed is None:
        return None
    return torch.Generator().manual_seed(sampling.seed)


def _pick(logits: Tensor, rows: Sequence[_Row]) -> list[int]:
    """One next token per row. logits (b, V) fp32."""
    greedy = logits.argmax(dim=-1).tolist()  # [b]
    out = []
    for i, row in enumerate(rows):
        s = row.sampling
        out.append(int(greedy[i]) if s.temperature <= 0 else _sample(logits[i], s, row.generator))
    return out


def _sample(logits: Tensor, sampling: Sampling, generator: torch.Generator | None) -> int:
    """Temperature, then nucleus (top-p) filtering, then one draw. logits (V,)."""
    probs = torch.softmax(logits.float().cpu() / sampling.temperature, dim=-1)  # (V,)
    if sampling.top_p < 1.0:
        sorted_p, order = probs.sort(descending=True)
        keep = sorted_p.cumsum(0) - sorted_p < sampling.top_p  # the smallest prefix reaching top_p
        probs = torch.zeros_like(probs).index_copy(0, order[keep], sorted_p[keep])
    return int(torch.multinomial(probs, 1, generator=generator))


class BatchDecoder:
    """Runs one batch of generation requests on a host; call under `host.lock`."""

    def __init__(self, host: ModelHost) -> None:
        self.host = host
        self.eos = eos_ids(host)
        self.cache_names = list(cache_kwarg(host.model, None))

    def decode(self, ids: list[int]) -> str:
        return str(self.host.tokenizer.decode(ids, skip_special_tokens=True))

    def run(
        self, requests: Sequence[GenerationRequest], *, alive: Callable[[list[int]], list[bool]] | None = None
    ) -> list[Generation]:
        """Decode every request; `alive(indices)` may drop rows whose caller has gone."""
        rows = [_Row(request=r, eos=self.eos, generator=_generator(r.sampling)) for r in requests]
        for row in rows:
            if row.sampling.max_new_tokens <= 0:
                row.finish = "length"
        active = [i for i, row in enumerate(rows) if row.finish is None]
        if active:
            with self.host.inference():
                self._loop(rows, active, alive)
        for row in rows:
            row.flush()
        return [row.result() for row in rows]

    def _loop(self, rows: list[_Row], active: list[int], alive: Callable[[list[int]], list[bool]] | None) -> None:
        pad = int(self.host.tokenizer.pad_token_id)
        input_ids, mask = pack_left([rows[i].request.ids for i in active], pad, self.host.device)  # (B, L)
        positions = (mask.cumsum(dim=-1) - 1).clamp(min=0)  # (B, L)
        out = self.host.model(input_ids=input_ids, attention_mask=mask, position_ids=positions,
                              use_cache=True, logits_to_keep=1)
        checked = time.monotonic()
        while True:
            tokens = _pick(out.logits[:, -1].float(), [rows[i] for i in active])  # [b]
            for i, token in zip(active, tokens, strict=True):
                rows[i].add(token, self.decode)
                rows[i].flush()
            if alive is not None and time.monotonic() - checked >= CHECK_EVERY_S:
                self._drop_gone(rows, active, alive)
                checked = time.monotonic()
            keep = [k for k, i in enumerate(active) if rows[i].finish is None]
            if not keep:
                return
            cache = cache_from_output(out)
            if len(keep) < len(active):
                mask, positions, cache = self._select(keep, mask, positions, cache)
                tokens = [tokens[k] for k in keep]
                active = [active[k] for k in keep]
            mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)  # (b, L + 1)
            positions = positions[:, -1:] + 1  # (b, 1)
            step = torch.tensor(tokens, dtype=torch.long, device=self.host.device)[:, None]  # (b, 1)
            out = self.host.model(input_ids=step, attention_mask=mask, position_ids=positions, use_cache=True,
                                  logits_to_keep=1, **dict.fromkeys(self.cache_names, cache))

    def _select(self, keep: list[int], mask: Tensor, positions: Tensor, cache: Any) -> tuple[Tensor, Tensor, Any]:
        """Keep only these rows of the batch: masks, positions, KV cache and the host's listeners."""
        index = torch.tensor(keep, dtype=torch.long, device=mask.device)
        cache.batch_select_indices(index)
        self.host.rows_selected(index)
        return mask[index], positions[index], cache

    @staticmethod
    def _drop_gone(rows: list[_Row], active: list[int], alive: Callable[[list[int]], list[bool]]) -> None:
        open_rows = [i for i in active if rows[i].finish is None]
        for i, wanted in zip(open_rows, alive(open_rows), strict=True):
            if not wanted:
                rows[i].finish = "cancelled"
