"""OpenLane-V2 "OpenLane-V2 Score" (OLS, devkit v2.1 = the v1.1 fixed metric) on CPU (docs/lanes.md).

OLS = (DET_l + DET_t + sqrt(TOP_ll) + sqrt(TOP_lt)) / 4, every part a fraction in [0, 1]:

* **DET_l**: mean over Frechet thresholds {1, 2, 3} m of the 11-point AP of lane centerlines. The
  distance of a (GT, prediction) pair is the discrete Frechet distance of the directed 3-D polylines,
  computed only where the Chamfer distance is below 3 m (1024 elsewhere); both are multiplied by the
  GT's relaxation factor max(0.5, 1 - 0.005 d), d = the smallest 3-D distance of a GT point to the ego
  origin (so the pre-filter is on the relaxed Chamfer distance too).
* **DET_t**: mean over the 13 traffic-element attributes of the AP at 1 - IoU < 0.75; a prediction
  only meets GT of its own attribute.
* **TOP_ll / TOP_lt**: per frame and matching threshold, the predicted adjacency is carried onto the
  GT vertices through the detection matching (for TOP_lt the traffic elements are matched at IoU
  distance 0.75 *regardless of attribute*); entries touching an unmatched GT vertex become
  (1 - gt) (0.5 + eps32): missing edges are "not predicted", non-edges "predicted" just above 0.5.
  Each vertex's neighbours predicted above 0.5 are ranked by confidence and
  AP_v = sum_k P@k rel_k / |N_gt(v)| (1 when the vertex has neither GT nor predicted neighbours, 0 when
  it has only one of them). The mean is over every vertex AP of every frame and threshold, pooled: rows
  then columns of each matrix (outgoing / incoming lanes; lanes over elements / elements over lanes).
  Frames without GT lanes (TOP_lt: or without GT elements) add nothing.

Detection matching is greedy per frame: predictions in descending confidence each take their nearest
GT (whether or not it is taken); a TP when that distance is below the threshold and the GT is free.
TP/FP flags are pooled over the split before the precision/recall curve; a class with neither GT nor
predictions in the split scores AP = 1, one with only GT or only predictions AP = 0.

**Numerics** follow the official devkit so that scores equal its numbers: recalls, precisions, the
APs and their means are float32 (the 11 recall points are float64, so a float32 recall of exactly 0.7
or 0.9 falls *below* its point), ranking uses numpy's default argsort on arrays built in the same
order, and frames are visited in the order of the GT mapping.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from mmengine.evaluator import BaseMetric
from mmengine.logging import MMLogger

from perception.engine.distributed import check_each_sample_once
from perception.engine.files import read_pickle
from perception.engine.registry import METRICS
from perception.structures.classes import TRAFFIC_ELEMENT_ATTRIBUTES

FrameKey = tuple  # (split, segment_id, timestamp), all str, as in the devkit's data_dict keys

FRECHET_THRESHOLDS: tuple[float, ...] = (1.0, 2.0, 3.0)
IOU_THRESHOLDS: tuple[float, ...] = (0.75,)
CHAMFER_PREFILTER = 3.0
NO_MATCH_DISTANCE = 1024.0
RELATIONSHIP_THRESHOLD = 0.5
# Value given to non-edges at unmatched GT vertices: "predicted", just above the 0.5 threshold.
TOPOLOGY_FILL = np.float32(0.5) + np.finfo(np.float32).eps
# The 11 recall points 0, 0.1, ..., 1.0, built as float64 steps (0.30000000000000004, ...) on purpose.
RECALL_POINTS = np.arange(0, 1 + 1e-3, 0.1)
_EPS32 = np.finfo(np.float32).eps
# Keys of the model's per-sample ``lanes`` prediction (frame_from_prediction).
PREDICTION_KEYS = (
    "lane_points", "lane_scores", "te_boxes", "te_attributes", "te_scores", "topology_lclc", "topology_lcte"
)


class OpenLaneV2EvaluationError(ValueError):
    """Ground truth or predictions that cannot be scored (a missing frame, a corrupt GT file...)."""


# -- distances ------------------------------------------------------------------------------------------
def _cost(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Euclidean distances between every point of ``a`` (..., n, D) and of ``b`` (..., m, D): (..., n, m)."""
    diff = a[..., :, None, :] - b[..., None, :, :]
    return np.sqrt((diff * diff).sum(-1))


