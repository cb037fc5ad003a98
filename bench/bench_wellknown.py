"""Hand-written edits of well-known facts, sent the way apps send them, scored through the HTTP API.

For each editor, `factpatch serve` starts on a fresh data dir (or `--url` points at a running
service). Every edit of bench/data/wellknown.json is POSTed with prompt, target and subject only
(no rephrases, no locality prompts), one request and one revision each, waiting until it is
applied. After the last one, on the final revision, the benchmark asks:

- ES: the edit prompt; its greedy continuation names the new target;
- GS: each hand-written rephrase (other wording, same subject) names the new target;
- chat ES: the question in chat form (`messages`, the model's chat template) names the new target;
- kept: each unrelated neighbour (same and other templates, never sent) still names its answer —
  counted over the neighbours the base model got right before the first edit;
- fluent: the answers to the prompts, rephrases and chat questions that do not say one word three
  times (`repetitive`), after the edits and (fluent_before) on the base model.

A name "is in" a continuation when it appears among its first words (case-insensitive). The
guard runs with its defaults; an edit it rejects counts as not applied (ES 0 for that fact).

    python bench/bench_wellknown.py --editors rledit,lemoe,memoe,malmen,ft --out runs/wellknown.json
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

DATA = Path(__file__).parent / "data" / "wellknown.json"


def names(text: str, name: str, words: int = 8) -> bool:
    """Whether `name` appears among the first `words` words of `text` (case-insensitive)."""
    head = " ".join(re.findall(r"\S+", text)[:words]).lower()
    return re.search(rf"(?<!\w){re.escape(name.lower())}(?!\w)", head) is not None


def repetitive(text: str, words: int = 24) -> bool:
    """Whether a word of 4+ letters is said three times or more in the first `words` words
    ("Kyoto Kyoto Kyoto", "the euro is the euro, the euro is …"): the degenerate answers an
    over-driven edit gives, which the name counts above do not see."""
    counts = Counter(w.lower() for w in re.findall(r"[A-Za-z]+", text)[:words] if len(w) >= 4)
    return bool(counts) and max(counts.values()) >= 3


def ask(client: httpx.Client, body: dict[str, Any]) -> tuple[str, int]:
    response = client.post("/v1/generate", json={"max_new_tokens": 10, **body})
    response.raise_for_status()
    data = response.json()
    return str(data["text"]), int(data["revision"])


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_service(editor: str, data_dir: Path, port: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "FACTPATCH_DATA_DIR": str(data_dir), "FACTPATCH_EDITOR": editor,
           "FACTPATCH_PORT": str(port), "FACTPATCH_LOG_LEVEL": "WARNING",
           "FACTPATCH_QUERY_TIMEOUT": "600"}  # a loaded CPU must slow the benchmark down, not fail it
    env.setdefault("FACTPATCH_MODELS_DIR", str(Path.home() / ".factpatch" / "models"))
    log = (data_dir / "serve.log").open("wb")
    return subprocess.Popen([sys.executable, "-m", "cli", "serve"], env=env, stdout=log, stderr=log)


def wait_ready(client: httpx.Client, proc: subprocess.Popen[bytes], timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the service exited with {proc.returncode}")
        try:
            if client.get("/readyz").status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(1)
    raise TimeoutError("the service did not become ready")


def probe(client: httpx.Client, data: dict[str, Any]) -> dict[str, list[str]]:
    """Continuations of every prompt, rephrase, chat question and neighbour at the head revision,
    asked 8 at a time (the service decodes concurrent queries as one batch)."""
    groups: dict[str, list[dict[str, Any]]] = {"edits": [], "rephrases": [], "chat": [], "neighbours": []}
    for edit in data["edits"]:
        groups["edits"].append({"prompt": edit["prompt"]})
        groups["rephrases"] += [{"prompt": r} for r in edit["rephrases"]]
        groups["chat"].append({"messages": [{"role": "user", "content": edit["question"]}], "max_new_tokens": 24})
    groups["neighbours"] = [{"prompt": n["prompt"]} for n in data["neighbours"]]
    with ThreadPoolExecutor(max_workers=8) as pool:
        return {name: [text for text, _ in pool.map(lambda body: ask(client, body), bodies)]
                for name, bodies in groups.items()}


def submit_all(client: httpx.Client, data: dict[str, Any]) -> tuple[list[str], list[float], list[str | None]]:
    statuses, seconds, errors = [], [], []
    for edit in data["edits"]:
        body = {"prompt": edit["prompt"], "target": edit["target"], "subject": edit["subject"]}
        started = time.perf_counter()
        response = client.post("/v1/edits", params={"wait": 60}, json=body)
        doc = response.json()
        if "id" not in doc:  # a problem document, not an edit: the request itself was refused
            response.raise_for_status()
        while doc["status"] in ("queued", "applying"):  # still running after the longest wait
            time.sleep(1)
            doc = client.get(f"/v1/edits/{doc['id']}").json()
        statuses.append(str(doc["status"]))
        errors.append((doc.get("error") or {}).get("detail"))
        seconds.append(time.perf_counter() - started)
    return statuses, seconds, errors


def score(data: dict[str, Any], before: dict[str, list[str]], after: dict[str, list[str]],
          statuses: list[str]) -> dict[str, Any]:
    edits = data["edits"]
    targets_r = [e["target"] for e in edits for _ in e["rephrases"]]
    es = [names(t, e["target"]) for t, e in zip(after["edits"], edits, strict=True)]
    gs = [names(t, target) for t, target in zip(after["rephrases"], targets_r, strict=True)]
    chat = [names(t, e["target"], 24) for t, e in zip(after["chat"], edits, strict=True)]
    chat_before = [names(t, e["true"], 24) for t, e in zip(before["chat"], edits, strict=True)]
    known = [i for i, (t, n) in enumerate(zip(before["neighbours"], data["neighbours"], strict=True))
             if names(t, n["answer"])]
    kept = [names(after["neighbours"][i], data["neighbours"][i]["answer"]) for i in known]
    broken = [{"prompt": data["neighbours"][i]["prompt"], "before": before["neighbours"][i],
               "after": after["neighbours"][i]} for i, ok in zip(known, kept, strict=True) if not ok]
    base_right = [names(t, e["true"]) for t, e in zip(before["edits"], edits, strict=True)]
    answers = ("edits", "rephrases", "chat")
    return {
        "edits": len(edits), "applied": statuses.count("applied"), "statuses": statuses,
        "base_right": sum(base_right), "ES": _mean(es), "GS": _mean(gs), "chat_ES": _mean(chat),
        "chat_base_right": sum(chat_before), "neighbours_known": len(known), "kept": _mean(kept),
        "fluent": _mean([not repetitive(t) for k in answers for t in after[k]]),
        "fluent_before": _mean([not repetitive(t) for k in answers for t in before[k]]),
        "broken": broken, "missed": [e["prompt"] for e, ok in zip(edits, es, strict=True) if not ok],
    }


def _mean(flags: list[bool]) -> float:
    return round(sum(flags) / max(len(flags), 1), 3)


def run_one(editor: str, url: str | None, data: dict[str, Any]) -> dict[str, Any]:
    proc = None
    with tempfile.TemporaryDirectory(prefix="fp-wellknown-") as tmp:
        if url is None:
            port = free_port()
            url = f"http://127.0.0.1:{port}"
            proc = start_service(editor, Path(tmp), port)
        try:
            with httpx.Client(base_url=url, timeout=300) as client:
                if proc is not None:
                    wait_ready(client, proc)
                before = probe(client, data)
                statuses, seconds, errors = submit_all(client, data)
                after = probe(client, data)
                model = client.get("/v1/model").json()
        finally:
            if proc is not None:
                proc.send_signal(signal.SIGTERM)
                proc.wait(timeout=60)
    result = score(data, before, after, statuses)
    result.update(errors=errors, editor=model.get("editor", editor), revision=model.get("revision"),
                  edit_seconds_median=sorted(seconds)[len(seconds) // 2], before=before, after=after)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--editors", default="rledit", help="comma-separated; each gets a fresh service")
    parser.add_argument("--url", default=None, help="a running service instead (one editor: whatever it runs)")
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--out", type=Path, default=None, help="write every result as JSON")
    args = parser.parse_args()
    data = json.loads(args.data.read_text())
    results = []
    for editor in args.editors.split(","):
        result = run_one(editor, args.url, data)
        results.append(result)
        summary = {k: result[k] for k in ("editor", "applied", "ES", "GS", "chat_ES", "kept", "neighbours_known",
                                          "fluent", "fluent_before", "edit_seconds_median")}
        sys.stdout.write(json.dumps(summary) + "\n")
        sys.stdout.flush()
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
