"""The demo's time budget: it stops training and, with ``anneal=True``, sets the learning rate by the
share of the budget spent (hand-computed values; a fake clock)."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

from perception.engine import TimeBudgetHook
from perception.engine import time_budget as budget


def test_the_factor_warms_up_linearly_then_follows_a_cosine_over_the_budget():
    assert budget.budget_lr_factor(0, 0.0, 4, 0.05) == pytest.approx(0.25)
    assert budget.budget_lr_factor(3, 0.0, 4, 0.05) == pytest.approx(1.0)
    assert budget.budget_lr_factor(9, 0.5, 4, 0.05) == pytest.approx(0.05 + 0.95 * 0.5)
    assert budget.budget_lr_factor(9, 1.0, 4, 0.05) == pytest.approx(0.05)
    assert budget.budget_lr_factor(9, 2.0, 4, 0.05) == pytest.approx(0.05)  # past the budget: the floor
    assert budget.budget_lr_factor(1, 0.25, 4, 0.0) == pytest.approx(0.5 * 0.5 * (1 + math.cos(math.pi / 4)))


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _runner(lrs: list[float], schedulers=None):
    params = [torch.nn.Parameter(torch.zeros(1)) for _ in lrs]
    optimizer = torch.optim.SGD([dict(params=[p], lr=lr) for p, lr in zip(params, lrs)])
    logger = SimpleNamespace(info=lambda message: None)
    return SimpleNamespace(optim_wrapper=SimpleNamespace(optimizer=optimizer), param_schedulers=schedulers, iter=0,
                           train_loop=SimpleNamespace(stop_training=False), logger=logger)


def test_an_annealing_budget_sets_every_groups_rate_and_stops_at_the_end(monkeypatch):
    clock = _Clock()
    monkeypatch.setattr(budget.time, "monotonic", clock)
    runner = _runner([1e-3, 1e-4])  # a backbone group at lr_mult 0.1
    hook = TimeBudgetHook(minutes=10.0, anneal=True, warmup_iters=2, final_lr_factor=0.1)
    hook.before_train(runner)
    groups = runner.optim_wrapper.optimizer.param_groups
    assert [g["lr"] for g in groups] == pytest.approx([0.5e-3, 0.5e-4])  # iteration 0 of a 2-iteration warm-up
    clock.now += 300.0  # half the budget
    runner.iter = 4
    hook.after_train_iter(runner, 4)
    half = 0.1 + 0.9 * 0.5
    assert [g["lr"] for g in groups] == pytest.approx([1e-3 * half, 1e-4 * half])
    assert not runner.train_loop.stop_training
    clock.now += 300.0
    hook.after_train_iter(runner, 5)
    assert runner.train_loop.stop_training


def test_annealing_refuses_a_config_that_also_schedules_the_rate(monkeypatch):
    runner = _runner([1e-3], schedulers=[object()])
    with pytest.raises(ValueError, match="param_scheduler"):
        TimeBudgetHook(minutes=1.0, anneal=True).before_train(runner)


def test_without_annealing_the_rate_is_left_alone(monkeypatch):
    clock = _Clock()
    monkeypatch.setattr(budget.time, "monotonic", clock)
    runner = _runner([1e-3], schedulers=[object()])
    hook = TimeBudgetHook(minutes=1.0)
    hook.before_train(runner)
    clock.now += 30.0
    hook.after_train_iter(runner, 0)
    assert runner.optim_wrapper.optimizer.param_groups[0]["lr"] == 1e-3 and not runner.train_loop.stop_training
