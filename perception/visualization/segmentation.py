"""Semantic-segmentation pictures (docs/pretraining_2d.md, "Segmentation pictures"): the image, the ground
truth and the prediction side by side, masks colour-coded per class over the dimmed image, with a legend of
the classes present. Ignored pixels (255) are left uncoloured.

The synthetic 2D classes take the colours the occupancy pictures give the same things (the 10 object
classes, vegetation, sidewalk, terrain, road as driveable surface, buildings as manmade), plus white lane
paint and a sky blue; other class lists get a fixed pseudo-random palette.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from perception.structures.classes import OCC3D_CLASSES, SEGMENTATION_2D_CLASSES

from .occupancy import OCC3D_COLORS
from .style import BEV_BACKGROUND, TEXT_COLOR, font

__all__ = ["class_palette", "colorize_labels", "render_segmentation_comparison"]

IGNORE_INDEX = 255
# Synthetic 2D classes without an Occ3D class of the same name: their Occ3D counterpart, or a colour of their own.
_OCC3D_NAME = {"road": "driveable_surface", "building": "manmade"}
_OWN_COLORS = {"lane_paint": (255, 255, 255), "sky": (120, 180, 235)}


def class_palette(class_names: Sequence[str]) -> np.ndarray:
    """(C, 3) uint8 colours: the occupancy colours for the synthetic 2D classes, a seeded random palette
    for any other list."""
    if tuple(class_names) == SEGMENTATION_2D_CLASSES:
        colors = [_OWN_COLORS.get(n) or OCC3D_COLORS[OCC3D_CLASSES.index(_OCC3D_NAME.get(n, n))] for n in class_names]
        return np.array(colors, dtype=np.uint8)
    return np.random.default_rng(0).integers(40, 256, size=(len(class_names), 3)).astype(np.uint8)


def colorize_labels(labels, palette: np.ndarray, image: np.ndarray | None = None, alpha: float = 0.6) -> np.ndarray:
    """(H, W, 3) uint8: each labelled pixel in its class colour, blended over ``image`` (weight ``alpha``
    for the colour) when given; ignored pixels show the image (or black)."""
    labels = np.asarray(labels)
    base = np.zeros((*labels.shape, 3), np.float32) if image is None else np.asarray(image, np.float32)
    if base.shape[:2] != labels.shape:
        raise ValueError(f"labels {labels.shape} and image {base.shape[:2]} differ in size")
    labelled = labels != IGNORE_INDEX
    if (labels[labelled] >= len(palette)).any():
        raise ValueError(f"labels up to {int(labels[labelled].max())} but a palette of {len(palette)} classes")
    out = base.copy()
    colors = palette[labels[labelled]].astype(np.float32)
    out[labelled] = colors if image is None else alpha * colors + (1 - alpha) * base[labelled]
    return out.round().astype(np.uint8)


def _present(*label_maps) -> list[int]:
    found: set[int] = set()
    for labels in label_maps:
        found |= {int(c) for c in np.unique(np.asarray(labels)) if c != IGNORE_INDEX}
    return sorted(found)


def render_segmentation_comparison(image, gt, pred, class_names: Sequence[str], title: str = "",
                                   path: str | Path | None = None, palette: np.ndarray | None = None,
                                   alpha: float = 0.6, min_panel_width: int = 400) -> Image.Image:
    """Image | ground truth | prediction, masks blended over the image, and a legend of the classes in
    either map. ``image`` (H, W, 3) uint8 RGB, ``gt`` and ``pred`` (H, W) class indices (255 ignored).
    Small images are enlarged by a whole factor (nearest) to at least ``min_panel_width`` pixels per
    panel. Saved as PNG when ``path`` is given."""
    image = np.asarray(image, np.uint8)
    gt, pred = np.asarray(gt), np.asarray(pred)
    if not image.shape[:2] == gt.shape == pred.shape:
        raise ValueError(f"image {image.shape[:2]}, gt {gt.shape} and prediction {pred.shape} must have one size")
    palette = class_palette(class_names) if palette is None else np.asarray(palette, np.uint8)
    panels = [("image", image), ("ground truth", colorize_labels(gt, palette, image, alpha)),
              ("prediction", colorize_labels(pred, palette, image, alpha))]
    zoom = max(1, -(-min_panel_width // gt.shape[1]))
    panels = [(name, np.repeat(np.repeat(panel, zoom, axis=0), zoom, axis=1)) for name, panel in panels]
    height, width = gt.shape[0] * zoom, gt.shape[1] * zoom
    left, top, gap, legend_w, row = 12, 56, 12, 190, 20
    classes = _present(gt, pred)
    canvas_h = max(top + height + 12, top + row * len(classes) + 12)
    canvas = Image.new("RGB", (left + 3 * width + 2 * gap + 24 + legend_w, canvas_h), BEV_BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    draw.text((left, 8), title or "semantic segmentation", fill=TEXT_COLOR, font=font(16))
    for n, (name, panel) in enumerate(panels):
        x0 = left + n * (width + gap)
        canvas.paste(Image.fromarray(panel), (x0, top))
        draw.text((x0, top - 20), name, fill=TEXT_COLOR, font=font(14))
    lx = left + 3 * width + 2 * gap + 24
    draw.text((lx, top - 20), "classes", fill=TEXT_COLOR, font=font(14))
    for k, c in enumerate(classes):
        y = top + k * row
        draw.rectangle([lx, y + 2, lx + 15, y + 15], fill=tuple(int(v) for v in palette[c]), outline=(120, 124, 132))
        draw.text((lx + 22, y + 1), class_names[c] if c < len(class_names) else str(c), fill=TEXT_COLOR,
                  font=font(13))
    if path is not None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        canvas.save(path)
    return canvas
