"""LET-3D-AP / LET-3D-APL against hand-computed cases (perception/evaluation/waymo_let.py), the rotated 3D IoU
it uses, and GT-as-predictions on the Waymo-format fixture."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from perception.evaluation.waymo_let import (
    SENSOR_LOCATION,
    WaymoLETMetric,
    average_precision,
    evaluate_let,
    flat_metrics,
    let_iou,
    longitudinal_affinity,
    match_frame,
)
from perception.structures.boxes import boxes_iou_3d
from tests.perception.waymo_data import waymo_data
from tests.tool_loader import load_tool

VEHICLE, PEDESTRIAN = 1, 2


def _car(x: float, y: float = 0.0, z: float = 1.0) -> list[float]:
    return [x, y, z, 2.0, 4.0, 2.0, 0.0, 0.0, 0.0]


def _frame(boxes, types, scores=None) -> dict:
    out = dict(boxes=np.array(boxes, np.float64).reshape(-1, 9), types=np.array(types, np.int64))
    if scores is not None:
        out["scores"] = np.array(scores, np.float64)
    return out


def test_iou_3d_by_hand():
    a = np.array([[0.0, 0, 0, 2, 4, 2, 0]])
    # Shifted 1 m along x and z: overlap 3 x 2 x 1 = 6, union 16 + 16 - 6 = 26.
    b = np.array([[1.0, 0, 1, 2, 4, 2, 0], [0.0, 0, 0, 4, 2, 2, math.pi / 2], [10.0, 0, 0, 2, 4, 2, 0]])
    np.testing.assert_allclose(boxes_iou_3d(a, b), [[6 / 26, 1.0, 0.0]], atol=1e-12)
    # A 2x2 square rotated by 45 degrees over an axis-aligned one: overlap 8 (sqrt(2) - 1) in BEV, same height.
    sq = np.array([[0.0, 0, 0, 2, 2, 1, 0]])
    rot = np.array([[0.0, 0, 0, 2, 2, 1, math.pi / 4]])
    inter = 8 * (math.sqrt(2) - 1)
    np.testing.assert_allclose(boxes_iou_3d(sq, rot), [[inter / (8 - inter)]], atol=1e-9)


def test_longitudinal_affinity_by_hand():
    s = SENSOR_LOCATION
    gt = s + np.array([[20.0, 0, 0]])  # 20 m from the sensor: tolerance 2 m
    preds = s + np.array([[20.0, 0, 0], [21.0, 0, 0], [23.0, 0, 0], [20.0, 5.0, 0]])
    # Lateral offsets do not count: (G . P) / |G| = 20 for the last one.
    np.testing.assert_allclose(longitudinal_affinity(gt, preds), [[1.0, 0.5, 0.0, 1.0]])
    near = s + np.array([[3.0, 0, 0]])  # 3 m: the 0.5 m minimum tolerance
    np.testing.assert_allclose(longitudinal_affinity(near, s + np.array([[3.25, 0, 0]])), [[0.5]])


def test_let_iou_slides_along_the_line_of_sight():
    s = SENSOR_LOCATION
    gt = np.array([_car(20.0 + s[0], 0.0, s[2])])
    along = np.array([_car(21.0 + s[0], 0.0, s[2])])  # 1 m too far, on G's line of sight: slides back exactly
    np.testing.assert_allclose(let_iou(gt, along), [[1.0]], atol=1e-12)
    across = np.array([_car(20.0 + s[0], 1.0, s[2])])  # 1 m to the side: sliding barely changes it
    direction = np.array([20.0, 1.0, 0.0])
    slid = direction * (20.0 * 20.0) / (direction @ direction)  # (G . P / |P|^2) P
    expected = boxes_iou_3d(gt[:, :7], np.array([[*(slid + s), 2.0, 4.0, 2.0, 0.0]]))
    np.testing.assert_allclose(let_iou(gt, across), expected, atol=1e-12)


def test_average_precision_by_hand():
    assert average_precision([1.0], [1.0]) == pytest.approx(1.0)
    assert average_precision([0.0], [0.0]) == pytest.approx(0.0)
    # One point (recall 0.5, precision 1): the fake recall-0 point has precision 1, then nothing past 0.5.
    assert average_precision([1.0], [0.5]) == pytest.approx(0.5)
    # Points (0.5, 1) and (1, 0.5): steps across the gap at the next point's precision; the first 0.05 step
    # is a trapezoid from 1 to 0.5: 0.5 + 0.05 * 0.75 + 0.45 * 0.5 = 0.7625.
    assert average_precision([1.0, 0.5], [0.5, 1.0]) == pytest.approx(0.7625)
    # Precision is made monotone from high recall to low: (0.5, 0.4) is lifted to 0.8 by (1, 0.8).
    assert average_precision([0.4, 0.8], [0.5, 1.0]) == pytest.approx(0.8)


def test_perfect_match_scores_one():
    gt = {("seg", 1): _frame([_car(20.0), _car(30.0, 5.0)], [VEHICLE, VEHICLE])}
    preds = {("seg", 1): _frame([_car(20.0), _car(30.0, 5.0)], [VEHICLE, VEHICLE], [0.9, 0.8])}
    result = evaluate_let(gt, preds)
    assert result["LET-3D-AP"]["vehicle"] == pytest.approx(1.0)
    assert result["LET-3D-APL"]["vehicle"] == pytest.approx(1.0)
    assert result["LET-3D-APL"]["overall"] == pytest.approx(1.0)
    assert result["LET-3D-AP"]["pedestrian"] is None  # no ground truth of that type


def test_line_of_sight_error_within_tolerance_lowers_only_apl():
    s = SENSOR_LOCATION
    g = np.array([30.0, 0.0, 0.0])  # 30 m straight ahead of the sensor: tolerance 3 m
    p = g * (31.5 / 30.0)  # 1.5 m too far along the line of sight: LA = 1 - 1.5 / 3 = 0.5
    gt = {("seg", 1): _frame([[*(g + s), 2.0, 4.0, 2.0, 0.0, 0, 0]], [VEHICLE])}
    preds = {("seg", 1): _frame([[*(p + s), 2.0, 4.0, 2.0, 0.0, 0, 0]], [VEHICLE], [0.7])}
    result = evaluate_let(gt, preds)
    assert result["LET-3D-AP"]["vehicle"] == pytest.approx(1.0)  # LET-IoU is 1 after sliding
    assert result["LET-3D-APL"]["vehicle"] == pytest.approx(0.5)
    rows, cols, la = match_frame(gt[("seg", 1)]["boxes"], preds[("seg", 1)]["boxes"], 0.3)
    assert list(rows) == [0] and list(cols) == [0] and la[0] == pytest.approx(0.5)


def test_misses_score_zero():
    gt = {("seg", 1): _frame([_car(20.0)], [VEHICLE]), ("seg", 2): _frame([_car(15.0)], [PEDESTRIAN])}
    preds = {
        ("seg", 1): _frame([_car(20.0, 8.0)], [VEHICLE], [0.9]),  # beside it: no overlap
        ("seg", 2): _frame([_car(15.0)], [VEHICLE], [0.9]),  # in place, but of another type
    }
    result = evaluate_let(gt, preds)
    assert result["LET-3D-AP"]["vehicle"] == 0.0 and result["LET-3D-APL"]["vehicle"] == 0.0
    assert result["LET-3D-AP"]["pedestrian"] == 0.0
    # A frame without predictions is all misses, too; a predicted frame outside the ground truth is an error.
    assert evaluate_let(gt, {})["LET-3D-AP"]["overall"] == 0.0
    with pytest.raises(ValueError, match="not ground-truth frames"):
        evaluate_let(gt, {("other", 1): _frame([], [], [])})


def test_hungarian_matching_prefers_the_best_total():
    # Two GT cars 3 m apart and two predictions: greedy by score would give the 0.9 box to the GT it overlaps
    # less; the assignment maximising IoU x LA matches each prediction to its own GT box.
    gt = np.array([_car(20.0, 0.0), _car(20.0, 3.0)])
    pred = np.array([_car(20.0, 0.6), _car(20.0, 3.0)])
    rows, cols, _ = match_frame(gt, pred, 0.3)
    assert sorted(zip(rows.tolist(), cols.tolist())) == [(0, 0), (1, 1)]


def test_gt_as_predictions_on_the_fixture_scores_one(tmp_path_factory, tmp_path):
    import pickle

    from perception.data.infos import load_infos

    data = waymo_data(tmp_path_factory)
    _, infos = load_infos(data.validation_infos)
    predictions = []
    for info in infos:
        keep = info["valid_flag"] & (info["gt_labels"] >= 0)
        predictions.append(dict(sample_token=info["token"], boxes=info["gt_boxes"][keep],
                                scores=np.full(keep.sum(), 0.9), labels=info["gt_labels"][keep]))
    path = tmp_path / "preds.pkl"
    path.write_bytes(pickle.dumps(predictions))
    submit = load_tool("submit")
    assert submit.main(["waymo", "--predictions", str(path), "--infos", str(data.validation_infos), "--out",
                        str(tmp_path / "sub" / "method"), "--method-name", "gt", "--account-name", "a@b.c",
                        "--shards", "2"]) == 0
    evaluate = load_tool("evaluate")
    out = tmp_path / "let.json"
    assert evaluate.main(["waymo", "--predictions", str(tmp_path / "sub" / "method.tar.gz"), "--ground-truth",
                          str(data.root / "validation"), "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["LET-3D-AP"]["overall"] == pytest.approx(1.0)
    assert result["LET-3D-APL"]["overall"] == pytest.approx(1.0)
    assert sum(result["num_gt"].values()) > 0

    # The registered mmengine metric gives the same on the infos' frames.
    metric = WaymoLETMetric(ann_file=str(data.validation_infos), ground_truth=str(data.root / "validation"),
                            out_dir=str(tmp_path / "eval"))
    metric.process(None, predictions)
    metrics = metric.compute_metrics(metric.results)
    assert metrics["LET-3D-APL"] == pytest.approx(1.0) and metrics["LET-3D-AP/vehicle"] == pytest.approx(1.0)
    assert set(flat_metrics(result)) == set(metrics)
    # format_only (the testing split): the predictions pickle that tools/submit.py waymo takes, no metrics.
    metric = WaymoLETMetric(ann_file=str(data.validation_infos), out_dir=str(tmp_path / "test"), format_only=True)
    metric.process(None, predictions[:1])
    assert metric.compute_metrics(metric.results) == {}
    written = pickle.loads((tmp_path / "test" / "waymo_predictions.pkl").read_bytes())
    assert [p["sample_token"] for p in written] == [predictions[0]["sample_token"]]
