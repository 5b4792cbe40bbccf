"""Colours and fonts shared by the panels."""

from __future__ import annotations

from functools import lru_cache

from PIL import ImageFont

GT_COLOR = (0, 230, 64)  # ground truth: green
PRED_COLOR = (255, 48, 160)  # predictions: magenta
EGO_COLOR = (255, 255, 255)
BEV_BACKGROUND = (24, 26, 30)
GRID_COLOR = (58, 62, 70)
LANE_COLOR = (110, 140, 190)
TEXT_COLOR = (255, 255, 255)


@lru_cache(maxsize=8)
def font(size: int = 12) -> ImageFont.ImageFont:
    try:  # matplotlib ships DejaVu Sans, which reads well at small sizes
        from pathlib import Path

        import matplotlib

        path = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
        return ImageFont.truetype(str(path), size)
    except Exception:
        return ImageFont.load_default(size=size)
