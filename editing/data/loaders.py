"""Dataset loaders: CounterFact (EasyEdit flat and ROME), zsRE (MEND), KnowEdit, WISE sets.

A malformed record raises `InvalidDatasetError` naming the file and the record index.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from contract.errors import InvalidDatasetError
from editing.data.cases import EditCase, LocalityCase

Record = dict[str, Any]
Parser = Callable[[Record, str], EditCase]


def _text(value: Any) -> str:
    """First string in a value that may be a string or (nested) lists of strings."""
    while isinstance(value, list):
        if not value:
            raise KeyError("empty list")
        value = value[0]
    if not isinstance(value, str) or not value.strip():
        raise KeyError("not a non-empty string")
    return value


def _need(record: Record, key: str) -> Any:
    if key not in record or record[key] in (None, ""):
        raise KeyError(f"missing field {key!r}")
    return record[key]


def _required_text(record: Record, key: str) -> str:
    try:
        return _text(_need(record, key))
    except KeyError as exc:
        raise KeyError(f"field {key!r}: {exc.args[0]}") from None


def _probes(pairs: Iterable[tuple[Any, Any]]) -> tuple[LocalityCase, ...]:
    """Locality probes with a usable prompt and answer; incomplete ones are dropped."""
    out = []
    for prompt, answer in pairs:
        text = _opt_text(answer)
        if isinstance(prompt, str) and prompt.strip() and text is not None:
            out.append(LocalityCase(prompt, text))
    return tuple(out)


def parse_counterfact(record: Record, source: str) -> EditCase:
    """EasyEdit flat CounterFact: prompt, target_new, subject, ground_truth, rephrase_prompt, locality_*."""
    locality = _probes([(record.get("locality_prompt"), record.get("locality_ground_truth"))])
    rephrase = record.get("rephrase_prompt")
    return EditCase(
        case_id=str(record.get("case_id", source)), prompt=_required_text(record, "prompt"),
        target_new=_required_text(record, "target_new"), target_true=_opt_text(record.get("ground_truth")),
        subject=record.get("subject"), rephrases=(rephrase,) if rephrase else (), locality=locality, source=source,
    )


def parse_counterfact_rome(record: Record, source: str) -> EditCase:
    """ROME CounterFact: requested_rewrite {prompt '{}'-template, subject, target_new.str, target_true.str}."""
    rewrite = _need(record, "requested_rewrite")
    subject = _need(rewrite, "subject")
    true = _need(rewrite, "target_true")["str"]
    return EditCase(
        case_id=str(record.get("case_id", source)), prompt=_need(rewrite, "prompt").format(subject),
        target_new=_need(rewrite, "target_new")["str"], target_true=true, subject=subject,
        rephrases=tuple(record.get("paraphrase_prompts", [])),
        locality=tuple(LocalityCase(p, true) for p in record.get("neighborhood_prompts", [])), source=source,
    )


def parse_zsre(record: Record, source: str) -> EditCase:
    """MEND zsRE: src, rephrase, alt (new target), answers (old), loc, loc_ans."""
    loc = record.get("loc")
    question = loc.removeprefix("nq question: ") + "?" if isinstance(loc, str) else None
    locality = _probes([(question, record.get("loc_ans"))])
    return EditCase(
        case_id=source, prompt=_required_text(record, "src"), target_new=_required_text(record, "alt"),
        target_true=_opt_text(record.get("answers")), subject=record.get("subject"),
        rephrases=(record["rephrase"],) if record.get("rephrase") else (), locality=locality, source=source,
    )


def parse_knowedit(record: Record, source: str) -> EditCase:
    """KnowEdit: subject, prompt, target_new, ground_truth, rephrase_prompt?,
    locality {kind: [{prompt, ground_truth}]}."""
    probes = [p for group in (record.get("locality") or {}).values() for p in group]
    rephrase = record.get("rephrase_prompt") or record.get("rephrase")
    return EditCase(
        case_id=source, prompt=_required_text(record, "prompt"), target_new=_required_text(record, "target_new"),
        target_true=_opt_text(record.get("ground_truth")), subject=record.get("subject"),
        rephrases=(rephrase,) if isinstance(rephrase, str) and rephrase else (),
        locality=_probes((p.get("prompt"), p.get("ground_truth")) for p in probes), source=source,
    )


def parse_wise(record: Record, source: str) -> EditCase:
    """WISE temporal/hallucination sets: prompt, target_new, subject, locality_prompt/ground_truth."""
    locality = _probes([(record.get("locality_prompt"), record.get("locality_ground_truth"))])
    rephrase = record.get("ood_rephrase") or record.get("rephrase_prompt")
    return EditCase(
        case_id=source, prompt=_required_text(record, "prompt"), target_new=_required_text(record, "target_new"),
        subject=record.get("subject"), rephrases=(rephrase,) if rephrase else (), locality=locality, source=source,
    )


def _opt_text(value: Any) -> str | None:
    try:
        return _text(value)
    except KeyError:
        return None


FORMATS: dict[str, Parser] = {
    "counterfact": parse_counterfact,
    "counterfact-rome": parse_counterfact_rome,
    "zsre": parse_zsre,
    "knowedit": parse_knowedit,
    "wise": parse_wise,
}


def detect_format(record: Record) -> str:
    """Guess a format from the keys of the first record."""
    keys = set(record)
    if "requested_rewrite" in keys:
        return "counterfact-rome"
    if {"src", "alt"} <= keys:
        return "zsre"
    if "rephrase_prompt" in keys and "locality_prompt" in keys:
        return "counterfact"
    if isinstance(record.get("locality"), dict):
        return "knowedit"
    if "target_new" in keys:
        return "wise"
    raise InvalidDatasetError(f"cannot tell the dataset format from the fields {sorted(keys)}; pass a format")


def read_records(path: Path) -> list[Record]:
    """A JSON array, or JSON Lines."""
    text = path.read_text(encoding="utf-8")
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        return [_json_line(path, i, line) for i, line in enumerate(text.splitlines()) if line.strip()]
    if not isinstance(data, list):
        raise InvalidDatasetError(f"{path}: expected a JSON array of records or JSON Lines")
    return data


def _json_line(path: Path, index: int, line: str) -> Record:
    try:
        return dict(json.loads(line))
    except (json.JSONDecodeError, TypeError, ValueError) as exc:
        raise InvalidDatasetError(f"{path}: line {index + 1} is not a JSON object ({exc})") from None


def load_cases(path: str | Path, fmt: str = "auto", *, limit: int | None = None) -> list[EditCase]:
    """Read a dataset file into EditCases, in file order."""
    path = Path(path)
    if not path.is_file():
        raise InvalidDatasetError(f"no dataset file at {path}")
    records = read_records(path)
    if not records:
        return []
    if fmt == "auto":
        fmt = detect_format(records[0])
    if fmt not in FORMATS:
        raise InvalidDatasetError(f"unknown dataset format {fmt!r}; known: {', '.join(FORMATS)}")
    chosen = records if limit is None else records[:limit]
    return list(_parse_all(path, chosen, FORMATS[fmt], fmt))


def _parse_all(path: Path, records: Iterable[Record], parser: Parser, fmt: str) -> Iterable[EditCase]:
    for index, record in enumerate(records):
        source = f"{path.name}:{index}"
        try:
            if not isinstance(record, dict):
                raise TypeError("not a JSON object")
            yield parser(record, source)
        except (KeyError, TypeError, AttributeError) as exc:
            raise InvalidDatasetError(
                f"{path}: record {index} is not a valid {fmt} record ({_reason(exc)})",
                file=str(path), index=index,
            ) from None


def _reason(exc: Exception) -> str:
    return str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)
