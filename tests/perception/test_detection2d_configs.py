"""Every config in configs/detection2d builds as written and runs loss, backward and predict on tiny inputs;
the 1x recipe's optimiser carries the official layer-wise decay; the tiny config trains and evaluates
through the mmengine Runner on the synthetic COCO set."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from mmengine.config import Config
from mmengine.optim import build_optim_wrapper
from mmengine.registry import DefaultScope

import perception.data.coco  # noqa: F401  (registers the dataset and collate)
import perception.engine.optim  # noqa: F401  (registers the layer-decay constructor)
import perception.evaluation.coco  # noqa: F401  (registers the metric)
import perception.models.detection2d  # noqa: F401  (registers DINO)
from perception.engine import MODELS

CONFIGS = sorted((Path(__file__).resolve().parents[2] / "configs" / "detection2d").glob("*.py"))
OFFICIAL = "dino_4scale_internimage_t_1x_coco"


def _params() -> list:
    return [pytest.param(c, id=c.stem, marks=[pytest.mark.slow] if c.stem == OFFICIAL else []) for c in CONFIGS]


def test_every_detection2d_config_is_covered():
    assert {c.stem for c in CONFIGS} >= {OFFICIAL, "dino_tiny_synthetic"}


@pytest.mark.parametrize("config", _params())
def test_config_builds_and_runs(config):
    torch.manual_seed(0)
    cfg = Config.fromfile(config)
    model = MODELS.build(cfg.model)
    inputs = torch.randn(2, 3, 64, 96)
    samples = [{"img_shape": (64, 96), "boxes": torch.tensor([[8.0, 8, 40, 30]]), "labels": torch.tensor([1])},
               {"img_shape": (48, 80), "boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.long)}]
    model.train()
    losses = model(inputs, samples, mode="loss")
    total = sum(losses.values())
    assert torch.isfinite(total)
    assert {"loss_cls", "loss_bbox", "loss_iou", "enc.loss_cls", "dn.loss_cls", "d0.loss_cls"} <= set(losses)
    total.backward()
    model.eval()
    with torch.no_grad():
        pred = model(inputs, samples, mode="predict")
    assert pred[0]["boxes"].shape[1] == 4 and len(pred[0]["boxes"]) == len(pred[0]["scores"]) > 0
    assert (pred[1]["boxes"][:, 2] <= 80).all() and (pred[1]["boxes"][:, 3] <= 48).all()  # clipped to the image


def test_official_recipe_values():
    cfg = Config.fromfile(next(c for c in CONFIGS if c.stem == OFFICIAL))
    assert cfg.model.num_queries == 900 and cfg.model.num_denoising_queries == 100
    assert (cfg.model.label_noise, cfg.model.box_noise) == (0.5, 1.0)
    assert (cfg.model.cls_weight, cfg.model.l1_weight, cfg.model.giou_weight) == (1.0, 5.0, 2.0)
    assert (cfg.model.cls_cost, cfg.model.l1_cost, cfg.model.giou_cost) == (2.0, 5.0, 2.0)
    assert cfg.model.backbone.drop_path_rate == 0.2 and tuple(cfg.model.backbone.out_indices) == (1, 2, 3)
    assert cfg.optim_wrapper.optimizer.lr == 1e-4 and cfg.optim_wrapper.optimizer.weight_decay == 1e-4
    assert cfg.optim_wrapper.paramwise_cfg.layer_decay_rate == 0.9 and cfg.optim_wrapper.clip_grad.max_norm == 0.1
    assert cfg.train_cfg.max_epochs == 12
    step = next(s for s in cfg.param_scheduler if s.type == "MultiStepLR")
    assert list(step.milestones) == [11]


def test_official_optimiser_has_the_layer_decay():
    cfg = Config.fromfile(next(c for c in CONFIGS if c.stem == OFFICIAL))
    with torch.device("meta"):
        model = MODELS.build(cfg.model)
    with DefaultScope.overwrite_default_scope("perception"):  # as the Runner does with default_scope
        wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    lr_of = {}
    for group in wrapper.optimizer.param_groups:
        for param in group["params"]:
            lr_of[id(param)] = group["lr"]
    # num_layers 30 (T: 4 + 4 + 18 + 4): the stem has layer id 0 -> 1e-4 * 0.9 ** (30 + 2 - 0 - 1);
    # the head (layer id 31) keeps the base rate
    assert lr_of[id(model.backbone.patch_embed.conv1.weight)] == pytest.approx(1e-4 * 0.9 ** 31)
    assert lr_of[id(model.cls_branches[0].weight)] == pytest.approx(1e-4)
    assert wrapper.clip_grad_kwargs["max_norm"] == 0.1


@pytest.mark.slow
def test_tiny_config_trains_and_evaluates_with_the_runner(synthetic_2d, tmp_path):
    from tests.tool_loader import import_helper

    runner_common = import_helper("_runner_common")
    from mmengine.runner import Runner

    config = next(c for c in CONFIGS if c.stem == "dino_tiny_synthetic")
    cfg = runner_common.load_config(str(config), None, str(tmp_path), seed=0)
    coco = synthetic_2d.root / "coco"
    for loader, split in (("train_dataloader", "train"), ("val_dataloader", "val"), ("test_dataloader", "val")):
        cfg[loader].dataset.ann_file = str(coco / "annotations" / f"instances_{split}.json")
        cfg[loader].dataset.img_dir = str(coco / split)
    for evaluator in ("val_evaluator", "test_evaluator"):
        cfg[evaluator].ann_file = str(coco / "annotations" / "instances_val.json")
    cfg.train_cfg.max_iters = 2
    cfg.train_cfg.val_interval = 2
    cfg.param_scheduler = None
    runner = Runner.from_cfg(cfg)
    runner.train()
    metrics = runner.val()
    assert set(metrics) == {f"coco/{k}" for k in ("AP", "AP50", "AP75", "APs", "APm", "APl")}
