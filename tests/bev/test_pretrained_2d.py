"""From 2D to BEV: a BEV config starts its backbone from a 2D detector/segmentor checkpoint (mmdet/mmseg-style
``backbone.`` keys next to neck and head keys, in an mmengine runner's container), and the weights arrive."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch
from mmengine.config import Config
from mmengine.logging import MessageHub
from torch import nn

import bev  # noqa: F401  (registers the model parts)
from backbones import InternImage
from perception.engine import MODELS

TINY_BEV = Path(__file__).resolve().parents[2] / "configs" / "bev" / "bevformer_v2_tiny_synthetic.py"


def _tiny_backbone_cfg() -> dict:
    backbone = dict(Config.fromfile(TINY_BEV).model.backbone)
    backbone.pop("type")
    return backbone


class _Detector2D(nn.Module):
    """A stand-in 2D model with the attribute names of mmdet/mmseg and of our 2D models (``backbone`` plus a
    neck and heads), so its state dict has their key layout."""

    def __init__(self, backbone: nn.Module, head_names: tuple[str, ...]) -> None:
        super().__init__()
        self.backbone = backbone
        for name in head_names:
            setattr(self, name, nn.Conv2d(8, 8, 1))


def _save_2d_checkpoint(path: Path, head_names: tuple[str, ...]) -> dict[str, torch.Tensor]:
    """A runner-style checkpoint of a 2D model; returns its backbone tensors (without the prefix)."""
    torch.manual_seed(123)
    backbone = InternImage(**_tiny_backbone_cfg())
    with torch.no_grad():  # values no initialisation produces, so only loading can explain a match
        for tensor in backbone.state_dict().values():
            if tensor.is_floating_point():
                tensor.copy_(torch.randn_like(tensor))
    model = _Detector2D(backbone, head_names)
    hub = MessageHub.get_instance("pretrain_2d_test")
    hub.update_scalar("train/loss", 1.5)
    torch.save(dict(meta=dict(epoch=12, iter=100, dataset_meta=dict(classes=("car", "truck"))),
                    state_dict=model.state_dict(), message_hub=hub.state_dict(),
                    optimizer=dict(state={}, param_groups=[dict(lr=1e-4)])), path)
    return {k: v.clone() for k, v in backbone.state_dict().items()}


@pytest.mark.parametrize("style, head_names", [
    ("mmdet DINO", ("neck", "bbox_head")),
    ("mmseg UperNet", ("decode_head", "auxiliary_head")),
])
@pytest.mark.parametrize("how", ["pretrained", "init_cfg"])
def test_bev_backbone_starts_from_a_2d_checkpoint(tmp_path, style, head_names, how):
    path = tmp_path / "detector_2d.pth"
    expected = _save_2d_checkpoint(path, head_names)
    cfg = Config.fromfile(TINY_BEV)
    if how == "pretrained":  # our configs' key; the official mmdet/mmseg configs say init_cfg
        cfg.model.backbone.pretrained = str(path)
    else:
        cfg.model.backbone.init_cfg = dict(type="Pretrained", checkpoint=str(path))
    torch.manual_seed(0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = MODELS.build(cfg.model)
    # every backbone key matched (the 2D neck and heads are left behind without a partial-load warning)
    assert not [w for w in caught if "loaded partially" in str(w.message)]
    loaded = model.spine.backbone.state_dict()
    assert set(loaded) == set(expected)
    for key, tensor in expected.items():
        torch.testing.assert_close(loaded[key], tensor, rtol=0, atol=0, msg=f"{style}: {key} did not arrive")


def test_bev_backbone_without_checkpoint_differs(tmp_path):
    """The control: the same build without the checkpoint does not reproduce its tensors."""
    expected = _save_2d_checkpoint(tmp_path / "detector_2d.pth", ("neck", "bbox_head"))
    torch.manual_seed(0)
    model = MODELS.build(Config.fromfile(TINY_BEV).model)
    loaded = model.spine.backbone.state_dict()
    assert not torch.equal(loaded["patch_embed.conv1.weight"], expected["patch_embed.conv1.weight"])


@pytest.mark.parametrize("config", ["detection2d/dino_tiny_synthetic.py", "segmentation/upernet_tiny_synthetic.py"])
def test_bev_backbone_starts_from_our_tiny_2d_models(tmp_path, config):
    """Our own tiny 2D configs share the tiny BEV backbone, so their checkpoints start it as they are."""
    import perception.models.detection2d  # noqa: F401  (registers the 2D models)
    import perception.models.segmentation  # noqa: F401

    cfg_2d = Config.fromfile(TINY_BEV.parents[1] / config)
    torch.manual_seed(7)
    model_2d = MODELS.build(cfg_2d.model)
    with torch.no_grad():
        for tensor in model_2d.backbone.state_dict().values():
            if tensor.is_floating_point():
                tensor.add_(torch.randn_like(tensor))
    path = tmp_path / "model_2d.pth"
    torch.save(dict(meta=dict(iter=10), state_dict=model_2d.state_dict()), path)
    cfg = Config.fromfile(TINY_BEV)
    cfg.model.backbone.pretrained = str(path)
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    loaded = model.spine.backbone.state_dict()
    for key, tensor in model_2d.backbone.state_dict().items():
        torch.testing.assert_close(loaded[key], tensor, rtol=0, atol=0, msg=f"{config}: {key} did not arrive")
