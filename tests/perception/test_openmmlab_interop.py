"""OpenMMLab interop (perception/interop/openmmlab.py): the backbone builds from mmengine's root registry as
``perception.InternImage`` (and from mmdet's / mmseg's where they import), and checkpoints go both ways, checked
with mmengine's own checkpoint loader."""

from __future__ import annotations

import importlib
import sys

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import MODELS as ROOT_MODELS
from mmengine.runner import load_checkpoint

from backbones import InternImage
from perception.engine.registry import MODELS, register_lower_layers

TINY = dict(variant="t", channels=16, depths=(1, 1, 2, 1), groups=(1, 2, 4, 8))
MODULE = "perception.interop.openmmlab"


@pytest.fixture
def interop(tmp_path):
    """The interop module loaded the way an OpenMMLab config loads it (custom_imports); afterwards our registry's
    ``InternImage`` is the plain class again, so other tests see the registry as they expect."""
    register_lower_layers()
    plain = MODELS.get("InternImage")
    sys.modules.pop(MODULE, None)
    config = tmp_path / "mm_config.py"
    config.write_text(f"custom_imports = dict(imports=[{MODULE!r}], allow_failed_imports=False)\n"
                      f"backbone = dict(type='perception.InternImage', out_indices=(1, 2, 3), **{TINY!r})\n")
    cfg = Config.fromfile(str(config))  # imports the module, as mmdet/mmseg tools do
    assert MODULE in sys.modules
    yield cfg
    MODELS.register_module(name="InternImage", module=plain, force=True)


def test_builds_from_the_root_registry_with_the_mm_interface(interop):
    module = sys.modules[MODULE]
    backbone = ROOT_MODELS.build(interop.backbone)
    assert isinstance(backbone, module.OpenMMLabInternImage) and isinstance(backbone, InternImage)
    assert backbone.out_indices == (1, 2, 3)
    backbone.init_weights()
    with torch.no_grad():
        levels = backbone(torch.randn(2, 3, 64, 96))
    assert isinstance(levels, tuple)
    assert [tuple(t.shape) for t in levels] == [(2, 32, 8, 12), (2, 64, 4, 6), (2, 128, 2, 3)]


def test_same_features_as_the_plain_backbone(interop):
    backbone = ROOT_MODELS.build(interop.backbone).eval()
    plain = InternImage(out_indices=(1, 2, 3), **TINY).eval()
    plain.load_state_dict(backbone.state_dict())
    image = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        for ours, reference in zip(backbone(image), plain(image), strict=True):
            torch.testing.assert_close(ours, reference, rtol=0, atol=0)


@pytest.mark.parametrize("package", ["mmdet", "mmseg"])
def test_builds_from_a_downstream_registry(interop, package):
    try:
        registry = importlib.import_module(f"{package}.registry").MODELS
        importlib.import_module(f"{package}.models")  # the registry imports it on its first build
    except ImportError as err:  # e.g. mmcv-lite: no compiled mmcv._ext ops
        pytest.skip(f"{package} is not importable here (not installed, or needs compiled mmcv ops): {err}")
    backbone = registry.build(interop.backbone)
    assert isinstance(backbone, sys.modules[MODULE].OpenMMLabInternImage)
    assert isinstance(backbone(torch.randn(1, 3, 32, 32)), tuple)


def test_checkpoint_keys_both_ways(interop, tmp_path):
    module = sys.modules[MODULE]
    torch.manual_seed(1)
    ours = InternImage(**TINY)
    for prefix in ("backbone.", "img_backbone."):
        checkpoint = module.backbone_checkpoint_for_openmmlab(ours, prefix=prefix, meta=dict(note="test"))
        assert all(k.startswith(prefix) for k in checkpoint["state_dict"])
        path = tmp_path / f"{prefix}pth"
        torch.save(checkpoint, path)
        # mmengine's loader, as an OpenMMLab runner or init_cfg would use it, strips the prefix back
        target = ROOT_MODELS.build(interop.backbone)
        load_checkpoint(target, str(path), revise_keys=[(f"^{prefix}", "")], strict=True)
        for key, value in ours.state_dict().items():
            torch.testing.assert_close(target.state_dict()[key], value, rtol=0, atol=0)
        # and back: an OpenMMLab checkpoint with neck and head keys beside the backbone
        checkpoint["state_dict"]["neck.conv.weight"] = torch.zeros(3)
        checkpoint["state_dict"]["bbox_head.fc.weight"] = torch.zeros(3)
        torch.save(checkpoint, path)
        state = module.backbone_state_from_openmmlab(path, prefix=prefix)
        assert set(state) == set(ours.state_dict())
        for key, value in ours.state_dict().items():
            torch.testing.assert_close(state[key], value, rtol=0, atol=0)


def test_wrong_prefix_is_named(interop):
    module = sys.modules[MODULE]
    checkpoint = module.backbone_checkpoint_for_openmmlab(InternImage(**TINY), prefix="img_backbone.")
    with pytest.raises(ValueError, match="no keys under 'backbone.'.*img_backbone"):
        module.backbone_state_from_openmmlab(checkpoint, prefix="backbone.")


def test_core_does_not_import_openmmlab_packages():
    """No module of the packages imports mmdet, mmseg, mmdet3d or mmcv (only mmengine), even lazily."""
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    offenders = []
    for package in ("ops", "backbones", "perception", "bev", "occupancy", "lane_topology"):
        for path in (root / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                         else [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else [])
                offenders += [f"{path.relative_to(root)}: {n}" for n in names
                              if n.split(".")[0] in ("mmdet", "mmseg", "mmdet3d", "mmcv")]
    assert not offenders, offenders
