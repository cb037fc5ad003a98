"""ModelHost: the resident model, its tokenizer, and the fp32 masters of the tensors editors change.

Editors never write parameters directly: they call `set_master`, which keeps an fp32 copy and
writes `cast(master)` into the served parameter. Undo restores saved masters; nothing is ever
subtracted. All model access from several threads goes through `lock`.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from contract.errors import InvalidQueryError, PromptTooLongError, TargetNotFoundError
from editing.generation import BatchDecoder, Generation, GenerationRequest, Sampling
from editing.packed_linear import LinearPacks

logger = logging.getLogger(__name__)

DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "bfloat16": torch.bfloat16,
    "float16": torch.float16,
}


def resolve_device(spec: str) -> torch.device:
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(spec)


def resolve_dtype(spec: str, device: torch.device) -> torch.dtype:
    if spec == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    return DTYPES[spec]


class ModelLock:
    """The host's re-entrant lock, where query batches give way to everything else.

    `with lock:` (edits, rollbacks, following the log) is an ordinary re-entrant acquire.
    `with lock.for_queries():` first waits until no such acquirer is queued, so a stream of
    query batches never keeps an edit waiting for more than the batch in progress.
    """

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._queue = threading.Condition(threading.Lock())
        self._waiting = 0

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        with self._queue:
            self._waiting += 1
        try:
            return self._lock.acquire(blocking, timeout)
        finally:
            with self._queue:
                self._waiting -= 1
                self._queue.notify_all()

    def release(self) -> None:
        self._lock.release()

    def __enter__(self) -> bool:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()

    @contextmanager
    def for_queries(self) -> Iterator[None]:
        with self._queue:
            while self._waiting:
                self._queue.wait(0.05)
        with self._lock:
            yield


@dataclass(frozen=True)
class TokenBatch:
    """Prompt + continuation pairs, right-padded. `labels[b, j]` is the token predicted at j-1."""

    input_ids: Tensor  # (B, L)
    attention_mask: Tensor  # (B, L)
    labels: Tensor  # (B, L), -100 outside continuations

    @property
    def target_mask(self) -> Tensor:
        """(B, L-1): positions whose next-token prediction is a continuation token."""
        return self.labels[:, 1:] != -100


class ModelHost:
    """A causal LM kept resident for editing and serving."""

    def __init__(
        self,
        *,
        model: nn.Module,
        tokenizer: Any,
        model_id: str,
        device: torch.device | None = None,
        dtype: torch.dtype | None = None,
        packed_linear: bool = True,
    ) -> None:
        self.device = device or next(model.parameters()).device
        self.dtype = dtype or next(model.parameters()).dtype
        self.model = model.to(device=self.device, dtype=self.dtype).eval()
        for param in self.model.parameters():
            param.requires_grad_(False)
        self.tokenizer = tokenizer
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.model_id = model_id
        self.lock = ModelLock()
        self._masters: dict[str, Tensor] = {}
        self._base: dict[str, Tensor] = {}
        self._row_listeners: list[Callable[[Tensor], None]] = []
        self.packs = LinearPacks(enabled=packed_linear and self.device.type == "cpu" and self.dtype == torch.float32)

    # ---- tracked parameters ------------------------------------------------------------------
    def parameter(self, name: str) -> nn.Parameter:
        """The served parameter called `name` (dotted path); a clear error when it does not exist."""
        module_name, _, attr = name.rpartition(".")
        try:
            module = self.model.get_submodule(module_name)
        except AttributeError:
            raise TargetNotFoundError(f"the model has no module {module_name!r}") from None
        param = getattr(module, attr, None)
        if not isinstance(param, nn.Parameter):
            raise TargetNotFoundError(f"{module_name!r} has no parameter {attr!r}")
        return param

    def track(self, names: Sequence[str]) -> None:
        """Keep fp32 masters (and pristine base copies) of these parameters."""
        for name in names:
            if name in self._masters:
                continue
            master = self.parameter(name).detach().to(torch.float32).clone()
            self._masters[name] = master
            self._base[name] = master.clone()

    @property
    def tracked(self) -> list[str]:
        return list(self._masters)

    def master(self, name: str) -> Tensor:
        return self._masters[name]

    def masters(self) -> dict[str, Tensor]:
        """Copies of every master, e.g. for an undo record or a snapshot."""
        return {name: t.clone() for name, t in self._masters.items()}

    def set_master(self, name: str, value: Tensor) -> None:
        """Replace a master (fp32) and write its cast into the served parameter."""
        assert value.dtype == torch.float32 and value.shape == self._masters[name].shape
        self._masters[name] = value.to(self.device)
        with torch.no_grad():
            self.parameter(name).copy_(self._masters[name].to(self.dtype))

    def set_masters(self, values: dict[str, Tensor]) -> None:
        for name, value in values.items():
            self.set_master(name, value.to(torch.float32))

    def reset_to_base(self) -> None:
        self.set_masters({name: t.clone() for name, t in self._base.items()})

    def checksum(self, extra: dict[str, Tensor] | None = None) -> str:
        """sha256 over the served tracked tensors and `extra` (editor state), in name order."""
        digest = hashlib.sha256()
        items: dict[str, Tensor] = {f"param:{n}": self.parameter(n) for n in self._masters}
        items.update({f"state:{k}": v for k, v in (extra or {}).items()})
        for key in sorted(items):
            tensor = items[key].detach().contiguous().cpu()
            digest.update(f"{key}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
            digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
        return digest.hexdigest()

    @contextmanager
    def inference(self) -> Iterator[None]:
        """No autograd, and the linear layers on oneDNN-packed weights where that applies (CPU,
        fp32; `editing.packed_linear`): how queries and the guard's probes run the model."""
        with torch.no_grad(), self.packs.active():
            yield

    # ---- tokenisation ------------------------------------------------------------------------
    def encode_prompt(self, prompt: str) -> list[int]:
        return list(self.tokenizer(prompt.rstrip(), add_special_tokens=True)["input_ids"])

    def encode_continuation(self, text: str) -> list[int]:
        """A continuation's tokens, scored after a leading space."""
        return list(self.tokenizer(" " + text.strip(), add_special_tokens=False)["input_ids"])

    def encode_pairs(self, pairs: Sequence[tuple[str, str]], *, max_tokens: int | None = None) -> TokenBatch:
        rows = []
        for prompt, target in pairs:
            ids_p, ids_t = self.encode_prompt(prompt), self.encode_continuation(target)
            if max_tokens is not None and len(ids_p) + len(ids_t) > max_tokens:
                raise PromptTooLongError(
                    f"prompt and target are {len(ids_p) + len(ids_t)} tokens; the limit is {max_tokens}",
                    field="prompt",
                )
            rows.append((ids_p, ids_t))
        return self.pack_pairs(rows)

    def pack_pairs(self, rows: Sequence[tuple[Sequence[int], Sequence[int]]]) -> TokenBatch:
        """(prompt ids, continuation ids) rows as one right-padded batch with labels."""
        width = max(len(p) + len(t) for p, t in rows)
        pad = int(self.tokenizer.pad_token_id)
        input_ids = torch.full((len(rows), width), pad, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        labels = torch.full((len(rows), width), -100, dtype=torch.long)
        for i, (ids_p, ids_t) in enumerate(rows):
            n = len(ids_p) + len(ids_t)
            input_ids[i, :n] = torch.tensor([*ids_p, *ids_t])
            mask[i, :n] = 1
            labels[i, len(ids_p) : n] = torch.tensor(list(ids_t), dtype=torch.long)
        return TokenBatch(input_ids.to(self.device), mask.to(self.device), labels.to(self.device))

    # ---- forward helpers ---------------------------------------------------------------------
    def logits(self, batch: TokenBatch, **kwargs: Any) -> Tensor:
        """(B, L, V) logits in fp32."""
        out = self.model(input_ids=batch.input_ids, attention_mask=batch.attention_mask, **kwargs)
        logits: Tensor = out.logits.float()
        return logits

    @staticmethod
    def token_logprobs(logits: Tensor, batch: TokenBatch) -> Tensor:
        """(B, L-1) log-probability of each label token; zero where there is no label."""
        logp = torch.log_softmax(logits[:, :-1], dim=-1)  # (B, L-1, V)
        labels = batch.labels[:, 1:].clamp(min=0)  # (B, L-1)
        picked = logp.gather(-1, labels.unsqueeze(-1)).squeeze(-1)
        return picked * batch.target_mask

    def score(self, prompt: str, candidates: Sequence[str]) -> list[tuple[float, int]]:
        """(sum of log-probs, token count) of each candidate after `prompt` and a leading space."""
        return self.score_many([(self.encode_prompt(prompt), candidates)])[0]

    @torch.no_grad()
    def score_many(
        self, items: Sequence[tuple[Sequence[int], Sequence[str]]]
    ) -> list[list[tuple[float, int]]]:
        """Per (prompt ids, candidates): (sum of log-probs, token count) of each candidate, one batch."""
        rows = [(ids, self.encode_continuation(c)) for ids, candidates in items for c in candidates]
        if not rows:
            return [[] for _ in items]
        batch = self.pack_pairs(rows)
        with self.inference():
            per_token = self.token_logprobs(self.logits(batch), batch)  # (N, L-1)
        counts = batch.target_mask.sum(dim=1)  # (N,)
        flat = [(float(s), int(n)) for s, n in zip(per_token.sum(dim=1), counts, strict=True)]
        out, start = [], 0
        for _, candidates in items:
            out.append(flat[start : start + len(candidates)])
            start += len(candidates)
        return out

    # ---- generation (one batched path: editing.generation) ------------------------------------
    def on_rows_selected(self, listener: Callable[[Tensor], None]) -> None:
        """Call `listener(index)` whenever a decoding batch keeps only the rows `index` (B',)."""
        self._row_listeners.append(listener)

    def rows_selected(self, index: Tensor) -> None:
        for listener in self._row_listeners:
            listener(index)

    def encode_chat(self, messages: Sequence[Mapping[str, str]]) -> list[int]:
        """Token ids of a conversation in the model's chat template, with the generation prompt."""
        if not self.has_chat_template:
            raise InvalidQueryError(f"the model {self.model_id} has no chat template; send a prompt",
                                    field="messages")
        return list(self.tokenizer(self.chat_text(messages), add_special_tokens=False)["input_ids"])

    @property
    def has_chat_template(self) -> bool:
        return bool(getattr(self.tokenizer, "chat_template", None))

    def chat_text(self, messages: Sequence[Mapping[str, str]]) -> str:
        """A conversation as text in the model's chat template, ending where the assistant answers."""
        return str(self.tokenizer.apply_chat_template([dict(m) for m in messages], add_generation_prompt=True,
                                                      tokenize=False))

    def chat_form(self, prompt: str) -> str:
        """`prompt` asked as a user turn and restated as the start of the assistant's answer: how an
        editor fits an edit so that chat-form questions see it (needs a chat template)."""
        return self.chat_text([{"role": "user", "content": prompt}]) + prompt

    def generate_many(
        self, requests: Sequence[GenerationRequest], *, alive: Callable[[list[int]], list[bool]] | None = None
    ) -> list[Generation]:
        """Decode every request as one left-padded batch with the KV cache (editing.generation)."""
        return BatchDecoder(self).run(requests, alive=alive)

    def generate(
        self,
        prompt: str,
        *,
        max_new_tokens: int = 16,
        temperature: float = 0.0,
        top_p: float = 1.0,
        seed: int | None = None,
    ) -> str:
        """Greedy when temperature is 0, else sampled (seeded when `seed` is given)."""
        sampling = Sampling(max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p, seed=seed)
        return self.generate_many([GenerationRequest(ids=self.encode_prompt(prompt), sampling=sampling)])[0].text

    def greedy(self, prompts: Sequence[str], *, max_new_tokens: int) -> list[str]:
        """Greedy continuations of several prompts, decoded as one batch."""
        if not prompts:
            return []
        sampling = Sampling(max_new_tokens=max_new_tokens)
        requests = [GenerationRequest(ids=self.encode_prompt(p), sampling=sampling) for p in prompts]
        return [g.text for g in self.generate_many(requests)]
