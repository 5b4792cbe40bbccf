"""Every config in configs/classification builds, its pipelines run, and its model runs forward on tiny inputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from mmengine.config import Config
from PIL import Image

import perception.data.classification  # noqa: F401  (registers datasets/transforms)
import perception.models  # noqa: F401  (registers ImageClassifier)
from perception.data.classification import Compose
from perception.engine import MODELS, register_lower_layers

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs" / "classification"
CONFIGS = sorted(CONFIG_DIR.glob("*.py"))
# docs/backbones.md: (variant, resolution, drop path, label smoothing, layer decay)
RECIPES = {
    "internimage_t_1k_224": ("t", 224, 0.1, 0.1, None),
    "internimage_s_1k_224": ("s", 224, 0.4, 0.1, None),
    "internimage_b_1k_224": ("b", 224, 0.5, 0.1, None),
    "internimage_l_22kto1k_384": ("l", 384, 0.1, 0.3, 0.9),
    "internimage_xl_22kto1k_384": ("xl", 384, 0.2, 0.3, 0.9),
    "internimage_h_22kto1k_640": ("h", 640, 0.2, 0.3, 0.9),
    "internimage_g_22kto1k_512": ("g", 512, 0.4, 0.3, 0.9),
}


def test_every_config_is_covered() -> None:
    assert {p.stem for p in CONFIGS} == set(RECIPES) | {"internimage_tiny_shapes"}


@pytest.mark.parametrize("path", [p for p in CONFIGS if p.stem in RECIPES], ids=lambda p: p.stem)
def test_official_recipe_configs(path: Path, tmp_path: Path) -> None:
    register_lower_layers()
    cfg = Config.fromfile(str(path))
    variant, size, drop_path, smoothing, layer_decay = RECIPES[path.stem]
    backbone = cfg.model.backbone
    assert (backbone.variant, backbone.drop_path_rate, cfg.model.label_smoothing) == (variant, drop_path, smoothing)
    assert cfg.optim_wrapper.paramwise_cfg.layer_decay == layer_decay
    assert cfg.optim_wrapper.clip_grad.max_norm == 5.0 and cfg.optim_wrapper.optimizer.weight_decay == 0.05
    assert cfg.auto_scale_lr.base_batch_size == 512
    assert cfg.optim_wrapper.optimizer.lr == (5e-4 if layer_decay is None else 2e-5)
    assert cfg.train_cfg.max_epochs == (300 if layer_decay is None else 20)
    assert [h.momentum for h in cfg.custom_hooks if h.type == "EMAHook"] == [1e-4]  # EMA decay 0.9999
    assert cfg.default_scope == "perception"

    image_file = tmp_path / "image.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (70, 90, 3), dtype=np.uint8)).save(image_file)
    for loader in (cfg.train_dataloader, cfg.val_dataloader):
        out = Compose(loader.dataset.pipeline)({"img_path": str(image_file), "gt_label": 1})
        assert out["inputs"].shape == (3, size, size)

    with torch.device("meta"):  # build without memory, even H/G
        model = MODELS.build(cfg.model)
    assert model.backbone.with_cp == (layer_decay is not None)
    assert model.backbone.arch["channels"] == {"t": 64, "s": 80, "b": 112, "l": 160, "xl": 192, "h": 320,
                                               "g": 512}[variant]


@pytest.mark.slow  # DCNv3 on the meta device goes through PyTorch decompositions (~0.15 s a layer)
@pytest.mark.parametrize("path", [p for p in CONFIGS if p.stem in RECIPES], ids=lambda p: p.stem)
def test_official_recipe_models_run_forward_on_meta(path: Path) -> None:
    register_lower_layers()
    cfg = Config.fromfile(str(path))
    with torch.device("meta"):
        model = MODELS.build(cfg.model)
        logits = model(torch.empty(1, 3, 64, 64), mode="tensor")
    assert logits.shape == (1, 1000) and logits.device.type == "meta"


def test_tiny_shapes_config_runs_forward_and_loss(tmp_path) -> None:
    register_lower_layers()
    cfg = Config.fromfile(str(CONFIG_DIR / "internimage_tiny_shapes.py"))
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    x, y = torch.randn(2, 3, 32, 32), torch.tensor([0, 7])
    assert model(x, mode="tensor").shape == (2, 8)
    assert torch.isfinite(model(x, y, mode="loss")["loss"])
