"""Every config in configs/lanes builds exactly as written, and runs loss, backward and predict on tiny
inputs (its rig's camera count at 64x160, one frame) with a coarse BEV grid so the InternImage-S
models fit a CPU test; the subset configs read the rig (7 or 6 cameras) and the OpenLane-V2 metric."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from mmengine.config import Config

import bev  # noqa: F401  (registers the spine)
import lane_topology  # noqa: F401  (registers the lane head)
from perception.engine import MODELS
from tests.bev.rig import cam2ego, intrinsics
from tests.lane_topology.toy import toy_lane_targets

ROOT = Path(__file__).resolve().parents[2] / "configs"
CONFIGS = sorted((ROOT / "lanes").glob("*.py"))


def test_every_lane_config_is_covered():
    assert {c.stem for c in CONFIGS} == {"lanes_tiny_synthetic", "toponet_internimage_s_subset_A",
                                         "toponet_internimage_s_subset_B"}


def _ego2img(cameras: int, frames: int) -> torch.Tensor:
    """(1, frames, cameras, 4, 4) of a ring of cameras spread evenly in yaw."""
    mats = []
    for c in range(cameras):
        k = torch.eye(4)
        k[:3, :3] = intrinsics()
        mats.append(k @ torch.linalg.inv(cam2ego(math.degrees(2 * math.pi * c / cameras))))
    return torch.stack(mats)[None, None].expand(1, frames, -1, -1, -1)


def test_subset_configs_describe_their_rig_and_metric():
    a = Config.fromfile(ROOT / "lanes" / "toponet_internimage_s_subset_A.py")
    b = Config.fromfile(ROOT / "lanes" / "toponet_internimage_s_subset_B.py")
    assert a.model.encoder.num_cameras == 7 and b.model.encoder.num_cameras == 6
    assert a.model.bev_grid["resolution"] == 0.512 and a.optim_wrapper.optimizer.lr == 2e-4 and a.max_epochs == 24
    sizes = a.train_pipeline[1]["final_size"]
    assert sizes["ring_front_center"] == (775, 1024) and sizes["ring_side_left"] == (1024, 775)
    for cfg, subset in ((a, "A"), (b, "B")):
        (metric,) = cfg.val_evaluator
        assert metric["type"] == "OpenLaneV2Metric" and metric["ground_truth"] == f"data_dict_subset_{subset}_val.pkl"
        assert cfg.train_dataloader.dataset.labels == ("lanes",)


@pytest.mark.parametrize("config", [pytest.param(c, id=c.stem, marks=[pytest.mark.slow] if "internimage" in c.stem
                                                 else []) for c in CONFIGS])
def test_config_builds_and_runs(config):
    cfg = Config.fromfile(config)
    with torch.device("meta"):
        full = MODELS.build(cfg.model)
    assert full.heads["lanes"].geometry.num_points == 11
    grid = dict(cfg.model.bev_grid)
    cfg.model.bev_grid = dict(grid, resolution=(grid["x_range"][1] - grid["x_range"][0]) / 16)
    model = MODELS.build(cfg.model)
    cameras = cfg.model.encoder.get("num_cameras", 6)
    b, h, w = 1, 64, 160
    g = torch.Generator().manual_seed(0)
    data = dict(img=torch.randn(b, 1, cameras, 3, h, w, generator=g), cams=dict(ego2img=_ego2img(cameras, 1)),
                ego=dict(prev2curr=torch.eye(4).repeat(b, 1, 1, 1), history_valid=torch.ones(b, 1, dtype=torch.bool)),
                meta=[dict(sample_token="t")], **toy_lane_targets(b, 11, w, h))
    model.train()
    losses = model(**data, mode="loss")
    total = sum(losses.values())
    assert torch.isfinite(total) and "lanes.loss_lclc" in losses
    total.backward()
    model.eval()
    with torch.no_grad():
        pred = model(**data, mode="predict")[0]["lanes"]
    assert pred["lane_points"].shape[1:] == (11, 3) and pred["te_boxes"].shape[1] == 4


def test_format_only_sends_the_envelope_to_the_lane_metric(tmp_path):
    from tests.tool_loader import load_tool

    test = load_tool("test")
    cfg = Config.fromfile(ROOT / "multitask" / "detection_occupancy_lanes_tiny_synthetic.py")
    cfg.work_dir = str(tmp_path)
    metrics = test.set_format_only(cfg, dict(method="TinyTopo", authors=["A. Author"], email=None, institution=None,
                                             country="DE"))
    lane = next(m for m in metrics if m["type"] == "OpenLaneV2Metric")
    assert lane["format_only"] and lane["out_dir"] == str(tmp_path / "lane_submission")
    assert lane["method"] == "TinyTopo" and lane["authors"] == ["A. Author"] and lane["country"] == "DE"
    assert "email" not in lane  # options not given keep the metric's defaults
    occupancy = next(m for m in metrics if m["type"] == "OccupancyMetric")
    assert occupancy["out_dir"] == str(tmp_path / "occupancy_submission") and "method" not in occupancy
