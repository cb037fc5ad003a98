"""The HTTP routes, one module per resource; `ROUTERS` is what `create_app` includes, in order."""

from __future__ import annotations

from fastapi import APIRouter

from service.routers import console, edits, facts, model, openai, ops, queries, rollbacks

ROUTERS: tuple[APIRouter, ...] = (
    edits.router, facts.router, queries.router, openai.router, rollbacks.router, model.router, ops.router,
    console.router,
)

__all__ = ["ROUTERS"]
