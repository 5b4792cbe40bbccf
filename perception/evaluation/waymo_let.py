"""LET-3D-AP and LET-3D-APL, the Waymo camera-only 3D detection metrics, in numpy (docs/waymo.md,
"Evaluation"), without TensorFlow.

Longitudinal-error-tolerant matching, with the challenge's configuration:

* centres are taken relative to the sensor at :data:`SENSOR_LOCATION` (vehicle frame);
* longitudinal affinity of a prediction P to a ground-truth box G:
  ``LA = clamp(1 - |(G . P) / |G| - |G|| / max(0.1 |G|, 0.5 m), 0, 1)`` (0 for different types);
* LET-IoU: the 3D IoU with G after sliding P along its line of sight to the point nearest G,
  ``P' = (G . P / |P|^2) P``;
* a pair may match when LA > 0 and LET-IoU >= the type's threshold (vehicle 0.3, pedestrian and cyclist
  0.5); a Hungarian assignment per frame maximises the sum of LET-IoU x LA;
* at every score cutoff 0, 0.01, ..., 1 (predictions with score >= cutoff are matched anew):
  precision TP / (TP + FP), LA-weighted precision sum_TP(LA) / (TP + FP), recall TP / (TP + FN);
* AP over (recall, precision) points: the best precision per recall, made monotone from high recall to
  low, recall gaps wider than 0.05 filled with steps, the (recall 0) point set to the largest precision,
  trapezoid integration. LET-3D-AP uses plain precision, LET-3D-APL the LA-weighted one.

Ground truth is the camera-synced boxes seen by a camera with LiDAR points (others are ignored) at LEVEL_2
(detection difficulty <= 2, i.e. every such box). Results are broken down by object type; the overall value
is the mean over the types that have ground truth. Not reproduced: the official matcher quantises the
Hungarian weights (ties may resolve differently) and the CAMERA / RANGE breakdowns.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from mmengine.evaluator import BaseMetric
from mmengine.logging import MMLogger
from scipy.optimize import linear_sum_assignment

from perception.data.waymo.conventions import CLASS_TYPES, WAYMO_CLASSES
from perception.engine.registry import METRICS
from perception.structures.boxes import boxes_iou_3d

SENSOR_LOCATION = np.array([1.43, 0.0, 2.18])
LONGITUDINAL_TOLERANCE_PERCENTAGE = 0.1
MIN_LONGITUDINAL_TOLERANCE_METER = 0.5
IOU_THRESHOLDS = {"vehicle": 0.3, "pedestrian": 0.5, "cyclist": 0.5}
SCORE_CUTOFFS = np.round(np.arange(101) * 0.01, 2)
RECALL_DELTA = 0.05
MAX_DIFFICULTY = 2  # LEVEL_2


def longitudinal_affinity(gt_centers: np.ndarray, pred_centers: np.ndarray,
                          sensor: np.ndarray = SENSOR_LOCATION) -> np.ndarray:
    """(G, P) longitudinal affinity of predicted to ground-truth centres (vehicle frame)."""
    g = np.asarray(gt_centers, np.float64).reshape(-1, 3) - sensor
    p = np.asarray(pred_centers, np.float64).reshape(-1, 3) - sensor
    r_gt = np.linalg.norm(g, axis=1)
    # r_pd cos(theta) is the length of P's projection on G's direction.
    along = (g @ p.T) / np.maximum(r_gt, 1e-9)[:, None]
    tolerance = np.maximum(LONGITUDINAL_TOLERANCE_PERCENTAGE * r_gt, MIN_LONGITUDINAL_TOLERANCE_METER)
    return np.clip(1.0 - np.abs(along - r_gt[:, None]) / tolerance[:, None], 0.0, 1.0)


def let_iou(gt_boxes: np.ndarray, pred_boxes: np.ndarray, sensor: np.ndarray = SENSOR_LOCATION) -> np.ndarray:
    """(G, P) 3D IoU of each ground-truth box with each prediction slid along its line of sight to the
    point nearest the ground-truth centre (boxes (N, >=7), ours, vehicle frame)."""
    gt = np.asarray(gt_boxes, np.float64).reshape(-1, np.shape(gt_boxes)[-1])
    pred = np.asarray(pred_boxes, np.float64).reshape(-1, np.shape(pred_boxes)[-1])
    out = np.zeros((len(gt), len(pred)))
    if not len(gt) or not len(pred):
        return out
    p = pred[:, :3] - sensor
    p_norm2 = np.maximum((p * p).sum(1), 1e-12)
    for i in range(len(gt)):
        g = gt[i, :3] - sensor
        slid = pred[:, :7].copy()
        slid[:, :3] = (p @ g / p_norm2)[:, None] * p + sensor
        out[i] = boxes_iou_3d(gt[i : i + 1, :7], slid)[0]
    return out


def match_frame(gt_boxes: np.ndarray, pred_boxes: np.ndarray, iou_threshold: float,
                sensor: np.ndarray = SENSOR_LOCATION) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Hungarian matching of one frame's boxes of one type: (gt index, prediction index, LA) per match."""
    iou = let_iou(gt_boxes, pred_boxes, sensor)
    affinity = longitudinal_affinity(np.reshape(gt_boxes, (-1, np.shape(gt_boxes)[-1]))[:, :3],
                                     np.reshape(pred_boxes, (-1, np.shape(pred_boxes)[-1]))[:, :3], sensor)
    return _assign(iou, affinity, iou_threshold)


