"""Evaluator `nb201_table`: NAS-Bench-201 accuracies looked up instead of trained (DESIGN §3.7).

A candidate is *in-space* when it is the `nb201` skeleton with a base block isomorphic to an NB201
cell (and, for a three-section architecture, NB201's own stem and reduction blocks). Its result is
the table's 200-epoch validation and test accuracy, averaged over the cell's equivalence class (the
arch strings whose blocks are isomorphic to it). An out-of-space candidate is trained
(`out_of_space="train"`, through TrainEvaluator) or returned as a failed "not in table" result
(`out_of_space="skip"`).

The trial's block comes from `trial.extra["block"]` (text) and `trial.extra["macro"]`, or else from
a `training.models.BlockNetwork` model factory.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Literal

from graphs.nb201 import TABLE_DATASETS, dataset_columns as _columns

from .evaluators import TrainEvaluator
from .models import BlockNetwork
from .results import TrialResult
from .trials import TrialSpec, failed_result

__all__ = ["Nb201TableEvaluator", "Nb201TableError", "TABLE_DATASETS", "TABLE_PROFILE", "NOT_IN_TABLE"]

# TABLE_DATASETS: the datasets an NB201 table can hold (a given table may hold fewer: Nb201Table.datasets).
TABLE_PROFILE = "nb201-table (200 epochs, NAS-Bench-201 means)"
NOT_IN_TABLE = "not in table"


@lru_cache(maxsize=4)
def _load_table(path: str, mtime_ns: int, size: int):
    """One load per file version and process (seconds): the runs of a benchmark or a sweep in one
    process share it. Keyed by modification time and size, so an edited file is read again."""
    from graphs.nb201 import Nb201Table

    return Nb201Table.load(path)


class Nb201TableError(ValueError):
    """A trial the table cannot answer for a reason other than being out of space."""


@dataclass(frozen=True)
class Nb201TableEvaluator:
    """Look candidates up in the NB201 table at `table_path` (CSV with column arch and a pair
    <ds>_val,<ds>_test for each dataset it holds, e.g. cifar10_val,cifar10_test; imagenet16-120 is
    written imagenet16_120_*). The table is loaded on first use and kept in this instance (not
    across instances, not in the pickled form sent to pool workers)."""

    table_path: str
    out_of_space: Literal["train", "skip"] = "train"
    progress: bool | None = None  # for trials that are trained
    name: str = "nb201_table"
    _cache: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.out_of_space not in ("train", "skip"):
            raise ValueError(f"out_of_space must be 'train' or 'skip', got {self.out_of_space!r}")
        object.__setattr__(self, "table_path", str(self.table_path))

    # A loaded table is large; a worker loads its own rather than receiving a pickled copy.
    def __getstate__(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != "_cache"}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        object.__setattr__(self, "_cache", {})

    def table(self):
        """The loaded graphs.nb201.Nb201Table (Nb201TableError when it cannot be read)."""
        if "table" not in self._cache:
            path = Path(self.table_path)
            if not path.is_file():
                raise Nb201TableError(f"NB201 table not found at {path}; build it from the official "
                                      "NAS-Bench-201 release and point evaluator.table at it")
            try:
                stat = path.stat()
                self._cache["table"] = _load_table(str(path.resolve()), stat.st_mtime_ns, stat.st_size)
            except (OSError, ValueError) as e:
                raise Nb201TableError(f"cannot read the NB201 table {path}: {e}") from None
        return self._cache["table"]

    def evaluate(self, trial: TrialSpec) -> TrialResult:
        t0 = time.perf_counter()
        try:
            if trial.dataset in TABLE_DATASETS:
                self.table()  # a one-off load per evaluator (seconds), not charged to the trial
                t0 = time.perf_counter()
            hit = self._lookup(trial)
        except Nb201TableError as e:
            return self._out(trial, failed_result(trial, f"{type(e).__name__}: {e}", evaluator=self.name))
        if hit is None:
            if self.out_of_space == "train":
                return TrainEvaluator(progress=self.progress).evaluate(trial)
            return self._out(trial, failed_result(trial, NOT_IN_TABLE, evaluator=self.name))
        entry, params = hit
        val_col, test_col = _columns(trial.dataset)
        n = entry["class_size"]
        shown = ", ".join(entry["members"][:3]) + (", ..." if n > 3 else "")
        result = TrialResult(
            status="ok", evaluator=self.name, trial_id=trial.trial_id, dataset=trial.dataset,
            profile=TABLE_PROFILE, full_protocol=True, seed=trial.seed, split_seed=None, device="",
            params=params, final_valid_acc=entry[val_col], final_test_acc=entry[test_col],
            reason=f"NB201 table: mean over an equivalence class of {n} cell(s): {shown}",
            wall_time_s=time.perf_counter() - t0)
        return self._out(trial, result)

    @staticmethod
    def _out(trial: TrialSpec, result: TrialResult) -> TrialResult:
        if trial.out:
            result.write_json(trial.out)
        return result

    def _lookup(self, trial: TrialSpec) -> tuple[dict, int | None] | None:
        """(table entry, params) for an in-space trial, None when out of space."""
        from graphs.errors import BlockError
        from graphs.ir import Architecture

        if trial.dataset not in TABLE_DATASETS:
            raise Nb201TableError(f"the NB201 table has no accuracies for dataset {trial.dataset!r}; "
                                  f"NB201 covers {', '.join(TABLE_DATASETS)}")
        table = self.table()
        if trial.dataset not in table.datasets:
            raise Nb201TableError(f"{self.table_path} has no columns {', '.join(_columns(trial.dataset))} for "
                                  f"dataset {trial.dataset}; its columns: {', '.join(table.file_columns)}")
        text, macro = self._block_of(trial)
        if macro != "nb201":
            return None  # another skeleton: not an NB201 network whatever its cell
        net = BlockNetwork(text, "nb201", trial.dataset)
        try:
            arch = net.checked()
        except BlockError as e:
            raise Nb201TableError(f"invalid block: {e}") from None
        if isinstance(arch, Architecture):
            if not _nb201_sections(arch):
                return None
            arch = arch.base
        entry = table.lookup(arch)
        if entry is None:
            return None
        try:
            from graphs.cost import network_cost

            params = network_cost(arch, "nb201", trial.dataset).params
        except Exception:  # noqa: BLE001 - the parameter count is informative only
            params = None
        return entry, params

    @staticmethod
    def _block_of(trial: TrialSpec) -> tuple[str, str]:
        extra = trial.extra or {}
        factory = trial.model_factory
        text = extra.get("block")
        macro = extra.get("macro")
        if isinstance(factory, BlockNetwork):
            text = factory.text if text is None else text
            macro = factory.macro if macro is None else macro
        if not isinstance(text, str) or not text.strip():
            raise Nb201TableError("the trial carries no block text (trial.extra['block'] or a BlockNetwork "
                                  "model factory)")
        if macro is None:
            raise Nb201TableError("the trial does not say its macro (trial.extra['macro']: nader or nb201)")
        return text, str(macro)


def _nb201_sections(arch) -> bool:
    """Whether an architecture's stem and downsample are NB201's own (up to isomorphism)."""
    from graphs.hashing import canonical_hash, is_isomorphic
    from graphs.macro import NB201_REDUCTION, NB201_STEM

    return all(canonical_hash(a) == canonical_hash(b) and is_isomorphic(a, b)
               for a, b in ((arch.stem, NB201_STEM), (arch.downsample, NB201_REDUCTION)))
