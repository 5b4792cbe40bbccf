"""ADE20K-format segmentation data (perception/data/segmentation.py): the layout, reduce_zero_label by
hand, the augmentation's geometry on hand-made label maps, and clear errors for bad files."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from perception.data.segmentation import (
    ADE20KDataset,
    PhotoMetricDistortion,
    ResizeToMultiple,
    SegmentationDataError,
    SegRandomCrop,
    SegRandomFlip,
    SegRandomResize,
    SegResize,
    reduce_zero_label,
    rescale_size,
    seg_collate,
)
from perception.structures.classes import SEGMENTATION_2D_CLASSES

PIPELINE = [dict(type="LoadSegImage"), dict(type="LoadSegAnnotations"), dict(type="PackSegInputs")]


def _write_set(root, names=("a", "b"), size=(6, 4), split="training"):
    """A hand-made ADE20K-format set: image k is filled with grey 40k, its labels are k+1 everywhere."""
    (root / "images" / split).mkdir(parents=True, exist_ok=True)
    (root / "annotations" / split).mkdir(parents=True, exist_ok=True)
    for k, name in enumerate(names):
        Image.fromarray(np.full((size[1], size[0], 3), 40 * k, np.uint8)).save(root / "images" / split / f"{name}.png")
        Image.fromarray(np.full((size[1], size[0]), k + 1, np.uint8)).save(root / "annotations" / split / f"{name}.png")
    return root


def test_reduce_zero_label_by_hand():
    labels = np.array([[0, 1, 2], [150, 254, 255]], np.uint8)
    assert reduce_zero_label(labels).tolist() == [[255, 0, 1], [149, 253, 255]]


def test_dataset_reads_the_layout_and_reduces_labels(tmp_path):
    dataset = ADE20KDataset(str(_write_set(tmp_path)), "training", PIPELINE)
    assert len(dataset) == 2
    sample = dataset[1]
    assert sample["inputs"].shape == (3, 4, 6) and sample["inputs"].dtype == torch.uint8
    assert (sample["inputs"] == 40).all()
    assert (sample["data_samples"]["gt_seg"] == 1).all()  # label 2 reduced to class 1
    assert sample["data_samples"]["img_path"].endswith("b.png")
    raw = ADE20KDataset(str(tmp_path), "training", PIPELINE, reduce_zero_label=False)[1]
    assert (raw["data_samples"]["gt_seg"] == 2).all()
    batch = seg_collate([dataset[0], dataset[1]])
    assert len(batch["inputs"]) == 2 and len(batch["data_samples"]) == 2


def test_dataset_on_the_synthetic_set(synthetic_2d):
    train = ADE20KDataset(str(synthetic_2d.ade_root), "training", PIPELINE, classes="SEGMENTATION_2D_CLASSES")
    val = ADE20KDataset(str(synthetic_2d.ade_root), "validation", PIPELINE)
    assert (len(train), len(val)) == (4, 4)
    assert train.metainfo["classes"] == SEGMENTATION_2D_CLASSES
    width, height = synthetic_2d.config.image_size
    labels = train[0]["data_samples"]["gt_seg"]
    assert labels.shape == (height, width)
    valid = labels[labels != 255]
    assert valid.min() >= 0 and valid.max() < len(SEGMENTATION_2D_CLASSES)


def test_missing_annotation_is_named(tmp_path):
    _write_set(tmp_path)
    (tmp_path / "annotations" / "training" / "b.png").unlink()
    with pytest.raises(SegmentationDataError, match=r"have no annotation, e.g. .*b\.png"):
        ADE20KDataset(str(tmp_path), "training", PIPELINE)


def test_missing_split_folder_and_unknown_classes_are_named(tmp_path):
    _write_set(tmp_path)
    with pytest.raises(SegmentationDataError, match="validation is not a folder"):
        ADE20KDataset(str(tmp_path), "validation", PIPELINE)
    with pytest.raises(ValueError, match="split must be one of"):
        ADE20KDataset(str(tmp_path), "train", PIPELINE)
    with pytest.raises(ValueError, match="NO_SUCH_LIST"):
        ADE20KDataset(str(tmp_path), "training", PIPELINE, classes="NO_SUCH_LIST")


def test_unreadable_image_and_bad_label_map_are_named(tmp_path):
    _write_set(tmp_path)
    (tmp_path / "images" / "training" / "a.png").write_bytes(b"not a png")
    dataset = ADE20KDataset(str(tmp_path), "training", PIPELINE)
    with pytest.raises(SegmentationDataError, match=r"cannot read image .*a\.png"):
        dataset[0]
    Image.fromarray(np.zeros((4, 6, 3), np.uint8)).save(tmp_path / "annotations" / "training" / "b.png")
    with pytest.raises(SegmentationDataError, match=r"b\.png: label maps must be single-channel"):
        dataset[1]
    Image.fromarray(np.zeros((5, 6), np.uint8)).save(tmp_path / "annotations" / "training" / "b.png")
    with pytest.raises(SegmentationDataError, match=r"does not match its image"):
        dataset[1]


def test_rescale_size_by_hand():
    assert rescale_size(512, 683, (2048, 512)) == (683, 512)  # short side already at its limit
    assert rescale_size(100, 400, (2048, 512)) == (2048, 512)  # both limits reached at x5.12
    assert rescale_size(1000, 1000, (2048, 512)) == (512, 512)


def _results(height=20, width=40):
    labels = np.tile(np.arange(width, dtype=np.uint8) % 7, (height, 1))  # label = column mod 7
    img = np.stack([labels * 30] * 3, axis=-1).astype(np.uint8)
    return {"img": img, "gt_seg": labels}


def test_random_resize_keeps_aspect_and_label_values():
    for seed in range(5):
        out = SegRandomResize(scale=(80, 20), ratio_range=(0.5, 2.0), seed=seed)(_results())
        h, w = out["img"].shape[:2]
        assert out["gt_seg"].shape == (h, w) and abs(w - 2 * h) <= 1  # each side rounded
        assert 10 <= h <= 40  # 20 x [0.5, 2.0]
        assert set(np.unique(out["gt_seg"])) <= set(range(7))  # nearest: no blended labels
    assert SegResize(scale=(80, 10))(_results())["img"].shape[:2] == (10, 20)
    assert ResizeToMultiple(16)(_results(20, 40))["img"].shape[:2] == (32, 48)


def test_random_crop_takes_a_window_of_image_and_labels():
    results = _results()
    out = SegRandomCrop(crop_size=(8, 10), seed=0)(dict(results))
    assert out["img"].shape[:2] == (8, 10) and out["gt_seg"].shape == (8, 10)
    first = int(out["gt_seg"][0, 0])
    x0 = next(x for x in range(31) if (results["gt_seg"][0, x:x + 10] == out["gt_seg"][0]).all())
    assert first == x0 % 7 and (out["img"][..., 0] == out["gt_seg"] * 30).all()
    small = SegRandomCrop(crop_size=(64, 64), seed=0)(_results())  # larger than the image: all of it
    assert small["img"].shape[:2] == (20, 40)


def test_random_crop_cat_max_ratio_rejects_one_class_windows():
    # columns 0..29 class 0, columns 30..39 class 1: a 10-wide window is balanced only if it starts after
    # column 22 (class 1 above 25% of it); with cat_max_ratio each of the 10 draws is checked
    labels = np.zeros((4, 40), np.uint8)
    labels[:, 30:] = 1
    crop = SegRandomCrop(crop_size=(4, 10), cat_max_ratio=0.75, seed=0)
    assert crop._balanced(labels[:, 25:35]) and not crop._balanced(labels[:, 0:10])
    ignored = labels.copy()
    ignored[:, 20:30] = 255  # ignored pixels are no class: half ignored, half class 1 is one class
    assert not crop._balanced(ignored[:, 25:35])
    balanced = 0
    for seed in range(20):
        out = SegRandomCrop(crop_size=(4, 10), cat_max_ratio=0.75, seed=seed)(
            {"img": np.zeros((4, 40, 3), np.uint8), "gt_seg": labels})
        balanced += crop._balanced(out["gt_seg"])
    # one draw is balanced with probability 8/31; ten draws fail together with probability 0.05
    assert balanced >= 15


def test_flip_mirrors_image_and_labels_together():
    out = SegRandomFlip(prob=1.0)(_results())
    assert out["flip"] and (out["gt_seg"][:, 0] == 39 % 7).all()
    assert (out["img"][..., 0] == out["gt_seg"] * 30).all()
    assert not SegRandomFlip(prob=0.0)(_results())["flip"]


def test_photometric_distortion_by_hand():
    results = _results()
    identity = PhotoMetricDistortion(brightness_delta=0, contrast_range=(1, 1), saturation_range=(1, 1),
                                     hue_delta=0, seed=0)
    assert np.array_equal(identity(dict(results))["img"], results["img"])

    class Always:  # every step on, contrast first, fixed draws
        def random(self):
            return 0.0

        def integers(self, n):
            return 1

        def uniform(self, low, high):
            return high

    distortion = PhotoMetricDistortion(brightness_delta=10, contrast_range=(1.0, 2.0), saturation_range=(1, 1),
                                       hue_delta=0)
    distortion._rng, distortion._rng_pid = Always(), __import__("os").getpid()
    grey = {"img": np.full((2, 2, 3), 50, np.uint8), "gt_seg": np.zeros((2, 2), np.uint8)}
    assert (distortion(grey)["img"] == 120).all()  # (50 + 10) x 2; saturation 1 and hue 0 keep grey
    bright = {"img": np.full((1, 1, 3), 200, np.uint8)}
    assert (distortion(bright)["img"] == 255).all()  # clipped
