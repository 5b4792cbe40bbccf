"""Pictures of samples and scenes: six camera panels with projected 3D boxes and a BEV panel."""

from .bev import draw_bev_panel
from .cameras import draw_boxes_on_image
from .sample import SamplePicture, render_sample, save_scene_animation

__all__ = ["SamplePicture", "draw_bev_panel", "draw_boxes_on_image", "render_sample", "save_scene_animation"]
