"""End-to-end: tools/train.py trains a small InternImage on the embedded shapes set (CPU) and learns;
tools/test.py evaluates the saved checkpoint; --resume continues a run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / "configs" / "classification" / "internimage_tiny_shapes.py"
CHANCE_TOP1 = 100.0 / 8


def _run(tool: str, *args: str) -> str:
    result = subprocess.run([sys.executable, str(REPO / "tools" / tool), *args], cwd=REPO, capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout + result.stderr


def _data_options(root: Path) -> list[str]:
    return [f"{loader}.dataset.data_root={root}" for loader in ("train_dataloader", "val_dataloader",
                                                                  "test_dataloader")]


def _last_top1(work_dir: Path) -> float:
    scalars = sorted(work_dir.glob("*/vis_data/scalars.json"))[-1]
    records = [json.loads(line) for line in scalars.read_text().splitlines()]
    return [r["accuracy/top1"] for r in records if "accuracy/top1" in r][-1]


@pytest.mark.slow
def test_training_on_shapes_learns_and_test_tool_agrees(tmp_path: Path) -> None:
    # About 40 s on 2 CPU cores: 50 epochs of 15 iterations; measured top-1 (EMA weights) 72.5%.
    work_dir = tmp_path / "work"
    _run("train.py", str(CONFIG), "--work-dir", str(work_dir), "--cfg-options", *_data_options(tmp_path / "shapes"))
    top1 = _last_top1(work_dir)
    assert top1 >= 3 * CHANCE_TOP1, f"top-1 {top1:.1f}% is not clearly better than chance ({CHANCE_TOP1}%)"
    checkpoint = work_dir / "epoch_50.pth"
    output = _run("test.py", str(CONFIG), str(checkpoint), "--work-dir", str(tmp_path / "test"),
                  "--cfg-options", *_data_options(tmp_path / "shapes"))
    assert f"accuracy/top1: {top1:.4f}" in output


@pytest.mark.slow
def test_resume_continues_from_the_last_epoch(tmp_path: Path) -> None:
    work_dir = tmp_path / "work"
    options = [*_data_options(tmp_path / "shapes"), "train_cfg.val_interval=100", "default_hooks.checkpoint.interval=1"]
    _run("train.py", str(CONFIG), "--work-dir", str(work_dir), "--cfg-options", "train_cfg.max_epochs=1", *options)
    assert (work_dir / "epoch_1.pth").is_file()
    output = _run("train.py", str(CONFIG), "--work-dir", str(work_dir), "--resume", "--cfg-options",
                  "train_cfg.max_epochs=2", *options)
    assert "resumed epoch: 1" in output
    assert (work_dir / "epoch_2.pth").is_file()
