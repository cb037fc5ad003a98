"""Edit-evaluation metrics of a model on a list of `EditCase`s.

Notation. For a prompt p and a continuation y = (y_1 … y_m), tokenised exactly as editors see it
(`host.encode_prompt(p)` + `host.encode_continuation(y)`, i.e. y after one leading space), teacher
forcing feeds p + y_<j and reads the prediction for y_j:

    acc(p, y) = (1/m) Σ_j 1[ argmax_v P(v | p, y_<j) = y_j ]

An edit case has an edit prompt p with target_new y (and target_true z when the dataset has one),
rephrases r_1 … r_R, and locality probes (q, a): an unrelated prompt and its answer. Pre-edit
quantities (marked `pre`) come from the base model, computed once per run (`Reference`).

Token-accuracy family `token` (zsRE / EasyEdit / WISE convention):
    token.es       acc(p, y)                                        efficacy (reliability)
    token.gs       mean_r acc(r, y)                                 generalisation
    token.ls       mean_(q,a) (1/m) Σ_j 1[argmax_post_j = argmax_pre_j], teacher-forced on q + a
                   agreement locality: 1.0 for an unedited model; the project's primary locality
    token.ls_gold  mean_(q,a) acc(q, a)                             reference (gold) locality variant

CounterFact per-token comparison `cf` (only cases with target_true). With k = min(|y|, |z|):
    cmp(p, y, z) = (1/k) Σ_{j<k} 1[ logit(y_j | p, y_<j) > logit(z_j | p, y_<j) ]
    cf.es = cmp(p, y, z)        cf.gs = mean_r cmp(r, y, z)
    cf.ls = mean_(q,a) cmp(q, a, y): teacher-forced on the locality answer, roles swapped (success
            while the old answer still beats the new target). For CounterFact (ROME neighbourhood
            prompts, EasyEdit `locality_ground_truth`) a is target_true.
    The inequality is strict: a position where y and z share a token counts as a failure.

Probability comparison `cf_prob` (ROME/MEMIT efficacy/paraphrase/neighbourhood *score*, magnitude
free; cases with target_true). With lp(p, y) = (1/|y|) Σ_j log P(y_j | p, y_<j), the length-
normalised log-probability as in ROME's `test_batch_prediction`:
    cf_prob.es = 1[lp(p, y) > lp(p, z)]   cf_prob.gs = mean_r 1[lp(r, y) > lp(r, z)]
    cf_prob.ls = mean_(q,a) 1[lp(q, a) > lp(q, y)]

Autoregressive exact match `em` (no teacher forcing). g(p, n) is the n greedy tokens after p:
    em.es = 1[g(p, |y|) = y]      em.gs = mean_r 1[g(r, |y|) = y]
    em.ls = mean_(q,a) 1[g_post(q, |a|) = g_pre(q, |a|)]       autoregressive agreement locality
    em.ls_gold = mean_(q,a) 1[g(q, |a|) = a]
String variant `em_str`: text(p, n) decodes g(p, n + slack) (slack = `em_slack_tokens`, default 2),
cuts it at the first EOS token and the first newline, and strips whitespace. match(t, y) holds when
t starts with y.strip() and the next character, if any, is not alphanumeric ("Paris," matches
"Paris", "Parisian" does not).
    em_str.es = match(text(p, |y|), y)   em_str.gs = mean_r match(text(r, |y|), y)
    em_str.ls = mean_(q,a) 1[text_post(q, |a|) = text_pre(q, |a|)]
    em_str.ls_gold = mean_(q,a) match(text(q, |a|), a)

Every reported value is a mean over cases of the per-case values above. A case without rephrases,
locality probes or target_true contributes nothing to the metrics that need them (`counts` says
how many cases each value averages). `<family>.mean` is the mean of es, gs and ls.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from editing.data.cases import EditCase
from editing.host import ModelHost
from evaluation.scoring import Ids, TFRequest, TFScore, greedy, teacher_forced

Scores = dict[str, float | None]
FAMILIES: dict[str, tuple[str, ...]] = {
    "token": ("es", "gs", "ls", "ls_gold"),
    "cf": ("es", "gs", "ls"),
    "cf_prob": ("es", "gs", "ls"),
    "em": ("es", "gs", "ls", "ls_gold"),
    "em_str": ("es", "gs", "ls", "ls_gold"),
}
METRIC_KEYS: tuple[str, ...] = tuple(f"{fam}.{m}" for fam, ms in FAMILIES.items() for m in ms)
METRIC_DOCS: dict[str, str] = {
    "token": "teacher-forced token accuracy (es: edit prompt, gs: rephrases, ls: argmax agreement with "
    "the base model on locality prompt + answer, ls_gold: accuracy on the locality answer)",
    "cf": "CounterFact per-token logit comparison new > true after aligning and truncating to the shorter "
    "token list (ls: locality answer > new, teacher-forced on the answer); ties fail",
    "cf_prob": "ROME-style probability comparison: mean per-token log P(new) > log P(true) per probe "
    "(ls: P(locality answer) > P(new))",
    "em": "autoregressive greedy exact match of the target token ids (ls: greedy tokens equal the base "
    "model's, ls_gold: equal the locality answer)",
    "em_str": "string exact match of greedy text cut at EOS/newline and stripped, target as a prefix ending "
    "at a non-alphanumeric character (ls: text equals the base model's, ls_gold: matches the answer)",
}


@dataclass(frozen=True)
class EvalOptions:
    batch_size: int = 32  # sequences per forward
    em_slack_tokens: int = 2  # extra greedy tokens decoded for the string variant
    locality_em: bool = True  # also decode the locality prompts (em.ls*, em_str.ls*)


@dataclass(frozen=True)
class EncodedCase:
    """An EditCase in token ids (continuations after their leading space)."""

    prompt: Ids
    new: Ids
    true: Ids | None
    rephrases: tuple[Ids, ...]
    locality: tuple[tuple[Ids, Ids], ...]  # (prompt, answer)
    new_text: str
    locality_text: tuple[str, ...]


@dataclass(frozen=True)
class Reference:
    """The base model's locality outputs that agreement metrics compare against."""

    argmax: dict[tuple[Ids, Ids], Ids] = field(default_factory=dict)  # teacher-forced on (q, a)
    generated: dict[Ids, Ids] = field(default_factory=dict)  # greedy tokens after q
    texts: dict[tuple[Ids, int], str] = field(default_factory=dict)  # (q, |a|) -> answer text


