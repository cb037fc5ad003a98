"""How often does subject inference recover the dataset's subject? (CounterFact-val, zsRE)

Reports, for `infer_subject` and for the spec's starting point (the longest run of capitalised
words): exact match with the given subject, and the share whose inferred subject occurs in the
rephrase (so a paraphrase still finds the edit's anchor) and in the locality prompt (a false
anchor hit on an unrelated prompt).

    python bench/moe_subjects.py
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable

from editing.data import load_cases
from editing.editors.moe_adaptor.subjects import SubjectIndex, infer_subject

DATASETS = {  # the first two were used to design the heuristic; the rest are held out
    "counterfact-val": "/work/shared/data/counterfact-val.json",
    "zsre": "/work/shared/data/zsre_mend_eval_portability_gpt4.json",
    "counterfact-train (held out)": "/work/shared/data/counterfact-train.json",
    "knowedit-zsre-test (held out)": "/work/shared/data/benchmark_ZsRE_ZsRE-test-all.json",
    "knowedit-wiki-counterfact (held out)": "/work/shared/data/benchmark_wiki_counterfact_train_cf.json",
    "wise-temporal (held out)": "/work/shared/data/temporal-edit.json",
}
_CAPITALISED_RUN = re.compile(r"[A-Z][\w'-]*(?:\s+[A-Z][\w'-]*)*")


def capitalised_run(prompt: str) -> str | None:
    """The spec's proposal: the longest run of capitalised words."""
    runs = _CAPITALISED_RUN.findall(prompt)
    return max(runs, key=len) if runs else None


def evaluate(path: str, infer: Callable[[str], str | None]) -> dict[str, float]:
    cases = [c for c in load_cases(path) if c.subject]
    exact = found_in_rephrase = found_in_locality = 0
    for case in cases:
        guess = infer(case.prompt) or case.prompt
        exact += guess == case.subject
        index = SubjectIndex([guess])
        found_in_rephrase += all(index.longest_in(r) is not None for r in case.rephrases)
        found_in_locality += any(index.longest_in(loc.prompt) is not None for loc in case.locality)
    n = len(cases)
    return {
        "cases": n,
        "exact": round(exact / n, 4),
        "in_rephrase": round(found_in_rephrase / n, 4),
        "in_locality": round(found_in_locality / n, 4),
    }


def main() -> None:
    for name, path in DATASETS.items():
        for method, fn in (("infer_subject", infer_subject), ("capitalised_run", capitalised_run)):
            print(json.dumps({"data": name, "method": method, **evaluate(path, fn)}))  # noqa: T201
        subjects = {c.prompt: c.subject for c in load_cases(path)}
        given = evaluate(path, subjects.get)
        print(json.dumps({"data": name, "method": "given_subject", **given}))  # noqa: T201


if __name__ == "__main__":
    main()
