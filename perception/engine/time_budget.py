"""Train for a wall-clock budget (the demo's ``--max-minutes``), optionally with a learning rate that
follows the budget rather than an iteration count (docs/bev.md, "The demo's schedule")."""

from __future__ import annotations

import math
import time

from mmengine.hooks import Hook

from .registry import HOOKS

__all__ = ["TimeBudgetHook", "budget_lr_factor"]

BASE_LR_KEY = "budget_base_lr"  # kept in the optimizer's param groups, so a resumed run keeps its base


def budget_lr_factor(iteration: int, elapsed_fraction: float, warmup_iters: int, final_factor: float) -> float:
    """The factor of each base learning rate: linear warm-up over ``warmup_iters`` iterations (from
    ``1 / warmup_iters``), times a cosine from 1 down to ``final_factor`` over the budget's elapsed
    fraction (clamped to [0, 1])."""
    warmup = min(1.0, (iteration + 1) / warmup_iters) if warmup_iters > 0 else 1.0
    fraction = min(1.0, max(0.0, elapsed_fraction))
    return warmup * (final_factor + (1.0 - final_factor) * 0.5 * (1.0 + math.cos(math.pi * fraction)))


@HOOKS.register_module()
class TimeBudgetHook(Hook):
    """Ends the training loop cleanly (checkpoints and hooks still run) after ``minutes``.

    With ``anneal=True`` it also owns the learning rate: each param group's configured rate (its
    ``lr_mult`` applied) is scaled by :func:`budget_lr_factor` of the iteration and of the share of the
    budget spent, so a run of any speed ends its budget at ``final_lr_factor`` of the rate, as an
    iteration-based cosine schedule ends at its last iteration. The config's ``param_scheduler`` must
    then be empty (both would write the rate)."""

    priority = "VERY_LOW"

    def __init__(self, minutes: float, anneal: bool = False, warmup_iters: int = 50,
                 final_lr_factor: float = 0.05) -> None:
        if minutes <= 0:
            raise ValueError(f"TimeBudgetHook: minutes must be positive, got {minutes}")
        if not 0.0 <= final_lr_factor <= 1.0:
            raise ValueError(f"TimeBudgetHook: final_lr_factor must lie in [0, 1], got {final_lr_factor}")
        self.seconds = minutes * 60.0
        self.anneal, self.warmup_iters, self.final_lr_factor = anneal, warmup_iters, final_lr_factor
        self.start: float | None = None

    def before_train(self, runner) -> None:
        self.start = time.monotonic()
        if not self.anneal:
            return
        if runner.param_schedulers:
            raise ValueError("TimeBudgetHook(anneal=True) sets the learning rate itself; give the config "
                             "param_scheduler=[] (the config has schedulers)")
        for group in self._groups(runner):
            group.setdefault(BASE_LR_KEY, group["lr"])
        self._set_lr(runner, runner.iter)

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        if self.start is None:
            return
        if time.monotonic() - self.start >= self.seconds:
            runner.train_loop.stop_training = True
            runner.logger.info(f"time budget of {self.seconds / 60:.1f} min spent after iteration {runner.iter + 1}")
        elif self.anneal:
            self._set_lr(runner, runner.iter + 1)  # the rate of the next iteration, so the logs show it

    def _set_lr(self, runner, iteration: int) -> None:
        factor = budget_lr_factor(iteration, (time.monotonic() - self.start) / self.seconds, self.warmup_iters,
                                  self.final_lr_factor)
        for group in self._groups(runner):
            group["lr"] = group[BASE_LR_KEY] * factor

    @staticmethod
    def _groups(runner) -> list[dict]:
        wrapper = runner.optim_wrapper
        wrappers = wrapper.values() if hasattr(wrapper, "values") else [wrapper]
        return [group for w in wrappers for group in w.optimizer.param_groups]
