"""Retrieval tools over the knowledge base (inspirations) and the experience base."""
from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from .base import ToolResult, TypedTool
from .memory import ExperienceStore, KnowledgeStore


class KnowledgeQuery(BaseModel):
    query: str = Field(description="what kind of design idea you look for")
    k: int = Field(3, ge=1, le=10)
    tags: list[str] | None = Field(None, description="optional tag filter, e.g. ['channel-attention']")


class InspirationHit(BaseModel):
    id: str
    text: str
    source: str
    tags: list[str]
    page: int | None = None
    section: str = ""
    score: float


class KnowledgeResult(ToolResult):
    items: list[InspirationHit] = []


class ExperienceQuery(BaseModel):
    query: str = Field(description="the plan or the validator error you need experience for")
    k: int = Field(5, ge=1, le=20)
    types: list[Literal["failure", "fix", "success", "regression"]] | None = None
    error_code: str | None = Field(None, description="only records about this validator error code")


class ExperienceHit(BaseModel):
    id: str
    type: str
    error_code: str | None = None
    error_message: str | None = None
    change: str = ""
    advice: str = ""
    trial: int = 0
    score: float


class ExperienceResult(ToolResult):
    items: list[ExperienceHit] = []


def knowledge_tool(store: KnowledgeStore) -> TypedTool:
    def run(q: KnowledgeQuery) -> KnowledgeResult:
        hits = store.search(q.query, k=q.k, tags=q.tags or None)
        return KnowledgeResult(items=[InspirationHit(id=h.id, text=h.text, source=h.source, tags=list(h.tags),
                                                     page=h.page, section=h.section, score=round(h.score, 4)) for h in hits])

    return TypedTool("search_knowledge", "Retrieve design inspirations (each names its source paper).",
                     KnowledgeQuery, KnowledgeResult, run)


def experience_tool(store: ExperienceStore) -> TypedTool:
    def run(q: ExperienceQuery) -> ExperienceResult:
        hits = store.search(q.query, k=q.k, types=q.types, error_code=q.error_code)
        if not hits and q.error_code:  # nothing for this exact code: fall back to the closest records
            hits = store.search(q.query, k=q.k, types=q.types)
        return ExperienceResult(items=[ExperienceHit(id=str(r.id), type=r.type, error_code=r.error_code,
                                                     error_message=r.error_message, change=r.change, advice=r.advice,
                                                     trial=r.trial, score=round(s, 4)) for r, s in hits])

    return TypedTool("search_experience", "Retrieve past design experience: failures, fixes, successes, regressions.",
                     ExperienceQuery, ExperienceResult, run)