def _frechet_from_cost(cost: np.ndarray) -> np.ndarray:
    """Discrete Frechet distance from point-distance matrices (..., n, m) by the coupling DP
    F[i, j] = max(min(F[i-1, j], F[i, j-1], F[i-1, j-1]), c[i, j]), vectorised over the leading axes."""
    n, m = cost.shape[-2:]
    f = np.empty_like(cost)
    f[..., 0, 0] = cost[..., 0, 0]
    for j in range(1, m):
        f[..., 0, j] = np.maximum(f[..., 0, j - 1], cost[..., 0, j])
    for i in range(1, n):
        f[..., i, 0] = np.maximum(f[..., i - 1, 0], cost[..., i, 0])
        for j in range(1, m):
            best = np.minimum(np.minimum(f[..., i - 1, j], f[..., i, j - 1]), f[..., i - 1, j - 1])
            f[..., i, j] = np.maximum(best, cost[..., i, j])
    return f[..., n - 1, m - 1]


def frechet_distance(a, b) -> float:
    """Discrete Frechet distance (L2) of two directed polylines (n, D) and (m, D): the smallest over
    monotone couplings of the largest coupled point distance. Symmetric; reversing one polyline changes it."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1] or not len(a) or not len(b):
        raise ValueError(f"frechet_distance needs two non-empty (n, D) arrays, got {a.shape} and {b.shape}")
    return float(_frechet_from_cost(_cost(a, b)))


def _gt_point_mask(gt: np.ndarray) -> np.ndarray:
    """Points of a GT polyline that the Chamfer distance uses: a closed one (last = first) drops its last."""
    keep = np.ones(len(gt), dtype=bool)
    if len(gt) > 1 and np.array_equal(gt[0], gt[-1]):
        keep[-1] = False
    return keep


def _chamfer_from_cost(cost: np.ndarray, gt_keep: np.ndarray) -> np.ndarray:
    """Chamfer distance from (..., n_gt, m_pred) point distances, GT points restricted to ``gt_keep`` (n_gt,)."""
    pred_to_gt = np.where(gt_keep[:, None], cost, np.inf).min(-2).mean(-1)
    gt_to_pred = cost[..., gt_keep, :].min(-1).mean(-1)
    return (pred_to_gt + gt_to_pred) / 2


def chamfer_distance(gt, pred) -> float:
    """Symmetric Chamfer distance: the mean of (mean nearest-GT distance of the predicted points) and
    (mean nearest-prediction distance of the GT points); a closed GT polyline drops its repeated point."""
    gt, pred = np.asarray(gt, np.float64), np.asarray(pred, np.float64)
    if gt.ndim != 2 or pred.ndim != 2 or gt.shape[1] != pred.shape[1] or not len(gt) or not len(pred):
        raise ValueError(f"chamfer_distance needs two non-empty (n, D) arrays, got {gt.shape} and {pred.shape}")
    return float(_chamfer_from_cost(_cost(gt, pred), _gt_point_mask(gt)))


def relaxation_factor(gt_points) -> float:
    """max(0.5, 1 - 0.005 d) with d the smallest 3-D distance of a GT point to the ego origin: lane
    distances far from the car are shrunk, by at most a half (from 100 m on)."""
    pts = np.asarray(gt_points, np.float64)
    ego_distance = float(np.sqrt((pts * pts).sum(-1)).min())
    return max(0.5, 1.0 - 5e-3 * ego_distance)


def lane_distance_matrix(gt_lanes: Sequence, pred_lanes: Sequence) -> np.ndarray:
    """(G, P) relaxed Frechet distances of GT and predicted centerlines ((n, 3) arrays), 1024 where the
    relaxed Chamfer distance is not below 3 m (the pre-filter). Lanes are batched by point count."""
    gts = [np.asarray(g, np.float64) for g in gt_lanes]
    preds = [np.asarray(p, np.float64) for p in pred_lanes]
    out = np.full((len(gts), len(preds)), NO_MATCH_DISTANCE, dtype=np.float64)
    if not gts or not preds:
        return out
    relax = np.array([relaxation_factor(g) for g in gts])
    for gi in _group_by_length(gts):
        g = np.stack([gts[i] for i in gi])
        keeps = [_gt_point_mask(gts[i]) for i in gi]
        for pi in _group_by_length(preds):
            p = np.stack([preds[i] for i in pi])
            cost = _cost(g[:, None], p[None])  # (g, p, n, m)
            chamfer = np.empty(cost.shape[:2])
            for row, keep in enumerate(keeps):
                chamfer[row] = _chamfer_from_cost(cost[row], keep)
            r = relax[gi][:, None]
            close = chamfer * r < CHAMFER_PREFILTER
            if close.any():
                frechet = _frechet_from_cost(cost)
                block = np.where(close, frechet * r, NO_MATCH_DISTANCE)
            else:
                block = np.full(close.shape, NO_MATCH_DISTANCE)
            out[np.ix_(gi, pi)] = block
    return out


def _group_by_length(arrays: Sequence[np.ndarray]) -> list[list[int]]:
    """Indices of the arrays, grouped by length (so each group stacks into one batch)."""
    groups: dict[int, list[int]] = {}
    for i, a in enumerate(arrays):
        groups.setdefault(len(a), []).append(i)
    return list(groups.values())


def iou_distance(gt, pred) -> float:
    """1 - IoU of two axis-aligned boxes [[x1, y1], [x2, y2]] (0 for equal boxes, 1 for disjoint ones)."""
    return float(box_distance_matrix([gt], [pred])[0, 0])


def box_distance_matrix(gt_boxes: Sequence, pred_boxes: Sequence) -> np.ndarray:
    """(G, P) IoU distances of (2, 2) boxes. Two boxes with zero union (both degenerate) get 1."""
    out = np.ones((len(gt_boxes), len(pred_boxes)), dtype=np.float64)
    if not len(gt_boxes) or not len(pred_boxes):
        return out
    g = np.asarray(gt_boxes, np.float64).reshape(-1, 1, 2, 2)
    p = np.asarray(pred_boxes, np.float64).reshape(1, -1, 2, 2)
    lo = np.maximum(p[..., 0, :], g[..., 0, :])
    hi = np.minimum(p[..., 1, :], g[..., 1, :])
    wh = np.maximum(hi - lo, 0)
    inter = wh[..., 0] * wh[..., 1]
    area_p = (p[..., 1, 0] - p[..., 0, 0]) * (p[..., 1, 1] - p[..., 0, 1])
    area_g = (g[..., 1, 0] - g[..., 0, 0]) * (g[..., 1, 1] - g[..., 0, 1])
    union = area_p + area_g - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        dist = 1 - inter / union
    return np.where(union > 0, dist, 1.0)


# -- detection AP ---------------------------------------------------------------------------------------
def average_precision_11pt(recalls, precisions) -> float:
    """11-point interpolated AP: the mean over r in {0, 0.1, ..., 1} of the largest precision at a
    recall >= r (0 where none). Accumulated in float32 over the float64 recall points, as the devkit does."""
    recalls = np.asarray(recalls)
    precisions = np.asarray(precisions)
    ap = np.float32(0)
    for r in RECALL_POINTS:
        reached = precisions[recalls >= r]
        ap = np.float32(ap + (reached.max() if reached.size else 0))
    return float(np.float32(ap / np.float32(11)))


def greedy_tp_fp(
    distances: np.ndarray, confidences, threshold: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Greedy matching of one frame. ``distances`` (G, P), ``confidences`` (P,). In descending confidence,
    each prediction takes its nearest GT: a TP if that distance < ``threshold`` and the GT is still free,
    else an FP (no second choice). Returns float32 ``tp``, ``fp`` (P,) and ``matched_gt`` (P,, -1 = none)."""
    confidences = np.asarray(confidences)
    num_gt, num_pred = distances.shape
    tp = np.zeros(num_pred, np.float32)
    fp = np.zeros(num_pred, np.float32)
    matched = np.full(num_pred, -1, np.int64)
    if num_gt == 0:
        fp[:] = 1
        return tp, fp, matched
    if num_pred == 0:
        return tp, fp, matched
    nearest_dist = distances.min(0)
    nearest = distances.argmin(0)
    taken = np.zeros(num_gt, dtype=bool)
    for i in np.argsort(-confidences):
        g = nearest[i]
        if nearest_dist[i] < threshold and not taken[g]:
            taken[g] = True
            tp[i] = 1
            matched[i] = g
        else:
            fp[i] = 1
    return tp, fp, matched


