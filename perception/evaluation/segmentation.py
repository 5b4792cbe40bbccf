"""Semantic-segmentation mIoU with mmseg's definition (docs/pretraining_2d.md, "Segmentation evaluation").

Per class, the intersection (pixels where prediction and GT agree on it), the predicted area and the GT
area are summed over every image of the split, on the pixels whose GT is not ``ignore_index``. Then
IoU = I / (P + G - I) per class, NaN for a class that appears in neither; mIoU is the mean over the
classes that are not NaN; aAcc = sum of I / sum of G. All reported in percent.

Label-map files (:func:`evaluate_label_map_folders`, ``tools/evaluate.py segmentation``) are PNGs in the
annotation files' label space: with ``reduce_zero_label`` both GT and prediction files hold ADE20K's
1..150 (0 = other, ignored in GT, never a class in predictions), as in the ADE20K benchmark's submission
format; :func:`save_label_map` writes model predictions that way.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from mmengine.evaluator import BaseMetric
from mmengine.logging import MMLogger
from PIL import Image

from perception.data.segmentation import IGNORE_INDEX, SegmentationDataError, read_label_map, reduce_zero_label
from perception.engine.registry import METRICS

__all__ = [
    "SegmentationAreas",
    "SegmentationEvaluationError",
    "SegmentationMetric",
    "evaluate_label_map_folders",
    "format_segmentation_table",
    "intersect_and_union",
    "save_label_map",
    "segmentation_scores",
]


class SegmentationEvaluationError(ValueError):
    """Predictions and ground truth do not fit together (the message names the file and the problem)."""


def _numpy(x) -> np.ndarray:
    return x.detach().cpu().numpy() if hasattr(x, "detach") else np.asarray(x)


def intersect_and_union(pred, gt, num_classes: int, ignore_index: int = IGNORE_INDEX, name: str = "image"
                        ) -> np.ndarray:
    """(4, C) int64 areas of one image: intersection, union, predicted area and GT area per class.

    Pixels whose GT is ``ignore_index`` are left out; a predicted label outside 0..C-1 belongs to no
    class (it only adds to its GT class's union). A GT label outside 0..C-1 that is not
    ``ignore_index`` is an error naming ``name`` (usually a wrong ``num_classes``)."""
    pred, gt = _numpy(pred).astype(np.int64), _numpy(gt).astype(np.int64)
    if pred.shape != gt.shape:
        raise SegmentationEvaluationError(f"{name}: prediction shape {pred.shape} != ground-truth shape {gt.shape}")
    valid = gt != ignore_index
    bad = valid & ((gt < 0) | (gt >= num_classes))
    if bad.any():
        raise SegmentationEvaluationError(f"{name}: ground truth holds label {int(gt[bad][0])}, outside 0.."
                                          f"{num_classes - 1} and not the ignore index {ignore_index}")
    gt, pred = gt[valid], pred[valid]
    in_range = (pred >= 0) & (pred < num_classes)
    intersect = np.bincount(gt[pred == gt], minlength=num_classes)
    area_pred = np.bincount(pred[in_range], minlength=num_classes)
    area_gt = np.bincount(gt, minlength=num_classes)
    return np.stack([intersect, area_pred + area_gt - intersect, area_pred, area_gt])


class SegmentationAreas:
    """Areas pooled over a split: ``add`` each image, ``compute`` once."""

    def __init__(self, num_classes: int, class_names: Sequence[str] | None = None,
                 ignore_index: int = IGNORE_INDEX) -> None:
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        if class_names is not None and len(class_names) != num_classes:
            raise ValueError(f"{len(class_names)} class names for {num_classes} classes")
        self.num_classes, self.class_names, self.ignore_index = num_classes, class_names, ignore_index
        self.areas = np.zeros((4, num_classes), dtype=np.int64)
        self.images = 0

    def add(self, pred, gt, name: str = "image") -> np.ndarray:
        areas = intersect_and_union(pred, gt, self.num_classes, self.ignore_index, name)
        self.add_areas(areas)
        return areas

    def add_areas(self, areas: np.ndarray) -> None:
        self.areas += areas
        self.images += 1

    def compute(self) -> dict[str, Any]:
        return segmentation_scores(self.areas, self.class_names)


def segmentation_scores(areas: np.ndarray, class_names: Sequence[str] | None = None) -> dict[str, Any]:
    """Pooled (4, C) areas -> ``{'mIoU', 'aAcc', 'per_class_IoU': {name: IoU}}`` in percent (NaN for a
    class in neither prediction nor GT; mIoU is NaN only when every class is)."""
    intersect, union, _, area_gt = np.asarray(areas, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = 100.0 * intersect / union
        aacc = 100.0 * intersect.sum() / area_gt.sum() if area_gt.sum() else float("nan")
    names = list(class_names) if class_names is not None else [str(i) for i in range(len(iou))]
    miou = float(np.nanmean(iou)) if not np.isnan(iou).all() else float("nan")
    return {"mIoU": miou, "aAcc": float(aacc), "per_class_IoU": {n: float(v) for n, v in zip(names, iou)}}


def format_segmentation_table(result: dict[str, Any]) -> str:
    """The per-class IoU table followed by mIoU and aAcc, in percent."""
    per_class = result["per_class_IoU"]
    width = max([len(n) for n in per_class] + [5])
    lines = [f"{'class':<{width}}  IoU"]
    lines += [f"{name:<{width}}  {value:6.2f}" for name, value in per_class.items()]
    lines += [f"{'mIoU':<{width}}  {result['mIoU']:6.2f}", f"{'aAcc':<{width}}  {result['aAcc']:6.2f}"]
    return "\n".join(lines)


@METRICS.register_module()
class SegmentationMetric(BaseMetric):
    """mIoU, aAcc and per-class IoU (``IoU/<class>``) of the predictions of
    :class:`perception.models.segmentation.EncoderDecoderSegmentor` (``pred_seg`` and ``gt_seg`` per image),
    pooled over the split.

    Args:
        num_classes: classes (default: the length of the dataset's ``classes``).
        class_names: names for the per-class keys (default: the dataset's ``classes``, else indices).
        ignore_index: GT label that is not scored.
        out_dir: also write each prediction as ``<image stem>.png`` there, in the annotation files' label
            space (:func:`save_label_map`, the dataset's ``reduce_zero_label``), for
            ``tools/evaluate.py segmentation``.
    """

    default_prefix = "segmentation"

    def __init__(self, num_classes: int | None = None, class_names: Sequence[str] | None = None,
                 ignore_index: int = IGNORE_INDEX, out_dir: str | None = None, collect_device: str = "cpu",
                 prefix: str | None = None) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix)
        self.num_classes, self.class_names, self.ignore_index = num_classes, class_names, ignore_index
        self.out_dir = Path(out_dir) if out_dir is not None else None

    def _classes(self) -> tuple[int, Sequence[str] | None]:
        names = self.class_names or (self.dataset_meta or {}).get("classes")
        num_classes = self.num_classes or (len(names) if names else None)
        if not num_classes:
            raise ValueError("SegmentationMetric: set num_classes (the dataset declares no classes)")
        return num_classes, names if names and len(names) == num_classes else None

    def process(self, data_batch: Any, data_samples: Sequence[dict]) -> None:
        num_classes, _ = self._classes()
        for sample in data_samples:
            if "gt_seg" not in sample:
                raise ValueError("SegmentationMetric: predictions carry no gt_seg (load annotations in the val "
                                 "pipeline)")
            name = str(sample.get("img_path", "image"))
            if self.out_dir is not None:
                reduce = bool((self.dataset_meta or {}).get("reduce_zero_label"))
                save_label_map(self.out_dir / f"{Path(name).stem}.png", sample["pred_seg"], reduce)
            self.results.append(intersect_and_union(sample["pred_seg"], sample["gt_seg"], num_classes,
                                                    self.ignore_index, name))

    def compute_metrics(self, results: list) -> dict[str, float]:
        num_classes, names = self._classes()
        pooled = SegmentationAreas(num_classes, names, self.ignore_index)
        for areas in results:
            pooled.add_areas(areas)
        scores = pooled.compute()
        metrics = {"mIoU": scores["mIoU"], "aAcc": scores["aAcc"]}
        metrics.update({f"IoU/{k}": v for k, v in scores["per_class_IoU"].items()})
        MMLogger.get_current_instance().info(
            f"segmentation ({len(results)} images): mIoU {scores['mIoU']:.2f}, aAcc {scores['aAcc']:.2f}")
        return metrics


def save_label_map(path: str | Path, labels, reduce_zero_label: bool = False) -> Path:
    """Write predicted labels (the model's 0..C-1) as a uint8 PNG in the annotation files' label space
    (+1 with ``reduce_zero_label``, so ADE20K predictions read 1..150)."""
    labels = _numpy(labels).astype(np.int64) + (1 if reduce_zero_label else 0)
    if labels.min(initial=0) < 0 or labels.max(initial=0) > 255:
        raise ValueError(f"{path}: labels must fit 0..255 to be saved as a uint8 PNG")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(labels.astype(np.uint8)).save(path)
    return path


def _read(path: Path, reduce: bool, what: str) -> np.ndarray:
    try:
        labels = read_label_map(path)
    except SegmentationDataError as err:
        raise SegmentationEvaluationError(f"{what}: {err}") from err
    return reduce_zero_label(labels) if reduce else labels


def _label_pairs(predictions: Path, annotations: Path, reduce: bool) -> Iterable[tuple[str, np.ndarray, np.ndarray]]:
    for ann in sorted(annotations.glob("*.png")):
        pred = predictions / ann.name
        if not pred.is_file():
            raise SegmentationEvaluationError(f"--predictions {predictions} has no {ann.name} (every annotation "
                                              "needs a prediction of the same file name)")
        yield ann.name, _read(pred, reduce, "prediction"), _read(ann, reduce, "annotation")


def evaluate_label_map_folders(predictions: str | Path, annotations: str | Path, num_classes: int | None = None,
                               reduce_zero_label: bool = False, class_names: Sequence[str] | None = None,
                               ignore_index: int = IGNORE_INDEX) -> dict[str, Any]:
    """mIoU, aAcc and per-class IoU of the PNG label maps in ``predictions`` against those of the same
    names in ``annotations`` (module docstring for the label space). ``num_classes`` defaults to one more
    than the largest label in the ground truth or the predictions (after the reduction)."""
    predictions, annotations = Path(predictions), Path(annotations)
    for flag, folder in (("--predictions", predictions), ("--annotations", annotations)):
        if not folder.is_dir():
            raise SegmentationEvaluationError(f"{flag} {folder} is not a folder")
    if not any(annotations.glob("*.png")):
        raise SegmentationEvaluationError(f"--annotations {annotations} holds no .png label maps")
    if num_classes is None:  # a first pass for the largest label; the files are small next to a model run
        largest = 0
        for _, pred, gt in _label_pairs(predictions, annotations, reduce_zero_label):
            largest = max(largest, int(gt[gt != ignore_index].max(initial=0)), int(pred[pred != ignore_index]
                                                                                       .max(initial=0)))
        num_classes = largest + 1
    pooled = SegmentationAreas(num_classes, class_names, ignore_index)
    for name, pred, gt in _label_pairs(predictions, annotations, reduce_zero_label):
        pooled.add(pred, gt, name=str(annotations / name))
    result = pooled.compute()
    result["images"] = pooled.images
    result["num_classes"] = num_classes
    return result
