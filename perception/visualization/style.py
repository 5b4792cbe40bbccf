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
LINK_COLOR = (255, 240, 190)  # lane -> lane topology connectors (docs/lanes.md, "Lane pictures")

# OpenLane-V2 traffic-element attributes 0..12 (names in perception.visualization.lanes): the lights in
# their own colours, the signs in blues, purples, oranges and browns, none equal to GT_COLOR or PRED_COLOR.
TE_ATTRIBUTE_COLORS = (
    (160, 160, 160),  # 0 unknown: grey
    (255, 40, 40),  # 1 red
    (60, 255, 110),  # 2 green
    (255, 220, 0),  # 3 yellow
    (0, 150, 255),  # 4 go_straight: blue
    (0, 225, 225),  # 5 turn_left: cyan
    (140, 90, 255),  # 6 turn_right: violet
    (255, 140, 0),  # 7 no_left_turn: orange
    (190, 95, 30),  # 8 no_right_turn: brown
    (120, 200, 255),  # 9 u_turn: sky blue
    (255, 120, 120),  # 10 no_u_turn: salmon
    (0, 170, 140),  # 11 slight_left: teal
    (200, 140, 255),  # 12 slight_right: lilac
)


@lru_cache(maxsize=8)
def font(size: int = 12) -> ImageFont.ImageFont:
    try:  # matplotlib ships DejaVu Sans, which reads well at small sizes
        from pathlib import Path

        import matplotlib

        path = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
        return ImageFont.truetype(str(path), size)
    except Exception:
        return ImageFont.load_default(size=size)
