"""Pictures of samples and scenes: six camera panels with projected 3D boxes and a BEV panel."""

from .bev import draw_bev_panel
from .cameras import draw_boxes_on_image
from .occupancy import (
    OCC3D_COLORS,
    occupancy_bev_image,
    occupancy_isometric_image,
    occupancy_scene_gif,
    render_occupancy_3d,
    render_occupancy_comparison,
)
from .sample import SamplePicture, render_sample, save_scene_animation

__all__ = [
    "OCC3D_COLORS",
    "SamplePicture",
    "draw_bev_panel",
    "draw_boxes_on_image",
    "occupancy_bev_image",
    "occupancy_isometric_image",
    "occupancy_scene_gif",
    "render_occupancy_3d",
    "render_occupancy_comparison",
    "render_sample",
    "save_scene_animation",
]
