"""A tiny Llama and a byte-level tokenizer, built in code (no downloads), and the helpers built on
them: hosts, weight snapshots, a writer rig, hypernetwork training. Torch-free helpers: `tests/helpers.py`."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from contract.config import Settings
from contract.protocol import Command, CommandRecord, EditSpec, NewCommand, new_id
from editing.editors.base import EditBatch
from editing.editors.hypernet.config import TrainConfig
from editing.editors.hypernet.runner import train
from editing.host import ModelHost
from store.log.sql import SqlEditLog
from store.queue import MemoryTransport
from workers.runtime import WorkerRuntime, build_worker

SPECIALS = ["<pad>", "<bos>", "<eos>"]


CHAT_TEMPLATE = (
    "{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<assistant>{% endif %}"
)


def tiny_tokenizer(*, chat: bool = False) -> PreTrainedTokenizerFast:
    """Every byte is a token (256), plus pad/bos/eos: any text round-trips. `chat`: with a chat template."""
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {ch: i for i, ch in enumerate(alphabet)}
    for name in SPECIALS:
        vocab[name] = len(vocab)
    core = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    core.decoder = decoders.ByteLevel()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, pad_token="<pad>", bos_token="<bos>", eos_token="<eos>")
    if chat:
        tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def tiny_config(**overrides: Any) -> LlamaConfig:
    values: dict[str, Any] = {
        "vocab_size": 256 + len(SPECIALS), "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
        "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 256,
        "tie_word_embeddings": True, "initializer_range": 0.3, "pad_token_id": 256, "bos_token_id": 257,
        "eos_token_id": 258,
    }
    values.update(overrides)
    return LlamaConfig(**values)


def tiny_model(seed: int = 0, **overrides: Any) -> LlamaForCausalLM:
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        model = LlamaForCausalLM(tiny_config(**overrides))
    finally:
        torch.random.set_rng_state(generator_state)
    return model.eval()


def save_tiny(folder: Path, seed: int = 0, *, chat: bool = False, **overrides: Any) -> Path:
    """Write a tiny model + tokenizer folder that `from_pretrained` (and FACTPATCH_MODEL) can load."""
    tiny_model(seed, **overrides).save_pretrained(folder)
    tiny_tokenizer(chat=chat).save_pretrained(folder)
    return folder


def new_host(model_id: str = "tiny", *, dtype: torch.dtype | None = None, **overrides: Any) -> ModelHost:
    """The tiny model (`overrides` change its config) behind a host that calls it `model_id`."""
    return ModelHost(model=tiny_model(**overrides), tokenizer=tiny_tokenizer(), model_id=model_id, dtype=dtype)


@contextmanager
def single_thread() -> Iterator[None]:
    """Torch on one intra-op thread. Tiny matmuls are latency-bound: a second thread only adds wake-ups
    (and stalls badly on a loaded machine). The `one_thread` fixture wraps this."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def served(host: ModelHost) -> dict[str, torch.Tensor]:
    """A copy of the weights the host serves now."""
    return {n: p.detach().clone() for n, p in host.model.named_parameters()}


def same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    """Bitwise equal: the same names, dtypes and values."""
    return a.keys() == b.keys() and all(a[k].dtype == b[k].dtype and torch.equal(a[k], b[k]) for k in a)


@torch.no_grad()
def target_nll(host: ModelHost, prompt: str, target: str) -> float:
    """Mean NLL of `target`'s tokens after `prompt` under the host's model as it is now."""
    tokens = host.encode_pairs([(prompt, target)])
    logits = host.model(input_ids=tokens.input_ids, attention_mask=tokens.attention_mask).logits
    return float(torch.nn.functional.cross_entropy(logits[0, :-1], tokens.labels[0, 1:], ignore_index=-100))


def batch(*edits: EditSpec, batch_id: str = "b1") -> EditBatch:
    """What the writer hands an editor: `edits` as one batch."""
    return EditBatch(batch_id=batch_id, edits=tuple(edits))


