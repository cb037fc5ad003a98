"""Bounds on the shape of a parsed JSON body, checked before any model validates it.

`json.loads` accepts bodies that the rest of the service cannot carry:

- nesting deep enough to exhaust a serialiser (pydantic gives up at 255 levels, so an edit whose
  metadata nests 900 arrays would be stored and then fail every answer that shows it; `json`
  itself stops near 1000 levels with a `RecursionError`);
- numbers beyond the float range (`1e400` parses as infinity, which would be stored as `null`);
- lone UTF-16 surrogates (`"\\ud800"`), which no UTF-8 encoder, hash or database accepts;
- millions of tiny values within the size limit, each of which would become a field error.

`check_json_shape` walks the parsed body once, without recursion, and raises a 422 at the first
problem: depth and value count name `body`, a bad number or string names its field.
"""

from __future__ import annotations

import math
from typing import Any

from contract.config import LimitsConfig
from service.problems import FieldError, RequestInvalidError, field_path

JsonPath = tuple[str | int, ...]


def too_deep(limit: int) -> RequestInvalidError:
    """The 422 for a body nested deeper than `limit` arrays and objects."""
    message = f"arrays and objects nested more than {limit} deep"
    return RequestInvalidError([FieldError(field="body", message=message, type="too_deep")])


def check_json_shape(value: Any, limits: LimitsConfig) -> None:
    """Raise a 422 when `value` is deeper or larger than the limits, or holds a number or string that
    cannot be stored; otherwise return."""
    stack: list[tuple[Any, JsonPath]] = [(value, ())]
    seen = 1
    while stack:
        item, path = stack.pop()
        if isinstance(item, dict | list):
            if len(path) >= limits.max_json_depth:
                raise too_deep(limits.max_json_depth)
            seen += len(item)
            if seen > limits.max_json_values:
                raise _error("body", f"more than {limits.max_json_values} JSON values", "too_many_values")
            stack.extend(_children(item, path))
        else:
            _check_scalar(item, path)


def _children(item: dict[str, Any] | list[Any], path: JsonPath) -> list[tuple[Any, JsonPath]]:
    """The members of a container, last first (so the walk meets them in document order)."""
    if isinstance(item, list):
        return [(item[i], (*path, i)) for i in range(len(item) - 1, -1, -1)]
    for key in item:
        if not _valid_text(key):
            raise _error(field_path(path), "a member name is not valid Unicode (a lone surrogate)", "invalid_unicode")
    return [(item[key], (*path, key)) for key in reversed(item)]


def _check_scalar(item: Any, path: JsonPath) -> None:
    if isinstance(item, float) and not math.isfinite(item):
        raise _error(field_path(path), "number out of range (beyond ±1.8e308)", "out_of_range")
    if isinstance(item, str) and not _valid_text(item):
        raise _error(field_path(path), "not valid Unicode (a lone surrogate)", "invalid_unicode")


def _valid_text(text: str) -> bool:
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _error(field: str, message: str, kind: str) -> RequestInvalidError:
    return RequestInvalidError([FieldError(field=field, message=message, type=kind)])
