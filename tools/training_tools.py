"""The training launcher tool: trains an approved, budget-fitted design and returns its metrics."""
from __future__ import annotations

from typing import Awaitable, Callable

from pydantic import BaseModel, Field

from .base import ToolResult, TypedTool


class TrainArgs(BaseModel):
    block: str = Field(description="the approved base block, canonical text")
    x: int | None = Field(None, description="base width from budget fitting (nader macro)")
    trial: int = 0


class TrainOutcome(ToolResult):
    status: str = "failed"
    valid_acc: float | None = None
    test_acc: float | None = None
    metrics: dict = {}


def training_tool(run_training: Callable[[TrainArgs], dict | Awaitable[dict]]) -> TypedTool:
    """`run_training` is the run's launcher bound to its dataset, macro and trainer profile; it
    returns (or, when async, resolves to) the trial result's metrics (status ok or failed, with a
    reason)."""

    async def run(args: TrainArgs) -> TrainOutcome:
        m = run_training(args)
        if hasattr(m, "__await__"):  # trainings of trials side by side run in worker threads
            m = await m
        ok = m.get("status") == "ok"
        return TrainOutcome(ok=ok, error=None if ok else m.get("reason"), status=m.get("status", "failed"),
                            valid_acc=m.get("final_valid_acc"), test_acc=m.get("final_test_acc"), metrics=m)

    return TypedTool("launch_training", "Train an approved design under the run's protocol and return its metrics.",
                     TrainArgs, TrainOutcome, run)
