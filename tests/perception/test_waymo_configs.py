"""The Waymo configs (configs/waymo) build as written and run loss, backward and predict on tiny inputs of the
five-camera rig (two image sizes padded to one), as tests/bev/test_configs.py does for the nuScenes ones."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from mmengine.config import Config

from perception.data.waymo import conventions as C
from perception.data.waymo import fixture as F
from perception.structures.cameras import compose_ego2img
from tests.bev.config_runs import run_detection_config

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
    width = 96  # 96x64 and 96x44 images padded to 96x64
    pred = run_detection_config(cfg, _ego2img(1, 2, width), (64, width), box_z=0.9)
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
