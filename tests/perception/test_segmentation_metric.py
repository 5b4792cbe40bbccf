"""Segmentation mIoU (perception/evaluation/segmentation.py) with mmseg's definition: a hand-computed
two-image case, ground truth as prediction gives 100, the mmengine metric and
``tools/evaluate.py segmentation``."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from PIL import Image

from perception.evaluation.segmentation import (
    SegmentationAreas,
    SegmentationEvaluationError,
    SegmentationMetric,
    evaluate_label_map_folders,
    intersect_and_union,
    save_label_map,
)
from tests.tool_loader import load_tool

# Two 2x2 images, 3 classes, 255 ignored. Pooled over both (by hand):
#   class 0: I = 1 + 1 = 2, GT = 2 + 1 = 3, pred = 1 + 2 = 3 -> U = 4, IoU 50
#   class 1: I = 1 + 1 = 2, GT = 1 + 1 = 2, pred = 2 + 1 = 3 -> U = 3, IoU 66.67 (the ignored pixel's 1 not counted)
#   class 2: I = 1,         GT = 2,         pred = 1         -> U = 2, IoU 50
#   mIoU = (50 + 200/3 + 50) / 3 = 55.56; aAcc = 5 correct of 7 labelled pixels = 71.43
GT_A, PRED_A = [[0, 0], [1, 255]], [[0, 1], [1, 1]]
GT_B, PRED_B = [[2, 2], [0, 1]], [[2, 0], [0, 1]]
HAND_IOU = [50.0, 200.0 / 3, 50.0]
HAND_MIOU, HAND_AACC = (50.0 + 200.0 / 3 + 50.0) / 3, 500.0 / 7


def test_hand_computed_two_image_case():
    pooled = SegmentationAreas(3, ("a", "b", "c"))
    pooled.add(np.array(PRED_A), np.array(GT_A))
    pooled.add(np.array(PRED_B), np.array(GT_B))
    result = pooled.compute()
    assert result["mIoU"] == pytest.approx(HAND_MIOU)
    assert result["aAcc"] == pytest.approx(HAND_AACC)
    assert list(result["per_class_IoU"].values()) == pytest.approx(HAND_IOU)
    assert list(result["per_class_IoU"]) == ["a", "b", "c"]


def test_pooled_not_averaged_per_image():
    # class 0 per image: 100 (I 1, U 1) and 66.7 (I 2, U 3), mean 83.3; pooled: I 3, U 4 -> 75
    pooled = SegmentationAreas(2)
    pooled.add(np.array([[0]]), np.array([[0]]))
    pooled.add(np.array([[0, 0, 1, 1]]), np.array([[0, 0, 0, 1]]))
    assert pooled.compute()["per_class_IoU"]["0"] == pytest.approx(75.0)


def test_absent_class_is_nan_and_left_out_of_the_mean():
    pooled = SegmentationAreas(4)
    pooled.add(np.array(PRED_A), np.array(GT_A))
    pooled.add(np.array(PRED_B), np.array(GT_B))
    result = pooled.compute()
    assert math.isnan(result["per_class_IoU"]["3"])
    assert result["mIoU"] == pytest.approx(HAND_MIOU)


def test_predicted_labels_outside_the_classes_count_as_misses():
    areas = intersect_and_union(np.array([[7, 0]]), np.array([[0, 0]]), 2)
    assert areas.tolist() == [[1, 0], [2, 0], [1, 0], [2, 0]]  # intersect, union, pred, GT


def test_bad_ground_truth_and_shapes_are_named():
    with pytest.raises(SegmentationEvaluationError, match="x.png: ground truth holds label 5"):
        intersect_and_union(np.zeros((1, 1)), np.full((1, 1), 5), 3, name="x.png")
    with pytest.raises(SegmentationEvaluationError, match="prediction shape"):
        intersect_and_union(np.zeros((1, 2)), np.zeros((2, 1)), 3)


def test_mmengine_metric_pools_the_split():
    metric = SegmentationMetric()
    metric.dataset_meta = {"classes": ("a", "b", "c")}
    metric.process({}, [{"pred_seg": np.array(PRED_A), "gt_seg": np.array(GT_A)},
                        {"pred_seg": np.array(PRED_B), "gt_seg": np.array(GT_B)}])
    out = metric.evaluate(2)
    assert out["segmentation/mIoU"] == pytest.approx(HAND_MIOU)
    assert out["segmentation/aAcc"] == pytest.approx(HAND_AACC)
    assert out["segmentation/IoU/b"] == pytest.approx(200.0 / 3)


def _write_pairs(tmp_path, offset: int):
    """The two hand images as PNGs; ``offset`` 1 stores them the ADE20K way (class + 1, 0 = ignored)."""
    preds, anns = tmp_path / "pred", tmp_path / "ann"
    for name, pred, gt in (("a.png", PRED_A, GT_A), ("b.png", PRED_B, GT_B)):
        gt = np.array(gt)
        stored = np.where(gt == 255, 0, gt + 1) if offset else gt
        anns.mkdir(exist_ok=True)
        Image.fromarray(stored.astype(np.uint8)).save(anns / name)
        save_label_map(preds / name, np.array(pred), reduce_zero_label=bool(offset))
    return preds, anns


@pytest.mark.parametrize("reduce", [False, True])
def test_folders_hand_computed(tmp_path, reduce):
    preds, anns = _write_pairs(tmp_path, offset=int(reduce))
    result = evaluate_label_map_folders(preds, anns, num_classes=3, reduce_zero_label=reduce)
    assert result["mIoU"] == pytest.approx(HAND_MIOU) and result["aAcc"] == pytest.approx(HAND_AACC)
    assert evaluate_label_map_folders(preds, anns, reduce_zero_label=reduce)["num_classes"] == 3  # inferred


def test_ground_truth_as_prediction_gives_100(synthetic_2d):
    anns = synthetic_2d.ade_root / "annotations" / "validation"
    result = evaluate_label_map_folders(anns, anns, num_classes=17, reduce_zero_label=True)
    assert result["mIoU"] == 100.0 and result["aAcc"] == 100.0 and result["images"] == 4


def test_evaluate_tool_segmentation_writes_percent(tmp_path, capsys):
    preds, anns = _write_pairs(tmp_path, offset=1)
    out = tmp_path / "seg.json"
    tool = load_tool("evaluate")
    assert tool.main(["segmentation", "--predictions", str(preds), "--annotations", str(anns),
                      "--reduce-zero-label", "--num-classes", "4", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["mIoU"] == pytest.approx(HAND_MIOU) and result["aAcc"] == pytest.approx(HAND_AACC)
    assert result["per_class_IoU"]["1"] == pytest.approx(200.0 / 3) and result["per_class_IoU"]["3"] is None
    assert "mIoU" in capsys.readouterr().out


def test_evaluate_tool_segmentation_names_a_missing_prediction(tmp_path, capsys):
    preds, anns = _write_pairs(tmp_path, offset=0)
    (preds / "b.png").unlink()
    tool = load_tool("evaluate")
    with pytest.raises(SystemExit) as exit_info:
        tool.main(["segmentation", "--predictions", str(preds), "--annotations", str(anns)])
    assert exit_info.value.code == 2
    assert "has no b.png" in capsys.readouterr().err


def test_metric_writes_predictions_the_folder_evaluation_reads(tmp_path):
    preds, anns = _write_pairs(tmp_path, offset=1)  # annotations the ADE20K way
    metric = SegmentationMetric(num_classes=3, out_dir=str(tmp_path / "written"))
    metric.dataset_meta = {"classes": None, "reduce_zero_label": True}
    metric.process({}, [{"pred_seg": np.array(p), "gt_seg": np.array(g), "img_path": f"/images/{n}.jpg"}
                        for p, g, n in ((PRED_A, GT_A, "a"), (PRED_B, GT_B, "b"))])
    in_memory = metric.evaluate(2)["segmentation/mIoU"]
    from_files = evaluate_label_map_folders(tmp_path / "written", anns, num_classes=3, reduce_zero_label=True)
    assert in_memory == pytest.approx(HAND_MIOU) and from_files["mIoU"] == pytest.approx(HAND_MIOU)
    assert sorted(p.name for p in (tmp_path / "written").iterdir()) == ["a.png", "b.png"]