@dataclass(frozen=True)
class Evaluation:
    per_case: list[Scores]
    reference: Reference  # this model's own locality outputs (the run's reference on the base model)


@dataclass
class _Raw:
    tf: dict[tuple[Ids, Ids], TFScore]
    generated: dict[Ids, Ids]


def encode_case(host: ModelHost, case: EditCase) -> EncodedCase:
    def cont(text: str) -> Ids:
        return tuple(host.encode_continuation(text))

    def prompt(text: str) -> Ids:
        return tuple(host.encode_prompt(text))

    return EncodedCase(
        prompt=prompt(case.prompt), new=cont(case.target_new),
        true=cont(case.target_true) if case.target_true else None,
        rephrases=tuple(prompt(r) for r in case.rephrases),
        locality=tuple((prompt(c.prompt), cont(c.answer)) for c in case.locality),
        new_text=case.target_new, locality_text=tuple(c.answer for c in case.locality),
    )


def evaluate(
    host: ModelHost, cases: Sequence[EditCase], *, reference: Reference | None = None,
    options: EvalOptions | None = None,
) -> Evaluation:
    """Per-case scores of the host's current model; `reference=None` compares with itself."""
    return evaluate_encoded(host, [encode_case(host, c) for c in cases], reference=reference, options=options)


def evaluate_encoded(
    host: ModelHost, cases: Sequence[EncodedCase], *, reference: Reference | None = None,
    options: EvalOptions | None = None,
) -> Evaluation:
    options = options or EvalOptions()
    raw = _run_probes(host, cases, options)
    decode = _decoder(host, options.em_slack_tokens)
    own = _reference_of(cases, raw, decode, options)
    ref = reference if reference is not None else own
    rows = [case_scores(c, raw, ref, decode, options) for c in cases]
    return Evaluation(per_case=rows, reference=own)