def _assign(iou: np.ndarray, affinity: np.ndarray, threshold: float):
    allowed = (affinity > 0) & (iou >= threshold)
    if not allowed.any():
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0)
    weight = np.where(allowed, iou * affinity, 0.0)
    rows, cols = linear_sum_assignment(weight, maximize=True)
    keep = allowed[rows, cols]
    return rows[keep], cols[keep], affinity[rows[keep], cols[keep]]


def average_precision(precisions: Sequence[float], recalls: Sequence[float],
                      recall_delta: float = RECALL_DELTA) -> float:
    """AP of (precision, recall) points as the Waymo metric computes it (see the module docstring)."""
    best: dict[float, float] = {}
    for p, r in zip(precisions, recalls):
        best[float(r)] = max(best.get(float(r), 0.0), float(p))
    if not best:
        return 0.0
    recall = np.array(sorted(best))
    precision = np.array([best[r] for r in recall])
    precision = np.maximum.accumulate(precision[::-1])[::-1]  # monotone from high recall to low
    if recall[0] > 0:  # the fake (recall 0) point carries the largest precision
        recall, precision = np.concatenate([[0.0], recall]), np.concatenate([[precision.max()], precision])
    else:
        precision[0] = precision.max()
    xs, ys = [recall[0]], [precision[0]]
    for i in range(1, len(recall)):
        r = recall[i - 1] + recall_delta
        while r < recall[i] - 1e-12:  # steps across a wide recall gap, at the next point's precision
            xs.append(r)
            ys.append(precision[i])
            r += recall_delta
        xs.append(recall[i])
        ys.append(precision[i])
    xs, ys = np.array(xs), np.array(ys)
    return float(np.sum((xs[1:] - xs[:-1]) * (ys[1:] + ys[:-1]) / 2))


@dataclass
class _Counts:
    tp: np.ndarray = field(default_factory=lambda: np.zeros(len(SCORE_CUTOFFS)))
    fp: np.ndarray = field(default_factory=lambda: np.zeros(len(SCORE_CUTOFFS)))
    fn: np.ndarray = field(default_factory=lambda: np.zeros(len(SCORE_CUTOFFS)))
    affinity: np.ndarray = field(default_factory=lambda: np.zeros(len(SCORE_CUTOFFS)))
    num_gt: int = 0


