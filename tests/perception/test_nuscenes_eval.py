"""Results conversion and scoring through the real nuScenes DetectionEval on the synthetic world."""

from __future__ import annotations

import json
import pickle
import zipfile

import numpy as np
import pytest

from perception.data.infos import load_infos
from perception.evaluation.nuscenes import (
    NuScenesDetectionMetric,
    SubmissionError,
    evaluate_results,
    predictions_to_submission,
    validate_submission,
    write_json_atomic,
)
from perception.structures.classes import DETECTION_CLASSES


@pytest.fixture(scope="module")
def val_infos(synthetic_world):
    return load_infos(synthetic_world.val_infos)[1]


def gt_predictions(infos, attributes: bool = True) -> list[dict]:
    """Ground truth (boxes the devkit keeps: with LiDAR points, a detection class) as predictions."""
    preds = []
    for info in infos:
        keep = info["valid_flag"] & (info["gt_labels"] >= 0)
        pred = dict(
            sample_token=info["token"],
            boxes=info["gt_boxes"][keep].copy(),
            scores=np.ones(keep.sum()),
            labels=info["gt_labels"][keep].copy(),
        )
        if attributes:
            pred["attributes"] = list(info["gt_attributes"][keep])
        preds.append(pred)
    return preds


def score(preds, infos, world, nusc, tmp_path, name="results.json") -> dict:
    path = write_json_atomic(predictions_to_submission(preds, infos), tmp_path / name)
    return evaluate_results(path, str(world.root), world.version, "mini_val", tmp_path / "eval", nusc=nusc)


def test_ground_truth_scores_nds_one(val_infos, synthetic_world, nusc, tmp_path):
    metrics = score(gt_predictions(val_infos), val_infos, synthetic_world, nusc, tmp_path)
    assert metrics["NDS"] == pytest.approx(1.0, abs=1e-6)
    assert all(metrics[f"AP/{c}"] == pytest.approx(1.0) for c in DETECTION_CLASSES)
    assert (tmp_path / "eval" / "metrics_summary.json").exists()


def test_degraded_predictions_score_lower_in_the_expected_metric(val_infos, synthetic_world, nusc, tmp_path):
    shifted = gt_predictions(val_infos)
    for p in shifted:
        p["boxes"][:, 0] += 1.0  # 1 m along ego x
    m = score(shifted, val_infos, synthetic_world, nusc, tmp_path, "shift.json")
    assert m["mATE"] == pytest.approx(1.0, abs=1e-6)  # centre distance is 2-D: exactly the shift
    assert m["mAP"] < 0.8 and m["mASE"] == pytest.approx(0, abs=1e-6)

    turned = gt_predictions(val_infos)
    for p in turned:
        p["boxes"][:, 6] += 0.5
    m = score(turned, val_infos, synthetic_world, nusc, tmp_path, "turn.json")
    assert m["mAOE"] == pytest.approx(0.5, abs=1e-6) and m["mAP"] == pytest.approx(1.0)

    faster = gt_predictions(val_infos)
    for p in faster:
        p["boxes"][:, 8] += 2.0
    m = score(faster, val_infos, synthetic_world, nusc, tmp_path, "vel.json")
    assert m["mAVE"] == pytest.approx(2.0, abs=1e-6) and m["mAP"] == pytest.approx(1.0)

    dropped = gt_predictions(val_infos)[::2]  # every second sample predicts nothing: recall <= ~0.5
    m = score(dropped, val_infos, synthetic_world, nusc, tmp_path, "drop.json")
    assert m["mAP"] < 0.7 and m["mATE"] == pytest.approx(0, abs=1e-6)

    wrong = gt_predictions(val_infos, attributes=False)
    car, truck = DETECTION_CLASSES.index("car"), DETECTION_CLASSES.index("truck")
    for p in wrong:
        p["labels"] = np.where(p["labels"] == car, truck, p["labels"])
    m = score(wrong, val_infos, synthetic_world, nusc, tmp_path, "wrong.json")
    assert m["AP/car"] == 0.0 and m["AP/truck"] < 0.9 and m["AP/bus"] == pytest.approx(1.0)


def test_results_are_in_the_global_frame(val_infos, synthetic_world, nusc):
    info = val_infos[1]
    sub = predictions_to_submission(gt_predictions([info]), [info])
    rec = sub["results"][info["token"]][0]
    ann = nusc.get("sample_annotation", info["ann_tokens"][info["valid_flag"] & (info["gt_labels"] >= 0)][0])
    np.testing.assert_allclose(rec["translation"], ann["translation"], atol=1e-6)
    np.testing.assert_allclose(rec["size"], ann["size"], atol=1e-6)
    assert abs(abs(np.dot(rec["rotation"], ann["rotation"])) - 1) < 1e-9
    np.testing.assert_allclose(rec["velocity"], nusc.box_velocity(ann["token"])[:2], atol=1e-6)