# ---- running the probes -------------------------------------------------------------------------
def _tf_plan(cases: Sequence[EncodedCase]) -> dict[tuple[Ids, Ids], set[Ids]]:
    """Every distinct teacher-forced (prompt, target) sequence, with the rivals it is compared to."""
    plan: dict[tuple[Ids, Ids], set[Ids]] = {}

    def need(prompt: Ids, target: Ids, rival: Ids | None = None) -> None:
        rivals = plan.setdefault((prompt, target), set())
        if rival is not None:
            rivals.add(rival)

    for c in cases:
        for p in (c.prompt, *c.rephrases):
            need(p, c.new, c.true)
            if c.true is not None:
                need(p, c.true)
        for q, a in c.locality:
            need(q, a, c.new if c.true is not None else None)
            if c.true is not None:
                need(q, c.new)
    return plan


def _gen_plan(cases: Sequence[EncodedCase], options: EvalOptions) -> dict[Ids, int]:
    """Greedy tokens needed after each distinct prompt."""
    plan: dict[Ids, int] = {}
    slack = options.em_slack_tokens
    for c in cases:
        wanted = [(p, len(c.new)) for p in (c.prompt, *c.rephrases)]
        if options.locality_em:
            wanted += [(q, len(a)) for q, a in c.locality]
        for prompt, n in wanted:
            plan[prompt] = max(plan.get(prompt, 0), n + slack)
    return plan


def _run_probes(host: ModelHost, cases: Sequence[EncodedCase], options: EvalOptions) -> _Raw:
    tf_plan = _tf_plan(cases)
    requests = [TFRequest(p, t, tuple(sorted(r))) for (p, t), r in tf_plan.items()]
    scores = teacher_forced(host, requests, batch_size=options.batch_size)
    gen_plan = _gen_plan(cases, options)
    prompts = list(gen_plan)
    tokens = greedy(host, prompts, [gen_plan[p] for p in prompts], batch_size=options.batch_size)
    return _Raw(tf=dict(zip(tf_plan, scores, strict=True)), generated=dict(zip(prompts, tokens, strict=True)))


def _reference_of(
    cases: Sequence[EncodedCase], raw: _Raw, decode: Callable[[Ids, int], str], options: EvalOptions
) -> Reference:
    argmax = {(q, a): raw.tf[(q, a)].argmax for c in cases for q, a in c.locality}
    if not options.locality_em:
        return Reference(argmax=argmax)
    generated = {q: raw.generated[q] for c in cases for q, _ in c.locality}
    texts = {(q, len(a)): decode(raw.generated[q], len(a)) for c in cases for q, a in c.locality}
    return Reference(argmax=argmax, generated=generated, texts=texts)


# ---- per-case scores ----------------------------------------------------------------------------
def _mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _share(flags: Sequence[bool]) -> float:
    return sum(flags) / len(flags)


def case_scores(
    c: EncodedCase, raw: _Raw, ref: Reference, decode: Callable[[Ids, int], str], options: EvalOptions
) -> Scores:
    """Every metric of one case (None where the case lacks the probes a metric needs)."""
    scores: Scores = dict.fromkeys(METRIC_KEYS)
    scores.update(_token_scores(c, raw, ref))
    if c.true is not None:
        scores.update(_comparison_scores(c, c.true, raw))
    scores.update(_em_scores(c, raw, decode))
    if options.locality_em:
        scores.update(_em_locality_scores(c, raw, ref, decode))
    return scores


def _acc(score: TFScore, target: Ids) -> float:
    return _share([a == t for a, t in zip(score.argmax, target, strict=True)])


def _agreement(post: Ids, pre: Ids) -> float:
    return _share([x == y for x, y in zip(post, pre, strict=True)])


def _token_scores(c: EncodedCase, raw: _Raw, ref: Reference) -> Scores:
    loc = [(raw.tf[(q, a)], ref.argmax[(q, a)], a) for q, a in c.locality]
    return {
        "token.es": _acc(raw.tf[(c.prompt, c.new)], c.new),
        "token.gs": _mean([_acc(raw.tf[(r, c.new)], c.new) for r in c.rephrases]),
        "token.ls": _mean([_agreement(s.argmax, pre) for s, pre, _ in loc]),
        "token.ls_gold": _mean([_acc(s, a) for s, _, a in loc]),
    }


