"""The KV cache argument of Hugging Face models, under either of its names.

transformers 5.24 renamed `past_key_values` (forward argument and output field) to `cache`;
these helpers read and pass it whichever version is installed.
"""

from __future__ import annotations

import inspect
from typing import Any

from torch import nn

NAMES = ("cache", "past_key_values")


def cache_from_kwargs(kwargs: dict[str, Any]) -> Any:
    """The cache a forward call was given (None when it has none)."""
    for name in NAMES:
        if kwargs.get(name) is not None:
            return kwargs[name]
    return None


def cache_from_output(output: Any) -> Any:
    """The cache a forward call returned."""
    for name in NAMES:
        value = getattr(output, name, None)
        if value is not None:
            return value
    return None


def cache_kwarg(model: nn.Module, cache: Any) -> dict[str, Any]:
    """{name: cache} under the name `model.forward` takes."""
    params = inspect.signature(model.forward).parameters
    name = next((n for n in NAMES if n in params), "past_key_values")
    return {name: cache}
