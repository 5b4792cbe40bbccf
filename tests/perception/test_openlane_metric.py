"""OpenLane-V2 Score v2.1 (perception/evaluation/openlane_v2.py, docs/lanes.md): the distances, the AP and
the topology AP on values worked out by hand below, sanity of the whole score (GT as predictions, shifted
lanes, dropped elements, random topology), equality with the official devkit (``openlanev2``, the oracle,
where installed), the model-output conversion and the mmengine metric."""

from __future__ import annotations

import copy
import math
import pickle
import sys
import types

import numpy as np
import pytest
import torch

from perception.engine.registry import METRICS
from perception.evaluation.openlane_v2 import (
    OpenLaneV2EvaluationError,
    OpenLaneV2Metric,
    average_precision_11pt,
    box_distance_matrix,
    chamfer_distance,
    evaluate_ols,
    format_ols_table,
    frame_from_prediction,
    frechet_distance,
    greedy_tp_fp,
    iou_distance,
    lane_distance_matrix,
    pooled_average_precision,
    relaxation_factor,
)

COMPONENTS = ("OLS", "DET_l", "DET_t", "TOP_ll", "TOP_lt")


# -- synthetic ground truth and predictions (shared with test_lane_submission.py) ------------------------
def make_ground_truth(rng: np.random.Generator, num_frames: int = 4, max_lanes: int = 8, max_tes: int = 5) -> dict:
    """A devkit-style data_dict: 11-point float32 lanes anywhere in +-60 x +-30 m, float32 boxes in a
    1920 x 1080 image, int8 topology. The first frame may have no lane at all."""
    gt = {}
    for f in range(num_frames):
        num_l = int(rng.integers(0 if f == 0 else 1, max_lanes + 1))
        num_k = int(rng.integers(0, max_tes + 1))
        t = np.linspace(0, 1, 11)[:, None]
        lanes = []
        for i in range(num_l):
            start = rng.uniform([-60, -30, -1], [60, 30, 1])
            heading = rng.uniform(0, 2 * np.pi)
            d = np.array([np.cos(heading), np.sin(heading), rng.uniform(-0.02, 0.02)])
            bend = rng.normal(0, 2) * (t * (1 - t)) * np.array([-d[1], d[0], 0])
            pts = start + t * rng.uniform(8, 35) * d + bend
            lanes.append({"id": 100 + i, "points": pts.astype(np.float32)})
        tes = []
        for k in range(num_k):
            x1, y1 = rng.uniform([0, 0], [1800, 1000])
            w, h = rng.uniform([15, 15], [120, 120])
            tes.append({
                "id": 200 + k,
                "category": int(rng.integers(1, 3)),
                "attribute": int(rng.integers(0, 13)),
                "points": np.array([[x1, y1], [x1 + w, y1 + h]], np.float32),
            })
        lclc = (rng.random((num_l, num_l)) < 0.25).astype(np.int8)
        np.fill_diagonal(lclc, 0)
        lcte = (rng.random((num_l, num_k)) < 0.3).astype(np.int8)
        key = ("val", f"{10000 + f // 2}", f"{315967000000000000 + 100000 * f}")
        gt[key] = {"annotation": {
            "lane_centerline": lanes, "traffic_element": tes, "topology_lclc": lclc, "topology_lcte": lcte,
        }}
    return gt


