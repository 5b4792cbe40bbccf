"""2D detection pictures: an image with its ground-truth boxes next to the same image with the predicted
boxes, each box labelled with its class (and score), for the 2D pretraining demo (docs/pretraining_2d.md)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw

from .style import GT_COLOR, PRED_COLOR, TEXT_COLOR, font

__all__ = ["draw_boxes_2d", "render_detection_comparison"]


def draw_boxes_2d(image: Image.Image, boxes: torch.Tensor | np.ndarray, labels: Sequence[int],
                  class_names: Sequence[str], color: tuple[int, int, int], scores: Sequence[float] | None = None,
                  scale: float = 1.0) -> Image.Image:
    """A copy of ``image`` with xyxy pixel ``boxes`` (of the unscaled image) drawn at ``scale``, each with a
    "class" or "class 0.87" tag above its top-left corner."""
    out = image.copy()
    draw = ImageDraw.Draw(out)
    text_font = font(max(9, int(6 * scale)))
    for i, box in enumerate(np.asarray(boxes, dtype=np.float64).reshape(-1, 4)):
        x1, y1, x2, y2 = (float(v) * scale for v in box)
        draw.rectangle((x1, y1, x2, y2), outline=color, width=max(1, int(scale)))
        tag = class_names[int(labels[i])] + ("" if scores is None else f" {float(scores[i]):.2f}")
        left, top, right, bottom = draw.textbbox((x1, y1), tag, font=text_font)
        top_y = max(0.0, y1 - (bottom - top) - 2)
        draw.rectangle((x1, top_y, x1 + (right - left) + 2, top_y + (bottom - top) + 2), fill=color)
        draw.text((x1 + 1, top_y), tag, fill=TEXT_COLOR, font=text_font)
    return out


def render_detection_comparison(image: Image.Image, gt_boxes, gt_labels: Sequence[int], pred_boxes,
                                pred_scores: Sequence[float], pred_labels: Sequence[int], class_names: Sequence[str],
                                score_threshold: float = 0.3, scale: float = 2.0) -> Image.Image:
    """Ground truth (left, green) next to the predictions scoring at least ``score_threshold`` (right,
    magenta), the image enlarged ``scale`` times so small boxes stay readable; titles above each panel."""
    size = (round(image.width * scale), round(image.height * scale))
    base = image.convert("RGB").resize(size, Image.Resampling.BILINEAR)
    scores = np.asarray(pred_scores, dtype=np.float64).reshape(-1)
    keep = scores >= score_threshold
    pred_boxes = np.asarray(pred_boxes, dtype=np.float64).reshape(-1, 4)[keep]
    pred_labels = np.asarray(pred_labels).reshape(-1)[keep]
    left = draw_boxes_2d(base, gt_boxes, list(gt_labels), class_names, GT_COLOR, scale=scale)
    right = draw_boxes_2d(base, pred_boxes, list(pred_labels), class_names, PRED_COLOR, scores[keep], scale)
    title_h = 22
    canvas = Image.new("RGB", (2 * size[0] + 8, size[1] + title_h), (20, 20, 20))
    canvas.paste(left, (0, title_h))
    canvas.paste(right, (size[0] + 8, title_h))
    draw = ImageDraw.Draw(canvas)
    draw.text((4, 3), f"ground truth ({len(np.asarray(gt_labels).reshape(-1))})", fill=GT_COLOR, font=font(14))
    draw.text((size[0] + 12, 3), f"predictions, score >= {score_threshold:.2f} ({int(keep.sum())})",
              fill=PRED_COLOR, font=font(14))
    return canvas
