"""One check for every detection config (tests/bev/test_configs.py, tests/perception/test_waymo_configs.py):
the model builds as written, and at a coarse BEV grid (the same layers, 16 cells across) it runs loss,
backward and predict on tiny inputs."""

from __future__ import annotations

import torch
from mmengine.config import Config

import bev  # noqa: F401  (registers the model parts)
from perception.engine import MODELS


def run_detection_config(cfg: Config, ego2img: torch.Tensor, image_hw: tuple[int, int], box_z: float) -> dict:
    """Build ``cfg.model`` on the meta device as written, then coarse for real; one loss + backward and
    one predict on random images of ``image_hw`` for the (B, T, Ncam, 4, 4) rig ``ego2img`` with one GT
    box at height ``box_z``. Returns the first sample's prediction."""
    with torch.device("meta"):
        full = MODELS.build(cfg.model)
    assert sum(p.numel() for p in full.parameters()) > 0
    grid = dict(cfg.model.bev_grid)
    grid["resolution"] = (grid["x_range"][1] - grid["x_range"][0]) / 16
    cfg.model.bev_grid = grid
    model = MODELS.build(cfg.model)
    batch, frames, cameras = ego2img.shape[:3]
    data = dict(img=torch.randn(batch, frames, cameras, 3, *image_hw), cams=dict(ego2img=ego2img),
                ego=dict(prev2curr=torch.eye(4).repeat(batch, frames, 1, 1),
                         history_valid=torch.ones(batch, frames, dtype=torch.bool)),
                meta=[dict(sample_token="t")],
                gt_boxes=[torch.tensor([[10.0, 2.0, box_z, 1.9, 4.5, 1.6, 0.2, 1.0, 0.0]])],
                gt_labels=[torch.tensor([0])])
    model.train()
    losses = model(**data, mode="loss")
    total = sum(losses.values())
    assert torch.isfinite(total)
    total.backward()
    model.eval()
    with torch.no_grad():
        return model(**data, mode="predict")[0]
