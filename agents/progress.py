"""What a run shows while it works. On a terminal (or with progress=true) a live display: trial k/N
with an ETA, and a line per trial in flight with its parent and what it is doing (the role
speaking, the validator round, training). Elsewhere (progress=null off a terminal, e.g. CI logs,
or progress=false) plain lines: one when a trial starts and one when it ends, plus a line per change
of stage when trials run side by side."""
from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

__all__ = ["RunProgress", "is_live"]


def is_live(setting: bool | None, console: Console) -> bool:
    """progress=true: live; false: plain; null: live on a terminal only."""
    return console.is_terminal if setting is None else bool(setting)


class RunProgress:
    """Made before the run (the trainer reports epochs to it); `begin` starts it once the run knows
    how many trials are left."""

    def __init__(self, console: Console, live: bool, parallel: int = 1):
        self.console, self.live, self.parallel = console, live, parallel
        self.stages: dict[int, tuple[int, str]] = {}  # trial -> (parent, stage)
        self._bar: Progress | None = None
        self._tasks: dict[int, int] = {}

    def begin(self, total: int, done: int) -> None:
        if self.live and self._bar is None:
            self._bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
                                 console=self.console, transient=False)
            self._overall = self._bar.add_task("trials", total=total, completed=done)
            self._bar.start()

    def epoch(self, trial: int, epoch: int, epochs: int) -> None:
        """From the trainer (a worker thread when trials overlap): the trial's line shows the epoch."""
        if self._bar is not None and trial in self._tasks:
            self._bar.update(self._tasks[trial], total=epochs, completed=epoch)
            self.stage(trial, f"training, epoch {epoch}/{epochs}")

    def started(self, trial: int, parent: int) -> None:
        self.stages[trial] = (parent, "")
        if self._bar is not None:
            self._tasks[trial] = self._bar.add_task(f"  trial {trial} (node {parent})", total=None)

    def stage(self, trial: int, what: str) -> None:
        parent, before = self.stages.get(trial, (None, ""))
        if parent is None or before == what:
            return
        self.stages[trial] = (parent, what)
        if self._bar is not None:
            self._bar.update(self._tasks[trial], description=f"  trial {trial} (node {parent}): {what}")
        elif self.parallel > 1:  # plain lines: only when trials overlap (one at a time, the trial lines say it all)
            others = ", ".join(f"{t} {s}" for t, (_, s) in sorted(self.stages.items()) if t != trial and s)
            self.console.print(f"  trial {trial} (node {parent}): {what}" + (f"  [in flight: {others}]" if others else ""),
                               soft_wrap=True, highlight=False, markup=False)

    def finished(self, trial: int) -> None:
        self.stages.pop(trial, None)
        if self._bar is not None:
            task = self._tasks.pop(trial, None)
            if task is not None:
                self._bar.remove_task(task)
            self._bar.advance(self._overall)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
