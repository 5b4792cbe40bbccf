"""COCO-format 2D detection data: the instances JSON (``images``, ``annotations``, ``categories``; ``bbox``
as [x, y, w, h] pixels), the DETR training augmentation and padded batching.

Label convention, shared with the COCO metric (perception/evaluation/coco.py): label ``i`` is the i-th
category id in ascending order (the synthetic sets' ids 1..10 are the 10 detection classes of
perception/structures/classes.py, so label = id - 1 there).

Augmentation (DETR / DINO, ``train=True``): horizontal flip (p 0.5); then with p 0.5 a multi-scale resize
of the short side to one of ``scales`` (long side at most ``max_size``), otherwise a resize to one of
``crop_scales``, a random crop of ``crop_size`` (each side drawn in [min, max]) and the multi-scale
resize. Evaluation resizes the short side to ``test_scale``. Boxes follow every step; boxes left empty by a
crop are dropped, and crowd boxes are not training targets.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from mmengine.registry import FUNCTIONS
from PIL import Image
from torch import Tensor

from perception.engine.registry import DATASETS
from perception.structures.boxes2d import box_area, box_xywh_to_xyxy, clip_boxes, flip_boxes_horizontal

__all__ = ["CocoDetection", "CocoFormatError", "category_ids", "coco_collate", "detr_resized_shape",
           "load_instances"]

IMAGENET_MEAN = (123.675, 116.28, 103.53)
IMAGENET_STD = (58.395, 57.12, 57.375)
DETR_SCALES = tuple(range(480, 801, 32))


class CocoFormatError(ValueError):
    """A COCO instances file or its images do not match the format; the message names the file."""


def load_instances(path: str | Path) -> dict[str, Any]:
    """Read and check a COCO instances JSON: the three lists, every annotation with an image and category
    that exist and a 4-number ``bbox``."""
    path = Path(path)
    if not path.is_file():
        raise CocoFormatError(f"{path}: annotation file not found")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise CocoFormatError(f"{path}: not valid JSON ({err})") from err
    if not isinstance(data, dict):
        raise CocoFormatError(f"{path}: expected a JSON object with images, annotations and categories")
    for key in ("images", "annotations", "categories"):
        if not isinstance(data.get(key), list):
            raise CocoFormatError(f"{path}: missing or non-list '{key}'")
    try:
        image_ids = {int(image["id"]) for image in data["images"]}
        cat_ids = {int(cat["id"]) for cat in data["categories"]}
        for image in data["images"]:
            image["file_name"], image["width"], image["height"]  # noqa: B018  (presence check)
    except (KeyError, TypeError, ValueError) as err:
        raise CocoFormatError(f"{path}: every image needs id, file_name, width, height and every category an "
                              f"id ({err!r})") from err
    for i, ann in enumerate(data["annotations"]):
        bbox = ann.get("bbox") if isinstance(ann, dict) else None
        if not isinstance(bbox, list) or len(bbox) != 4:
            raise CocoFormatError(f"{path}: annotation {i} needs a bbox [x, y, w, h], got {bbox!r}")
        if ann.get("image_id") not in image_ids:
            raise CocoFormatError(f"{path}: annotation {i} refers to unknown image_id {ann.get('image_id')!r}")
        if ann.get("category_id") not in cat_ids:
            raise CocoFormatError(f"{path}: annotation {i} refers to unknown category_id {ann.get('category_id')!r}")
    return data


def category_ids(instances: dict[str, Any]) -> list[int]:
    """The category ids in label order (ascending)."""
    return sorted(int(cat["id"]) for cat in instances["categories"])


def detr_resized_shape(height: int, width: int, short: int, max_size: int | None) -> tuple[int, int]:
    """(h, w) with the short side ``short``, scaled down further if the long side would exceed ``max_size``."""
    scale = short / min(height, width)
    if max_size is not None and max(height, width) * scale > max_size:
        scale = max_size / max(height, width)
    return max(1, round(height * scale)), max(1, round(width * scale))


@DATASETS.register_module()
class CocoDetection(torch.utils.data.Dataset):
    """A COCO-format detection set: ``ann_file`` (instances JSON) and ``img_dir`` (the ``file_name`` root).

    Each item is ``{"inputs": (3, h, w) normalised float tensor, "data_samples": {image_id, file_name,
    ori_shape, img_shape, scale_factor (sx, sy), boxes (N, 4) xyxy pixels of the augmented image,
    labels (N,)}}``; batch with :func:`coco_collate`.
    """

    def __init__(self, ann_file: str, img_dir: str, train: bool = False, scales: Sequence[int] = DETR_SCALES,
                 max_size: int | None = 1333, crop_scales: Sequence[int] = (400, 500, 600),
                 crop_size: tuple[int, int] = (384, 600), test_scale: int = 800, flip_prob: float = 0.5,
                 crop_prob: float = 0.5, filter_empty: bool = False, test_mode: bool = False,
                 mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD,
                 indices: Sequence[int] | None = None) -> None:
        self.ann_file, self.img_dir = Path(ann_file), Path(img_dir)
        self.train = train and not test_mode
        self.scales, self.max_size, self.crop_scales = list(scales), max_size, list(crop_scales)
        self.crop_size, self.test_scale = crop_size, test_scale
        self.flip_prob, self.crop_prob = flip_prob, crop_prob
        self.mean = torch.tensor(mean, dtype=torch.float32)[:, None, None]
        self.std = torch.tensor(std, dtype=torch.float32)[:, None, None]
        self.instances = load_instances(self.ann_file)
        self.cat_ids = category_ids(self.instances)
        self.label_of = {cat: i for i, cat in enumerate(self.cat_ids)}
        names = {int(c["id"]): c.get("name", str(c["id"])) for c in self.instances["categories"]}
        self.metainfo = {"classes": tuple(names[c] for c in self.cat_ids), "category_ids": tuple(self.cat_ids)}
        self.annotations: dict[int, list[dict]] = {int(im["id"]): [] for im in self.instances["images"]}
        for ann in self.instances["annotations"]:
            self.annotations[int(ann["image_id"])].append(ann)
        images = sorted(self.instances["images"], key=lambda im: int(im["id"]))
        if filter_empty:
            images = [im for im in images if self.annotations[int(im["id"])]]
        if indices is not None:
            images = [images[i] for i in indices]
        self.images = images

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> dict[str, Any]:
        info = self.images[index]
        image = self._load_image(info)
        boxes, labels = self._targets(int(info["id"]))
        ori_w, ori_h = image.size
        if self.train:
            image, boxes, labels = self._augment(image, boxes, labels)
        else:
            image, boxes = _resize(image, boxes, detr_resized_shape(ori_h, ori_w, self.test_scale, self.max_size))
        width, height = image.size
        pixels = torch.from_numpy(np.asarray(image, dtype=np.float32).copy()).permute(2, 0, 1)
        sample = {"image_id": int(info["id"]), "file_name": info["file_name"], "ori_shape": (ori_h, ori_w),
                  "img_shape": (height, width), "scale_factor": (width / ori_w, height / ori_h),
                  "boxes": boxes, "labels": labels}
        return {"inputs": (pixels - self.mean) / self.std, "data_samples": sample}

    def _load_image(self, info: dict) -> Image.Image:
        path = self.img_dir / info["file_name"]
        if not path.is_file():
            raise CocoFormatError(f"{self.ann_file}: image {info['file_name']!r} (id {info['id']}) not found at "
                                  f"{path}")
        with Image.open(path) as image:
            return image.convert("RGB")

    def _targets(self, image_id: int) -> tuple[Tensor, Tensor]:
        """Non-crowd boxes (N, 4) xyxy with positive size, and their labels."""
        anns = [a for a in self.annotations[image_id]
                if not a.get("iscrowd", 0) and a["bbox"][2] > 0 and a["bbox"][3] > 0]
        boxes = box_xywh_to_xyxy(torch.tensor([a["bbox"] for a in anns], dtype=torch.float32).reshape(-1, 4))
        labels = torch.tensor([self.label_of[int(a["category_id"])] for a in anns], dtype=torch.long)
        return boxes, labels

    def _augment(self, image: Image.Image, boxes: Tensor, labels: Tensor) -> tuple[Image.Image, Tensor, Tensor]:
        if random.random() < self.flip_prob:
            image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
            boxes = flip_boxes_horizontal(boxes, image.size[0])
        if random.random() < self.crop_prob:
            w, h = image.size
            image, boxes = _resize(image, boxes, detr_resized_shape(h, w, random.choice(self.crop_scales), None))
            image, boxes, labels = _random_crop(image, boxes, labels, self.crop_size)
        w, h = image.size
        image, boxes = _resize(image, boxes, detr_resized_shape(h, w, random.choice(self.scales), self.max_size))
        return image, boxes, labels


def _resize(image: Image.Image, boxes: Tensor, shape: tuple[int, int]) -> tuple[Image.Image, Tensor]:
    height, width = shape
    sx, sy = width / image.size[0], height / image.size[1]
    return image.resize((width, height), Image.Resampling.BILINEAR), boxes * boxes.new_tensor([sx, sy, sx, sy])


def _random_crop(image: Image.Image, boxes: Tensor, labels: Tensor, size_range: tuple[int, int]
                 ) -> tuple[Image.Image, Tensor, Tensor]:
    """A crop whose sides are drawn in [min, max] (at most the image's), boxes clipped, empty ones dropped."""
    w, h = image.size
    low, high = size_range
    crop_w = random.randint(min(low, w), min(high, w))
    crop_h = random.randint(min(low, h), min(high, h))
    top, left = random.randint(0, h - crop_h), random.randint(0, w - crop_w)
    image = image.crop((left, top, left + crop_w, top + crop_h))
    boxes = clip_boxes(boxes - boxes.new_tensor([left, top, left, top]), (crop_h, crop_w))
    keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1]) & (box_area(boxes) > 0)
    return image, boxes[keep], labels[keep]


@FUNCTIONS.register_module(name="coco_collate")
def coco_collate(batch: list[dict]) -> dict[str, Any]:
    """Stack the images zero-padded bottom/right to the batch's largest (H, W); ``data_samples`` stays a list
    (each keeps its ``img_shape``, from which the model rebuilds the padding mask)."""
    height = max(int(item["inputs"].shape[-2]) for item in batch)
    width = max(int(item["inputs"].shape[-1]) for item in batch)
    inputs = torch.stack([F.pad(item["inputs"], (0, width - item["inputs"].shape[-1],
                                                 0, height - item["inputs"].shape[-2])) for item in batch])
    return {"inputs": inputs, "data_samples": [item["data_samples"] for item in batch]}