def pooled_average_precision(tps: Sequence, fps: Sequence, confidences: Sequence, num_gt: int) -> float:
    """AP of TP/FP flags pooled over frames (per-frame lists, concatenated in frame order), ranked by
    confidence; 1 when there is neither GT nor a prediction."""
    conf = np.hstack([np.asarray(c) for c in confidences]) if len(confidences) else np.zeros(0)
    order = np.argsort(-conf)
    tp = np.hstack(tps)[order] if len(tps) else np.zeros(0, np.float32)
    fp = np.hstack(fps)[order] if len(fps) else np.zeros(0, np.float32)
    if len(tp) == 0 and num_gt == 0:
        return 1.0
    tp, fp = np.cumsum(tp), np.cumsum(fp)
    recalls = tp / np.maximum(num_gt, _EPS32)
    precisions = tp / np.maximum(tp + fp, _EPS32)
    return average_precision_11pt(recalls, precisions)


# -- topology -------------------------------------------------------------------------------------------
def vertex_average_precision(gt_neighbours: np.ndarray, scores: np.ndarray) -> np.float32:
    """AP of one vertex: ``gt_neighbours`` (N,) 0/1, ``scores`` (N,) predicted confidences. Neighbours
    scored above 0.5 are ranked by score; AP = sum_k P@k rel_k / #GT neighbours; 1 with neither GT nor
    predicted neighbours, 0 with only one of them."""
    gt_idx = np.flatnonzero(np.asarray(gt_neighbours).astype(bool))
    above = scores > RELATIONSHIP_THRESHOLD
    pred_idx = np.flatnonzero(above)
    conf = scores[above]
    if len(gt_idx) == 0 and len(pred_idx) == 0:
        return np.float32(1)
    if len(gt_idx) == 0 or len(pred_idx) == 0:
        return np.float32(0)
    rel = np.isin(pred_idx[np.argsort(-conf)], gt_idx).astype(np.float32)
    hits = np.cumsum(rel)
    precisions = hits / np.maximum(np.cumsum(1 - rel) + hits, _EPS32)
    return np.dot(precisions, rel) / len(gt_idx)


