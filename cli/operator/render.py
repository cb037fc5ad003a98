"""Plain-text tables for the operator commands (no dependency beyond the standard library)."""

from __future__ import annotations

from collections.abc import Sequence

MAX_CELL = 60


def cell(value: object, width: int = MAX_CELL) -> str:
    """One table cell: None as '-', newlines flattened, long text cut with an ellipsis."""
    if value is None:
        return "-"
    if isinstance(value, float):
        text = f"{value:.3f}"
    else:
        text = " ".join(str(value).split())
    return text if len(text) <= width else text[: width - 1] + "…"


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """Left-aligned columns, two spaces apart; `(none)` for an empty table."""
    cells = [[cell(v) for v in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip() for row in cells]
    if not rows:
        lines.append("(none)")
    return "\n".join(lines)


def fields(pairs: Sequence[tuple[str, object]]) -> str:
    """`name: value` lines, names aligned."""
    width = max((len(name) for name, _ in pairs), default=0)
    return "\n".join(f"{name.ljust(width)}  {cell(value, 200)}" for name, value in pairs)
