"""Every config in configs/segmentation builds as written and runs loss, backward and predict on tiny inputs;
the 160k recipe carries the official values; the tiny config trains and evaluates through the mmengine
Runner on the synthetic ADE20K-format set."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from mmengine.config import Config
from mmengine.optim import build_optim_wrapper
from mmengine.registry import DefaultScope

import perception.data.segmentation  # noqa: F401  (registers the dataset, transforms and collate)
import perception.engine.optim  # noqa: F401  (registers the layer-decay constructor)
import perception.evaluation.segmentation  # noqa: F401  (registers the metric)
import perception.models.segmentation  # noqa: F401  (registers the segmentor)
from perception.engine import MODELS
from perception.structures.classes import SEGMENTATION_2D_CLASSES

CONFIGS = sorted((Path(__file__).resolve().parents[2] / "configs" / "segmentation").glob("*.py"))
OFFICIAL = "upernet_internimage_t_512_160k_ade20k"
TINY = "upernet_tiny_synthetic"


def _config(stem: str) -> Config:
    return Config.fromfile(next(c for c in CONFIGS if c.stem == stem))


def _params() -> list:
    return [pytest.param(c, id=c.stem, marks=[pytest.mark.slow] if c.stem == OFFICIAL else []) for c in CONFIGS]


def test_every_segmentation_config_is_covered():
    assert {c.stem for c in CONFIGS} >= {OFFICIAL, TINY}


@pytest.mark.parametrize("config", _params())
def test_config_builds_and_runs(config):
    torch.manual_seed(0)
    cfg = Config.fromfile(config)
    if config.stem == OFFICIAL:  # tiny inputs: no padding to the 512x512 crop (the recipe test checks that value)
        cfg.model.data_preprocessor.size = (64, 96)
    model = MODELS.build(cfg.model)
    num_classes = cfg.model.num_classes
    images = [torch.randint(0, 256, (3, 64, 96), dtype=torch.uint8), torch.randint(0, 256, (3, 48, 80),
                                                                                   dtype=torch.uint8)]
    samples = [{"gt_seg": torch.randint(0, num_classes, img.shape[-2:])} for img in images]
    samples[1]["gt_seg"][:8] = 255
    model.train()
    batch = model.data_preprocessor({"inputs": images, "data_samples": samples}, True)
    divisor = cfg.model.data_preprocessor.size_divisor
    padded = [-(-max(a, b) // divisor) * divisor for a, b in zip((64, 96), cfg.model.data_preprocessor.size)]
    assert list(batch["inputs"].shape[-2:]) == padded  # the largest image or the crop, in multiples of 32
    losses = model(**batch, mode="loss")
    assert set(losses) == {"decode.loss_ce", "aux.loss_ce", "decode.acc_seg"}
    total = losses["decode.loss_ce"] + losses["aux.loss_ce"]
    assert torch.isfinite(total)
    total.backward()
    model.eval()
    with torch.no_grad():
        pred = model(**model.data_preprocessor({"inputs": images[1:], "data_samples": samples[1:]}, False),
                     mode="predict")
    assert pred[0]["pred_seg"].shape == (48, 80)
    assert 0 <= pred[0]["pred_seg"].min() and pred[0]["pred_seg"].max() < num_classes


def test_official_recipe_values():
    cfg = _config(OFFICIAL)
    assert cfg.model.num_classes == 150 and cfg.model.aux_loss_weight == 0.4 and cfg.model.ignore_index == 255
    assert tuple(cfg.model.decode_head.pool_scales) == (1, 2, 3, 6) and cfg.model.decode_head.channels == 512
    assert cfg.model.auxiliary_head.in_index == 2 and cfg.model.auxiliary_head.channels == 256
    assert cfg.model.backbone.variant == "t" and cfg.model.backbone.drop_path_rate == 0.2
    assert cfg.optim_wrapper.optimizer.type == "AdamW"
    assert cfg.optim_wrapper.optimizer.lr == 6e-5 and cfg.optim_wrapper.optimizer.weight_decay == 0.05
    warmup, poly = cfg.param_scheduler
    assert (warmup.type, warmup.start_factor, warmup.end) == ("LinearLR", 1e-6, 1500)
    assert (poly.type, poly.power, poly.begin, poly.end, poly.eta_min) == ("PolyLR", 1.0, 1500, 160000, 0.0)
    assert cfg.train_cfg.max_iters == 160000 and cfg.train_cfg.val_interval == 16000
    assert cfg.train_dataloader.batch_size == 2  # x 8 GPUs = 16
    crop = next(t for t in cfg.train_dataloader.dataset.pipeline if t.type == "SegRandomCrop")
    assert tuple(crop.crop_size) == (512, 512) and crop.cat_max_ratio == 0.75
    resize = next(t for t in cfg.train_dataloader.dataset.pipeline if t.type == "SegRandomResize")
    assert tuple(resize.scale) == (2048, 512) and tuple(resize.ratio_range) == (0.5, 2.0)
    assert cfg.train_dataloader.dataset.reduce_zero_label and cfg.sync_bn == "torch"
    assert tuple(cfg.model.data_preprocessor.size) == (512, 512) and cfg.model.test_mode == "whole"


def test_official_optimiser_has_no_decay_on_norms_and_biases():
    cfg = _config(OFFICIAL)
    with torch.device("meta"):
        model = MODELS.build(cfg.model)
    with DefaultScope.overwrite_default_scope("perception"):
        wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    group_of = {id(p): g for g in wrapper.optimizer.param_groups for p in g["params"]}
    conv = group_of[id(model.decode_head.fpn_bottleneck[0].weight)]
    assert (conv["lr"], conv["weight_decay"]) == (6e-5, 0.05)
    assert group_of[id(model.decode_head.fpn_bottleneck[1].bias)]["weight_decay"] == 0.0
    stem = group_of[id(model.backbone.patch_embed.conv1.weight)]
    assert stem["lr"] == pytest.approx(6e-5)  # layer decay 1.0


def test_tiny_config_matches_the_class_list():
    cfg = _config(TINY)
    assert cfg.model.num_classes == len(SEGMENTATION_2D_CLASSES)
    assert cfg.train_dataloader.dataset.classes == "SEGMENTATION_2D_CLASSES"


@pytest.mark.slow
def test_tiny_config_trains_and_evaluates_with_the_runner(synthetic_2d, tmp_path):
    from tests.tool_loader import import_helper

    runner_common = import_helper("_runner_common")
    from mmengine.runner import Runner

    cfg = runner_common.load_config(str(next(c for c in CONFIGS if c.stem == TINY)), None, str(tmp_path), seed=0)
    for loader in ("train_dataloader", "val_dataloader", "test_dataloader"):
        cfg[loader].dataset.data_root = str(synthetic_2d.ade_root)
        cfg[loader].num_workers = 0
        cfg[loader].persistent_workers = False
    cfg.train_cfg.max_iters = 4
    cfg.train_cfg.val_interval = 4
    runner = Runner.from_cfg(cfg)
    runner.train()
    metrics = runner.val()
    assert {"segmentation/mIoU", "segmentation/aAcc", "segmentation/IoU/road"} <= set(metrics)
    assert 0 <= metrics["segmentation/aAcc"] <= 100
