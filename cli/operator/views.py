"""Human renderings of the API's documents for the operator commands."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from cli.operator.render import cell, fields, table

Doc = Mapping[str, Any]


def edit_rows(items: Sequence[Doc]) -> str:
    rows = [[e["id"], e["status"], e.get("revision"), e.get("actor"), _fact(e.get("request") or {}),
             e.get("created_at")] for e in items]
    return table(["ID", "STATUS", "REV", "ACTOR", "EDIT", "CREATED"], rows)


def fact_view(doc: Doc) -> str:
    """`GET /v1/facts`: the subject, then its edits newest first with what replaced what."""
    rows = [[e["id"], e["status"], e.get("revision"), cell((e.get("request") or {}).get("target"), 30),
             _lineage(e), e.get("actor"), e.get("created_at")] for e in doc["items"]]
    more = f"\nolder edits: --cursor {doc['next_cursor']}" if doc.get("next_cursor") else ""
    return f"subject: {doc['subject']}\n" + table(["ID", "STATUS", "REV", "TARGET", "REPLACES", "ACTOR", "CREATED"],
                                                 rows) + more


def _lineage(edit: Mapping[str, Any]) -> str | None:
    if edit.get("superseded_by"):
        return f"superseded by {edit['superseded_by']}"
    return f"supersedes {edit['supersedes']}" if edit.get("supersedes") else None


def _fact(request: Mapping[str, Any]) -> str:
    return f"{cell(request.get('prompt'), 50)} → {cell(request.get('target'), 30)}"


def edit_detail(doc: Doc) -> str:
    request = doc.get("request") or {}
    lines = [fields([
        ("id", doc["id"]), ("status", doc["status"]), ("revision", doc.get("revision")),
        ("actor", doc.get("actor")), ("prompt", request.get("prompt")), ("target", request.get("target")),
        ("subject", request.get("subject")), ("created", doc.get("created_at")), ("applied", doc.get("applied_at")),
    ])]
    report = doc.get("report")
    if report:
        lines.append(report_view(report))
    if doc.get("error"):
        error = doc["error"]
        lines.append(f"error: {error.get('code') or error.get('title')}: {error.get('detail')}")
    return "\n".join(lines)


def report_view(report: Mapping[str, Any]) -> str:
    """The before/after report: target log-probability, rephrases, locality prompts."""
    out = [f"target logprob: {report.get('target_logprob_before', 0):.3f} → "
           f"{report.get('target_logprob_after', 0):.3f}"]
    rephrases = report.get("rephrases") or []
    if rephrases:
        out.append(table(["REPHRASE", "BEFORE", "AFTER"],
                         [[r["prompt"], r["logprob_before"], r["logprob_after"]] for r in rephrases]))
    locality = report.get("locality") or []
    if locality:
        out.append(table(["LOCALITY", "BEFORE", "AFTER", "CHANGED"],
                         [[p["prompt"], p["before"], p["after"], "yes" if p["changed"] else "no"] for p in locality]))
    return "\n".join(out)


def batch_rows(doc: Doc) -> str:
    return edit_rows(doc["items"]) if "items" in doc else edit_detail(doc)


def revision_rows(items: Sequence[Doc]) -> str:
    rows = [[r["revision"], r["kind"], r.get("base_revision"), r.get("actor"),
             ",".join(r.get("edit_ids") or []) or ",".join("-" + e for e in r.get("removed_ids") or []),
             r["checksum"][:12], r.get("created_at")] for r in items]
    return table(["REV", "KIND", "BASE", "ACTOR", "EDITS", "CHECKSUM", "CREATED"], rows)


def command_view(doc: Doc, what: str) -> str:
    """A rollback or replay status document."""
    pairs = [("id", doc["id"]), ("status", doc["status"]), ("revision", doc.get("revision")),
             ("actor", doc.get("actor"))]
    if doc.get("result"):
        result = doc["result"]
        pairs.append(("checked", f"{result.get('checked')} revisions, {len(result.get('mismatches') or [])} "
                                 "mismatches"))
    if doc.get("error"):
        pairs.append(("error", f"{doc['error'].get('code')}: {doc['error'].get('detail')}"))
    return f"{what}\n" + fields(pairs)


def model_view(doc: Doc) -> str:
    head = fields([("base model", doc["base_model"]), ("editor", doc["editor"]), ("revision", doc["revision"]),
                   ("checksum", doc["checksum"]), ("edits applied", doc["edits_applied"])])
    workers = table(["WORKER", "ROLE", "REV", "DEVICE", "HEARTBEAT"],
                    [[w["id"], w["role"], w["revision"], w["device"], w["heartbeat_at"]] for w in doc["workers"]])
    return head + "\n" + workers
