"""``tools/demo.py --tasks detection2d`` end to end on a tiny synthetic 2D set (set generation, COCO AP before
and after training through the mmengine Runner, GT-vs-prediction pictures, the RESULT line), and the box
picture itself."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from perception.visualization.detection2d import render_detection_comparison
from perception.visualization.style import GT_COLOR, PRED_COLOR
from tests.tool_loader import run_demo_to_result


@pytest.mark.slow
def test_detection2d_demo_runs_end_to_end(tmp_path, capsys):
    run_demo_to_result(tmp_path, capsys, "detection2d", "AP", top=1.0)


def test_comparison_picture_draws_gt_left_and_confident_predictions_right():
    image = Image.new("RGB", (100, 50), (0, 0, 0))
    picture = render_detection_comparison(
        image, torch.tensor([[10.0, 10, 40, 40]]), [0], torch.tensor([[50.0, 10, 90, 40], [0, 0, 5, 5]]),
        [0.9, 0.1], [1, 0], ("car", "truck"), score_threshold=0.3, scale=2.0)
    pixels = np.asarray(picture)
    assert picture.size == (2 * 200 + 8, 100 + 22)
    # GT box edge (x = 10 * 2) on the left panel in green; the 0.9 prediction on the right in magenta
    assert tuple(pixels[22 + 60, 20]) == GT_COLOR
    assert tuple(pixels[22 + 60, 208 + 180]) == PRED_COLOR
    # the 0.1 prediction is below the threshold: nothing drawn at its box in the right panel
    assert tuple(pixels[22 + 8, 208 + 10]) == (0, 0, 0)
