"""Forward-hook feature extraction (backbones.features and tools/extract_features.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

import backbones
from backbones.features import extract_features

REPO = Path(__file__).resolve().parents[2]


def test_hooks_capture_named_modules(make_tiny, seeded) -> None:
    model = make_tiny().eval()
    x = torch.randn(1, 3, 64, 64)
    feats = extract_features(model, x, ["patch_embed", "levels.0.downsample", "levels.0.blocks.0.dcn", "levels.3"])
    assert tuple(feats["patch_embed"].shape) == (1, 16, 16, 32)  # NHWC inside the stages
    assert tuple(feats["levels.0.downsample"].shape) == (1, 8, 8, 64)
    assert tuple(feats["levels.0.blocks.0.dcn"].shape) == (1, 16, 16, 32)
    with torch.no_grad():
        stage4 = backbones.InternImage.forward(model, x)[3]  # the backbone forward of the same weights
    torch.testing.assert_close(feats["levels.3"].permute(0, 3, 1, 2), stage4)
    with pytest.raises(KeyError, match="levels.0.blocks.0.dcn"):
        extract_features(model, x, ["levels.0.blocks.0.dcnn"])


def test_extract_features_tool(tmp_path) -> None:
    image = tmp_path / "img.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 50, 3), dtype=np.uint8)).save(image)
    out = tmp_path / "feats.safetensors"
    result = subprocess.run(
        [sys.executable, str(REPO / "tools" / "extract_features.py"), "internimage_t", str(image), "--size", "32",
         "--keys", "patch_embed", "levels.1.blocks.0", "levels.1", "--out", str(out), "--num-classes", "4",
         "--model-args", "channels=16", "depths=(1,1,1,1)", "groups=(1,2,4,8)"],
        capture_output=True, text=True, timeout=300, cwd=REPO)
    assert result.returncode == 0, result.stderr[-2000:]
    feats = load_file(str(out))
    assert tuple(feats["patch_embed"].shape) == (1, 8, 10, 16)  # 32x40 input at stride 4
    assert tuple(feats["levels.1.blocks.0"].shape) == (1, 4, 5, 32)  # stride 8
    assert tuple(feats["levels.1"].shape) == (1, 2, 3, 64)  # a level's output includes its downsample