def fill_topology(
    gt: np.ndarray, pred: np.ndarray, rows_match: Mapping[int, int], cols_match: Mapping[int, int]
) -> np.ndarray:
    """The prediction carried onto the GT vertices: entry (i, j) = pred[rows_match[i], cols_match[j]]
    where both GT vertices are matched (GT index -> prediction index), else (1 - gt[i, j]) * (0.5 + eps32)."""
    gt = np.asarray(gt)
    floating = np.issubdtype(gt.dtype, np.floating)
    dtype = gt.dtype if floating else np.float64
    out = ((1 - (gt if floating else gt.astype(np.float64))) * TOPOLOGY_FILL).astype(dtype)
    if rows_match and cols_match:
        gr = np.fromiter(rows_match.keys(), np.int64)
        pr = np.fromiter(rows_match.values(), np.int64)
        gc = np.fromiter(cols_match.keys(), np.int64)
        pc = np.fromiter(cols_match.values(), np.int64)
        out[np.ix_(gr, gc)] = np.asarray(pred)[np.ix_(pr, pc)]
    return out


def topology_vertex_aps(gt: np.ndarray, filled: np.ndarray) -> list[np.float32]:
    """Vertex APs of one (X, Y) adjacency: every row (over the Y vertices), then every column (over X)."""
    gt = np.asarray(gt)
    rows = [vertex_average_precision(g, s) for g, s in zip(gt, filled)]
    return rows + [vertex_average_precision(g, s) for g, s in zip(gt.T, filled.T)]


