"""Ctrl-C for a design run: the first SIGINT stops the run promptly and cleanly, the second exits at
once. Training is synchronous inside the event loop, so asyncio's own SIGINT handling (cancel the
main task) would wait for the training to end; here a SIGINT during training stops it at once, and
one during model calls cancels them."""
from __future__ import annotations

import asyncio
import os
import signal
import sys
import threading
from contextlib import contextmanager
from typing import Callable, Iterator


class RunInterrupted(Exception):
    """The run was stopped by Ctrl-C; everything finished is saved. `trial`: the one that was
    stopped and will run again on resume (None: stopped before or between trials)."""

    def __init__(self, trial: int | None, where: str):
        self.trial, self.where = trial, where
        super().__init__(f"interrupted {where}")


class Interrupt:
    """Owned by one run (no global state): `install()` it in the main thread; the run asks
    `requested` between steps, and wraps training in `training()`."""

    def __init__(self, on_second: Callable[[], None] | None = None):
        self.requested = False
        self._training = False
        self._task: asyncio.Task | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._on_second = on_second or (lambda: os._exit(130))

    @contextmanager
    def install(self) -> Iterator["Interrupt"]:
        """Handle SIGINT while the block runs (in the main thread, inside the run's event loop)."""
        if threading.current_thread() is not threading.main_thread():  # signals reach the main thread only
            yield self
            return
        self._task, self._loop = asyncio.current_task(), asyncio.get_running_loop()
        previous = signal.signal(signal.SIGINT, self._handle)
        try:
            yield self
        finally:
            signal.signal(signal.SIGINT, previous)
            self._task = self._loop = None

    @contextmanager
    def training(self) -> Iterator[None]:
        """While inside, a SIGINT raises KeyboardInterrupt at once: the trainer stops at its next
        step and the launchers pass it up (a failing model is a result; an interrupt is not)."""
        if self.requested:
            raise KeyboardInterrupt
        if threading.current_thread() is not threading.main_thread():
            # Trials side by side (parallel > 1) train in worker threads: raising in the main thread
            # would not reach them; a SIGINT cancels the run's task, and the trainings end on their own.
            yield
            return
        self._training = True
        try:
            yield
        finally:
            self._training = False

    def _handle(self, signum, frame) -> None:  # noqa: ARG002 - signal handler signature
        if self.requested:
            print("\ninterrupted again: exiting now (finished trials are saved)", file=sys.stderr, flush=True)
            self._on_second()
            return
        self.requested = True
        print("\ninterrupt: stopping after saving; Ctrl-C again to exit at once", file=sys.stderr, flush=True)
        if self._training:
            raise KeyboardInterrupt
        if self._task is not None and self._loop is not None:
            self._loop.call_soon_threadsafe(self._task.cancel)  # model calls end at their next await
