"""The README's main job (tools/demo.py) end to end on a tiny world: world generation, devkit
evaluation before and after training through the mmengine Runner, pictures, and the RESULT line."""

from __future__ import annotations

import re

import pytest

from tests.tool_loader import load_tool


@pytest.mark.slow
def test_demo_runs_end_to_end(tmp_path, capsys):
    demo = load_tool("demo")
    assert demo.main(["--out", str(tmp_path), "--max-minutes", "0.5", "--scenes", "2", "--samples-per-scene", "4",
                      "--pictures", "2", "--tasks", "detection"]) == 0
    out = capsys.readouterr().out
    result = re.search(r"^RESULT NDS=(\S+) mAP=(\S+) untrained_NDS=(\S+)$", out, re.MULTILINE)
    assert result, out[-2000:]
    nds, mean_ap, untrained = (float(v) for v in result.groups())
    assert 0.0 <= nds <= 1.0 and 0.0 <= mean_ap <= 1.0 and 0.0 <= untrained <= 1.0
    pictures = sorted((tmp_path / "pictures").glob("*.png"))
    assert len(pictures) == 2 and all(p.stat().st_size > 10_000 for p in pictures)
    assert (tmp_path / "train" / "nuscenes_eval" / "results_nusc.json").exists()
    assert list((tmp_path / "train").glob("*/vis_data/events.out.tfevents.*")), "no tensorboard log"


def test_the_main_job_trains_every_head_by_default():
    demo = load_tool("demo")
    args = demo.parse_args(["--out", "unused"])
    assert args.tasks == ("detection", "lanes", "occupancy") and args.config.endswith(
        "multitask/detection_occupancy_lanes_tiny_synthetic.py")
    line = demo.result_line(args.tasks, {"nuscenes/NDS": 0.25, "nuscenes/mAP": 0.125, "occupancy/mIoU": 20.5,
                                         "occupancy/RayIoU": 10.25, "lanes/OLS": 0.2, "lanes/DET_l": 0.1},
                            {"nuscenes/NDS": 0.01, "occupancy/mIoU": 0.5, "lanes/OLS": 0.05})
    assert line == ("RESULT NDS=0.2500 mAP=0.1250 mIoU=20.50 RayIoU=10.25 OLS=0.2000 untrained_NDS=0.0100 "
                    "untrained_mIoU=0.50 untrained_OLS=0.0500")


def test_training_budget_reserves_one_and_a_half_evaluations():
    demo = load_tool("demo")
    # 12 min budget, 60 s spent (world + first evaluation), one evaluation took 10 s:
    # reserve 1.5 * 10 + 30 = 45 s, so training gets 12 - (60 + 45) / 60 = 10.25 min.
    assert demo.training_minutes(12.0, 60.0, 10.0) == pytest.approx(10.25)
    # A budget already spent still trains for the 30 s floor.
    assert demo.training_minutes(0.5, 45.0, 5.0) == 0.5


def test_cpu_threads_default_to_every_core(monkeypatch):
    demo = load_tool("demo")
    monkeypatch.setattr(demo.os, "sched_getaffinity", lambda pid: {0, 1, 5}, raising=False)
    assert demo.cpu_threads(0) == 3  # the cores this process may run on
    assert demo.cpu_threads(1) == 1  # --threads wins
    assert demo.parse_args(["--out", "unused"]).threads == 0


@pytest.mark.slow
@pytest.mark.parametrize("tasks", ["occupancy", "detection,occupancy"])
def test_demo_trains_occupancy_alone_and_with_detection_on_one_spine(tmp_path, capsys, tasks):
    demo = load_tool("demo")
    assert demo.main(["--out", str(tmp_path), "--max-minutes", "0.5", "--scenes", "2", "--samples-per-scene", "4",
                      "--pictures", "1", "--tasks", tasks]) == 0
    out = capsys.readouterr().out
    pattern = r"^RESULT mIoU=(\S+) RayIoU=(\S+) untrained_mIoU=(\S+)$" if tasks == "occupancy" else (
        r"^RESULT NDS=(\S+) mAP=(\S+) mIoU=(\S+) RayIoU=(\S+) untrained_NDS=(\S+) untrained_mIoU=(\S+)$")
    result = re.search(pattern, out, re.MULTILINE)
    assert result, out[-2000:]
    values = [float(v) for v in result.groups()]
    assert all(0.0 <= v <= 100.0 for v in values)
    pictures = sorted((tmp_path / "pictures").glob("*_occupancy.png"))
    assert len(pictures) == 1 and pictures[0].stat().st_size > 5_000
    if tasks != "occupancy":
        assert len(sorted((tmp_path / "pictures").glob("*.png"))) == 2


@pytest.mark.slow
@pytest.mark.parametrize("tasks", ["lanes", "detection,occupancy,lanes"])
def test_demo_trains_lanes_alone_and_with_every_head_on_one_spine(tmp_path, capsys, tasks):
    demo = load_tool("demo")
    assert demo.main(["--out", str(tmp_path), "--max-minutes", "0.5", "--scenes", "2", "--samples-per-scene", "4",
                      "--pictures", "1", "--tasks", tasks]) == 0
    out = capsys.readouterr().out
    pattern = r"^RESULT OLS=(\S+) DET_l=(\S+) untrained_OLS=(\S+)$" if tasks == "lanes" else (
        r"^RESULT NDS=(\S+) mAP=(\S+) mIoU=(\S+) RayIoU=(\S+) OLS=(\S+) untrained_NDS=(\S+) "
        r"untrained_mIoU=(\S+) untrained_OLS=(\S+)$")
    result = re.search(pattern, out, re.MULTILINE)
    assert result, out[-2000:]
    values = [float(v) for v in result.groups()]
    assert all(0.0 <= v <= 100.0 for v in values)
    ols = values[:3] if tasks == "lanes" else values[4:5] + values[7:]
    assert all(0.0 <= v <= 1.0 for v in ols)  # OLS and DET_l are fractions
    pictures = sorted((tmp_path / "pictures").glob("*_lanes.png"))
    assert len(pictures) == 1 and pictures[0].stat().st_size > 5_000
    if tasks != "lanes":
        assert len(sorted((tmp_path / "pictures").glob("*.png"))) == 3