def perturb(rng: np.random.Generator, gt: dict) -> dict:
    """Predictions (key -> {'predictions': frame}) from GT: lanes kept with p = 0.8 and shifted by
    0.1-1.2 m (some reversed), random extra lanes, elements jittered with their attribute confused with
    p = 0.2, extra elements, shuffled order, random confidences and topology confidences that lean
    towards the GT edges."""
    results = {}
    t = np.linspace(0, 1, 11)[:, None]
    for key, frame in gt.items():
        a = frame["annotation"]
        lanes, src_l = [], []
        for i, lane in enumerate(a["lane_centerline"]):
            if rng.random() < 0.8:
                shift = rng.normal(0, rng.uniform(0.1, 1.2), (1, 3))
                pts = lane["points"].astype(np.float64) + shift + rng.normal(0, 0.2, (11, 3))
                lanes.append(pts[::-1] if rng.random() < 0.1 else pts)
                src_l.append(i)
        for _ in range(int(rng.integers(0, 3))):
            lanes.append(rng.uniform([-60, -30, -1], [60, 30, 1], (1, 3)) + t * rng.uniform(-20, 20, 3))
            src_l.append(-1)
        tes, src_t = [], []
        for k, te in enumerate(a["traffic_element"]):
            if rng.random() < 0.8:
                box = te["points"].astype(np.float64) + rng.normal(0, 6, (2, 2))
                attr = te["attribute"] if rng.random() < 0.8 else int(rng.integers(0, 13))
                tes.append((np.stack([box.min(0), box.max(0)]), attr))
                src_t.append(k)
        for _ in range(int(rng.integers(0, 2))):
            x1, y1 = rng.uniform([0, 0], [1800, 1000])
            tes.append((np.array([[x1, y1], [x1 + 50, y1 + 40]]), int(rng.integers(0, 13))))
            src_t.append(-1)
        pl, pt = rng.permutation(len(lanes)), rng.permutation(len(tes))
        lanes, src_l = [lanes[i] for i in pl], [src_l[i] for i in pl]
        tes, src_t = [tes[i] for i in pt], [src_t[i] for i in pt]
        num_l, num_k = len(lanes), len(tes)
        lclc = rng.random((num_l, num_l)) * 0.6
        lcte = rng.random((num_l, num_k)) * 0.6
        for i in range(num_l):
            for j in range(num_l):
                if min(src_l[i], src_l[j]) >= 0 and a["topology_lclc"][src_l[i], src_l[j]]:
                    lclc[i, j] += 0.1 + 0.4 * rng.random()
            for k in range(num_k):
                if src_l[i] >= 0 and src_t[k] >= 0 and a["topology_lcte"][src_l[i], src_t[k]]:
                    lcte[i, k] += 0.1 + 0.4 * rng.random()
        results[key] = {"predictions": {
            "lane_centerline": [
                {"id": i, "points": p.astype(np.float32), "confidence": float(rng.random())}
                for i, p in enumerate(lanes)
            ],
            "traffic_element": [
                {"id": num_l + k, "attribute": at, "points": b.astype(np.float32), "confidence": float(rng.random())}
                for k, (b, at) in enumerate(tes)
            ],
            "topology_lclc": np.clip(lclc, 0, 1).astype(np.float32),
            "topology_lcte": np.clip(lcte, 0, 1).astype(np.float32),
        }}
    return results


def gt_as_predictions(gt: dict) -> dict:
    """Every GT instance predicted exactly, confidence 1, the GT topology as the predicted one."""
    out = {}
    for key, frame in gt.items():
        a = frame["annotation"]
        out[key] = {"predictions": {
            "lane_centerline": [
                {"id": x["id"], "points": x["points"].copy(), "confidence": 1.0} for x in a["lane_centerline"]
            ],
            "traffic_element": [
                {"id": x["id"], "attribute": x["attribute"], "points": x["points"].copy(), "confidence": 1.0}
                for x in a["traffic_element"]
            ],
            "topology_lclc": a["topology_lclc"].astype(np.float32),
            "topology_lcte": a["topology_lcte"].astype(np.float32),
        }}
    return out


def straight(x0: float, x1: float, y: float, z: float = 0.0, n: int = 11) -> np.ndarray:
    """An n-point straight lane from (x0, y) to (x1, y)."""
    x = np.linspace(x0, x1, n)
    return np.stack([x, np.full(n, y), np.full(n, z)], 1)


