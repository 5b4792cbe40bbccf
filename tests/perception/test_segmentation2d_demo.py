"""``tools/demo.py --tasks segmentation2d`` end to end on a tiny synthetic 2D set (set generation, mIoU before
and after training through the mmengine Runner, mask pictures, the RESULT line), and the mask picture itself."""

from __future__ import annotations

import numpy as np
import pytest

from perception.structures.classes import SEGMENTATION_2D_CLASSES
from perception.visualization.segmentation import class_palette, colorize_labels, render_segmentation_comparison
from tests.tool_loader import run_demo_to_result


@pytest.mark.slow
def test_segmentation2d_demo_runs_end_to_end(tmp_path, capsys):
    run_demo_to_result(tmp_path, capsys, "segmentation2d", "mIoU", top=100.0)


def test_colorize_blends_class_colours_and_leaves_ignored_pixels():
    palette = np.array([[200, 0, 0], [0, 100, 0]], np.uint8)
    image = np.full((1, 3, 3), 100, np.uint8)
    out = colorize_labels(np.array([[0, 1, 255]]), palette, image, alpha=0.5)
    assert out[0].tolist() == [[150, 50, 50], [50, 100, 50], [100, 100, 100]]  # 0.5 colour + 0.5 image
    assert colorize_labels(np.array([[1]]), palette)[0, 0].tolist() == [0, 100, 0]
    with pytest.raises(ValueError, match="palette of 2 classes"):
        colorize_labels(np.array([[2]]), palette)


def test_synthetic_palette_is_distinct():
    palette = class_palette(SEGMENTATION_2D_CLASSES)
    assert len({tuple(c) for c in palette}) == len(SEGMENTATION_2D_CLASSES)


def test_comparison_picture_puts_image_gt_and_prediction_side_by_side():
    image = np.zeros((10, 20, 3), np.uint8)
    gt = np.zeros((10, 20), np.uint8)
    pred = np.ones((10, 20), np.uint8)
    palette = np.array([[255, 0, 0], [0, 0, 255]], np.uint8)
    picture = np.asarray(render_segmentation_comparison(image, gt, pred, ("a", "b"), palette=palette, alpha=1.0,
                                                        min_panel_width=20))
    # panels start at x = 12, 12 + 20 + 12, 12 + 2 * (20 + 12), at y = 56
    assert picture[60, 14].tolist() == [0, 0, 0]  # the image
    assert picture[60, 46].tolist() == [255, 0, 0]  # GT: class a
    assert picture[60, 78].tolist() == [0, 0, 255]  # prediction: class b
    with pytest.raises(ValueError, match="one size"):
        render_segmentation_comparison(image, gt[:5], pred, ("a", "b"))