def test_attribute_heuristic_without_predicted_attributes(val_infos):
    sub = predictions_to_submission(gt_predictions(val_infos, attributes=False), val_infos)
    validate_submission(sub, [i["token"] for i in val_infos])
    for records in sub["results"].values():
        for r in records:
            speed = np.hypot(*r["velocity"])
            if r["detection_name"] == "car":
                assert r["attribute_name"] == ("vehicle.moving" if speed > 0.2 else "vehicle.parked")
            if r["detection_name"] in ("barrier", "traffic_cone"):
                assert r["attribute_name"] == ""


def _valid_submission(infos):
    return predictions_to_submission(gt_predictions(infos), infos)


@pytest.mark.parametrize(
    "breakage, message",
    [
        ("missing", "no entry"),
        ("too_many", "at most 500"),
        ("nan", "finite"),
        ("name", "unknown detection_name"),
        ("attribute", "not valid for"),
        ("score", "detection_score"),
        ("meta", "meta lacks"),
    ],
)
def test_validation_rejects_bad_submissions(val_infos, breakage, message):
    sub = _valid_submission(val_infos)
    tokens = [i["token"] for i in val_infos]
    first = next(t for t in tokens if sub["results"][t])
    record = sub["results"][first][0]
    if breakage == "missing":
        del sub["results"][tokens[0]]
    elif breakage == "too_many":
        sub["results"][first] = [dict(record) for _ in range(501)]
    elif breakage == "nan":
        record["translation"][0] = float("nan")
    elif breakage == "name":
        record["detection_name"] = "vehicle.car"
    elif breakage == "attribute":
        record["attribute_name"] = "pedestrian.moving" if record["detection_name"] != "pedestrian" else ""
    elif breakage == "score":
        record["detection_score"] = 1.5
    elif breakage == "meta":
        del sub["meta"]["use_camera"]
    with pytest.raises(SubmissionError, match=message):
        validate_submission(sub, tokens)


def test_predictions_for_unknown_samples_are_rejected(val_infos):
    with pytest.raises(SubmissionError, match="not in the info file"):
        predictions_to_submission(
            [dict(sample_token="nope", boxes=np.zeros((0, 9)), scores=[], labels=[])], val_infos
        )


def test_atomic_write_leaves_no_temporary(tmp_path):
    write_json_atomic({"a": 1}, tmp_path / "x.json")
    assert [p.name for p in tmp_path.iterdir()] == ["x.json"]
    with pytest.raises(TypeError):
        write_json_atomic({"a": object()}, tmp_path / "x.json")
    assert [p.name for p in tmp_path.iterdir()] == ["x.json"] and json.loads(
        (tmp_path / "x.json").read_text()
    )


def test_mmengine_metric_runs_the_devkit(val_infos, synthetic_world, tmp_path):
    from perception.engine.registry import METRICS

    metric = METRICS.build(
        dict(
            type="NuScenesDetectionMetric",
            ann_file=str(synthetic_world.val_infos),
            data_root=str(synthetic_world.root),
            version="v1.0-mini",
            out_dir=str(tmp_path),
        )
    )
    assert isinstance(metric, NuScenesDetectionMetric)
    import torch

    preds = gt_predictions(val_infos)
    metric.process(
        {},
        [{**p, "boxes": torch.as_tensor(p["boxes"]), "scores": torch.as_tensor(p["scores"])} for p in preds],
    )
    result = metric.evaluate(len(preds))
    assert result["nuscenes/NDS"] == pytest.approx(1.0, abs=1e-6)


def test_submit_tool_writes_meta_and_zip(val_infos, synthetic_world, tmp_path):
    from tests.tool_loader import load_tool

    submit = load_tool("submit")
    preds = tmp_path / "preds.pkl"
    preds.write_bytes(pickle.dumps(gt_predictions(val_infos, attributes=False)[:-1]))  # one sample missing
    out = tmp_path / "sub" / "results_nusc.json"
    assert (
        submit.main(
            [
                "--predictions",
                str(preds),
                "--infos",
                str(synthetic_world.val_infos),
                "--out",
                str(out),
                "--zip",
                "--allow-missing",
            ]
        )
        == 0
    )
    data = json.loads(out.read_text())
    assert data["meta"] == dict(
        use_camera=True, use_lidar=False, use_radar=False, use_map=False, use_external=False
    )
    assert set(data["results"]) == {i["token"] for i in val_infos}
    assert data["results"][val_infos[-1]["token"]] == []
    with zipfile.ZipFile(out.with_suffix(".zip")) as z:
        assert z.namelist() == ["results_nusc.json"]