# -- distances ------------------------------------------------------------------------------------------
def test_frechet_on_hand_made_polylines():
    a = np.array([[0, 0, 0], [1, 0, 0], [2, 0, 0]], float)
    # b is a shifted 1 m sideways: the diagonal coupling pairs points 1 m apart -> 1.
    assert frechet_distance(a, a + [0, 1, 0]) == pytest.approx(1.0)
    # Reversed: the first points (0,0)-(2,1) and the last (2,0)-(0,1) must be coupled: sqrt(5); the
    # middle pair is 1 m apart, so the coupling gives max(sqrt 5, 1, sqrt 5). Chamfer cannot see it (1 m).
    rev = (a + [0, 1, 0])[::-1]
    assert frechet_distance(a, rev) == pytest.approx(math.sqrt(5))
    assert chamfer_distance(a, rev) == pytest.approx(1.0)
    # Different point counts: (0,0)-(4,0) against (0,0)-(2,1)-(4,0). Ends couple at 0; the middle point
    # (2,1) must couple with an end of a, sqrt(2^2 + 1) = sqrt 5 away.
    two = np.array([[0, 0, 0], [4, 0, 0]], float)
    three = np.array([[0, 0, 0], [2, 1, 0], [4, 0, 0]], float)
    assert frechet_distance(two, three) == pytest.approx(math.sqrt(5))
    assert frechet_distance(three, two) == pytest.approx(math.sqrt(5))  # symmetric
    # Chamfer(gt=two, pred=three): predicted points to GT 0, sqrt 5, 0 (mean sqrt5 / 3); GT points to the
    # prediction 0, 0 (mean 0); half the sum: sqrt 5 / 6.
    assert chamfer_distance(two, three) == pytest.approx(math.sqrt(5) / 6)
    # A closed GT polyline drops its repeated last point: square (0,0),(1,0),(1,1),(0,1),(0,0) against the
    # single point (0,0): GT points 0, 1, sqrt2, 1 (mean (2 + sqrt2) / 4), the prediction 0 -> half.
    square = np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0], [0, 0, 0]], float)
    assert chamfer_distance(square, np.zeros((1, 3))) == pytest.approx((2 + math.sqrt(2)) / 8)


def test_relaxation_factor_uses_the_nearest_gt_point_in_3d():
    assert relaxation_factor([[30, 40, 0], [60, 80, 0]]) == pytest.approx(1 - 0.005 * 50)  # 0.75
    assert relaxation_factor([[3, 4, 12], [30, 40, 0]]) == pytest.approx(1 - 0.005 * 13)  # |(3,4,12)| = 13
    assert relaxation_factor([[0, 0, 120]]) == 0.5  # 1 - 0.6 clipped at 0.5
    assert relaxation_factor([[0, 0, 0], [500, 0, 0]]) == 1.0


def test_lane_distance_matrix_relaxes_and_prefilters_on_the_relaxed_chamfer():
    near = straight(0, 10, 0)  # touches the ego origin: factor 1
    far = straight(100, 110, 0)  # 100 m away: factor 0.5
    preds = [near + [0, 2.9, 0], near + [0, 3.1, 0], far + [0, 5.9, 0], far + [0, 6.1, 0], near[::-1]]
    d = lane_distance_matrix([near, far], preds)
    # near: shift 2.9 -> Chamfer 2.9 < 3 -> Frechet 2.9; shift 3.1 -> Chamfer 3.1 -> filtered: 1024.
    assert d[0, 0] == pytest.approx(2.9)
    assert d[0, 1] == 1024
    # far: Chamfer 5.9 x 0.5 = 2.95 < 3 kept (Frechet 5.9 x 0.5); 6.1 x 0.5 = 3.05 filtered.
    assert d[1, 2] == pytest.approx(2.95)
    assert d[1, 3] == 1024
    # reversed near lane: Chamfer 0 passes, Frechet = the lane's length (its ends swap): 10 m.
    assert d[0, 4] == pytest.approx(10.0)
    # 11-point GT (x = 0, 1, ..., 10) against a 3-point prediction (x = 0, 5, 10) on the same line, batched
    # by point count. Discrete: GT points 0..2 couple with 0, 3..7 with 5, 8..10 with 10, so the worst
    # pair is 2 m apart (x = 2, 8 cannot do better); Chamfer (0 + 12/11) / 2 passes the filter.
    assert lane_distance_matrix([near], [straight(0, 10, 0, n=3)])[0, 0] == pytest.approx(2.0)


def test_iou_distance():
    a = np.array([[0, 0], [2, 2]], float)
    # [[1,0],[3,2]] overlaps a in a 1 x 2 strip: IoU = 2 / (4 + 4 - 2) = 1/3.
    assert iou_distance(a, np.array([[1, 0], [3, 2]], float)) == pytest.approx(2 / 3)
    assert iou_distance(a, a) == 0
    assert iou_distance(a, a + 5) == 1
    assert box_distance_matrix([a], []).shape == (1, 0)