def _accumulate(counts: _Counts, gt: np.ndarray, pred: np.ndarray, scores: np.ndarray, threshold: float,
                sensor: np.ndarray) -> None:
    counts.num_gt += len(gt)
    # Only predictions that may match some box take part in the assignments; the kept set of a cutoff is
    # the predictions scoring at least it, so equal sets (same count kept) share one assignment.
    iou, affinity = let_iou(gt, pred, sensor), longitudinal_affinity(gt[:, :3], pred[:, :3], sensor)
    candidates = np.nonzero(((affinity > 0) & (iou >= threshold)).any(0))[0]
    cache: dict[int, tuple[int, float]] = {}
    for c, cutoff in enumerate(SCORE_CUTOFFS):
        kept = int((scores >= cutoff).sum())
        if kept not in cache:
            cols = candidates[scores[candidates] >= cutoff]
            _, _, la = _assign(iou[:, cols], affinity[:, cols], threshold)
            cache[kept] = (len(la), float(la.sum()))
        matched, la_sum = cache[kept]
        counts.tp[c] += matched
        counts.fp[c] += kept - matched
        counts.fn[c] += len(gt) - matched
        counts.affinity[c] += la_sum


def evaluate_let(ground_truth: Mapping, predictions: Mapping, sensor: np.ndarray = SENSOR_LOCATION) -> dict:
    """LET-3D-AP / LET-3D-APL by type and overall (fractions).

    ``ground_truth``: {frame key: dict(boxes (N, >=7) ours, vehicle frame; types (N,) Waymo Label.Type;
    difficulty (N,), optional)}; every frame to score must be present, with no boxes where it has none.
    ``predictions``: {frame key: dict(boxes, types, scores)}; a frame absent here has no predictions, a
    frame absent from ``ground_truth`` is an error."""
    unknown = [k for k in predictions if k not in ground_truth]
    if unknown:
        raise ValueError(f"{len(unknown)} predicted frame(s) are not ground-truth frames, e.g. {unknown[:3]}")
    counts = {name: _Counts() for name in WAYMO_CLASSES}
    for key, gt in ground_truth.items():
        pred = predictions.get(key)
        g_boxes, g_types = np.asarray(gt["boxes"], np.float64).reshape(-1, 9), np.asarray(gt["types"])
        difficulty = np.asarray(gt.get("difficulty", np.zeros(len(g_types))))
        for name in WAYMO_CLASSES:
            g = g_boxes[(g_types == CLASS_TYPES[name]) & (difficulty <= MAX_DIFFICULTY)]
            if pred is None:
                p, s = np.zeros((0, 9)), np.zeros(0)
            else:
                sel = np.asarray(pred["types"]) == CLASS_TYPES[name]
                p = np.asarray(pred["boxes"], np.float64).reshape(-1, 9)[sel]
                s = np.asarray(pred["scores"], np.float64).reshape(-1)[sel]
            _accumulate(counts[name], g, p, s, IOU_THRESHOLDS[name], sensor)
    result = {"LET-3D-APL": {}, "LET-3D-AP": {}}
    for name, c in counts.items():
        if c.num_gt == 0:
            result["LET-3D-APL"][name] = result["LET-3D-AP"][name] = None
            continue
        with np.errstate(invalid="ignore", divide="ignore"):
            detections = c.tp + c.fp
            precision = np.where(detections > 0, c.tp / np.maximum(detections, 1), 0.0)
            la_precision = np.where(detections > 0, c.affinity / np.maximum(detections, 1), 0.0)
            recall = c.tp / c.num_gt
        result["LET-3D-AP"][name] = average_precision(precision, recall)
        result["LET-3D-APL"][name] = average_precision(la_precision, recall)
    for metric in ("LET-3D-APL", "LET-3D-AP"):
        scored = [v for v in result[metric].values() if v is not None]
        result[metric] = {"overall": float(np.mean(scored)) if scored else None, **result[metric]}
    result["num_frames"] = len(ground_truth)
    result["num_gt"] = {name: c.num_gt for name, c in counts.items()}
    return result


