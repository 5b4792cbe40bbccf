"""COCO-format detection data (loading, DETR augmentation, padded batching, clear errors) and COCO box AP
through pycocotools (ground truth as predictions, a hand-computed case, the evaluate.py command)."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch
from PIL import Image

from perception.data.coco import CocoDetection, CocoFormatError, coco_collate, detr_resized_shape, load_instances
from perception.evaluation.coco import CocoBoxMetric, coco_box_ap, detections_to_coco_results
from tests.tool_loader import load_tool


def _write_fixture(root, images=((100, 50),), annotations=None):
    """Images of (width, height) in root/img and an instances JSON; returns the JSON path."""
    (root / "img").mkdir(parents=True, exist_ok=True)
    infos = []
    for i, (w, h) in enumerate(images, start=1):
        Image.fromarray(np.full((h, w, 3), 40 * i, dtype=np.uint8)).save(root / "img" / f"{i}.png")
        infos.append({"id": i, "file_name": f"{i}.png", "width": w, "height": h})
    if annotations is None:
        annotations = [
            {"id": 1, "image_id": 1, "category_id": 3, "bbox": [10, 5, 20, 10], "area": 200, "iscrowd": 0},
            {"id": 2, "image_id": 1, "category_id": 1, "bbox": [60, 20, 30, 20], "area": 600, "iscrowd": 0},
            {"id": 3, "image_id": 1, "category_id": 1, "bbox": [0, 0, 5, 5], "area": 25, "iscrowd": 1},
        ]
    data = {"images": infos, "annotations": annotations,
            "categories": [{"id": 1, "name": "car"}, {"id": 3, "name": "bus"}]}
    path = root / "instances.json"
    path.write_text(json.dumps(data))
    return path


# -- dataset ---------------------------------------------------------------------------------------------
def test_detr_resize_rule():
    assert detr_resized_shape(50, 100, 800, None) == (800, 1600)
    assert detr_resized_shape(50, 100, 800, 1333) == (666, 1333)  # long side capped: scale 13.33
    assert detr_resized_shape(480, 640, 480, 1333) == (480, 640)


def test_eval_sample_resized_with_boxes_labels_and_scale(tmp_path):
    path = _write_fixture(tmp_path)
    dataset = CocoDetection(str(path), str(tmp_path / "img"), test_mode=True, test_scale=100, max_size=None)
    item = dataset[0]
    sample = item["data_samples"]
    assert item["inputs"].shape == (3, 100, 200)
    assert sample["img_shape"] == (100, 200) and sample["ori_shape"] == (50, 100)
    assert sample["scale_factor"] == (2.0, 2.0)
    # the crowd box is no target; category ids (1, 3) -> labels (0, 1)
    assert sample["labels"].tolist() == [1, 0]
    assert torch.allclose(sample["boxes"], torch.tensor([[20.0, 10, 60, 30], [120, 40, 180, 80]]))
    # uniform grey 40 normalised by the ImageNet statistics
    assert torch.allclose(item["inputs"][:, 0, 0], (40 - torch.tensor([123.675, 116.28, 103.53]))
                          / torch.tensor([58.395, 57.12, 57.375]))
    assert dataset.metainfo["classes"] == ("car", "bus")


def test_training_flip_and_resize(tmp_path):
    path = _write_fixture(tmp_path)
    dataset = CocoDetection(str(path), str(tmp_path / "img"), train=True, scales=(50,), max_size=None,
                            flip_prob=1.0, crop_prob=0.0)
    sample = dataset[0]["data_samples"]
    # mirrored in a 100 px wide image: x -> 100 - x, corners swapped
    assert torch.allclose(sample["boxes"], torch.tensor([[70.0, 5, 90, 15], [10, 20, 40, 40]]))


def test_training_crop_keeps_boxes_inside_and_drops_empty_ones(tmp_path):
    path = _write_fixture(tmp_path, images=((200, 120),), annotations=[
        {"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 30, 30]},
        {"id": 2, "image_id": 1, "category_id": 3, "bbox": [150, 80, 40, 30]}])
    dataset = CocoDetection(str(path), str(tmp_path / "img"), train=True, scales=(120,), max_size=None,
                            crop_scales=(120,), crop_size=(60, 60), flip_prob=0.0, crop_prob=1.0)
    random.seed(0)
    for _ in range(20):
        item = dataset[0]
        sample = item["data_samples"]
        h, w = sample["img_shape"]
        assert item["inputs"].shape[-2:] == (h, w) == (120, 120)  # a 60x60 crop resized to short side 120
        boxes = sample["boxes"]
        assert len(boxes) == len(sample["labels"]) <= 2
        assert ((boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])).all()
        assert (boxes >= 0).all() and (boxes[:, 0::2] <= w).all() and (boxes[:, 1::2] <= h).all()


def test_collate_pads_bottom_right(tmp_path):
    path = _write_fixture(tmp_path, images=((100, 50), (60, 80)), annotations=[])
    dataset = CocoDetection(str(path), str(tmp_path / "img"), test_mode=True, test_scale=50, max_size=None)
    batch = coco_collate([dataset[0], dataset[1]])
    assert batch["inputs"].shape == (2, 3, 67, 100)  # (50, 100) and (67, 50) -> max each side
    assert batch["data_samples"][1]["img_shape"] == (67, 50)
    assert (batch["inputs"][1, :, :, 50:] == 0).all() and (batch["inputs"][0, :, 50:] == 0).all()


def test_missing_image_is_named(tmp_path):
    path = _write_fixture(tmp_path)
    (tmp_path / "img" / "1.png").unlink()
    dataset = CocoDetection(str(path), str(tmp_path / "img"), test_mode=True)
    with pytest.raises(CocoFormatError, match=r"instances.json: image '1.png' \(id 1\) not found"):
        dataset[0]


@pytest.mark.parametrize(("text", "message"), [
    ("{not json", "not valid JSON"),
    ('{"images": [], "annotations": []}', "missing or non-list 'categories'"),
    ('{"images": [{"id": 1, "file_name": "a", "width": 1, "height": 1}], "categories": [{"id": 1}], '
     '"annotations": [{"image_id": 1, "category_id": 1, "bbox": [1, 2, 3]}]}', "annotation 0 needs a bbox"),
    ('{"images": [], "categories": [{"id": 1}], '
     '"annotations": [{"image_id": 5, "category_id": 1, "bbox": [1, 2, 3, 4]}]}', "unknown image_id 5"),
])
def test_malformed_json_is_named(tmp_path, text, message):
    path = tmp_path / "bad.json"
    path.write_text(text)
    with pytest.raises(CocoFormatError, match=message) as err:
        load_instances(path)
    assert "bad.json" in str(err.value)


def test_synthetic_set_loads_through_the_dataset(synthetic_2d):
    dataset = CocoDetection(str(synthetic_2d.coco_val), str(synthetic_2d.root / "coco" / "val"), test_mode=True,
                            test_scale=96)
    item = dataset[0]
    assert item["inputs"].shape[0] == 3 and len(item["data_samples"]["boxes"]) > 0
    assert item["data_samples"]["labels"].max() < 10


# -- evaluation ------------------------------------------------------------------------------------------
def test_ground_truth_as_predictions_scores_one_on_the_synthetic_set(synthetic_2d):
    instances = load_instances(synthetic_2d.coco_val)
    results = [{"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"], "score": 1.0}
               for a in instances["annotations"] if not a.get("iscrowd", 0)]
    metrics = coco_box_ap(results, synthetic_2d.coco_val)
    for key in ("AP", "AP50", "AP75"):
        assert metrics[key] == pytest.approx(1.0)
    assert all(value in (1.0, -1.0) or value == pytest.approx(1.0) for value in metrics.values())


def _hand_case(tmp_path):
    # one image, two 50x50 (medium) GT cars; one exact detection (0.9), one far-off false positive (0.8)
    annotations = [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 50, 50], "area": 2500, "iscrowd": 0},
                   {"id": 2, "image_id": 1, "category_id": 1, "bbox": [100, 0, 50, 50], "area": 2500, "iscrowd": 0}]
    path = _write_fixture(tmp_path, images=((200, 200),), annotations=annotations)
    results = [{"image_id": 1, "category_id": 1, "bbox": [0, 0, 50, 50], "score": 0.9},
               {"image_id": 1, "category_id": 1, "bbox": [0, 120, 50, 50], "score": 0.8}]
    return path, results


def test_hand_computed_ap(tmp_path):
    path, results = _hand_case(tmp_path)
    metrics = coco_box_ap(results, path)
    # ranked: TP (precision 1, recall 0.5), FP (0.5, 0.5). The interpolated precision is 1 at the 51 recall
    # thresholds 0.00..0.50 and 0 at the 50 above: AP = 51 / 101 at every IoU threshold.
    expected = 51 / 101
    assert metrics["AP"] == pytest.approx(expected)
    assert metrics["AP50"] == pytest.approx(expected) and metrics["AP75"] == pytest.approx(expected)
    assert metrics["APm"] == pytest.approx(expected)
    assert metrics["APs"] == -1.0 and metrics["APl"] == -1.0  # no GT of those sizes (pycocotools' -1)


def test_metric_converts_model_predictions(tmp_path):
    path, _ = _hand_case(tmp_path)
    metric = CocoBoxMetric(str(path))
    metric.process({}, [{"image_id": 1, "boxes": torch.tensor([[0.0, 0, 50, 50], [0, 120, 50, 170]]),
                         "scores": torch.tensor([0.9, 0.8]), "labels": torch.tensor([0, 0])}])
    assert metric.compute_metrics(metric.results)["AP"] == pytest.approx(51 / 101)
    assert detections_to_coco_results([{"image_id": 1, "boxes": torch.tensor([[1.0, 2, 4, 8]]),
                                        "scores": torch.tensor([0.5]), "labels": torch.tensor([1])}], [1, 3]) == [
        {"image_id": 1, "category_id": 3, "bbox": [1.0, 2.0, 3.0, 6.0], "score": 0.5}]


def test_unknown_image_in_predictions_is_an_error(tmp_path):
    path, results = _hand_case(tmp_path)
    with pytest.raises(CocoFormatError, match="image_id 9"):
        coco_box_ap([dict(results[0], image_id=9)], path)


def test_evaluate_tool_coco_writes_fractions(tmp_path, capsys):
    path, results = _hand_case(tmp_path)
    predictions = tmp_path / "dets.json"
    predictions.write_text(json.dumps(results))
    out = tmp_path / "metrics.json"
    tool = load_tool("evaluate")
    assert tool.main(["coco", "--predictions", str(predictions), "--annotations", str(path), "--json", str(out)]) == 0
    written = json.loads(out.read_text())
    assert set(written) == {"AP", "AP50", "AP75", "APs", "APm", "APl"}
    assert written["AP50"] == pytest.approx(51 / 101)
    assert "AP=0.5050" in capsys.readouterr().out


def test_evaluate_tool_coco_rejects_a_bad_file(tmp_path, capsys):
    path, _ = _hand_case(tmp_path)
    bad = tmp_path / "dets.json"
    bad.write_text('{"not": "a list"}')
    tool = load_tool("evaluate")
    with pytest.raises(SystemExit) as exit_info:
        tool.main(["coco", "--predictions", str(bad), "--annotations", str(path)])
    assert exit_info.value.code == 2
    assert "dets.json: expected a list of detections" in capsys.readouterr().err