# -- detection AP ---------------------------------------------------------------------------------------
def test_11_point_ap_by_hand():
    # 3 GT; ranked predictions TP, FP, TP: recall 1/3, 1/3, 2/3; precision 1, 1/2, 2/3. Recall points
    # 0, .1, .2, .3 (<= 1/3) take the best precision 1; .4, .5, .6 only reach 2/3 -> 2/3; .7..1 -> 0.
    # AP = (4 * 1 + 3 * 2/3) / 11 = 6/11.
    tp = np.array([1, 0, 1], np.float32)
    fp = 1 - tp
    # pooled over two frames: frame 1 holds the 1st and 3rd predictions, frame 2 the FP.
    ap = pooled_average_precision([tp[[0, 2]], fp[[1]] * 0], [fp[[0, 2]], fp[[1]]], [[0.9, 0.5], [0.7]], 3)
    assert ap == pytest.approx(6 / 11, abs=1e-6)
    # 10 GT, 9 found at precision 1: recall 0.9 in float32 is 0.89999998 < 0.9 (the recall points are
    # float64), so like the devkit only the 9 points 0..0.8 count: 9/11, not 10/11.
    recalls = (np.arange(1, 10) / np.float32(10)).astype(np.float32)
    assert average_precision_11pt(recalls, np.ones(9, np.float32)) == pytest.approx(9 / 11, abs=1e-6)
    # Edge cases: neither GT nor predictions -> 1; GT only -> 0; predictions only -> 0.
    empty = np.zeros(0, np.float32)
    assert pooled_average_precision([empty], [empty], [[]], 0) == 1.0
    assert pooled_average_precision([empty], [empty], [[]], 2) == 0.0
    assert pooled_average_precision([np.zeros(1, np.float32)], [np.ones(1, np.float32)], [[0.5]], 0) == 0.0


def test_greedy_matching_takes_the_nearest_gt_only():
    # distances (GT x prediction); both predictions are nearest to GT 0. The confident one takes it;
    # the other is an FP although GT 1 lies within the threshold (0.9 < 1): no second choice.
    d = np.array([[0.5, 0.8], [2.0, 0.9]])
    tp, fp, matched = greedy_tp_fp(d, [0.9, 0.8], 1.0)
    assert tp.tolist() == [1, 0] and fp.tolist() == [0, 1] and matched.tolist() == [0, -1]
    tp, fp, matched = greedy_tp_fp(d, [0.1, 0.8], 1.0)  # the order flips with the confidences
    assert tp.tolist() == [0, 1] and matched.tolist() == [-1, 0]
    tp, fp, _ = greedy_tp_fp(np.zeros((0, 2)), [0.5, 0.4], 1.0)
    assert fp.tolist() == [1, 1]


# -- the hand-made topology frame ----------------------------------------------------------------------
KEY = ("val", "00000", "315967000000000000")


def hand_frame() -> tuple[dict, dict]:
    """GT lanes A, B, C (20 m apart, 10 m long), A -> B -> C; elements T0 (red) on A, T1 (go_straight) on
    C. Predicted: A and B exactly, C *reversed* (so unmatched: its Frechet distance is its length), T0
    exactly, T1 not at all."""
    a, b, c = straight(0, 10, -20), straight(0, 10, 0), straight(0, 10, 20)
    t0 = np.array([[100, 100], [140, 150]], np.float32)
    t1 = np.array([[600, 100], [640, 150]], np.float32)
    gt = {KEY: {"annotation": {
        "lane_centerline": [{"id": 1, "points": a}, {"id": 2, "points": b}, {"id": 3, "points": c}],
        "traffic_element": [
            {"id": 4, "category": 1, "attribute": 1, "points": t0},
            {"id": 5, "category": 2, "attribute": 4, "points": t1},
        ],
        "topology_lclc": np.array([[0, 1, 0], [0, 0, 1], [0, 0, 0]], np.int8),
        "topology_lcte": np.array([[1, 0], [0, 0], [0, 1]], np.int8),
    }}}
    lclc = np.full((3, 3), 0.2, np.float32)
    lclc[0, 1], lclc[1, 0], lclc[1, 2] = 0.9, 0.7, 0.8
    pred = {KEY: {"predictions": {
        "lane_centerline": [
            {"id": 0, "points": a.copy(), "confidence": 0.9},
            {"id": 1, "points": b.copy(), "confidence": 0.8},
            {"id": 2, "points": c[::-1].copy(), "confidence": 0.7},
        ],
        "traffic_element": [{"id": 3, "attribute": 1, "points": t0.copy(), "confidence": 0.6}],
        "topology_lclc": lclc,
        "topology_lcte": np.array([[0.6], [0.9], [0.3]], np.float32),
    }}}
    return gt, pred