def flat_metrics(result: Mapping) -> dict[str, float]:
    """``LET-3D-APL``, ``LET-3D-AP`` (overall) and ``LET-3D-APL/<type>`` ... as one flat dict of floats."""
    out = {}
    for metric in ("LET-3D-APL", "LET-3D-AP"):
        for name, value in result[metric].items():
            if value is not None:
                out[metric if name == "overall" else f"{metric}/{name}"] = float(value)
    return out


def format_let_table(result: Mapping) -> str:
    """A small table of LET-3D-APL / LET-3D-AP (percent) by type."""
    lines = [f"{'type':<12}{'LET-3D-APL':>12}{'LET-3D-AP':>12}{'GT':>8}"]
    for name in ("overall", *WAYMO_CLASSES):
        apl, ap = result["LET-3D-APL"][name], result["LET-3D-AP"][name]
        gt = sum(result["num_gt"].values()) if name == "overall" else result["num_gt"][name]
        fmt = lambda v: f"{100 * v:>12.2f}" if v is not None else f"{'-':>12}"  # noqa: E731
        lines.append(f"{name:<12}{fmt(apl)}{fmt(ap)}{gt:>8}")
    lines.append(f"LEVEL_2, {result['num_frames']} frames")
    return "\n".join(lines)


# -- ground truth from a v2 split folder, submissions, the mmengine metric ---------------------------------
def load_let_ground_truth(split_dir: str | Path, frames: Iterable[tuple[str, int]] | None = None) -> dict:
    """{(context_name, timestamp): dict(boxes, types, difficulty)} of a v2 split folder: the camera-synced
    boxes that a camera sees (``most_visible_camera_name`` set) with LiDAR points, the camera-only task's
    ground truth (boxes without are ignored), for every frame of ``vehicle_pose`` or only ``frames``."""
    from tqdm import tqdm

    from perception.data.waymo.reader import frame_boxes, frame_timestamps, list_segments, read_ground_truth

    wanted = None if frames is None else {(str(s), int(t)) for s, t in frames}
    segments = list_segments(split_dir)
    if wanted is not None:
        missing = sorted({s for s, _ in wanted} - set(segments))
        if missing:
            raise ValueError(f"{split_dir} has no segment(s) {missing[:3]} ({len(missing)} missing)")
        segments = [s for s in segments if any(w[0] == s for w in wanted)]
    out = {}
    for segment in tqdm(segments, desc="waymo ground truth", unit="segment", disable=len(segments) < 20):
        boxes = read_ground_truth(split_dir, segment)
        for stamp in frame_timestamps(split_dir, segment):
            if wanted is not None and (segment, stamp) not in wanted:
                continue
            fb = frame_boxes(boxes, stamp)
            seen = fb.camera_visible
            out[(segment, stamp)] = dict(boxes=fb.boxes[seen], types=fb.types[seen], difficulty=fb.difficulty[seen])
    if wanted is not None and len(out) != len(wanted):
        lacking = sorted(wanted - set(out))
        raise ValueError(f"{split_dir} has no frame(s) {lacking[:3]} ({len(lacking)} missing)")
    return out


def resolve_split_dir(dataset_dir: str | Path) -> Path:
    """The v2 split folder of ``dataset_dir``: itself when it holds the components, else its only split."""
    from perception.data.waymo import schema

    path = Path(dataset_dir)
    if (path / schema.SYNCED_BOX).is_dir():
        return path
    splits = [p for p in sorted(path.glob("*")) if (p / schema.SYNCED_BOX).is_dir()] if path.is_dir() else []
    if len(splits) == 1:
        return splits[0]
    raise ValueError(f"{path} must be a Waymo v2 split folder holding {schema.SYNCED_BOX}/ "
                     f"(found split folders {[p.name for p in splits]})")


def evaluate_submission(submission: str | Path, dataset_dir: str | Path, predicted_frames_only: bool = False) -> dict:
    """LET metrics of a submission (archive, folder or file) against the split folder ``dataset_dir``:
    every ground-truth frame, or only the frames the submission has objects in."""
    from .waymo_submission import read_submissions, submission_objects

    predictions = submission_objects(read_submissions(submission))
    split_dir = resolve_split_dir(dataset_dir)
    ground_truth = load_let_ground_truth(split_dir, predictions if predicted_frames_only else None)
    return evaluate_let(ground_truth, predictions)


