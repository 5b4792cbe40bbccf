"""UperNet segmentor (perception/models/segmentation): shapes, the loss against hand-computed
cross-entropy, the preprocessor against hand-normalised pixels, sliding-window inference against
whole-image inference and a hand-computed average, and overfitting one synthetic image."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from perception.models.segmentation import (
    EncoderDecoderSegmentor,
    FCNHead,
    SegDataPreprocessor,
    UPerHead,
    segmentation_loss,
    sliding_window_logits,
)

TINY_BACKBONE = dict(type="InternImage", variant="t", channels=16, depths=(1, 1, 2, 1), groups=(1, 2, 4, 8),
                     drop_path_rate=0.0)


def _tiny_segmentor(num_classes: int = 5, **kwargs) -> EncoderDecoderSegmentor:
    torch.manual_seed(0)
    return EncoderDecoderSegmentor(backbone=TINY_BACKBONE, decode_head=dict(type="UPerHead", channels=32,
                                                                              dropout=0.0),
                                   auxiliary_head=dict(type="FCNHead", channels=16, dropout=0.0),
                                   num_classes=num_classes, **kwargs)


def _levels(batch: int = 2, channels=(16, 32, 64, 128), size: int = 32) -> list[torch.Tensor]:
    return [torch.randn(batch, c, size // 2 ** i, size // 2 ** i) for i, c in enumerate(channels)]


def test_upernet_head_returns_logits_at_the_finest_level():
    head = UPerHead(in_channels=(16, 32, 64, 128), channels=24, num_classes=7)
    assert head(_levels()).shape == (2, 7, 32, 32)
    assert len(head.psp_modules.stages) == 4  # pool scales 1, 2, 3, 6
    assert [s[0].output_size for s in head.psp_modules.stages] == [1, 2, 3, 6]
    with pytest.raises(ValueError, match="channels"):
        head(_levels(channels=(16, 32, 64, 64)))


def test_fcn_head_reads_its_level():
    head = FCNHead(in_channels=64, channels=8, num_classes=3, in_index=2)
    assert head(_levels()).shape == (2, 3, 8, 8)
    with pytest.raises(ValueError, match="level 2 has 32 channels"):
        head(_levels(channels=(16, 16, 32, 128)))


def test_segmentor_takes_head_channels_from_the_backbone():
    model = _tiny_segmentor()
    assert model.decode_head.in_channels == (16, 32, 64, 128)
    assert model.auxiliary_head.in_channels == 64  # level 2 (stride 16)
    assert model.aux_loss_weight == 0.4


def test_loss_matches_hand_computed_cross_entropy_with_ignored_pixels():
    # one image of 1x2 pixels, 2 classes: pixel 0 has logits (2, 0) and label 1; pixel 1 is ignored (255)
    logits = torch.tensor([[[[2.0, 5.0]], [[0.0, -1.0]]]])
    labels = torch.tensor([[[1, 255]]])
    ce0 = -math.log(math.exp(0.0) / (math.exp(2.0) + math.exp(0.0)))
    assert segmentation_loss(logits, labels).item() == pytest.approx(ce0 / 2)  # mmseg: divided by all pixels
    assert segmentation_loss(logits, labels, avg_non_ignore=True).item() == pytest.approx(ce0)


def test_aux_loss_is_weighted():
    model = _tiny_segmentor(num_classes=3)
    model.train()
    images = [torch.randint(0, 256, (3, 32, 32), dtype=torch.uint8) for _ in range(2)]
    samples = [{"gt_seg": torch.randint(0, 3, (32, 32))} for _ in range(2)]
    batch = model.data_preprocessor({"inputs": images, "data_samples": samples}, True)
    torch.manual_seed(1)
    losses = model(**batch, mode="loss")
    features = model.extract_features(batch["inputs"])
    labels = torch.stack([s["gt_seg"] for s in batch["data_samples"]])
    aux = segmentation_loss(model.auxiliary_head(features), labels)
    assert losses["aux.loss_ce"].item() == pytest.approx(0.4 * aux.item(), rel=1e-5)
    assert 0 <= losses["decode.acc_seg"].item() <= 100


def test_preprocessor_normalises_and_pads_images_and_labels():
    pre = SegDataPreprocessor(mean=(10.0, 20.0, 30.0), std=(2.0, 4.0, 5.0), size=(4, 4), size_divisor=3)
    img = torch.tensor([10, 22, 40], dtype=torch.uint8).view(3, 1, 1).expand(3, 2, 3).contiguous()
    out = pre({"inputs": [img], "data_samples": [{"gt_seg": torch.ones(2, 3, dtype=torch.long)}]}, True)
    inputs, sample = out["inputs"], out["data_samples"][0]
    assert inputs.shape == (1, 3, 6, 6)  # at least 4x4, rounded up to multiples of 3
    assert inputs[0, :, 0, 0].tolist() == [0.0, 0.5, 2.0]  # (10-10)/2, (22-20)/4, (40-30)/5
    assert inputs[0, :, 2:, :].abs().sum() == 0 and inputs[0, :, :, 3:].abs().sum() == 0
    assert sample["img_shape"] == (2, 3) and sample["pad_shape"] == (6, 6) and sample["ori_shape"] == (2, 3)
    assert (sample["gt_seg"][:2, :3] == 1).all() and (sample["gt_seg"][2:] == 255).all()
    assert (sample["gt_seg"][:, 3:] == 255).all()
    test = pre({"inputs": [img], "data_samples": [{"gt_seg": torch.ones(2, 3, dtype=torch.long)}]}, False)
    assert test["inputs"].shape == (1, 3, 3, 3)  # at test time only the divisor: no padding to the crop
    assert test["data_samples"][0]["gt_seg"].shape == (2, 3)  # labels stay as loaded (the metric's size)


def test_sliding_window_averages_overlapping_windows_by_hand():
    # width 6, crop 4, stride 2: windows [0, 4) and [2, 6); each window's logits are its own call number
    calls = []

    def window_id(crop: torch.Tensor) -> torch.Tensor:
        calls.append(crop.shape[-1])
        return torch.full((1, 1, *crop.shape[-2:]), float(len(calls)))

    out = sliding_window_logits(torch.zeros(1, 3, 1, 6), window_id, 1, crop_size=(1, 4), stride=(1, 2))
    assert calls == [4, 4]
    assert out[0, 0, 0].tolist() == [1.0, 1.0, 1.5, 1.5, 2.0, 2.0]


def test_sliding_window_shifts_the_last_window_back_to_the_border():
    calls = []

    def ones(crop):
        calls.append(crop.shape[-1])
        return torch.ones(1, 1, *crop.shape[-2:])

    # width 7, crop 4, stride 3: windows start at 0 and 3 (ends at 7); both full-size
    out = sliding_window_logits(torch.zeros(1, 3, 1, 7), ones, 1, crop_size=(1, 4), stride=(1, 3))
    assert calls == [4, 4] and (out == 1).all()


def test_sliding_window_equals_whole_image_when_windows_tile_it_once():
    torch.manual_seed(0)
    pixelwise = nn.Conv2d(3, 4, 1)  # no spatial context: tiles that cover the image once give the same logits
    inputs = torch.randn(2, 3, 8, 12)
    whole = pixelwise(inputs)
    tiled = sliding_window_logits(inputs, pixelwise, 4, crop_size=(4, 6), stride=(4, 6))
    torch.testing.assert_close(tiled, whole)


def test_slide_mode_with_one_window_equals_whole_mode():
    model = _tiny_segmentor().eval()
    images = [torch.randint(0, 256, (3, 48, 64), dtype=torch.uint8)]
    batch = model.data_preprocessor({"inputs": images, "data_samples": [{}]}, False)
    with torch.no_grad():
        whole = model(**batch, mode="tensor")
        model.test_mode, model.crop_size, model.stride = "slide", (48, 64), (32, 32)
        slide = model(**batch, mode="tensor")
    torch.testing.assert_close(slide, whole)


def test_predict_returns_labels_at_the_original_size():
    model = _tiny_segmentor(data_preprocessor=dict(type="SegDataPreprocessor", size_divisor=32)).eval()
    images = [torch.randint(0, 256, (3, 40, 50), dtype=torch.uint8)]
    samples = [{"ori_shape": (80, 100), "gt_seg": torch.zeros(80, 100, dtype=torch.long), "img_path": "x.jpg"}]
    batch = model.data_preprocessor({"inputs": images, "data_samples": samples}, False)
    assert batch["inputs"].shape[-2:] == (64, 64)
    with torch.no_grad():
        pred = model(**batch, mode="predict")[0]
    assert pred["pred_seg"].shape == (80, 100) and pred["img_path"] == "x.jpg"
    assert pred["gt_seg"].shape == (80, 100)


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="test_mode"):
        _tiny_segmentor(test_mode="sliding")
    with pytest.raises(ValueError, match="crop_size and stride"):
        _tiny_segmentor(test_mode="slide")
    with pytest.raises(ValueError, match="mode must be"):
        _tiny_segmentor()(torch.zeros(1, 3, 32, 32), mode="train")


@pytest.mark.slow
def test_overfits_one_synthetic_image(synthetic_2d):
    """Loss falls a lot and the prediction on the training image reaches a high pixel accuracy."""
    from perception.data.segmentation import reduce_zero_label

    image_path = sorted((synthetic_2d.ade_root / "images" / "training").glob("*.jpg"))[0]
    labels = reduce_zero_label(np.asarray(Image.open(
        synthetic_2d.ade_root / "annotations" / "training" / f"{image_path.stem}.png")))
    image = torch.from_numpy(np.asarray(Image.open(image_path).convert("RGB")).transpose(2, 0, 1).copy())
    gt = torch.from_numpy(labels.astype(np.int64))
    model = _tiny_segmentor(num_classes=17)
    # two copies: the PPM's 1x1 pooled map needs more than one value per channel for BatchNorm in training
    data = {"inputs": [image, image], "data_samples": [{"gt_seg": gt}, {"gt_seg": gt}]}
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.0)
    torch.manual_seed(0)
    losses = []
    model.train()
    for _ in range(120):
        loss = sum(v for k, v in model(**model.data_preprocessor(data, True), mode="loss").items() if "loss" in k)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    model.eval()
    with torch.no_grad():
        pred = model(**model.data_preprocessor({"inputs": [image], "data_samples": [{"gt_seg": gt}]}, False),
                     mode="predict")[0]["pred_seg"]
    valid = gt != 255
    accuracy = (pred[valid] == gt[valid]).float().mean().item()
    assert losses[-1] < 0.25 * losses[0], losses
    print(f"loss {losses[0]:.3f} -> {losses[-1]:.3f}, pixel accuracy {accuracy:.3f}")
    assert accuracy > 0.9, accuracy
