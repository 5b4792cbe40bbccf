"""tools/benchmark_data.py: a tiny world end to end (ratio and verdict lines), the stored H100 step time,
the verdict arithmetic and the decode-scale choice."""

from __future__ import annotations

import multiprocessing
import time
from pathlib import Path

import pytest
import torch

from tests.tool_loader import load_tool


@pytest.fixture(scope="module")
def tool():
    return load_tool("benchmark_data")


@pytest.mark.slow  # ~10 s: generates a 2-sample world, then two timed runs
def test_tiny_case_prints_ratio_and_verdict_lines(tool, tmp_path, capsys):
    argv = ["--data-dir", str(tmp_path), "--image-size", "96", "64", "--samples", "2", "--frames", "2",
            "--workers", "0", "1", "--iters", "2", "--rounds", "1", "--final-size", "96", "32"]
    assert tool.main(argv) == 0
    out = capsys.readouterr().out
    assert "6 cameras, 96x64 JPEG q90" in out and "2 frames x 6 cameras -> 96x32" in out
    for workers in (0, 1):
        assert f"ratio per core (workers={workers} vs PIL baseline):" in out
    assert "baseline-uint8" in out and "vs the uint8 baseline:" in out
    assert "needs 0.745 samples/s" in out and "rates scaled from 2 to 8 frames" in out
    assert "verdict: one 8-core node" in out
    assert tool.main(argv) == 0  # the second run reuses the cached world
    assert "generating" not in capsys.readouterr().out


def test_stored_step_time_is_the_internimage_b_measurement(tool):
    step = tool.stored_step(tool.DEFAULT_CONFIG)
    assert (step.ms, step.batch, step.frames) == (1342.1, 1, 8)
    assert step.source == "docs/measurements/h100-2026-11-24/model_f95447b.log"
    assert tool.stored_step("configs/bev/no_such_config.py") is None


def test_verdict_arithmetic(tool):
    step = tool.StepTime(ms=1000.0, batch=2, frames=8, source="--step-ms")  # needs 2 samples/s
    feeds = tool.verdict(step, cpu_rate=1.2, wall_rate=1.0, frames=2, cores=8)  # 8 x 1.2 / 4 = 2.4 >= 2
    assert "needs 2.000 samples/s" in feeds[0] and feeds[-1].endswith("FEEDS this H100 training step")
    starved = tool.verdict(step, cpu_rate=0.8, wall_rate=1.0, frames=2, cores=8)  # 1.6 < 2
    assert starved[-1].endswith("DOES NOT FEED this H100 training step")


def test_decode_scale_choice(tool):
    assert tool._decode_scale("auto", dict(scale_range=(0.5, 0.5))) == 0.5
    assert tool._decode_scale("auto", dict(scale_range=(1.0, 1.2))) is None  # never shrinks: full decode
    assert tool._decode_scale("off", dict(scale_range=(0.5, 0.5))) is None
    assert tool._decode_scale("0.3", None) == 0.3
    with pytest.raises(SystemExit, match="--decode-scale must be a number"):
        tool._decode_scale("half", None)


def _burn_then_wait(cpu_seconds: float, burnt, release) -> None:
    while time.process_time() < cpu_seconds:  # CPU time, not wall: robust to a loaded machine
        pass
    burnt.set()
    release.wait(60)


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
def test_live_children_cpu_seconds_counts_a_running_child(tool):
    context = multiprocessing.get_context("fork")
    burnt, release = context.Event(), context.Event()
    before = tool.live_children_cpu_seconds()
    child = context.Process(target=_burn_then_wait, args=(0.5, burnt, release))
    child.start()
    try:
        assert burnt.wait(60)
        running = tool.live_children_cpu_seconds() - before
    finally:
        release.set()
        child.join(60)
    assert 0.45 <= running < 5.0  # the child burnt 0.5 s (clock ticks of 10 ms); it is the only new child
    assert tool.live_children_cpu_seconds() - before < running - 0.4  # reaped: no longer counted as live


class _CostlyFirstSample(torch.utils.data.Dataset):
    """Index 0 burns ``first`` CPU seconds, the others ``each``; ``reads`` records the indices read (in this
    process: with workers=0)."""

    def __init__(self, first: float, each: float, length: int) -> None:
        self.first, self.each, self.length, self.reads = first, each, length, []

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict:
        self.reads.append(index)
        start = time.process_time()
        while time.process_time() - start < (self.first if index == 0 else self.each):
            pass
        return dict(img=torch.zeros(1, 1, 3, 4, 4, dtype=torch.uint8))


@pytest.fixture
def image_only_collate(monkeypatch):
    """``bev_collate`` replaced by a stack of the samples' ``img``: the datasets here carry nothing else."""
    monkeypatch.setattr("perception.data.bev_collate", lambda items: dict(img=torch.stack([i["img"] for i in items])))


def test_loader_timing_starts_after_the_warm_up(tool, image_only_collate):
    """The timed run counts ``count`` samples; the ``warmup`` batches are read on top of them, before the
    clock starts."""
    dataset = _CostlyFirstSample(first=0.0, each=0.0, length=3)
    timing = tool.time_loader(dataset, count=4, batch=1, workers=0, pin_memory=False, warmup=2)
    assert timing.samples == 4 and len(dataset.reads) == 6 and timing.warmup_s > 0


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
def test_loader_cpu_time_leaves_out_the_workers_warm_up(tool, image_only_collate):
    dataset = _CostlyFirstSample(first=1.0, each=0.05, length=5)  # the warm-up batch is index 0
    timing = tool.time_loader(dataset, count=4, batch=1, workers=1, pin_memory=False, warmup=1)
    assert timing.samples == 4
    # The 4 timed samples burn 0.2 s in the worker; the warm-up's 1 s must not be counted (nor subtracted).
    # /proc counts whole clock ticks (1/100 s), so the reading at the warm-up's end may be up to two ticks
    # off against getrusage's at the worker's end.
    assert 0.16 <= timing.cpu_s < 0.8
