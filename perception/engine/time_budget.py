"""Stop training when a wall-clock budget is spent (used by the demo's ``--max-minutes``)."""

from __future__ import annotations

import time

from mmengine.hooks import Hook

from .registry import HOOKS

__all__ = ["TimeBudgetHook"]


@HOOKS.register_module()
class TimeBudgetHook(Hook):
    """Ends the training loop cleanly (checkpoints and hooks still run) after ``minutes``."""

    priority = "VERY_LOW"

    def __init__(self, minutes: float) -> None:
        if minutes <= 0:
            raise ValueError(f"TimeBudgetHook: minutes must be positive, got {minutes}")
        self.seconds = minutes * 60.0
        self.start: float | None = None

    def before_train(self, runner) -> None:
        self.start = time.monotonic()

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        if self.start is not None and time.monotonic() - self.start >= self.seconds:
            runner.train_loop.stop_training = True
            runner.logger.info(f"time budget of {self.seconds / 60:.1f} min spent after iteration {runner.iter + 1}")
