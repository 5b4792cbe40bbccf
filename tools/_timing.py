"""Wall-clock timing shared by the benchmark tools: warm up, then the median of synchronised runs."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence

import torch


def synchronize(device: torch.device) -> None:
    """Wait for queued GPU work, so that a timer around it measures the work and not its launch."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median_seconds(fn: Callable[[], object], device: torch.device, repeats: int, warmup: int) -> float:
    """Median wall-clock seconds of ``fn()`` over ``repeats`` runs after ``warmup`` untimed runs."""
    for _ in range(warmup):
        fn()
    synchronize(device)
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        synchronize(device)
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def median_seconds_interleaved(fns: Sequence[Callable[[], object]], device: torch.device, repeats: int,
                               warmup: int) -> list[float]:
    """Median wall-clock seconds of each of ``fns``, timed in rounds that run each once in turn.

    For comparing implementations on a machine shared with other work: a burst of load slows every
    function of the round it falls in, instead of only the one that happened to be running, so the
    ratios of the medians are steadier than those of separate ``median_seconds`` calls.
    """
    for fn in fns:
        for _ in range(warmup):
            fn()
    synchronize(device)
    samples: list[list[float]] = [[] for _ in fns]
    for _ in range(repeats):
        for fn, times in zip(fns, samples):
            start = time.perf_counter()
            fn()
            synchronize(device)
            times.append(time.perf_counter() - start)
    return [statistics.median(times) for times in samples]