def _matches(matched_gt: np.ndarray) -> dict[int, int]:
    return {int(g): i for i, g in enumerate(matched_gt) if g >= 0}


# -- the score ------------------------------------------------------------------------------------------
def evaluate_ols(
    ground_truth: Mapping[FrameKey, Mapping], predictions: Mapping[FrameKey, Mapping], *, progress: bool = False
) -> dict[str, float]:
    """OLS v2.1 of ``predictions`` (key -> {'predictions': frame}, a submission's ``results``) against
    ``ground_truth`` (the devkit's data_dict: key -> frame with ``annotation``). Every GT frame needs a
    prediction (OpenLaneV2EvaluationError names the first missing key); extra predicted frames are
    ignored, as the devkit does. Returns fractions: OLS, DET_l, DET_t, TOP_ll, TOP_lt,
    DET_l@1.0/2.0/3.0 and DET_t/<attribute> for the 13 attributes."""
    keys = list(ground_truth.keys())
    for key in keys:
        if key not in predictions:
            raise OpenLaneV2EvaluationError(f"frame {key!r}: in the ground truth but not in the predictions")
    gts = [ground_truth[k]["annotation"] for k in keys]
    preds = [predictions[k]["predictions"] for k in keys]

    lane_dist, box_dist = [], []
    for gt, pred in _progress(zip(gts, preds), progress, len(keys)):
        lanes = [[x["points"] for x in frame["lane_centerline"]] for frame in (gt, pred)]
        boxes = [[x["points"] for x in frame["traffic_element"]] for frame in (gt, pred)]
        lane_dist.append(lane_distance_matrix(*lanes))
        box_dist.append(box_distance_matrix(*boxes))

    def detection(kind, dists, threshold, select=None):
        """Pooled AP and per-frame matches (GT index -> prediction index, within the selection)."""
        tps, fps, confs, matches, num_gt = [], [], [], [], 0
        for gt, pred, dist in zip(gts, preds, dists):
            g_sel = [select(x) for x in gt[kind]] if select else [True] * len(gt[kind])
            p_sel = [select(x) for x in pred[kind]] if select else [True] * len(pred[kind])
            conf = [x["confidence"] for x, s in zip(pred[kind], p_sel) if s]
            sub = dist[np.ix_(np.flatnonzero(g_sel), np.flatnonzero(p_sel))]
            tp, fp, matched = greedy_tp_fp(sub, conf, threshold)
            tps.append(tp)
            fps.append(fp)
            confs.append(conf)
            matches.append(_matches(matched))
            num_gt += sum(g_sel)
        return np.float32(pooled_average_precision(tps, fps, confs, num_gt)), matches

    metrics: dict[str, float] = {}
    det_l, lane_matches = [], {}
    for t in FRECHET_THRESHOLDS:
        ap, lane_matches[t] = detection("lane_centerline", lane_dist, t)
        det_l.append(ap)
        metrics[f"DET_l@{t:.1f}"] = float(ap)
    det_t = []
    for attr, name in enumerate(TRAFFIC_ELEMENT_ATTRIBUTES):
        ap, _ = detection("traffic_element", box_dist, IOU_THRESHOLDS[0], lambda x, a=attr: x["attribute"] == a)
        det_t.append(ap)
        metrics[f"DET_t/{name}"] = float(ap)
    te_matches = {t: detection("traffic_element", box_dist, t)[1] for t in IOU_THRESHOLDS}

    lclc: list[np.float32] = []
    for t in FRECHET_THRESHOLDS:
        for gt, pred, match in zip(gts, preds, lane_matches[t]):
            g = np.asarray(gt["topology_lclc"])
            if 0 in g.shape:
                continue
            lclc += topology_vertex_aps(g, fill_topology(g, pred["topology_lclc"], match, match))
    lcte: list[np.float32] = []
    for t_l in FRECHET_THRESHOLDS:
        for t_t in IOU_THRESHOLDS:
            for gt, pred, m_l, m_t in zip(gts, preds, lane_matches[t_l], te_matches[t_t]):
                g = np.asarray(gt["topology_lcte"])
                if 0 in g.shape:
                    continue
                lcte += topology_vertex_aps(g, fill_topology(g, pred["topology_lcte"], m_l, m_t))

    parts = {
        "DET_l": np.asarray(det_l, np.float32).mean(),
        "DET_t": np.asarray(det_t, np.float32).mean(),
        "TOP_ll": np.asarray(lclc, np.float32).mean() if lclc else np.float32(0),
        "TOP_lt": np.asarray(lcte, np.float32).mean() if lcte else np.float32(0),
    }
    ols = np.asarray(
        [parts["DET_l"], parts["DET_t"], np.sqrt(parts["TOP_ll"]), np.sqrt(parts["TOP_lt"])], np.float32
    ).mean()
    out = {"OLS": float(ols), **{k: float(v) for k, v in parts.items()}}
    out.update(metrics)
    return out