@METRICS.register_module()
class WaymoLETMetric(BaseMetric):
    """mmengine metric: LET-3D-APL / LET-3D-AP (LEVEL_2) of a detection head's predictions on Waymo infos.

    Args:
        ann_file: the Waymo info file of the evaluated split (perception/data/waymo/infos.py); its frames
            are the frames scored.
        ground_truth: the v2 split folder (e.g. ``data/waymo/validation``) whose camera-synced boxes are
            the ground truth (not needed with ``format_only``).
        out_dir: where ``waymo_predictions.pkl`` (the per-sample predictions that ``tools/submit.py waymo``
            takes) is written.
        format_only: only write the predictions (e.g. for the testing split, which has no boxes).
        submission_dir: also write the predictions as a submission there (``part{i}`` + ``.tar.gz``, with
            placeholder method and account names; tools/submit.py sets real ones).
        head: the name of the detection head whose predictions are scored.
    """

    default_prefix = "waymo"

    def __init__(self, ann_file: str, ground_truth: str | None = None, out_dir: str = "work_dirs/waymo_eval",
                 format_only: bool = False, submission_dir: str | None = None, head: str = "detection",
                 collect_device: str = "cpu", prefix: str | None = None) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix)
        if ground_truth is None and not format_only:
            raise ValueError("WaymoLETMetric needs ground_truth (a Waymo v2 split folder) unless format_only")
        self.ann_file, self.ground_truth, self.out_dir = ann_file, ground_truth, out_dir
        self.format_only, self.submission_dir, self.head = format_only, submission_dir, head

    def process(self, data_batch, data_samples: Sequence[dict]) -> None:
        for sample in data_samples:
            pred = dict(sample[self.head], sample_token=sample["sample_token"]) if self.head in sample else sample
            self.results.append({k: (v if k == "sample_token" else _numpy(v)) for k, v in pred.items()
                                 if k in ("sample_token", "boxes", "scores", "labels")})

    def compute_metrics(self, results: list) -> dict:
        import os
        import pickle

        from perception.data.infos import load_infos
        from perception.engine.distributed import check_each_sample_once

        from .waymo_submission import (
            SubmissionMetadata,
            frames_of_infos,
            submission_objects,
            submissions_from_predictions,
            write_submissions,
        )

        self.scored_tokens = check_each_sample_once((r["sample_token"] for r in results), type(self).__name__)
        _, infos = load_infos(self.ann_file)
        logger = MMLogger.get_current_instance()
        out = Path(self.out_dir) / "waymo_predictions.pkl"
        out.parent.mkdir(parents=True, exist_ok=True)
        with open(out.with_suffix(".tmp"), "wb") as f:
            pickle.dump(results, f, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(out.with_suffix(".tmp"), out)
        logger.info(f"Waymo predictions written to {out} (tools/submit.py waymo --predictions {out} ...)")
        submissions = submissions_from_predictions(results, infos, SubmissionMetadata("unnamed", "unnamed"),
                                                   allow_missing=True)
        if self.submission_dir:
            path = write_submissions(submissions, self.submission_dir, frames_of_infos(infos))
            logger.info(f"Waymo submission written to {path}")
        if self.format_only:
            return {}
        frames = [(str(i["context_name"]), int(i["timestamp"])) for i in infos]
        ground_truth = load_let_ground_truth(resolve_split_dir(self.ground_truth), frames)
        metrics = flat_metrics(evaluate_let(ground_truth, submission_objects(submissions)))
        logger.info("Waymo LET (LEVEL_2): " + ", ".join(f"{k} {v:.4f}" for k, v in metrics.items()))
        return metrics


def _numpy(x) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().float().cpu().numpy()
    return np.asarray(x)
