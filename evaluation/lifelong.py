"""The lifelong editing protocol: a stream of edit batches, scored on retention.

For every editor, starting from the base model:

1. load a fresh host (editors such as MoE adaptors wrap layers, so hosts are never shared) and
   build the editor with its overrides;
2. apply T turns of n edits in stream order: turn t is cases[t·n : (t+1)·n], one `EditBatch`
   through `editor.compute` then `editor.apply`, as the service's writer does (without its guard).
   Editors get prompt, target and subject only: the rephrases and locality prompts are the test
   probes, unless `pass_probes` sends them too, as an API client may;
3. with `curve_every = K`, after every K turns evaluate every case edited so far;
4. after the last turn evaluate every edited case with the final model (retention).

Before any editing the base model is evaluated once on the whole stream. That pass is the
editor-less baseline row (`none`) and yields the pre-edit `Reference` the agreement metrics need,
so every editor is compared against the same pre-edit outputs.

An editor that raises is recorded with its error and the run moves on to the next editor; an
`EditingError` from one turn (e.g. non-finite delta) is recorded on that turn and editing goes on.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from contract.errors import EditingError
from editing.data.cases import EditCase
from editing.editors.base import EditBatch, Editor
from editing.host import ModelHost
from editing.registry import build_editor
from evaluation.metrics import EvalOptions, Reference, Scores, aggregate, evaluate

logger = logging.getLogger(__name__)

BASELINE = "none"
Metrics = dict[str, dict[str, float | None]]


@dataclass(frozen=True)
class EditorRun:
    """A registered editor name and its config overrides."""

    name: str
    overrides: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class StreamConfig:
    turns: int
    edits_per_turn: int
    offset: int = 0
    curve_every: int = 0  # 0: evaluate after the last turn only
    seed: int = 0
    pass_probes: bool = False  # also send the rephrases/locality prompts with each edit (they are test data)
    options: EvalOptions = field(default_factory=EvalOptions)

    @property
    def total_edits(self) -> int:
        return self.turns * self.edits_per_turn


@dataclass(frozen=True)
class TurnRecord:
    turn: int
    compute_s: float
    apply_s: float
    artifact_bytes: int
    error: str | None = None


@dataclass(frozen=True)
class CurvePoint:
    turns: int
    edits: int
    metrics: Metrics
    eval_s: float


@dataclass
class EditorResult:
    name: str
    describe: dict[str, Any] = field(default_factory=dict)
    turns: list[TurnRecord] = field(default_factory=list)
    curve: list[CurvePoint] = field(default_factory=list)
    per_case: list[Scores] = field(default_factory=list)
    diagnostics: dict[str, Any] = field(default_factory=dict)
    setup_s: float = 0.0
    error: str | None = None

    @property
    def final(self) -> Metrics | None:
        return self.curve[-1].metrics if self.curve else None


@dataclass
class RunResult:
    config: StreamConfig
    runs: list[EditorRun]
    cases: list[EditCase]
    baseline: EditorResult
    editors: list[EditorResult]
    wall_s: float


HostLoader = Callable[[], ModelHost]


def select_stream(cases: Sequence[EditCase], config: StreamConfig) -> list[EditCase]:
    """The T·n cases edited, from `offset`; a dataset too short is an error."""
    stream = list(cases[config.offset : config.offset + config.total_edits])
    if len(stream) < config.total_edits:
        raise ValueError(
            f"{config.turns} turns x {config.edits_per_turn} edits from offset {config.offset} need "
            f"{config.total_edits} cases; the dataset has {len(cases)}"
        )
    return stream


def curve_edits(config: StreamConfig) -> list[int]:
    """Edit counts at which a curve point is taken (the last turn always)."""
    k = config.curve_every
    turns = list(range(k, config.turns, k)) if k > 0 else []
    return [t * config.edits_per_turn for t in [*turns, config.turns]]


def run_lifelong(
    load_host: HostLoader,
    cases: Sequence[EditCase],
    editors: Sequence[EditorRun],
    config: StreamConfig,
    on_editor: Callable[[RunResult], None] | None = None,
) -> RunResult:
    """Baseline plus every editor on the same stream; see the module docstring. `on_editor` gets
    the result so far after each editor (a long run keeps what it finished if it is stopped)."""
    started = time.perf_counter()
    stream = select_stream(cases, config)
    baseline, reference = run_baseline(load_host, stream, config)
    results: list[EditorResult] = []

    def so_far() -> RunResult:
        return RunResult(config=config, runs=list(editors[: len(results)]), cases=stream, baseline=baseline,
                         editors=list(results), wall_s=time.perf_counter() - started)

    for run in editors:
        results.append(run_editor(load_host, stream, run, config, reference))
        if on_editor is not None:
            on_editor(so_far())
    return so_far()


def run_baseline(
    load_host: HostLoader, stream: Sequence[EditCase], config: StreamConfig
) -> tuple[EditorResult, Reference]:
    """The unedited model on the whole stream; its curve is over prefixes of the same scores."""
    started = time.perf_counter()
    host = load_host()
    setup_s = time.perf_counter() - started
    logger.info("evaluating the base model on %d cases", len(stream))
    t0 = time.perf_counter()
    evaluation = evaluate(host, stream, options=config.options)
    eval_s = time.perf_counter() - t0
    logger.info("base model evaluated in %.1f s", eval_s)
    describe = {"id": host.model_id, "device": str(host.device), "dtype": str(host.dtype)}
    result = EditorResult(name=BASELINE, describe=describe, per_case=evaluation.per_case, setup_s=setup_s)
    for edits in curve_edits(config):
        result.curve.append(CurvePoint(turns=edits // config.edits_per_turn, edits=edits,
                                       metrics=aggregate(evaluation.per_case[:edits]), eval_s=0.0))
    result.curve[-1] = CurvePoint(config.turns, config.total_edits, result.curve[-1].metrics, eval_s)
    return result, evaluation.reference


def run_editor(
    load_host: HostLoader, stream: Sequence[EditCase], run: EditorRun, config: StreamConfig,
    reference: Reference,
) -> EditorResult:
    result = EditorResult(name=run.name)
    try:
        _edit_stream(load_host, stream, run, config, reference, result)
    except Exception as exc:  # noqa: BLE001 - one broken editor must not sink the others
        logger.exception("editor %s failed", run.name)
        result.error = f"{type(exc).__name__}: {exc}"
    return result


def _edit_stream(
    load_host: HostLoader, stream: Sequence[EditCase], run: EditorRun, config: StreamConfig,
    reference: Reference, result: EditorResult,
) -> None:
    started = time.perf_counter()
    host = load_host()
    _seed(config.seed)
    editor = build_editor(run.name, host=host, overrides=run.overrides)
    result.describe = editor.describe()
    result.setup_s = time.perf_counter() - started
    points = set(curve_edits(config))
    loop_start = time.perf_counter()
    for turn in range(config.turns):
        batch_cases = stream[turn * config.edits_per_turn : (turn + 1) * config.edits_per_turn]
        result.turns.append(_edit_turn(editor, turn, batch_cases, with_probes=config.pass_probes))
        edited = (turn + 1) * config.edits_per_turn
        if edited in points:
            result.curve.append(_curve_point(host, stream[:edited], turn + 1, config, reference, result))
        _log_progress(run.name, turn, config.turns, loop_start, result.turns[-1])
    result.diagnostics = _diagnostics(editor)


def _seed(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)


def _edit_turn(editor: Editor, turn: int, cases: Sequence[EditCase], *, with_probes: bool) -> TurnRecord:
    """compute + apply of one batch, timed; an EditingError is recorded, not raised."""
    specs = tuple(c.to_spec(with_probes=with_probes) for c in cases)
    batch = EditBatch(batch_id=f"turn-{turn:05d}", edits=specs)
    t0 = time.perf_counter()
    try:
        artifact = editor.compute(batch)
        t1 = time.perf_counter()
        editor.apply(artifact)
    except EditingError as exc:
        logger.warning("turn %d of %s refused: %s", turn, editor.name, exc)
        return TurnRecord(turn, time.perf_counter() - t0, 0.0, 0, error=f"{type(exc).__name__}: {exc}")
    return TurnRecord(turn, t1 - t0, time.perf_counter() - t1, artifact.nbytes())


def _curve_point(
    host: ModelHost, edited: Sequence[EditCase], turns: int, config: StreamConfig, reference: Reference,
    result: EditorResult,
) -> CurvePoint:
    t0 = time.perf_counter()
    evaluation = evaluate(host, edited, reference=reference, options=config.options)
    eval_s = time.perf_counter() - t0
    logger.info("%s: %d edits evaluated in %.1f s", result.name, len(edited), eval_s)
    result.per_case = evaluation.per_case
    return CurvePoint(turns=turns, edits=len(edited), metrics=aggregate(evaluation.per_case), eval_s=eval_s)


def _log_progress(name: str, turn: int, turns: int, loop_start: float, record: TurnRecord) -> None:
    elapsed = time.perf_counter() - loop_start
    eta = elapsed / (turn + 1) * (turns - turn - 1)
    logger.info("%s turn %d/%d: %.2f s/turn (compute %.2f, apply %.3f), elapsed %.0f s, ETA %.0f s",
                name, turn + 1, turns, record.compute_s + record.apply_s, record.compute_s, record.apply_s,
                elapsed, eta)


def _diagnostics(editor: Editor) -> dict[str, Any]:
    """Optional editor diagnostics (routing histogram, anchor hit rate, …).

    Editors that define `diagnostics() -> dict` (JSON-able) get it recorded after the last turn.
    """
    method = getattr(editor, "diagnostics", None)
    return dict(method()) if callable(method) else {}