def _progress(items: Iterable, enabled: bool, total: int) -> Iterable:
    if not enabled:
        return items
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover - tqdm is a project dependency
        return items
    return tqdm(items, total=total, desc="OLS distances", ncols=80)


def format_ols_table(metrics: Mapping[str, float]) -> str:
    """The metrics of :func:`evaluate_ols` as a text table, in percent: DET_l per threshold, DET_t per
    attribute, TOP_ll, TOP_lt and OLS."""
    lines = ["OpenLane-V2 Score (v2.1)", "-" * 34]
    for t in FRECHET_THRESHOLDS:
        lines.append(f"{'DET_l @ ' + f'{t:.1f} m':<24}{100 * metrics[f'DET_l@{t:.1f}']:>8.2f}")
    lines.append(f"{'DET_l':<24}{100 * metrics['DET_l']:>8.2f}")
    lines.append("-" * 34)
    for name in TRAFFIC_ELEMENT_ATTRIBUTES:
        lines.append(f"{'DET_t / ' + name:<24}{100 * metrics[f'DET_t/{name}']:>8.2f}")
    lines.append(f"{'DET_t':<24}{100 * metrics['DET_t']:>8.2f}")
    lines.append("-" * 34)
    for key in ("TOP_ll", "TOP_lt", "OLS"):
        lines.append(f"{key:<24}{100 * metrics[key]:>8.2f}")
    return "\n".join(lines)


def load_lane_ground_truth(path: str | Path) -> dict:
    """The devkit's preprocessed ``data_dict_subset_*.pkl`` (key -> frame), with a clear error when the
    file is missing, truncated or not such a dict."""
    path = Path(path)
    data = read_pickle(path, "ground truth", OpenLaneV2EvaluationError)
    if not isinstance(data, dict) or any(not isinstance(v, dict) or "annotation" not in v for v in data.values()):
        raise OpenLaneV2EvaluationError(
            f"ground truth {path} is not an OpenLane-V2 data_dict (key -> frame with 'annotation')"
        )
    return data