def test_hand_made_frame():
    gt, pred = hand_frame()
    m = evaluate_ols(gt, pred)
    # DET_l: A, B matched (distance 0), reversed C: Frechet 10 x 0.9 (C is 20 m out) -> FP at every
    # threshold. Ranked TP, TP, FP: recall 1/3, 2/3, 2/3, precision 1, 1, 2/3 -> points 0..0.6 give 1
    # (2/3 >= 0.6), 0.7..1 give 0: 7/11.
    for t in ("1.0", "2.0", "3.0"):
        assert m[f"DET_l@{t}"] == pytest.approx(7 / 11, abs=1e-6)
    assert m["DET_l"] == pytest.approx(7 / 11, abs=1e-6)
    # DET_t: red found (AP 1), go_straight missed (GT only: 0), 11 absent attributes: 1 -> 12/13.
    assert m["DET_t/red"] == 1 and m["DET_t/go_straight"] == 0 and m["DET_t/unknown"] == 1
    assert m["DET_t"] == pytest.approx(12 / 13, abs=1e-6)
    # TOP_ll: carried onto GT (rows A, B, C), C unmatched -> its entries are (1 - gt)(0.5 + eps) = f:
    #   [[.2, .9, f], [.7, .2, 0], [f, f, f]]   (B -> C is a GT edge: 0, "not predicted")
    # rows: A: GT {B}, ranked B(.9), C(f) -> P@1 = 1 -> 1;  B: GT {C}, only A(.7) above 0.5 -> 0;
    #       C: no GT neighbour, but A, B, C at f -> 0.
    # cols: A: no GT, B(.7), C(f) -> 0;  B: GT {A}, ranked A(.9), C(f) -> 1;  C: GT {B}, A and C at f -> 0.
    # mean (1 + 0 + 0 + 0 + 1 + 0) / 6 = 1/3, the same at the three thresholds.
    assert m["TOP_ll"] == pytest.approx(1 / 3, abs=1e-6)
    # TOP_lt: rows A, B, C x columns T0, T1; T1 and C unmatched:
    #   [[.6, f], [.9, f], [f, 0]]
    # rows: A: GT {T0}, ranked T0(.6), T1(f) -> 1;  B: none, T0, T1 predicted -> 0;  C: GT {T1} (at 0),
    #       T0 at f -> 0.  cols: T0: GT {A}, ranked B(.9), A(.6), C(f) -> P@2 = 1/2 -> 0.5;
    #       T1: GT {C} (at 0), A, B at f -> 0.  Mean (1 + 0 + 0 + 0.5 + 0) / 5 = 0.3.
    assert m["TOP_lt"] == pytest.approx(0.3, abs=1e-6)
    expected = (7 / 11 + 12 / 13 + math.sqrt(1 / 3) + math.sqrt(0.3)) / 4
    assert m["OLS"] == pytest.approx(expected, abs=1e-6)
    # The same prediction with C in its own direction matches C: DET_l and both topologies change.
    pred[KEY]["predictions"]["lane_centerline"][2]["points"] = gt[KEY]["annotation"]["lane_centerline"][2]["points"]
    assert evaluate_ols(gt, pred)["DET_l"] == 1


# -- the whole score ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def synthetic_gt() -> dict:
    return make_ground_truth(np.random.default_rng(7), num_frames=6)


def test_ground_truth_as_predictions_scores_one(synthetic_gt):
    m = evaluate_ols(synthetic_gt, gt_as_predictions(synthetic_gt))
    assert all(m[k] == 1.0 for k in COMPONENTS), {k: m[k] for k in COMPONENTS}
    table = format_ols_table(m)
    assert "OLS" in table and "DET_t / slight_right" in table and "100.00" in table


