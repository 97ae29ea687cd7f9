"""The records kept in memory: inspirations (knowledge) and design experiences."""
from __future__ import annotations

import json
import re
import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = [
    "DESIGN_TAGS",
    "EXPERIENCE_TYPES",
    "ExperienceRecord",
    "ExperienceType",
    "Inspiration",
    "RECORD_TEXT_MAX",
    "ScoredInspiration",
    "normalise_tag",
    "point_id",
]

# The tags the offline designer's strategies look inspirations up by. Inspirations may carry other
# tags too (the Reader may invent some); the starter knowledge base uses only these.
DESIGN_TAGS: frozenset[str] = frozenset({
    "channel-attention", "spatial-attention", "residual", "dense", "bottleneck", "inverted-residual",
    "depthwise-separable", "dilated", "multi-branch", "kernel-size", "activation", "normalization",
    "grouped-conv", "pooling-branch", "stochastic-depth", "self-attention", "pre-activation", "width",
})

ExperienceType = Literal["failure", "fix", "success", "regression"]
EXPERIENCE_TYPES: tuple[str, ...] = ("failure", "fix", "success", "regression")

# Characters kept of an experience record's free texts (change, advice, error message). Retrieval
# returns up to ten records per search and every later model call of the trial re-sends them: an
# unbounded plan quoted as a record's change made one search result thousands of tokens.
RECORD_TEXT_MAX = 300

# Fixed namespace so that point ids are the same in every process and on every machine.
_NAMESPACE = uuid.UUID("6b1d3c52-7f0e-5a8e-9a57-4e2b0c1d9f30")


def point_id(kind: str, key: str) -> str:
    """Deterministic Qdrant point id (a UUID string) for a record of `kind` with key `key`."""
    return str(uuid.uuid5(_NAMESPACE, f"{kind}:{key}"))


def normalise_tag(tag: str) -> str:
    """Lower case, words joined by single hyphens: "Channel Attention" -> "channel-attention"."""
    return re.sub(r"[\s_\-]+", "-", str(tag).strip().lower()).strip("-")


class Inspiration(BaseModel):
    """A short, actionable design idea for editing a block, with the paper it comes from."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1, description="stable slug, e.g. 'se-channel-attention'")
    title: str = Field(default="", description="short name of the idea")
    text: str = Field(min_length=1, description="what to change in the block and why it helps")
    source: str = Field(min_length=1, description="paper title, first author, year")
    tags: list[str] = Field(default_factory=list)
    # Provenance of ideas the Reader extracted (empty for the starter knowledge base).
    file: str = Field(default="", description="the paper's file")
    page: int | None = Field(default=None, description="the page the idea comes from")
    section: str = Field(default="", description="the section the idea comes from")
    model: str = Field(default="", description="the model that extracted it")

    @field_validator("id", "text", "source", "title")
    @classmethod
    def _strip(cls, v: str) -> str:
        return v.strip()

    @field_validator("tags")
    @classmethod
    def _tags(cls, v: list[str]) -> list[str]:
        out: list[str] = []
        for t in v:
            n = normalise_tag(t)
            if n and n not in out:
                out.append(n)
        return out

    def embedding_text(self) -> str:
        tags = ", ".join(t.replace("-", " ") for t in self.tags)
        head = f"{self.title}. " if self.title else ""
        return f"{head}{self.text} Tags: {tags}. Source: {self.source}"


class ScoredInspiration(Inspiration):
    """An inspiration returned by a search, with its similarity to the query."""

    score: float


class ExperienceRecord(BaseModel):
    """One piece of design experience: a validator failure, the fix that repaired it, or the outcome
    (success / regression against the parent) of a trained design."""

    model_config = ConfigDict(extra="forbid")

    id: str | None = Field(default=None, description="filled by ExperienceStore.add from the content")
    type: ExperienceType
    block_kind: str = "base"
    error_code: str | None = None
    error_message: str | None = None
    change: str = Field(default="", description="what was changed in the block")
    advice: str = ""
    trial: int = 0
    node: int | None = None
    parent_node: int | None = None
    metrics: dict[str, float] = Field(default_factory=dict, description="outcome metrics, e.g. val_acc")
    metrics_delta: dict[str, float] = Field(default_factory=dict, description="change against the parent")
    inspiration: str | None = Field(default=None, description="id or title of the inspiration used")
    text: str = Field(default="", description="the text embedded for search; built from the fields when empty")

    @field_validator("change", "advice", "error_message")
    @classmethod
    def _bounded(cls, v: str | None) -> str | None:
        return v if v is None or len(v) <= RECORD_TEXT_MAX else v[: RECORD_TEXT_MAX - 1] + "…"

    def embedding_text(self) -> str:
        if self.text.strip():
            return self.text
        parts = [f"{self.type} in a {self.block_kind} block."]
        if self.error_code or self.error_message:
            parts.append(f"Error {self.error_code or ''}: {self.error_message or ''}".strip())
        if self.change:
            parts.append(f"Change: {self.change}")
        if self.advice:
            parts.append(f"Advice: {self.advice}")
        if self.metrics_delta:
            parts.append("Delta: " + ", ".join(f"{k} {v:+.4f}" for k, v in sorted(self.metrics_delta.items())))
        if self.inspiration:
            parts.append(f"Inspiration: {self.inspiration}")
        return " ".join(parts)

    def content_key(self) -> str:
        """Canonical JSON of the content (everything but `id`), the input of the deterministic id."""
        data: dict[str, Any] = self.model_dump(exclude={"id"})
        return json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)

    def with_id(self) -> "ExperienceRecord":
        if self.id:
            return self
        return self.model_copy(update={"id": point_id("experience", self.content_key())})