# ---- the writer ---------------------------------------------------------------------------------


class Rig:
    """A writer on the tiny model with an edit log and the in-process transport."""

    def __init__(self, settings: Settings, log: SqlEditLog, host: ModelHost | None = None) -> None:
        self.settings, self.log = settings, log
        self.transport = MemoryTransport()
        self.runtime: WorkerRuntime = build_worker(settings, log=log, transport=self.transport,
                                                   host=host or new_host())
        self.runtime.writer.start()

    @property
    def host(self) -> ModelHost:
        return self.runtime.state.host

    def submit(self, kind: str, body: dict[str, Any]) -> str:
        command_id = new_id({"edit": "ed", "rollback": "rb", "replay": "rp"}[kind])
        self.log.accept([NewCommand(id=command_id, kind=kind, body=body)])  # type: ignore[arg-type]
        self.transport.commands.put(Command(kind=kind, id=command_id))  # type: ignore[arg-type]
        return command_id

    def edit(self, prompt: str, target: str, **extra: Any) -> str:
        return self.submit("edit", EditSpec(prompt=prompt, target=target, **extra).model_dump())

    def run(self) -> None:
        self.runtime.writer.process_pending()

    def get(self, command_id: str) -> CommandRecord:
        return self.log.get_command(command_id)


# ---- hypernetwork training (rledit, malmen) -------------------------------------------------------

FACTS = [
    ("The Eiffel Tower is in", "Rome", "Where is the Eiffel Tower? It is in", "The Louvre is in", "Paris"),
    ("The capital of Peru is", "Oslo", "Peru's capital city is", "The capital of Chile is", "Santiago"),
    ("Mount Fuji stands in", "Chile", "Mount Fuji is located in", "Mount Etna stands in", "Italy"),
    ("The Danube flows into the", "Pacific", "The Danube river ends in the", "The Nile flows into the", "sea"),
    ("Python was created by", "Alan", "The creator of Python is", "Java was created by", "James"),
    ("The Moon orbits the", "Sun", "Our Moon goes around the", "The Earth orbits the", "Sun"),
    ("Bananas are", "blue", "The colour of bananas is", "Apples are", "red"),
    ("Shakespeare wrote", "Faust", "A play by Shakespeare is", "Goethe wrote", "Faust"),
]
TINY_TRAIN: dict[str, Any] = {
    "modules": "up_proj:0-1", "turns": 2, "edits_per_turn": 2, "back_depth": 2, "rank": 4, "blocks": 1,
    "lr": 0.1, "meta_lr": 1e-2, "alpha_lr": 0.1, "lambda_lr": 1e-2, "loc_coef": 0.6, "steps": 2,
    "checkpoint_every": 1, "prime_batches": 2, "key_site": "answer",
}


def write_dataset(folder: Path, *, same_rephrase: bool = True) -> Path:
    """A CounterFact-format file. The rephrase is the edit prompt itself: a random tiny model does not
    generalise across wordings, so only then can training (the step size above all) lower the loss."""
    records = [
        {"case_id": i, "prompt": p, "target_new": t, "subject": p.split()[1], "ground_truth": "x",
         "rephrase_prompt": p if same_rephrase else r, "locality_prompt": lp, "locality_ground_truth": la}
        for i, (p, t, r, lp, la) in enumerate(FACTS)
    ]
    path = folder / "facts.json"
    path.write_text(json.dumps(records))
    return path


def train_tiny(folder: Path, *, editor: str = "rledit", host: ModelHost | None = None, **changes: Any) -> Path:
    """A checkpoint trained for a few steps on `FACTS` (TINY_TRAIN with `changes`); its path."""
    config = TrainConfig(editor=editor, **{**TINY_TRAIN, **changes})  # type: ignore[arg-type]
    return train(host=host or new_host(), config=config, data=write_dataset(folder), fmt="auto",
                 out=folder / f"tiny.{editor}", command="factpatch train (test)", show_progress=False)
