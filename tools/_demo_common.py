"""The demos' shared sequence (not a public module): score the untrained model, train for what the time
budget leaves, score again. Used by tools/demo.py for the BEV tasks and by the 2D demos."""

from __future__ import annotations

import time

import ops
from perception.engine import TimeBudgetHook

__all__ = ["evaluate_train_evaluate", "training_minutes"]


def training_minutes(max_minutes: float, elapsed_s: float, evaluation_s: float) -> float:
    """What the budget leaves for training once the data exists and the untrained model is scored.

    The trained model's evaluation costs about what the untrained one did and the pictures a few seconds,
    so the reserve is 1.5 times the measured evaluation plus 30 s for the last checkpoint, the pictures and
    jitter (on the 2-core machine all of that took about 20 s after an 18 s first evaluation; docs/bev.md,
    "The demo's schedule"). It shrinks with the evaluation, so a fast device is not held to a CPU-sized
    reserve.
    """
    reserve_s = 1.5 * evaluation_s + 30
    return max(0.5, max_minutes - (elapsed_s + reserve_s) / 60)


def evaluate_train_evaluate(runner, max_minutes: float, anneal: bool, start: float) -> tuple[dict, dict]:
    """(untrained metrics, trained metrics) of ``runner``'s model, trained in between for what remains of
    ``max_minutes`` counted from ``start`` (``time.monotonic()``), under :class:`TimeBudgetHook`."""
    # Build (or load from the cache) the op kernels first, so that the timed evaluation measures
    # evaluation alone: a first build takes longer than an evaluation and would inflate the reserve.
    ops.select_backend(None, next(runner.model.parameters()).device)
    print("[demo] evaluating the untrained model")
    evaluation_start = time.monotonic()
    untrained = runner.val()
    evaluation_s = time.monotonic() - evaluation_start
    train_minutes = training_minutes(max_minutes, time.monotonic() - start, evaluation_s)
    runner.register_hook(TimeBudgetHook(train_minutes, anneal=anneal))
    print(f"[demo] training for up to {train_minutes:.1f} min (an evaluation took {evaluation_s:.0f} s)")
    runner.train()
    print("[demo] evaluating the trained model")
    return untrained, runner.val()
