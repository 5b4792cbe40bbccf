"""3D boxes (``gt_boxes`` (N, 9) in the key frame's ego frame, ``gt_labels`` (N,)) and per-camera 2D boxes."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch

from perception.structures.boxes import affine_transform_boxes
from perception.structures.classes import DETECTION_CLASSES

from .base import LABEL_TYPES, CameraImageTransform, LabelLoadError, LabelType


class BoxLoadError(LabelLoadError):
    """Box labels of a sample are missing or inconsistent."""


@LABEL_TYPES.register_module(name="boxes")
class Boxes3D(LabelType):
    """``gt_boxes`` (N, 9) ``(x, y, z, w, l, h, yaw, vx, vy)`` and ``gt_labels`` (N,) int64 from the info's
    ``gt_boxes`` / ``gt_names`` / ``valid_flag``: boxes of a class in ``classes`` and, with
    ``filter_invalid``, with LiDAR or radar points. ``classes``/``filter_invalid`` default to the
    dataset's. A sample without boxes in its info (a test split) gets none."""

    keys = ("gt_boxes", "gt_labels")

    def __init__(self, classes: Sequence[str] | None = None, filter_invalid: bool | None = None) -> None:
        self.classes = None if classes is None else tuple(classes)
        self.filter_invalid = filter_invalid

    def setup(self, dataset) -> None:
        if self.classes is None:
            self.classes = tuple(dataset.classes)
        if self.filter_invalid is None:
            self.filter_invalid = bool(dataset.filter_invalid)

    def load(self, results: dict, info: dict, data_root: str) -> None:
        if "gt_boxes" not in info:
            return
        classes = self.classes or DETECTION_CLASSES
        names = np.asarray(info["gt_names"])
        keep = np.isin(names, classes)
        if self.filter_invalid is not False:
            keep &= np.asarray(info["valid_flag"], dtype=bool)
        results["gt_boxes"] = np.asarray(info["gt_boxes"], dtype=np.float64)[keep].reshape(-1, 9)
        results["gt_labels"] = np.array([classes.index(n) for n in names[keep]], dtype=np.int64)

    def bev_transform(self, results: dict, mat: np.ndarray) -> None:
        results["gt_boxes"] = affine_transform_boxes(results["gt_boxes"], mat)

    def pack(self, results: dict, sample: dict) -> None:
        sample["gt_boxes"] = torch.as_tensor(results["gt_boxes"], dtype=torch.float32).reshape(-1, 9)
        sample["gt_labels"] = torch.as_tensor(results["gt_labels"], dtype=torch.int64)


@LABEL_TYPES.register_module(name="boxes_2d")
class Boxes2D(LabelType):
    """Per-camera 2D boxes annotated in the images (not projected 3D boxes: the perspective head projects
    those itself): ``gt_boxes_2d`` (Ncam lists of (K, 4) ``x1, y1, x2, y2`` pixels of that camera's
    image) and ``gt_labels_2d`` (Ncam lists of (K,) int64), in rig order. Loaded from each camera entry's
    ``gt_boxes_2d`` / ``gt_labels_2d`` in the info (native pixels); a camera without them has no boxes.
    They follow each camera's image transform; boxes cropped away are dropped. Collated as per-sample
    lists."""

    keys = ("gt_boxes_2d", "gt_labels_2d")

    def load(self, results: dict, info: dict, data_root: str) -> None:
        cams = [info["cams"][c] for c in results["cameras"]]
        if not any("gt_boxes_2d" in c for c in cams):
            raise BoxLoadError(f"sample {results['sample_token']} has no 2D box labels (no camera has gt_boxes_2d)")
        boxes, labels = [], []
        for name, cam in zip(results["cameras"], cams):
            b = np.asarray(cam.get("gt_boxes_2d", np.zeros((0, 4))), dtype=np.float64).reshape(-1, 4)
            lab = np.asarray(cam.get("gt_labels_2d", np.zeros(0)), dtype=np.int64).reshape(-1)
            if len(b) != len(lab):
                raise BoxLoadError(
                    f"sample {results['sample_token']} camera {name} has {len(b)} 2D boxes but {len(lab)} labels"
                )
            boxes.append(b)
            labels.append(lab)
        results["gt_boxes_2d"], results["gt_labels_2d"] = boxes, labels

    def image_transform(self, results: dict, transforms: Mapping[str, CameraImageTransform]) -> None:
        names = results.get("cameras") or list(transforms)
        for c, name in enumerate(names):
            boxes = transforms[name].boxes(results["gt_boxes_2d"][c])
            keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
            results["gt_boxes_2d"][c] = boxes[keep]
            results["gt_labels_2d"][c] = np.asarray(results["gt_labels_2d"][c])[keep]

    def pack(self, results: dict, sample: dict) -> None:
        sample["gt_boxes_2d"] = [torch.as_tensor(b, dtype=torch.float32).reshape(-1, 4) for b in results["gt_boxes_2d"]]
        sample["gt_labels_2d"] = [torch.as_tensor(lab, dtype=torch.int64) for lab in results["gt_labels_2d"]]