def test_each_component_reacts_to_its_own_error(synthetic_gt):
    base = gt_as_predictions(synthetic_gt)
    shifted = copy.deepcopy(base)
    for entry in shifted.values():
        for lane in entry["predictions"]["lane_centerline"]:
            lane["points"] = lane["points"] + np.float32([1.5, 0, 0])
    m = evaluate_ols(synthetic_gt, shifted)
    assert m["DET_l"] < 1 and m["DET_l@1.0"] < m["DET_l@3.0"] == 1
    assert m["DET_t"] == 1  # the lane-free parts stay
    assert m["OLS"] < 1

    no_te = copy.deepcopy(base)
    for entry in no_te.values():
        p = entry["predictions"]
        p["traffic_element"] = []
        p["topology_lcte"] = np.zeros((len(p["lane_centerline"]), 0), np.float32)
    m = evaluate_ols(synthetic_gt, no_te)
    assert m["DET_t"] < 1 and m["TOP_lt"] < 1
    assert m["DET_l"] == 1 and m["TOP_ll"] == 1

    rng = np.random.default_rng(0)
    random_topology = copy.deepcopy(base)
    for entry in random_topology.values():
        p = entry["predictions"]
        p["topology_lclc"] = rng.random(p["topology_lclc"].shape).astype(np.float32)
        p["topology_lcte"] = rng.random(p["topology_lcte"].shape).astype(np.float32)
    m = evaluate_ols(synthetic_gt, random_topology)
    assert m["TOP_ll"] < 1 and m["TOP_lt"] < 1
    assert m["DET_l"] == 1 and m["DET_t"] == 1


def test_a_missing_frame_is_named(synthetic_gt):
    preds = gt_as_predictions(synthetic_gt)
    key = list(synthetic_gt)[2]
    del preds[key]
    with pytest.raises(OpenLaneV2EvaluationError, match=f"frame {key!r}".replace("(", r"\(").replace(")", r"\)")):
        evaluate_ols(synthetic_gt, preds)


# -- the official devkit as the oracle ------------------------------------------------------------------
@pytest.fixture(scope="module")
def devkit_ols():
    """OLS of the official devkit ``openlanev2.centerline.evaluation.evaluate``.

    Its module imports ``ortools.graph.pywrapgraph`` (gone from modern ortools) for the F-score, which is
    not part of OLS: where the import fails, a stand-in module is registered for it, and the F-score
    function is replaced by a stub returning NaN, so only the OLS of the oracle is used."""
    pytest.importorskip("openlanev2")
    with pytest.MonkeyPatch.context() as mp:
        try:
            import ortools.graph.pywrapgraph  # noqa: F401
        except ImportError:
            for name in ("ortools", "ortools.graph", "ortools.graph.pywrapgraph"):
                mp.setitem(sys.modules, name, types.ModuleType(name))
            sys.modules["ortools.graph"].pywrapgraph = sys.modules["ortools.graph.pywrapgraph"]
        pytest.importorskip("openlanev2.centerline.evaluation")
        devkit = sys.modules["openlanev2.centerline.evaluation.evaluate"]
        mp.setattr(devkit.f1, "bench_one_submit", lambda gts, preds: float("nan"))  # F-score stub

        def ols(gt: dict, results: dict) -> dict:
            submission = {
                "method": "m", "authors": [], "e-mail": "", "institution / company": "", "country / region": "CN",
                "results": copy.deepcopy(results),  # the devkit writes its matches into the predictions
            }
            score = devkit.evaluate(copy.deepcopy(gt), submission, verbose=False)["OpenLane-V2 Score"]
            return {"OLS": float(score["score"]), **{k: float(score[k]) for k in COMPONENTS[1:]}}

        yield ols


@pytest.mark.parametrize("seed", range(5))
def test_equals_the_devkit_on_perturbed_synthetic_frames(devkit_ols, seed):
    rng = np.random.default_rng(seed)
    gt = make_ground_truth(rng, num_frames=5)
    preds = perturb(rng, gt)
    ours = evaluate_ols(gt, preds)
    theirs = devkit_ols(gt, preds)
    assert 0 < ours["OLS"] < 1
    for k in COMPONENTS:  # same float32 arithmetic as the devkit: equal, not just close
        assert ours[k] == pytest.approx(theirs[k], abs=1e-9), k


def test_equals_the_devkit_on_the_hand_made_frame(devkit_ols):
    gt, pred = hand_frame()
    ours, theirs = evaluate_ols(gt, pred), devkit_ols(gt, pred)
    for k in COMPONENTS:
        assert ours[k] == pytest.approx(theirs[k], abs=1e-9), k