# -- model output -> devkit frame -----------------------------------------------------------------------
def _array(x, name: str, token: str) -> np.ndarray:
    if x is None:
        raise ValueError(f"sample {token}: lane prediction has no {name!r}")
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=np.float32)


def frame_from_prediction(pred: Mapping[str, Any]) -> dict:
    """The model's per-sample lane prediction (``{'sample_token', 'lanes': {...}}`` or the ``lanes`` dict
    itself; tensors or arrays) -> a devkit predictions frame: lanes get ids 0..L-1, traffic elements
    L..L+K-1, confidences from the scores, float32 arrays; boxes (x1, y1, x2, y2) become [[x1, y1], [x2, y2]]."""
    token = str(pred.get("sample_token", "<unknown>"))
    lanes = pred.get("lanes", pred)
    if not isinstance(lanes, Mapping):
        raise ValueError(f"sample {token}: 'lanes' is {type(lanes).__name__}, expected a dict")
    arrays = {name: _array(lanes.get(name), name, token) for name in PREDICTION_KEYS}
    points = arrays["lane_points"]
    num_l = len(points)
    num_k = len(arrays["te_boxes"])
    num_p = points.shape[1] if points.ndim == 3 else 0
    expected = {
        "lane_points": (num_l, num_p, 3),
        "lane_scores": (num_l,),
        "te_boxes": (num_k, 4),
        "te_attributes": (num_k,),
        "te_scores": (num_k,),
        "topology_lclc": (num_l, num_l),
        "topology_lcte": (num_l, num_k),
    }
    for name, shape in expected.items():
        arr = arrays[name]
        if arr.shape != shape:
            if arr.size == 0 and int(np.prod(shape)) == 0:  # an empty list of any shape
                arrays[name] = arr.reshape(shape)
            else:
                raise ValueError(f"sample {token}: {name} has shape {tuple(arr.shape)}, expected {shape}")
    if num_l and num_p == 0:
        raise ValueError(f"sample {token}: lane_points has no points per lane")
    attrs = arrays["te_attributes"]
    num_attrs = len(TRAFFIC_ELEMENT_ATTRIBUTES)
    if attrs.size and ((attrs != np.round(attrs)).any() or attrs.min() < 0 or attrs.max() >= num_attrs):
        raise ValueError(f"sample {token}: te_attributes must be integers 0..{len(TRAFFIC_ELEMENT_ATTRIBUTES) - 1}")
    points, scores, boxes = arrays["lane_points"], arrays["lane_scores"], arrays["te_boxes"]
    te_scores = arrays["te_scores"]
    return {
        "lane_centerline": [
            {"id": i, "points": points[i].copy(), "confidence": float(scores[i])} for i in range(num_l)
        ],
        "traffic_element": [
            {
                "id": num_l + k,
                "attribute": int(attrs[k]),
                "points": boxes[k].reshape(2, 2).copy(),
                "confidence": float(te_scores[k]),
            }
            for k in range(num_k)
        ],
        "topology_lclc": arrays["topology_lclc"].copy(),
        "topology_lcte": arrays["topology_lcte"].copy(),
    }


