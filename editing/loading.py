"""Build a ModelHost from settings: resolve the model source, pick device and dtype, load."""

from __future__ import annotations

import logging

from editing.config import Settings
from editing.host import ModelHost, resolve_device, resolve_dtype
from editing.model_source import resolve_model

logger = logging.getLogger(__name__)


def load_host(settings: Settings) -> ModelHost:
    """Load the configured causal LM (fetching/converting the default model on first use)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    device = resolve_device(settings.device)
    dtype = resolve_dtype(settings.dtype, device)
    source, gguf_file = resolve_model(settings.model, settings.model_cache())
    kwargs = {"gguf_file": gguf_file} if gguf_file else {}
    tokenizer = AutoTokenizer.from_pretrained(source, **kwargs)
    model = AutoModelForCausalLM.from_pretrained(source, dtype=dtype, **kwargs)
    logger.info("loaded %s on %s as %s", settings.model, device, str(dtype).removeprefix("torch."))
    return ModelHost(model=model, tokenizer=tokenizer, model_id=settings.model, device=device, dtype=dtype)
