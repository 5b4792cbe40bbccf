"""tools/benchmark_model.py runs a config on the nuScenes-like rig and prints its three figures."""

from __future__ import annotations

import re
from pathlib import Path

import torch

from tests.tool_loader import load_tool

ROOT = Path(__file__).resolve().parents[2]



def test_rig_projects_points_ahead_into_the_front_camera():
    tool = load_tool("benchmark_model")
    ego2img = tool.nominal_ego2img(90, 160)
    point = torch.tensor([20.0, 0.0, 1.0, 1.0])  # 20 m straight ahead
    front = ego2img[0] @ point
    u, v = front[0] / front[2], front[1] / front[2]
    assert front[2] > 0 and 0 < u < 160 and 0 < v < 90
    back = ego2img[3] @ point
    assert back[2] < 0  # behind the BACK camera


def test_benchmark_prints_step_memory_and_throughput(capsys):
    tool = load_tool("benchmark_model")
    config = ROOT / "configs" / "bev" / "bevformer_v2_tiny_synthetic.py"
    assert tool.main([str(config), "--device", "cpu", "--resolution", "96x160", "--iters", "1", "--warmup", "0",
                      "--profile", "1"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"training step: [\d.]+ ms median", out), out
    assert re.search(r"inference: [\d.]+ ms per batch \| [\d.]+ samples/s", out), out
    # The BEV encoder's deformable attention and the backbone's DCNv3 both show in the profile.
    assert "profile: wall" in out
    assert "    deformable attention " in out and "    dcnv3 backward " in out, out


def test_benchmark_feeds_the_occupancy_head_its_voxel_targets(capsys):
    tool = load_tool("benchmark_model")
    config = ROOT / "configs" / "occupancy" / "occupancy_tiny_synthetic.py"
    assert tool.main([str(config), "--device", "cpu", "--resolution", "90x160", "--iters", "1", "--warmup", "0"]) == 0
    out = capsys.readouterr().out
    assert "at 96x160 (padded)" in out, out
    assert re.search(r"training step: [\d.]+ ms median", out), out
