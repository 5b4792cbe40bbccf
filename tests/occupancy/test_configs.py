"""Every config in configs/occupancy and configs/multitask builds exactly as written, and runs loss,
backward and predict on tiny inputs (6 cameras at 64x160, 2 frames) with coarse BEV and voxel grids so
the InternImage variants fit a CPU test."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from mmengine.config import Config

import bev  # noqa: F401  (registers the spine and the detection head)
import lane_topology  # noqa: F401  (registers the lane head of the multi-task configs)
import occupancy  # noqa: F401  (registers the occupancy head)
from perception.engine import MODELS
from tests.bev.rig import rig_ego2img
from tests.lane_topology.toy import toy_lane_targets

ROOT = Path(__file__).resolve().parents[2] / "configs"
CONFIGS = sorted([*(ROOT / "occupancy").glob("*.py"), *(ROOT / "multitask").glob("*.py")])
BIG = ("internimage_b",)


def _params():
    return [pytest.param(c, id=c.stem, marks=[pytest.mark.slow] if any(b in c.stem for b in BIG) else [])
            for c in CONFIGS]


def test_every_occupancy_config_is_covered():
    assert {c.stem for c in CONFIGS} >= {"occupancy_tiny_synthetic", "bevformer_occ_internimage_s_occ3d",
                                         "bevformer_occ_internimage_b_occ3d", "detection_occupancy_tiny_synthetic"}


def _coarse(grid: dict, cells: int) -> dict:
    return dict(grid, resolution=(grid["x_range"][1] - grid["x_range"][0]) / cells, z_resolution=1.6)


@pytest.mark.parametrize("config", _params())
def test_config_builds_and_runs(config):
    cfg = Config.fromfile(config)
    assert "occupancy" in cfg.model.heads
    with torch.device("meta"):
        full = MODELS.build(cfg.model)
    voxel_grid = full.heads["occupancy"].voxel_grid
    assert voxel_grid.voxel_shape == (200, 200, 16)  # Occ3D's grid, whatever the spine's
    cfg.model.bev_grid = _coarse(dict(cfg.model.bev_grid), 16)
    occ = cfg.model.heads.occupancy
    occ.voxel_grid = _coarse(dict(x_range=voxel_grid.x_range, y_range=voxel_grid.y_range, z_range=voxel_grid.z_range,
                                  resolution=voxel_grid.resolution), 10)
    model = MODELS.build(cfg.model)
    x, y, z = model.heads["occupancy"].voxel_grid.voxel_shape
    b, frames, h, w = 1, 2, 64, 160
    g = torch.Generator().manual_seed(0)
    data = dict(img=torch.randn(b, frames, 6, 3, h, w, generator=g), cams=dict(ego2img=rig_ego2img(b, frames)),
                ego=dict(prev2curr=torch.eye(4).repeat(b, frames, 1, 1),
                         history_valid=torch.ones(b, frames, dtype=torch.bool)),
                meta=[dict(sample_token="t")],
                occ_semantics=torch.randint(0, 18, (b, x, y, z), generator=g, dtype=torch.uint8),
                occ_mask_camera=torch.rand(b, x, y, z, generator=g) > 0.5,
                occ_mask_lidar=torch.rand(b, x, y, z, generator=g) > 0.3)
    if "detection" in model.heads:
        data.update(gt_boxes=[torch.tensor([[10.0, 2.0, 0.5, 1.9, 4.5, 1.6, 0.2, 1.0, 0.0]])],
                    gt_labels=[torch.tensor([0])])
    if "lanes" in model.heads:
        data.update(toy_lane_targets(b, model.heads["lanes"].geometry.num_points, w, h))
    model.train()
    losses = model(**data, mode="loss")
    assert any(k.startswith("occupancy.") for k in losses)
    total = sum(losses.values())
    assert torch.isfinite(total)
    total.backward()
    model.eval()
    with torch.no_grad():
        pred = model(**data, mode="predict")[0]
    assert pred["occupancy"]["semantics"].shape == (x, y, z) and pred["occupancy"]["semantics"].dtype == torch.uint8
    if "detection" in model.heads:
        assert pred["detection"]["boxes"].shape[1] == 9
    if "lanes" in model.heads:
        assert pred["lanes"]["lane_points"].shape[1:] == (model.heads["lanes"].geometry.num_points, 3)
