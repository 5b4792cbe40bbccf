"""The Waymo configs (configs/waymo) build as written and run loss, backward and predict on tiny inputs of the
five-camera rig (two image sizes padded to one), as tests/bev/test_configs.py does for the nuScenes ones."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from mmengine.config import Config

import bev  # noqa: F401  (registers the model parts)
from perception.data.waymo import conventions as C
from perception.data.waymo import fixture as F
from perception.engine import MODELS
from perception.structures.cameras import compose_ego2img

CONFIGS = sorted((Path(__file__).resolve().parents[2] / "configs" / "waymo").glob("*.py"))


def _ego2img(batch: int, frames: int, width: int) -> torch.Tensor:
    """The fixture's five cameras at ``width`` pixels (Waymo extrinsics through our conversion)."""
    config = F.WaymoFixtureConfig("unused", image_width=width)
    mats = [compose_ego2img(F.camera_intrinsics(config, c),
                            C.cam2ego_from_extrinsic(C.extrinsic_from_cam2ego(F.camera_cam2ego(c)))) for c in C.RIG]
    return torch.tensor(np.stack(mats), dtype=torch.float32).expand(batch, frames, -1, -1, -1).clone()


def test_both_waymo_configs_exist():
    assert {c.stem for c in CONFIGS} == {"bevformer_v2_internimage_b_waymo", "bevformer_v2_tiny_waymo_fixture"}


@pytest.mark.parametrize("config", [pytest.param(c, id=c.stem, marks=[pytest.mark.slow] if "internimage_b" in c.stem
                                                 else []) for c in CONFIGS])
def test_waymo_config_builds_and_runs(config):
    cfg = Config.fromfile(config)
    assert cfg.model.encoder.num_cameras == 5 and cfg.model.head.num_classes == 3
    assert cfg.train_dataloader.dataset.classes == list(C.WAYMO_CLASSES)
    assert cfg.val_evaluator.type == "WaymoLETMetric"
    with torch.device("meta"):
        full = MODELS.build(cfg.model)
    assert sum(p.numel() for p in full.parameters()) > 0
    grid = dict(cfg.model.bev_grid)
    grid["resolution"] = (grid["x_range"][1] - grid["x_range"][0]) / 16  # coarse: same layers, fewer cells
    cfg.model.bev_grid = grid
    model = MODELS.build(cfg.model)
    frames, b, h, w = 2, 1, 64, 96  # 96x64 and 96x44 images padded to 96x64
    data = dict(img=torch.randn(b, frames, 5, 3, h, w), cams=dict(ego2img=_ego2img(b, frames, w)),
                ego=dict(prev2curr=torch.eye(4).repeat(b, frames, 1, 1),
                         history_valid=torch.ones(b, frames, dtype=torch.bool)),
                meta=[dict(sample_token="t")],
                gt_boxes=[torch.tensor([[10.0, 2.0, 0.9, 1.9, 4.5, 1.6, 0.2, 1.0, 0.0]])],
                gt_labels=[torch.tensor([0])])
    model.train()
    losses = model(**data, mode="loss")
    total = sum(losses.values())
    assert torch.isfinite(total)
    total.backward()
    model.eval()
    with torch.no_grad():
        pred = model(**data, mode="predict")[0]
    assert pred["detection"]["boxes"].shape[1] == 9 and int(pred["detection"]["labels"].max()) < 3


def test_fixture_config_dataset_loads_the_waymo_infos(tmp_path_factory):
    from perception.data import bev_collate
    from perception.engine import DATASETS
    from tests.perception.waymo_data import waymo_data

    data = waymo_data(tmp_path_factory)
    cfg = Config.fromfile(next(c for c in CONFIGS if "fixture" in c.stem))
    dataset_cfg = dict(cfg.train_dataloader.dataset, data_root=str(data.root), ann_file=str(data.training_infos))
    dataset = DATASETS.build(dataset_cfg)
    assert dataset.cameras == C.RIG and len(dataset) == 2 * data.config.frames_per_segment
    batch = bev_collate([dataset[1]])
    assert batch["img"].shape == (1, 2, 5, 3, 128, 192)  # the 192x89 side cameras padded to 192x128
    labels = batch["gt_labels"][0]
    assert len(labels) > 0 and int(labels.max()) < 3
