"""COCO box AP through pycocotools: AP (IoU 0.50:0.95), AP50, AP75 and APs / APm / APl, as fractions.

Predictions are in the COCO results format: ``[{"image_id", "category_id", "bbox": [x, y, w, h], "score"}]``.
pycocotools reports -1 for an area range with no ground truth; that value is passed on unchanged.
Images without predictions count as all-missed; an empty result list scores 0 everywhere it has GT.
"""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from mmengine.evaluator import BaseMetric

from perception.data.coco import CocoFormatError, category_ids, load_instances
from perception.engine.registry import METRICS
from perception.structures.boxes2d import box_xyxy_to_xywh

__all__ = ["COCO_KEYS", "CocoBoxMetric", "coco_box_ap", "detections_to_coco_results", "load_coco_results"]

COCO_KEYS = ("AP", "AP50", "AP75", "APs", "APm", "APl")


def load_coco_results(path: str | Path) -> list[dict[str, Any]]:
    """Read a COCO results JSON (a list of detections), checking each record's fields."""
    path = Path(path)
    if not path.is_file():
        raise CocoFormatError(f"{path}: predictions file not found")
    try:
        results = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise CocoFormatError(f"{path}: not valid JSON ({err})") from err
    _check_results(results, str(path))
    return results


def _check_results(results: Any, source: str) -> None:
    if not isinstance(results, list):
        raise CocoFormatError(f"{source}: expected a list of detections (COCO results format)")
    for i, det in enumerate(results):
        if not isinstance(det, dict) or not {"image_id", "category_id", "bbox", "score"} <= set(det):
            raise CocoFormatError(f"{source}: detection {i} needs image_id, category_id, bbox and score")
        if not isinstance(det["bbox"], list | tuple) or len(det["bbox"]) != 4:
            raise CocoFormatError(f"{source}: detection {i} needs a bbox [x, y, w, h], got {det['bbox']!r}")


def coco_box_ap(results: Sequence[dict[str, Any]], annotations: dict[str, Any] | str | Path) -> dict[str, float]:
    """The six COCO box metrics of ``results`` against an instances dict or file, as fractions."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    source = str(annotations) if isinstance(annotations, str | Path) else "annotations"
    instances = load_instances(annotations) if isinstance(annotations, str | Path) else annotations
    _check_results(list(results), "predictions")
    image_ids = {int(im["id"]) for im in instances["images"]}
    cat_ids = {int(c["id"]) for c in instances["categories"]}
    for i, det in enumerate(results):
        if int(det["image_id"]) not in image_ids:
            raise CocoFormatError(f"predictions: detection {i} has image_id {det['image_id']} not in {source}")
        if int(det["category_id"]) not in cat_ids:
            raise CocoFormatError(f"predictions: detection {i} has category_id {det['category_id']} not in {source}")
    if not results:
        has_gt = bool(instances["annotations"])
        return {key: 0.0 if has_gt else -1.0 for key in COCO_KEYS}
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress and its table
        gt = COCO()
        gt.dataset = _with_defaults(instances)
        gt.createIndex()
        dt = gt.loadRes([dict(det, bbox=[float(v) for v in det["bbox"]]) for det in results])
        evaluator = COCOeval(gt, dt, iouType="bbox")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return {key: float(value) for key, value in zip(COCO_KEYS, evaluator.stats[:6])}


def _with_defaults(instances: dict[str, Any]) -> dict[str, Any]:
    """A copy whose annotations carry the ``area``, ``iscrowd`` and ``id`` pycocotools needs."""
    annotations = []
    for i, ann in enumerate(instances["annotations"]):
        w, h = ann["bbox"][2], ann["bbox"][3]
        annotations.append({"area": w * h, "iscrowd": 0, "id": i + 1, **ann})
    return {**instances, "annotations": annotations}


def detections_to_coco_results(predictions: Sequence[dict[str, Any]], cat_ids: Sequence[int]
                               ) -> list[dict[str, Any]]:
    """Model predictions ``{image_id, boxes (K, 4) xyxy, scores (K,), labels (K,)}`` in the COCO results
    format; label ``i`` becomes ``cat_ids[i]``."""
    results = []
    for pred in predictions:
        boxes = box_xyxy_to_xywh(torch.as_tensor(pred["boxes"]).float().cpu()).tolist()
        for box, score, label in zip(boxes, torch.as_tensor(pred["scores"]).tolist(),
                                     torch.as_tensor(pred["labels"]).tolist()):
            results.append({"image_id": int(pred["image_id"]), "category_id": int(cat_ids[int(label)]),
                            "bbox": [round(v, 3) for v in box], "score": round(float(score), 5)})
    return results


@METRICS.register_module()
class CocoBoxMetric(BaseMetric):
    """COCO box AP of a detector's predictions against ``ann_file``; keys ``coco/AP`` ... ``coco/APl``
    (fractions). ``outfile_prefix`` also writes the results JSON (``<prefix>.bbox.json``)."""

    default_prefix = "coco"

    def __init__(self, ann_file: str, outfile_prefix: str | None = None, collect_device: str = "cpu",
                 prefix: str | None = None) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix)
        self.ann_file, self.outfile_prefix = ann_file, outfile_prefix

    def process(self, data_batch: Any, data_samples: Sequence[dict]) -> None:
        for pred in data_samples:
            self.results.append({"image_id": int(pred["image_id"]), "boxes": pred["boxes"].detach().cpu(),
                                 "scores": pred["scores"].detach().cpu(), "labels": pred["labels"].detach().cpu()})

    def compute_metrics(self, results: list) -> dict[str, float]:
        instances = load_instances(self.ann_file)
        coco_results = detections_to_coco_results(results, category_ids(instances))
        if self.outfile_prefix:
            path = Path(f"{self.outfile_prefix}.bbox.json")
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(coco_results))
        evaluated = {int(r["image_id"]) for r in results}
        instances = {**instances, "images": [im for im in instances["images"] if int(im["id"]) in evaluated],
                     "annotations": [a for a in instances["annotations"] if int(a["image_id"]) in evaluated]}
        return coco_box_ap(coco_results, instances)
