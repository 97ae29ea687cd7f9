"""The result of one trial: per-epoch and final metrics, or a failure with its reason."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict

from graphs.atomic import atomic_write

__all__ = ["EpochMetrics", "TrialResult"]


class EpochMetrics(BaseModel):
    model_config = ConfigDict(extra="forbid")

    epoch: int  # 1-based
    train_loss: float
    train_acc: float  # percent, as NB201 reports
    valid_acc: float
    lr: float  # at the end of the epoch
    seconds: float


class TrialResult(BaseModel):
    model_config = ConfigDict(extra="forbid")

    status: Literal["ok", "failed"]
    reason: str | None = None
    trial_id: str = ""
    evaluator: str = "train"
    dataset: str = ""
    profile: str = ""
    full_protocol: bool = False  # False marks a development schedule, not the NB201 protocol
    seed: int = 0
    split_seed: int | None = None
    device: str = ""
    params: int | None = None
    epochs: list[EpochMetrics] = []
    final_valid_acc: float | None = None
    final_test_acc: float | None = None
    best_epoch: int | None = None
    best_valid_acc: float | None = None
    wall_time_s: float = 0.0
    train_time_s: float = 0.0
    images_per_s: float | None = None

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def metrics(self) -> dict:
        """The numbers without the per-epoch history."""
        return self.model_dump(exclude={"epochs"})

    def write_json(self, path: str | Path) -> Path:
        """Atomic write (temp file + rename), so a reader never sees half a file."""
        return atomic_write(path, self.model_dump_json(indent=2))

    @classmethod
    def read_json(cls, path: str | Path) -> "TrialResult":
        return cls.model_validate_json(Path(path).read_text())
