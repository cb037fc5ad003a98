"""Build a ModelHost from settings: resolve the model source, pick device and dtype, load."""

from __future__ import annotations

import logging
import os

import torch

from contract.config import Settings
from editing.host import ModelHost, resolve_device, resolve_dtype
from editing.model_source import resolve_model

logger = logging.getLogger(__name__)


def load_host(settings: Settings) -> ModelHost:
    """Load the configured causal LM (fetching/converting the default model on first use)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    device = resolve_device(settings.device)
    dtype = resolve_dtype(settings.dtype, device)
    source = resolve_model(settings.model, settings.model_cache())
    tokenizer = AutoTokenizer.from_pretrained(source)
    model = AutoModelForCausalLM.from_pretrained(source, dtype=dtype)
    logger.info("loaded %s on %s as %s", settings.model, device, str(dtype).removeprefix("torch."))
    return ModelHost(model=model, tokenizer=tokenizer, model_id=settings.model, device=device, dtype=dtype,
                     packed_linear=settings.packed_linear)


def serving_threads(settings: Settings, *, cores: int | None = None) -> int | None:
    """The torch thread count a serving process should use; None = leave torch's default."""
    if settings.threads is not None:
        return settings.threads
    if os.environ.get("OMP_NUM_THREADS") or resolve_device(settings.device).type != "cpu":
        return None
    cores = cores if cores is not None else len(os.sched_getaffinity(0))
    return max(cores - 1, 1)


def set_serving_threads(settings: Settings) -> None:
    """Apply serving_threads to this process (call once, before the model runs)."""
    threads = serving_threads(settings)
    if threads is not None:
        torch.set_num_threads(threads)
    logger.info("torch uses %d CPU threads", torch.get_num_threads())