# -- model output -> devkit frame, the mmengine metric --------------------------------------------------
def model_output(token: str, num_l: int = 3, num_k: int = 2, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {"sample_token": token, "lanes": {
        "lane_points": torch.rand(num_l, 11, 3, generator=g) * 20,
        "lane_scores": torch.rand(num_l, generator=g),
        "te_boxes": torch.tensor([[10.0, 20.0, 50.0, 60.0]] * num_k),
        "te_attributes": torch.arange(num_k),
        "te_scores": torch.rand(num_k, generator=g),
        "topology_lclc": torch.rand(num_l, num_l, generator=g),
        "topology_lcte": torch.rand(num_l, num_k, generator=g),
    }}


def test_frame_from_prediction():
    out = model_output("s0")
    frame = frame_from_prediction(out)
    assert [x["id"] for x in frame["lane_centerline"]] == [0, 1, 2]
    assert [x["id"] for x in frame["traffic_element"]] == [3, 4]
    te = frame["traffic_element"][1]
    assert te["attribute"] == 1 and te["points"].tolist() == [[10, 20], [50, 60]]
    assert te["points"].dtype == np.float32 and frame["topology_lcte"].shape == (3, 2)
    assert frame["lane_centerline"][2]["confidence"] == pytest.approx(float(out["lanes"]["lane_scores"][2]))
    np.testing.assert_array_equal(frame["lane_centerline"][0]["points"], out["lanes"]["lane_points"][0].numpy())
    empty = frame_from_prediction(model_output("s1", num_l=0, num_k=0))
    assert empty["lane_centerline"] == [] and empty["topology_lclc"].shape == (0, 0)
    del out["lanes"]["te_scores"]
    with pytest.raises(ValueError, match="sample s0: lane prediction has no 'te_scores'"):
        frame_from_prediction(out)
    bad = model_output("s2")
    bad["lanes"]["topology_lcte"] = torch.rand(3, 3)
    with pytest.raises(ValueError, match=r"sample s2: topology_lcte has shape \(3, 3\), expected \(3, 2\)"):
        frame_from_prediction(bad)


def _metric_with_keys(monkeypatch, tokens_to_keys: dict, **kwargs) -> OpenLaneV2Metric:
    """An OpenLaneV2Metric whose info file holds the given samples (load_infos patched)."""
    import perception.data.infos as infos_module

    infos = [{"token": t, **({"openlane_key": k} if k is not None else {})} for t, k in tokens_to_keys.items()]
    monkeypatch.setattr(infos_module, "load_infos", lambda path: ({}, infos))
    return METRICS.build(dict(type="OpenLaneV2Metric", ann_file="infos.pkl", **kwargs))


def test_mmengine_metric_scores_and_formats(tmp_path, monkeypatch):
    gt = make_ground_truth(np.random.default_rng(3), num_frames=3)
    keys = list(gt)
    tokens = {f"tok{i}": k for i, k in enumerate(keys)}
    with open(tmp_path / "gt.pkl", "wb") as f:
        pickle.dump(gt, f)
    outputs = [model_output(t, seed=i) for i, t in enumerate(tokens)]
    expected = evaluate_ols(gt, {k: {"predictions": frame_from_prediction(o)} for k, o in zip(keys, outputs)})

    metric = _metric_with_keys(monkeypatch, tokens, data_root=str(tmp_path), ground_truth="gt.pkl")
    assert metric.default_prefix == "lanes"
    metric.process({}, outputs)
    got = metric.compute_metrics(metric.results)
    assert {k: got[k] for k in COMPONENTS} == {k: expected[k] for k in COMPONENTS}

    fmt = _metric_with_keys(monkeypatch, tokens, format_only=True, out_dir=str(tmp_path / "sub"), method="ours",
                            authors=["A. Author"], country="DE")
    fmt.process({}, outputs)
    assert fmt.compute_metrics(fmt.results) == {}
    from perception.evaluation.lane_submission import load_lane_submission

    sub = load_lane_submission(tmp_path / "sub" / "submission.pkl")
    assert sub["method"] == "ours" and sub["country / region"] == "DE" and set(sub["results"]) == set(keys)


def test_mmengine_metric_needs_openlane_keys(monkeypatch):
    metric = _metric_with_keys(monkeypatch, {"tok0": KEY, "tok1": None}, ground_truth="gt.pkl")
    with pytest.raises(ValueError, match="sample tok1: the info has no 'openlane_key'"):
        metric.process({}, [model_output("tok0")])
