"""Pictures of samples and scenes: six camera panels with projected 3D boxes and a BEV panel; occupancy
and lane-topology pictures."""

from .bev import draw_bev_panel
from .cameras import draw_boxes_on_image
from .lanes import (
    TRAFFIC_ELEMENT_ATTRIBUTES,
    LaneCanvas,
    draw_lane_bev,
    draw_lanes_on_image,
    lane_scene_gif,
    project_lane,
    render_lane_comparison,
    select_confident,
)
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
    "TRAFFIC_ELEMENT_ATTRIBUTES",
    "LaneCanvas",
    "SamplePicture",
    "draw_bev_panel",
    "draw_boxes_on_image",
    "draw_lane_bev",
    "draw_lanes_on_image",
    "lane_scene_gif",
    "occupancy_bev_image",
    "occupancy_isometric_image",
    "occupancy_scene_gif",
    "project_lane",
    "render_lane_comparison",
    "render_occupancy_3d",
    "render_occupancy_comparison",
    "render_sample",
    "save_scene_animation",
    "select_confident",
]
