"""A tiny Llama and a byte-level tokenizer, built in code (no downloads)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

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
