"""The class lists of the stack, defined once."""

from __future__ import annotations

# The 10 nuScenes detection classes, in the order used for label indices everywhere.
DETECTION_CLASSES: tuple[str, ...] = (
    "car",
    "truck",
    "construction_vehicle",
    "bus",
    "trailer",
    "barrier",
    "motorcycle",
    "bicycle",
    "pedestrian",
    "traffic_cone",
)

# The 2D semantic segmentation classes (docs/pretraining_2d.md): the ground surfaces, scenery, the 10 detection
# classes and sky. ADE20K-style label PNGs store index + 1, with 0 = other/unlabelled (traffic lights and
# signs), so ``reduce_zero_label`` turns them back into these indices and 0 into the ignore index 255.
SEGMENTATION_2D_CLASSES: tuple[str, ...] = (
    "road",
    "sidewalk",
    "terrain",
    "building",
    "vegetation",
    "lane_paint",
    *DETECTION_CLASSES,
    "sky",
)
SEGMENTATION_2D_OTHER = 0  # the label PNG value of other/unlabelled pixels

# The 18 Occ3D-nuScenes classes; index = label value in ``semantics``. 17 = free.
OCC3D_CLASSES: tuple[str, ...] = (
    "others",
    "barrier",
    "bicycle",
    "bus",
    "car",
    "construction_vehicle",
    "motorcycle",
    "pedestrian",
    "traffic_cone",
    "trailer",
    "truck",
    "driveable_surface",
    "other_flat",
    "sidewalk",
    "terrain",
    "manmade",
    "vegetation",
    "free",
)
OCC_FREE = 17

# The 13 OpenLane-V2 traffic-element attributes; index = ``attribute`` value (docs/lanes.md).
TRAFFIC_ELEMENT_ATTRIBUTES: tuple[str, ...] = (
    "unknown",
    "red",
    "green",
    "yellow",
    "go_straight",
    "turn_left",
    "turn_right",
    "no_left_turn",
    "no_right_turn",
    "u_turn",
    "no_u_turn",
    "slight_left",
    "slight_right",
)
# The attribute a horizontally mirrored image shows: left and right swap, the others stay.
MIRRORED_TRAFFIC_ELEMENT_ATTRIBUTE: tuple[int, ...] = tuple(
    TRAFFIC_ELEMENT_ATTRIBUTES.index(name.replace("left", "#").replace("right", "left").replace("#", "right"))
    for name in TRAFFIC_ELEMENT_ATTRIBUTES
)

DETECTION_CLASS_TO_OCC: dict[str, int] = {name: OCC3D_CLASSES.index(name) for name in DETECTION_CLASSES}

# nuScenes general categories -> detection classes (the devkit's eval mapping; others are ignored).
NUSCENES_CATEGORY_TO_DETECTION: dict[str, str] = {
    "movable_object.barrier": "barrier",
    "vehicle.bicycle": "bicycle",
    "vehicle.bus.bendy": "bus",
    "vehicle.bus.rigid": "bus",
    "vehicle.car": "car",
    "vehicle.construction": "construction_vehicle",
    "vehicle.motorcycle": "motorcycle",
    "human.pedestrian.adult": "pedestrian",
    "human.pedestrian.child": "pedestrian",
    "human.pedestrian.construction_worker": "pedestrian",
    "human.pedestrian.police_officer": "pedestrian",
    "movable_object.trafficcone": "traffic_cone",
    "vehicle.trailer": "trailer",
    "vehicle.truck": "truck",
}

# Attributes the devkit accepts per class, and the default when a model predicts none.
DEFAULT_ATTRIBUTE: dict[str, str] = {
    "car": "vehicle.parked",
    "truck": "vehicle.parked",
    "trailer": "vehicle.parked",
    "construction_vehicle": "vehicle.parked",
    "bus": "vehicle.moving",
    "pedestrian": "pedestrian.moving",
    "motorcycle": "cycle.without_rider",
    "bicycle": "cycle.without_rider",
    "barrier": "",
    "traffic_cone": "",
}
