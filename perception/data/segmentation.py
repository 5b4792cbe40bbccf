"""ADE20K-format semantic segmentation data and its augmentation (docs/pretraining_2d.md, "Segmentation").

Layout: ``data_root/images/<split>/<name>.{jpg,png}`` with ``data_root/annotations/<split>/<name>.png``
(uint8 label maps, same stem), split ``training`` or ``validation``. With ``reduce_zero_label`` label 0
("other") becomes 255 (ignored) and every other label moves down by one, as mmseg does for ADE20K.

Transforms work on ``results`` dicts holding ``img`` (H, W, 3) uint8 RGB and ``gt_seg`` (H, W) uint8;
:class:`PackSegInputs` turns them into ``{'inputs': uint8 (3, H, W) tensor, 'data_samples': dict}`` and
:func:`seg_collate` batches those as lists (the model's preprocessor normalises and pads).
The training pipeline of the UperNet recipe is: load, random resize (ratio 0.5-2.0 of a base scale),
random crop (``cat_max_ratio`` 0.75), flip, photometric distortion, pack.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from mmengine.registry import FUNCTIONS
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset

from perception.engine.registry import DATASETS, TRANSFORMS

from .classification.transforms import Compose
from .transforms_bev import RandomTransform, color_matrix

__all__ = [
    "ADE20KDataset",
    "IGNORE_INDEX",
    "LoadSegAnnotations",
    "LoadSegImage",
    "PackSegInputs",
    "PhotoMetricDistortion",
    "ResizeToMultiple",
    "SegRandomCrop",
    "SegRandomFlip",
    "SegRandomResize",
    "SegResize",
    "SegmentationDataError",
    "read_label_map",
    "reduce_zero_label",
    "seg_collate",
]

IGNORE_INDEX = 255
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
SPLITS = ("training", "validation")


class SegmentationDataError(RuntimeError):
    """A segmentation file is missing, unreadable or inconsistent (the message names the file)."""


def reduce_zero_label(labels: np.ndarray) -> np.ndarray:
    """0 -> 255 (ignore), k -> k - 1 for k in 1..254; 255 stays ignored."""
    out = labels.astype(np.int16) - 1
    out[(labels == 0) | (labels == IGNORE_INDEX)] = IGNORE_INDEX
    return out.astype(np.uint8)


def read_label_map(path: str | Path) -> np.ndarray:
    """(H, W) uint8 labels of a PNG label map; a missing, unreadable or colour file raises
    :class:`SegmentationDataError` naming it."""
    try:
        with Image.open(path) as img:
            if img.mode not in ("L", "P", "I", "I;16"):
                raise SegmentationDataError(f"{path}: label maps must be single-channel PNGs, got mode {img.mode}")
            labels = np.asarray(img)
    except (FileNotFoundError, UnidentifiedImageError, OSError) as err:
        raise SegmentationDataError(f"cannot read label map {path}: {err}") from err
    if labels.max(initial=0) > 255:
        raise SegmentationDataError(f"{path}: labels above 255 do not fit a uint8 label map")
    return labels.astype(np.uint8)


def _class_names(classes: Sequence[str] | str | None) -> tuple[str, ...] | None:
    if not isinstance(classes, str):
        return tuple(classes) if classes is not None else None
    from perception.structures import classes as class_lists

    names = getattr(class_lists, classes, None)
    if not isinstance(names, tuple):
        raise ValueError(f"ADE20KDataset: classes {classes!r} is not a class list of perception.structures.classes")
    return names


@DATASETS.register_module()
class ADE20KDataset(Dataset):
    """ADE20K-format segmentation set (module docstring for the layout).

    Args:
        data_root: folder holding ``images/`` and ``annotations/``.
        split: ``'training'`` or ``'validation'`` (subfolder of both).
        pipeline: transform configs (``LoadSegImage``, ``LoadSegAnnotations``, ... ``PackSegInputs``).
        reduce_zero_label: map label 0 to ignore and shift the others down (ADE20K's 150 classes).
        classes: class names, index = label after the reduction (metainfo for metrics and pictures), or
            the name of a list in :mod:`perception.structures.classes` (``'SEGMENTATION_2D_CLASSES'``).
        test_mode: accepted for mmengine configs (no effect; evaluation reads the same files).
    Every image must have its annotation: a missing one raises :class:`SegmentationDataError` here.
    """

    def __init__(self, data_root: str, split: str = "training", pipeline: Sequence[dict] = (),
                 reduce_zero_label: bool = True, classes: Sequence[str] | None = None, test_mode: bool = False) -> None:
        if split not in SPLITS:
            raise ValueError(f"ADE20KDataset: split must be one of {SPLITS}, got {split!r}")
        self.data_root, self.split = Path(data_root), split
        self.reduce_zero_label = reduce_zero_label
        self.classes = _class_names(classes)
        self.test_mode = test_mode
        self.samples = self._scan()
        self.pipeline = Compose(pipeline)

    def _scan(self) -> list[tuple[Path, Path]]:
        image_dir, ann_dir = self.data_root / "images" / self.split, self.data_root / "annotations" / self.split
        for folder in (image_dir, ann_dir):
            if not folder.is_dir():
                raise SegmentationDataError(f"ADE20KDataset: {folder} is not a folder (expected the ADE20K layout "
                                            "images/{training,validation}, annotations/{training,validation})")
        images = sorted(p for p in image_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not images:
            raise SegmentationDataError(f"ADE20KDataset: no {'/'.join(IMAGE_SUFFIXES)} images in {image_dir}")
        samples = [(img, ann_dir / f"{img.stem}.png") for img in images]
        missing = [str(ann) for _, ann in samples if not ann.is_file()]
        if missing:
            raise SegmentationDataError(f"ADE20KDataset: {len(missing)} image(s) of {image_dir} have no annotation, "
                                        f"e.g. {missing[0]}")
        return samples

    @property
    def metainfo(self) -> dict[str, Any]:
        return {"classes": self.classes, "reduce_zero_label": self.reduce_zero_label}

    def __len__(self) -> int:
        return len(self.samples)

    def get_data_info(self, index: int) -> dict[str, Any]:
        img_path, seg_path = self.samples[index]
        return {"img_path": str(img_path), "seg_path": str(seg_path), "reduce_zero_label": self.reduce_zero_label,
                "sample_idx": index}

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.pipeline(self.get_data_info(index))


@FUNCTIONS.register_module(name="seg_collate")
def seg_collate(batch: Sequence[dict]) -> dict[str, list]:
    """``{'inputs': [uint8 (3, H, W)], 'data_samples': [dict]}``: images may differ in size, so they stay a
    list until the model's preprocessor pads them."""
    return {"inputs": [s["inputs"] for s in batch], "data_samples": [s["data_samples"] for s in batch]}


@TRANSFORMS.register_module()
class LoadSegImage:
    """Decode ``img_path`` into ``img`` (H, W, 3) uint8 RGB; records ``ori_shape`` (H, W)."""

    def __call__(self, results: dict) -> dict:
        path = results["img_path"]
        try:
            with Image.open(path) as img:
                results["img"] = np.asarray(img.convert("RGB"))
        except (FileNotFoundError, UnidentifiedImageError, OSError) as err:
            raise SegmentationDataError(f"cannot read image {path}: {err}") from err
        results["ori_shape"] = results["img"].shape[:2]
        return results


@TRANSFORMS.register_module()
class LoadSegAnnotations:
    """Read ``seg_path`` into ``gt_seg`` (H, W) uint8, reduced when ``results['reduce_zero_label']``. Put it
    after the test-time resize so the labels stay at the original size the metric scores."""

    def __call__(self, results: dict) -> dict:
        labels = read_label_map(results["seg_path"])
        if labels.shape != tuple(results["ori_shape"]):
            raise SegmentationDataError(f"{results['seg_path']}: label map {labels.shape} does not match its image "
                                        f"{tuple(results['ori_shape'])} ({results['img_path']})")
        results["gt_seg"] = reduce_zero_label(labels) if results.get("reduce_zero_label") else labels
        return results


def _resize(results: dict, size_wh: tuple[int, int]) -> dict:
    """Image bilinear, labels nearest (labels are classes, never blended)."""
    if tuple(results["img"].shape[1::-1]) == size_wh:
        return results
    results["img"] = np.asarray(Image.fromarray(results["img"]).resize(size_wh, Image.BILINEAR))
    if "gt_seg" in results:
        results["gt_seg"] = np.asarray(Image.fromarray(results["gt_seg"]).resize(size_wh, Image.NEAREST))
    return results


def rescale_size(height: int, width: int, scale: Sequence[float]) -> tuple[int, int]:
    """(w, h) keeping the aspect ratio, as large as fits ``scale`` = (long edge, short edge) limits."""
    long_limit, short_limit = max(scale), min(scale)
    factor = min(long_limit / max(height, width), short_limit / min(height, width))
    return max(1, int(width * factor + 0.5)), max(1, int(height * factor + 0.5))


@TRANSFORMS.register_module()
class SegResize:
    """Keep-ratio resize to fit ``scale`` (long, short edge limits), e.g. the test scale (2048, 512)."""

    def __init__(self, scale: Sequence[int]) -> None:
        self.scale = tuple(scale)

    def __call__(self, results: dict) -> dict:
        return _resize(results, rescale_size(*results["img"].shape[:2], self.scale))


@TRANSFORMS.register_module()
class SegRandomResize(RandomTransform):
    """Keep-ratio resize to ``scale`` times a ratio drawn uniformly from ``ratio_range`` (0.5-2.0)."""

    def __init__(self, scale: Sequence[int], ratio_range: Sequence[float] = (0.5, 2.0),
                 seed: int | None = None) -> None:
        self.scale, self.ratio_range, self.seed = tuple(scale), tuple(ratio_range), seed

    def __call__(self, results: dict) -> dict:
        ratio = float(self.rng.uniform(*self.ratio_range))
        scale = (self.scale[0] * ratio, self.scale[1] * ratio)
        return _resize(results, rescale_size(*results["img"].shape[:2], scale))


@TRANSFORMS.register_module()
class ResizeToMultiple:
    """Resize so both sides are multiples of ``size_divisor`` (rounded up; the official test pipeline)."""

    def __init__(self, size_divisor: int = 32) -> None:
        self.size_divisor = size_divisor

    def __call__(self, results: dict) -> dict:
        h, w = results["img"].shape[:2]
        d = self.size_divisor
        return _resize(results, (-(-w // d) * d, -(-h // d) * d))


@TRANSFORMS.register_module()
class SegRandomCrop(RandomTransform):
    """Random ``crop_size`` (h, w) window (the whole side where the image is smaller). With
    ``cat_max_ratio`` < 1 up to 10 windows are drawn until one has more than one labelled class and no
    class above that share of its labelled pixels (mmseg's rule; the last draw is kept otherwise)."""

    def __init__(self, crop_size: Sequence[int], cat_max_ratio: float = 1.0, ignore_index: int = IGNORE_INDEX,
                 seed: int | None = None) -> None:
        self.crop_size, self.cat_max_ratio = tuple(crop_size), cat_max_ratio
        self.ignore_index, self.seed = ignore_index, seed

    def _window(self, height: int, width: int) -> tuple[int, int, int, int]:
        y0 = int(self.rng.integers(0, max(height - self.crop_size[0], 0) + 1))
        x0 = int(self.rng.integers(0, max(width - self.crop_size[1], 0) + 1))
        return y0, x0, min(y0 + self.crop_size[0], height), min(x0 + self.crop_size[1], width)

    def _balanced(self, labels: np.ndarray) -> bool:
        counts = np.bincount(labels.ravel(), minlength=256)
        counts[self.ignore_index] = 0
        counts = counts[counts > 0]
        return len(counts) > 1 and counts.max() / counts.sum() < self.cat_max_ratio

    def __call__(self, results: dict) -> dict:
        height, width = results["img"].shape[:2]
        window = self._window(height, width)
        if self.cat_max_ratio < 1.0 and "gt_seg" in results:
            for _ in range(9):
                y0, x0, y1, x1 = window
                if self._balanced(results["gt_seg"][y0:y1, x0:x1]):
                    break
                window = self._window(height, width)
        y0, x0, y1, x1 = window
        results["img"] = results["img"][y0:y1, x0:x1]
        if "gt_seg" in results:
            results["gt_seg"] = results["gt_seg"][y0:y1, x0:x1]
        return results


@TRANSFORMS.register_module()
class SegRandomFlip(RandomTransform):
    """Horizontal flip of image and labels with probability ``prob``."""

    def __init__(self, prob: float = 0.5, seed: int | None = None) -> None:
        self.prob, self.seed = prob, seed

    def __call__(self, results: dict) -> dict:
        flip = bool(self.rng.random() < self.prob)
        results["flip"] = flip
        if flip:
            results["img"] = results["img"][:, ::-1]
            if "gt_seg" in results:
                results["gt_seg"] = results["gt_seg"][:, ::-1]
        return results


@TRANSFORMS.register_module()
class PhotoMetricDistortion(RandomTransform):
    """mmseg's photometric distortion, each step with probability 0.5: brightness + delta (uniform in
    +-``brightness_delta``), contrast x alpha (``contrast_range``), saturation x alpha
    (``saturation_range``), hue shift (+-``hue_delta`` on OpenCV's 0-180 hue scale); contrast comes
    first or last at random. All steps are affine in RGB, so they are composed into one matrix and the
    image is clipped once. Saturation and hue use the luma-blend and grey-axis rotation of
    :func:`perception.data.transforms_bev.color_matrix`, an RGB-space equivalent of the HSV steps."""

    def __init__(self, brightness_delta: float = 32, contrast_range: Sequence[float] = (0.5, 1.5),
                 saturation_range: Sequence[float] = (0.5, 1.5), hue_delta: float = 18,
                 seed: int | None = None) -> None:
        self.brightness_delta, self.hue_delta = brightness_delta, hue_delta
        self.contrast_range, self.saturation_range = tuple(contrast_range), tuple(saturation_range)
        self.seed = seed

    def _maybe(self, low: float, high: float) -> float | None:
        return float(self.rng.uniform(low, high)) if self.rng.random() < 0.5 else None

    def matrix(self) -> np.ndarray:
        """A 4x4 affine RGB matrix drawn in mmseg's order (brightness, contrast?, saturation, hue, contrast?)."""
        steps = []
        delta = self._maybe(-self.brightness_delta, self.brightness_delta)
        if delta is not None:
            step = np.eye(4)
            step[:3, 3] = delta
            steps.append(step)
        contrast_first = bool(self.rng.integers(2))
        contrast = self._maybe(*self.contrast_range)
        if contrast_first and contrast is not None:
            steps.append(np.diag([contrast] * 3 + [1.0]))
        saturation = self._maybe(*self.saturation_range)
        hue = self._maybe(-self.hue_delta, self.hue_delta)
        if saturation is not None or hue is not None:
            steps.append(color_matrix(None, None, saturation, None if hue is None else hue / 180.0))
        if not contrast_first and contrast is not None:
            steps.append(np.diag([contrast] * 3 + [1.0]))
        matrix = np.eye(4)
        for step in steps:
            matrix = step @ matrix
        return matrix

    def __call__(self, results: dict) -> dict:
        matrix = self.matrix()
        if not np.allclose(matrix, np.eye(4)):
            rgb = results["img"].astype(np.float32) @ matrix[:3, :3].T.astype(np.float32) + matrix[:3, 3]
            results["img"] = np.clip(np.rint(rgb), 0, 255).astype(np.uint8)
        return results


@TRANSFORMS.register_module()
class PackSegInputs:
    """``{'inputs': uint8 (3, H, W), 'data_samples': {gt_seg (H, W) int64 if loaded, img_path, seg_path,
    ori_shape, flip}}``."""

    META_KEYS = ("img_path", "seg_path", "ori_shape", "flip", "sample_idx")

    def __call__(self, results: dict) -> dict[str, Any]:
        img = np.ascontiguousarray(results["img"].transpose(2, 0, 1))
        sample = {k: results[k] for k in self.META_KEYS if k in results}
        if "gt_seg" in results:
            sample["gt_seg"] = torch.from_numpy(np.ascontiguousarray(results["gt_seg"])).long()
        return {"inputs": torch.from_numpy(img), "data_samples": sample}
