from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

import backbones

# A T-shaped model small enough for CPU tests: group channels 16 as in T.
TINY = dict(channels=32, depths=(1, 1, 2, 1), groups=(2, 4, 8, 16))


@pytest.fixture
def tiny_arch() -> dict:
    return dict(TINY)


@pytest.fixture
def make_tiny() -> Callable[..., backbones.InternImageClassifier]:
    def make(variant: str = "t", num_classes: int = 10, **kwargs) -> backbones.InternImageClassifier:
        return backbones.create_model(f"internimage_{variant}", num_classes=num_classes, **{**TINY, **kwargs})

    return make


@pytest.fixture
def seeded() -> None:
    torch.manual_seed(0)