# -- mmengine -------------------------------------------------------------------------------------------
@METRICS.register_module()
class OpenLaneV2Metric(BaseMetric):
    """mmengine metric: OpenLane-V2 Score v2.1 (OLS) from per-sample lane predictions (docs/lanes.md).

    Each prediction is ``{'sample_token': str, 'lanes': {lane_points (L, P, 3), lane_scores (L,), te_boxes
    (K, 4), te_attributes (K,), te_scores (K,), topology_lclc (L, L), topology_lcte (L, K)}}``; the info of
    the sample in ``ann_file`` gives its ``openlane_key`` (split, segment_id, timestamp). The GT is the
    devkit's data_dict pickle ``ground_truth``, restricted to the frames of ``ann_file``.

    Args:
        ann_file: info file of the evaluated split.
        data_root: root that a relative ``ground_truth`` path is resolved under.
        ground_truth: the devkit's ``data_dict_subset_{A,B}_{split}.pkl`` (not read with ``format_only``).
        format_only: write ``out_dir/submission.pkl`` for every sample of ``ann_file`` instead of scoring.
        out_dir: the submission folder (default ``work_dirs/lane_submission``).
        method, authors, email, institution, country: the submission envelope.
    """

    default_prefix = "lanes"

    def __init__(
        self,
        ann_file: str,
        data_root: str = "",
        ground_truth: str | None = None,
        format_only: bool = False,
        out_dir: str | None = None,
        method: str = "perception-stack",
        authors: Sequence[str] = (),
        email: str = "",
        institution: str = "",
        country: str = "US",
        collect_device: str = "cpu",
        prefix: str | None = None,
    ) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix)
        if not format_only and not ground_truth:
            raise ValueError("OpenLaneV2Metric needs ground_truth (the devkit's data_dict pickle) unless format_only")
        self.ann_file, self.data_root, self.ground_truth = ann_file, data_root, ground_truth
        self.format_only, self.out_dir = format_only, out_dir
        self.envelope = {
            "method": method,
            "authors": list(authors),
            "email": email,
            "institution": institution,
            "country": country,
        }
        self._keys: dict[str, tuple] | None = None

    def _all_keys(self) -> dict[str, tuple]:
        """sample token -> openlane_key of every info of ``ann_file``."""
        if self._keys is None:
            from perception.data.infos import load_infos

            _, infos = load_infos(self.ann_file)
            keys = {}
            for info in infos:
                key = info.get("openlane_key")
                if key is None:
                    raise ValueError(
                        f"sample {info.get('token')}: the info has no 'openlane_key' (split, segment_id, "
                        f"timestamp); regenerate {self.ann_file} with the OpenLane-V2 keys"
                    )
                keys[info["token"]] = tuple(key)
            self._keys = keys
        return self._keys

    def process(self, data_batch, data_samples: Sequence[dict]) -> None:
        keys = self._all_keys()
        for pred in data_samples:
            token = pred.get("sample_token") if isinstance(pred, Mapping) else None
            if token is None:
                raise ValueError("lane prediction without 'sample_token'")
            if token not in keys:
                raise ValueError(f"sample {token}: not in the info file {self.ann_file}")
            self.results.append({"token": token, "key": keys[token], "frame": frame_from_prediction(pred)})

    def _ground_truth_path(self) -> Path:
        path = Path(self.ground_truth)
        return path if path.is_absolute() or not self.data_root else Path(self.data_root) / path

    def compute_metrics(self, results: list) -> dict[str, float]:
        # Each sample once, in collection order (docs/distributed.md, evaluation under DDP).
        self.scored_tokens = check_each_sample_once((r["token"] for r in results), type(self).__name__)
        logger = MMLogger.get_current_instance()
        frames = {r["key"]: r["frame"] for r in results}
        if self.format_only:
            from .lane_submission import build_lane_submission, write_lane_submission

            out_dir = Path(self.out_dir or "work_dirs/lane_submission")
            submission = build_lane_submission(frames, **self.envelope)
            path = write_lane_submission(
                out_dir / "submission.pkl", submission, expected_keys=list(self._all_keys().values())
            )
            logger.info(f"OpenLane-V2 submission ({len(frames)} frames) written to {path}")
            return {}
        gt_all = load_lane_ground_truth(self._ground_truth_path())
        wanted = list(dict.fromkeys(self._all_keys().values()))
        missing_gt = [k for k in wanted if k not in gt_all]
        if missing_gt:
            raise OpenLaneV2EvaluationError(
                f"frame {missing_gt[0]!r}: in {self.ann_file} but not in the ground truth {self._ground_truth_path()}"
            )
        gt = {k: gt_all[k] for k in wanted}
        metrics = evaluate_ols(gt, {k: {"predictions": f} for k, f in frames.items()})
        logger.info(f"OpenLane-V2 ({len(gt)} frames)\n" + format_ols_table(metrics))
        return metrics