def _comparison_scores(c: EncodedCase, true: Ids, raw: _Raw) -> Scores:
    def cmp(prompt: Ids, target: Ids, rival: Ids) -> float:
        return _share(raw.tf[(prompt, target)].wins[rival])

    def pcmp(prompt: Ids, target: Ids, rival: Ids) -> float:
        return float(raw.tf[(prompt, target)].mean_logprob > raw.tf[(prompt, rival)].mean_logprob)

    return {
        "cf.es": cmp(c.prompt, c.new, true),
        "cf.gs": _mean([cmp(r, c.new, true) for r in c.rephrases]),
        "cf.ls": _mean([cmp(q, a, c.new) for q, a in c.locality]),
        "cf_prob.es": pcmp(c.prompt, c.new, true),
        "cf_prob.gs": _mean([pcmp(r, c.new, true) for r in c.rephrases]),
        "cf_prob.ls": _mean([pcmp(q, a, c.new) for q, a in c.locality]),
    }


def _em_scores(c: EncodedCase, raw: _Raw, decode: Callable[[Ids, int], str]) -> Scores:
    def em(prompt: Ids) -> float:
        return float(raw.generated[prompt][: len(c.new)] == c.new)

    def em_str(prompt: Ids) -> float:
        return float(string_match(decode(raw.generated[prompt], len(c.new)), c.new_text))

    return {
        "em.es": em(c.prompt), "em.gs": _mean([em(r) for r in c.rephrases]),
        "em_str.es": em_str(c.prompt), "em_str.gs": _mean([em_str(r) for r in c.rephrases]),
    }


def _em_locality_scores(
    c: EncodedCase, raw: _Raw, ref: Reference, decode: Callable[[Ids, int], str]
) -> Scores:
    probes = [(q, a, text) for (q, a), text in zip(c.locality, c.locality_text, strict=True)]
    post = {q: raw.generated[q] for q, _, _ in probes}
    return {
        "em.ls": _mean([float(post[q][: len(a)] == ref.generated[q][: len(a)]) for q, a, _ in probes]),
        "em.ls_gold": _mean([float(post[q][: len(a)] == a) for q, a, _ in probes]),
        "em_str.ls": _mean([float(decode(post[q], len(a)) == ref.texts[(q, len(a))]) for q, a, _ in probes]),
        "em_str.ls_gold": _mean([float(string_match(decode(post[q], len(a)), t)) for q, a, t in probes]),
    }


# ---- the string variant ---------------------------------------------------------------------------
def answer_text(tokenizer: Any, tokens: Ids) -> str:
    """Generated tokens as an answer: cut at the first EOS, keep the first line, strip."""
    eos = tokenizer.eos_token_id
    if eos is not None and eos in tokens:
        tokens = tokens[: tokens.index(eos)]
    text = str(tokenizer.decode(list(tokens), skip_special_tokens=True))
    return text.split("\n", 1)[0].strip()


def string_match(text: str, target: str) -> bool:
    """`text` starts with the stripped target, which ends there or at a non-alphanumeric character."""
    target = target.strip()
    if not target or not text.startswith(target):
        return False
    return len(text) == len(target) or not text[len(target)].isalnum()


def _decoder(host: ModelHost, slack: int) -> Callable[[Ids, int], str]:
    """answer_text of the first n + slack generated tokens."""

    def decode(tokens: Ids, n: int) -> str:
        return answer_text(host.tokenizer, tokens[: n + slack])

    return decode


# ---- aggregation ----------------------------------------------------------------------------------
def aggregate(per_case: Sequence[Scores]) -> dict[str, dict[str, float | None]]:
    """{family: {metric: mean over cases, "mean": mean of es/gs/ls}}."""
    out: dict[str, dict[str, float | None]] = {}
    for family, names in FAMILIES.items():
        values = {m: _mean([v for row in per_case if (v := row.get(f"{family}.{m}")) is not None])
                  for m in names}
        core = [v for m in ("es", "gs", "ls") if (v := values[m]) is not None]
        values["mean"] = sum(core) / 3 if len(core) == 3 else None
        out[family] = values
    return out


def counts(per_case: Sequence[Scores]) -> dict[str, int]:
    """How many cases each metric averages."""
    return {key: sum(row.get(key) is not None for row in per_case) for key in METRIC_KEYS}
