"""Occ3D-nuScenes occupancy metrics on CPU: the official mIoU and SparseOcc's RayIoU (docs/occupancy.md).

* **mIoU** (official Occ3D script): voxels outside ``mask_camera`` are dropped from prediction and GT,
  an 18 x 18 confusion matrix (rows GT, columns prediction) is pooled over the split, IoU_c =
  TP / (TP + FP + FN) over all 18 classes (free included, so "predicted free where GT is c" is an FN
  of c), and mIoU = nanmean of IoU over classes 0..16 (free excluded, "others" included). A class
  absent from GT and predictions gives NaN and is skipped.
* **RayIoU** (SparseOcc): virtual LiDAR rays from up to 8 key-frame LiDAR origins of the scene are cast
  through GT and prediction (:mod:`perception.evaluation.ray_casting`), rays whose GT ends in free are
  dropped, and per threshold t in {1, 2, 4} m and class c: TP = rays with GT label = predicted label
  = c and |d_pred - d_gt| < t, IoU_c = TP / (#GT rays of c + #predicted rays of c - TP), counts pooled
  over the split. RayIoU@t = nanmean over the non-free classes; RayIoU = nanmean over all (t, c).
  No camera or LiDAR mask is used.

Values are returned in percent, as papers print them.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
from mmengine.evaluator import BaseMetric
from mmengine.logging import MMLogger

from perception.engine.distributed import check_each_sample_once
from perception.engine.registry import METRICS
from perception.structures.bev_grid import OCC3D_GRID, BEVGrid
from perception.structures.classes import OCC3D_CLASSES, OCC_FREE

from .ray_casting import ray_endpoints_vox, render_rays

NUM_CLASSES = len(OCC3D_CLASSES)
RAY_THRESHOLDS = (1.0, 2.0, 4.0)
MAX_ORIGINS = 8
ORIGIN_RANGE = 39.0


# -- inputs -------------------------------------------------------------------------------------------
def _to_numpy(x) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def check_semantics(
    semantics,
    sample_token: str = "<unknown>",
    shape: tuple[int, ...] | None = OCC3D_GRID.voxel_shape,
    num_classes: int = NUM_CLASSES,
) -> np.ndarray:
    """A predicted label grid (numpy array or tensor) -> uint8 numpy array, or ValueError naming the
    sample and the problem: not an integer dtype, a shape other than ``shape`` (None: any 3-D shape),
    or a label outside 0..num_classes-1."""
    arr = _to_numpy(semantics)
    if arr.dtype == np.bool_ or not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(
            f"sample {sample_token}: occupancy prediction has dtype {arr.dtype}; expected integer class "
            f"indices (uint8), not scores or logits"
        )
    if (shape is not None and tuple(arr.shape) != tuple(shape)) or arr.ndim != 3:
        expected = tuple(shape) if shape is not None else "(X, Y, Z)"
        raise ValueError(
            f"sample {sample_token}: occupancy prediction has shape {tuple(arr.shape)}, expected {expected}"
        )
    if arr.size:
        lo, hi = int(arr.min()), int(arr.max())
        if lo < 0 or hi >= num_classes:
            bad = lo if lo < 0 else hi
            raise ValueError(
                f"sample {sample_token}: occupancy prediction holds class {bad}, outside 0..{num_classes - 1}"
            )
    return arr.astype(np.uint8, copy=False)


def load_occ_gt(path: str | Path) -> dict[str, np.ndarray]:
    """``labels.npz`` of Occ3D -> {semantics, mask_lidar, mask_camera} uint8 (X, Y, Z)."""
    with np.load(path) as data:
        return {k: np.asarray(data[k]) for k in ("semantics", "mask_lidar", "mask_camera") if k in data}


# -- mIoU -----------------------------------------------------------------------------------------------
def confusion_matrix(pred, gt, mask_camera=None, num_classes: int = NUM_CLASSES) -> np.ndarray:
    """(C, C) int64 counts of one frame, rows GT and columns prediction, over the voxels where
    ``mask_camera`` is set (all voxels when None). GT labels outside 0..C-1 are dropped, as in the
    official script; predictions must be in range (see :func:`check_semantics`)."""
    pred = _to_numpy(pred)
    gt = _to_numpy(gt)
    if pred.shape != gt.shape:
        raise ValueError(f"prediction shape {pred.shape} != GT shape {gt.shape}")
    if mask_camera is not None:
        mask = _to_numpy(mask_camera).astype(bool)
        if mask.shape != gt.shape:
            raise ValueError(f"mask shape {mask.shape} != GT shape {gt.shape}")
        pred, gt = pred[mask], gt[mask]
    gt = gt.reshape(-1).astype(np.int64)
    pred = pred.reshape(-1).astype(np.int64)
    keep = (gt >= 0) & (gt < num_classes)
    if ((pred[keep] < 0) | (pred[keep] >= num_classes)).any():
        raise ValueError(f"prediction holds classes outside 0..{num_classes - 1}")
    counts = np.bincount(num_classes * gt[keep] + pred[keep], minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes)


def miou_from_confusion(
    hist: np.ndarray, class_names: Sequence[str] = OCC3D_CLASSES, free: int = OCC_FREE
) -> dict:
    """Pooled confusion matrix -> {'mIoU': %, 'per_class_IoU': {name: %}} over every class but free
    (NaN for a class absent from GT and predictions; skipped by the mean)."""
    hist = np.asarray(hist, dtype=np.float64)
    tp = np.diag(hist)
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = tp / (hist.sum(1) + hist.sum(0) - tp)
    classes = [c for c in range(len(hist)) if c != free]
    values = iou[classes] * 100.0
    miou = float(np.nanmean(values)) if not np.isnan(values).all() else float("nan")
    return {"mIoU": miou, "per_class_IoU": {class_names[c]: float(iou[c] * 100.0) for c in classes}}


class OccupancyMIoU:
    """Streaming Occ3D mIoU: ``add`` each frame, ``compute`` once at the end (pooled confusion matrix).

    ``use_camera_mask=False`` gives the "w/o camera mask" variant (every voxel counts). ``shape``:
    expected grid shape of predictions (None: any, for tests)."""

    def __init__(
        self,
        num_classes: int = NUM_CLASSES,
        class_names: Sequence[str] = OCC3D_CLASSES,
        free: int = OCC_FREE,
        use_camera_mask: bool = True,
        shape: tuple[int, int, int] | None = OCC3D_GRID.voxel_shape,
    ) -> None:
        self.num_classes, self.class_names, self.free = num_classes, tuple(class_names), free
        self.use_camera_mask, self.shape = use_camera_mask, shape
        self.hist = np.zeros((num_classes, num_classes), np.int64)
        self.count = 0

    def add(self, pred, gt, mask_camera=None, sample_token: str = "<unknown>") -> np.ndarray:
        pred = check_semantics(pred, sample_token, self.shape, self.num_classes)
        if self.use_camera_mask and mask_camera is None:
            raise ValueError(f"sample {sample_token}: mIoU with the camera mask needs mask_camera")
        hist = confusion_matrix(pred, gt, mask_camera if self.use_camera_mask else None, self.num_classes)
        self.add_confusion(hist)
        return hist

    def add_confusion(self, hist: np.ndarray) -> None:
        self.hist += np.asarray(hist, np.int64)
        self.count += 1

    def compute(self) -> dict:
        return miou_from_confusion(self.hist, self.class_names, self.free)


def occupancy_miou(
    preds: Iterable, gts: Iterable, masks_camera: Iterable | None = None, **kwargs
) -> dict:
    """Functional form of :class:`OccupancyMIoU` (``masks_camera=None``: no camera mask)."""
    metric = OccupancyMIoU(use_camera_mask=masks_camera is not None, **kwargs)
    masks = masks_camera if masks_camera is not None else itertools.repeat(None)
    for pred, gt, mask in zip(preds, gts, masks):
        metric.add(pred, gt, mask)
    return metric.compute()


# -- RayIoU ---------------------------------------------------------------------------------------------
def rayiou_origins(
    ego2global: np.ndarray,
    scene_ego2globals: Sequence[np.ndarray],
    lidar2ego: np.ndarray | None = None,
    scene_lidar2egos: Sequence[np.ndarray] | None = None,
    max_origins: int = MAX_ORIGINS,
    max_range: float = ORIGIN_RANGE,
) -> np.ndarray:
    """Ray origins (T <= 8, 3) of one frame in its ego frame, SparseOcc's way.

    ``scene_ego2globals``: ego2global (4, 4) of every key frame of the scene, past and future, in time
    order (the current frame included; it is recognised by an identical pose). Each frame's LiDAR origin
    (``scene_lidar2egos``; None: the ego origin itself) goes to the current LiDAR frame (rounded to
    float32 there, as the reference does) and then to the current ego frame (``lidar2ego``). Origins
    with |x| < 39 and |y| < 39 m are kept, in time order; of more than 8, the ones at
    ``round(linspace(0, n - 1, 8))`` are taken."""
    ref_e2g = np.asarray(ego2global, np.float64)
    ref_l2e = np.eye(4) if lidar2ego is None else np.asarray(lidar2ego, np.float64)
    if scene_lidar2egos is None:
        scene_lidar2egos = [np.eye(4)] * len(scene_ego2globals)
    if len(scene_lidar2egos) != len(scene_ego2globals):
        raise ValueError(f"{len(scene_ego2globals)} scene poses but {len(scene_lidar2egos)} lidar2ego matrices")
    ref_lidar_from_global = np.linalg.inv(ref_e2g @ ref_l2e)
    kept = []
    for e2g, l2e in zip(scene_ego2globals, scene_lidar2egos):
        e2g = np.asarray(e2g, np.float64)
        if np.array_equal(e2g, ref_e2g):
            in_ref_lidar = np.zeros(3, np.float32)
        else:
            ref_from_curr = ref_lidar_from_global @ (e2g @ np.asarray(l2e, np.float64))
            in_ref_lidar = ref_from_curr[:3, 3].astype(np.float32)
        origin = ref_l2e[:3] @ np.append(in_ref_lidar.astype(np.float64), 1.0)
        if abs(origin[0]) < max_range and abs(origin[1]) < max_range:
            kept.append(origin)
    if not kept:
        raise ValueError("no ray origin within the range: is the current frame's pose among the scene's?")
    if len(kept) > max_origins:
        select = np.round(np.linspace(0, len(kept) - 1, max_origins)).astype(np.int64)
        kept = [kept[i] for i in select]
    return np.stack(kept)


def ray_counts(
    pred_labels: np.ndarray,
    pred_depths: np.ndarray,
    gt_labels: np.ndarray,
    gt_depths: np.ndarray,
    num_classes: int = NUM_CLASSES,
    free: int = OCC_FREE,
    thresholds: Sequence[float] = RAY_THRESHOLDS,
) -> dict[str, np.ndarray]:
    """Per-class ray counts of one frame from rendered rays: rays whose GT label is free are dropped;
    ``gt`` / ``pred`` (C,) count rays by GT / predicted label and ``tp`` (len(thresholds), C) those with
    equal labels and |d_pred - d_gt| < t. Depths are compared in float32, as the reference does."""
    gl = np.asarray(gt_labels).reshape(-1).astype(np.int64)
    pl = np.asarray(pred_labels).reshape(-1).astype(np.int64)
    gd = np.asarray(gt_depths, np.float32).reshape(-1)
    pd = np.asarray(pred_depths, np.float32).reshape(-1)
    if not len(gl) == len(pl) == len(gd) == len(pd):
        raise ValueError(f"ray arrays differ in length: {len(gl)}, {len(pl)}, {len(gd)}, {len(pd)}")
    keep = gl != free
    gl, pl, gd, pd = gl[keep], pl[keep], gd[keep], pd[keep]

    def count(labels):
        labels = labels[(labels >= 0) & (labels < num_classes)]
        return np.bincount(labels, minlength=num_classes).astype(np.int64)

    err = np.abs(pd - gd)
    same = gl == pl
    tp = np.stack([count(gl[same & (err < np.float32(t))]) for t in thresholds])
    return {"gt": count(gl), "pred": count(pl), "tp": tp}


def rayiou_from_counts(
    counts: dict[str, np.ndarray],
    free: int = OCC_FREE,
    thresholds: Sequence[float] = RAY_THRESHOLDS,
    class_names: Sequence[str] = OCC3D_CLASSES,
) -> dict:
    """Pooled ray counts -> {'RayIoU', 'RayIoU@1', 'RayIoU@2', 'RayIoU@4', 'per_class_RayIoU'} in %."""
    gt, pred, tp = (np.asarray(counts[k], np.float64) for k in ("gt", "pred", "tp"))
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = tp / (gt[None] + pred[None] - tp)
    classes = [c for c in range(iou.shape[1]) if c != free]
    iou = iou[:, classes] * 100.0

    def nanmean(x):
        return float(np.nanmean(x)) if not np.isnan(x).all() else float("nan")

    out = {"RayIoU": nanmean(iou)}
    for j, t in enumerate(thresholds):
        out[f"RayIoU@{t:g}"] = nanmean(iou[j])
    out["per_class_RayIoU"] = {
        class_names[c]: {f"@{t:g}": float(iou[j, k]) for j, t in enumerate(thresholds)} for k, c in enumerate(classes)
    }
    return out


class OccupancyRayIoU:
    """Streaming RayIoU: ``add(pred, gt, origins)`` per frame (semantic grids and the frame's origins
    from :func:`rayiou_origins`, ego frame, metres), ``compute`` once at the end (pooled counts)."""

    def __init__(
        self,
        grid: BEVGrid = OCC3D_GRID,
        num_classes: int = NUM_CLASSES,
        class_names: Sequence[str] = OCC3D_CLASSES,
        free: int = OCC_FREE,
        thresholds: Sequence[float] = RAY_THRESHOLDS,
        directions: np.ndarray | None = None,
    ) -> None:
        self.grid, self.num_classes, self.class_names, self.free = grid, num_classes, tuple(class_names), free
        self.thresholds, self.directions = tuple(thresholds), directions
        self.counts = self._zeros()
        self.count = 0

    def _zeros(self) -> dict[str, np.ndarray]:
        c = self.num_classes
        tp = np.zeros((len(self.thresholds), c), np.int64)
        return {"gt": np.zeros(c, np.int64), "pred": np.zeros(c, np.int64), "tp": tp}

    def frame_counts(self, pred, gt, origins, sample_token: str = "<unknown>") -> dict[str, np.ndarray]:
        """Counts of one frame without adding them."""
        shape = self.grid.voxel_shape
        pred = check_semantics(pred, sample_token, shape, self.num_classes)
        gt = np.asarray(_to_numpy(gt), np.uint8)
        if gt.shape != tuple(shape):
            raise ValueError(f"sample {sample_token}: GT occupancy has shape {gt.shape}, expected {tuple(shape)}")
        origins_vox, ends_vox = ray_endpoints_vox(np.asarray(origins, np.float64), self.directions, self.grid)
        pl, pd = render_rays(pred, origins_vox, ends_vox, self.grid, self.free)
        gl, gd = render_rays(gt, origins_vox, ends_vox, self.grid, self.free)
        return ray_counts(pl, pd, gl, gd, self.num_classes, self.free, self.thresholds)

    def add(self, pred, gt, origins, sample_token: str = "<unknown>") -> dict[str, np.ndarray]:
        counts = self.frame_counts(pred, gt, origins, sample_token)
        self.add_counts(counts)
        return counts

    def add_counts(self, counts: dict[str, np.ndarray]) -> None:
        for k in self.counts:
            self.counts[k] += np.asarray(counts[k], np.int64)
        self.count += 1

    def compute(self) -> dict:
        return rayiou_from_counts(self.counts, self.free, self.thresholds, self.class_names)


def occupancy_rayiou(preds: Iterable, gts: Iterable, origins: Iterable, **kwargs) -> dict:
    """Functional form of :class:`OccupancyRayIoU`."""
    metric = OccupancyRayIoU(**kwargs)
    for pred, gt, o in zip(preds, gts, origins):
        metric.add(pred, gt, o)
    return metric.compute()


def scene_origins(infos: Sequence[dict], use_lidar2ego: bool = True) -> dict[str, np.ndarray]:
    """Ray origins of every info (token -> (T, 3)), the scene's key frames taken from ``infos`` (the
    evaluated split), ordered by ``frame_index``."""
    scenes: dict[str, list[dict]] = {}
    for info in infos:
        scenes.setdefault(info["scene_token"], []).append(info)
    out = {}
    for frames in scenes.values():
        frames = sorted(frames, key=lambda i: i["frame_index"])
        poses = [f["ego2global"] for f in frames]
        lidars = [f.get("lidar2ego", np.eye(4)) for f in frames] if use_lidar2ego else None
        for f in frames:
            l2e = f.get("lidar2ego", np.eye(4)) if use_lidar2ego else None
            out[f["token"]] = rayiou_origins(f["ego2global"], poses, l2e, lidars)
    return out


# -- mmengine -------------------------------------------------------------------------------------------
@METRICS.register_module()
class OccupancyMetric(BaseMetric):
    """mmengine metric: Occ3D mIoU (camera mask) and RayIoU from per-sample predictions.

    Each prediction is ``{'sample_token': str, 'occupancy': {'semantics': (200, 200, 16) uint8}}`` (a bare
    array for ``occupancy`` is accepted too). GT comes from the info's ``occ_path`` under ``data_root``;
    ray origins from the key frames of the same scene in ``ann_file`` (LiDAR origins via ``lidar2ego``).
    Only per-frame counts are kept between ``process`` and ``compute_metrics``.

    Args:
        ann_file: info file of the evaluated split.
        data_root: root that ``occ_path`` is relative to.
        use_camera_mask: mIoU over camera-visible voxels (the official setting) or over all voxels.
        ray_iou: also compute RayIoU (about 0.1 s per frame on one core).
        format_only: write the challenge submission (``out_dir/<sample token>.npz`` and ``<out_dir>.zip``,
            :func:`perception.evaluation.occupancy_submission.write_occupancy_submission`) for every sample
            of ``ann_file`` instead of scoring; no GT is read (the test split has none).
        out_dir: the submission folder (default ``work_dirs/occupancy_submission``; ``tools/test.py
            --format-only`` puts it under the work dir).
    """

    default_prefix = "occupancy"

    def __init__(
        self,
        ann_file: str,
        data_root: str,
        use_camera_mask: bool = True,
        ray_iou: bool = True,
        collect_device: str = "cpu",
        prefix: str | None = None,
        format_only: bool = False,
        out_dir: str | None = None,
    ) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix)
        self.ann_file, self.data_root = ann_file, data_root
        self.use_camera_mask, self.ray_iou = use_camera_mask, ray_iou
        self.format_only, self.out_dir = format_only, out_dir
        self._infos: dict[str, dict] | None = None
        self._origins: dict[str, np.ndarray] | None = None

    def _info(self, token: str) -> dict:
        if self._infos is None:
            from perception.data.infos import load_infos

            _, infos = load_infos(self.ann_file)
            self._infos = {i["token"]: i for i in infos}
            self._origins = scene_origins(infos) if self.ray_iou else {}
        if token not in self._infos:
            raise ValueError(f"sample {token}: not in the info file {self.ann_file}")
        return self._infos[token]

    def process(self, data_batch, data_samples: Sequence[dict]) -> None:
        for pred in data_samples:
            token = pred.get("sample_token") if isinstance(pred, dict) else None
            if token is None:
                raise ValueError("occupancy prediction without 'sample_token'")
            if self.format_only:  # kept compressed until compute_metrics writes the submission
                from .occupancy_submission import PackedSemantics, semantics_of

                self.results.append({"token": token, "semantics": PackedSemantics(semantics_of(pred, token))})
                continue
            info = self._info(token)
            occ = pred.get("occupancy")
            if isinstance(occ, dict):
                occ = occ.get("semantics")
            if occ is None:
                raise ValueError(f"sample {token}: prediction has no occupancy semantics")
            sem = check_semantics(occ, token)
            if not info.get("occ_path"):
                raise ValueError(f"sample {token}: the info has no occ_path (no Occ3D GT)")
            gt = load_occ_gt(Path(self.data_root) / info["occ_path"])
            mask = gt["mask_camera"] if self.use_camera_mask else None
            result = {"token": token, "hist": confusion_matrix(sem, gt["semantics"], mask)}
            if self.ray_iou:
                result["rays"] = OccupancyRayIoU().frame_counts(sem, gt["semantics"], self._origins[token], token)
            self.results.append(result)

    def compute_metrics(self, results: list) -> dict[str, float]:
        # Each sample once, in collection order (docs/distributed.md, evaluation under DDP).
        self.scored_tokens = check_each_sample_once((r["token"] for r in results), type(self).__name__)
        if self.format_only:
            return self._write_submission(results)
        miou = OccupancyMIoU(use_camera_mask=self.use_camera_mask)
        rays = OccupancyRayIoU()
        for r in results:
            miou.add_confusion(r["hist"])
            if "rays" in r:
                rays.add_counts(r["rays"])
        out = miou.compute()
        metrics = {"mIoU": out["mIoU"]}
        metrics.update({f"IoU/{k}": v for k, v in out["per_class_IoU"].items()})
        if self.ray_iou:
            ray = rays.compute()
            metrics.update({k: v for k, v in ray.items() if k.startswith("RayIoU")})
        logger = MMLogger.get_current_instance()
        logger.info(
            f"occupancy ({len(results)} frames): "
            + ", ".join(f"{k} {v:.2f}" for k, v in metrics.items() if "/" not in k)
        )
        return metrics

    def _write_submission(self, results: list) -> dict:
        from perception.data.infos import load_infos

        from .occupancy_submission import write_occupancy_submission

        _, infos = load_infos(self.ann_file)
        out_dir = Path(self.out_dir or "work_dirs/occupancy_submission")
        zip_path = out_dir.with_name(out_dir.name + ".zip")
        predictions = {r["token"]: r["semantics"] for r in results}
        write_occupancy_submission(predictions, [i["token"] for i in infos], out_dir, zip_path)
        MMLogger.get_current_instance().info(
            f"occupancy submission ({len(predictions)} samples) written to {out_dir} and {zip_path}"
        )
        return {}
