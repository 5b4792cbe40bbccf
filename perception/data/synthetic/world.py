"""Procedural content of one synthetic scene: a straight road in a global frame, the ego trajectory,
moving and static objects of the 10 detection classes, scenery (buildings, trees) and traffic elements.

Everything is described in *road coordinates* (a along the road, b to its left, metres) and mapped to
the nuScenes-like global frame by a per-scene rotation and offset, so global, ego and road frames
all differ. Objects move with constant velocity, so the devkit's finite-difference velocities are exact.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from perception.structures.classes import DETECTION_CLASSES

LANE_WIDTH = 3.5
LANE_CENTRES = (-5.25, -1.75, 1.75, 5.25)  # right-hand traffic: b < 0 drives towards +a
ROAD_HALF_WIDTH = 7.0
SIDEWALK_OUTER = 10.0
SEGMENT_LENGTH = 25.0  # lane centerline segments (OpenLane-V2 lanes) and stop lines on multiples of it
ROAD_A_RANGE = (-150.0, 300.0)

# (w, l, h) means and nuScenes categories per detection class.
CLASS_SIZES = {
    "car": (1.95, 4.6, 1.7),
    "truck": (2.5, 7.0, 3.0),
    "construction_vehicle": (2.8, 6.5, 3.2),
    "bus": (2.9, 11.0, 3.5),
    "trailer": (2.9, 12.0, 3.9),
    "barrier": (2.5, 0.5, 1.0),
    "motorcycle": (0.8, 2.1, 1.5),
    "bicycle": (0.6, 1.7, 1.3),
    "pedestrian": (0.7, 0.75, 1.75),
    "traffic_cone": (0.45, 0.45, 0.9),
}
CLASS_CATEGORIES = {
    "car": "vehicle.car",
    "truck": "vehicle.truck",
    "construction_vehicle": "vehicle.construction",
    "bus": "vehicle.bus.rigid",
    "trailer": "vehicle.trailer",
    "barrier": "movable_object.barrier",
    "motorcycle": "vehicle.motorcycle",
    "bicycle": "vehicle.bicycle",
    "pedestrian": "human.pedestrian.adult",
    "traffic_cone": "movable_object.trafficcone",
}
# Saturated, mutually distinct base colours (RGB) so objects are easy to see and to test.
CLASS_COLORS = {
    "car": (200, 30, 30),
    "truck": (235, 135, 20),
    "construction_vehicle": (225, 205, 0),
    "bus": (30, 80, 220),
    "trailer": (130, 60, 185),
    "barrier": (255, 120, 200),
    "motorcycle": (0, 200, 200),
    "bicycle": (120, 220, 40),
    "pedestrian": (255, 175, 125),
    "traffic_cone": (255, 70, 0),
}
TE_COLORS = {1: (230, 20, 20), 2: (20, 220, 60), 3: (250, 220, 0)}  # traffic-light attribute -> lit colour
SIGN_COLOR = (20, 60, 200)


@dataclass
class SceneWorld:
    """One scene. Boxes are global ``(x, y, z, w, l, h, yaw, vx, vy)`` at t = 0 (seconds since start)."""

    origin: np.ndarray  # global xy of road coordinate (0, 0)
    heading: float  # global yaw of the +a direction
    ego_speed: float
    ego_b: float
    object_boxes: np.ndarray  # (N, 9)
    object_classes: list[str]
    object_attributes: list[str]
    object_colors: np.ndarray  # (N, 3) uint8
    scenery_boxes: np.ndarray  # (M, 9) buildings, trees, poles (static, not annotated)
    scenery_colors: np.ndarray
    scenery_occ: np.ndarray  # (M,) Occ3D class of each scenery box
    traffic_elements: list[dict] = field(default_factory=list)  # {box, category, attribute, a, lane_b}

    # -- frames -----------------------------------------------------------------------------------
    def road_to_global(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        d = np.array([np.cos(self.heading), np.sin(self.heading)])
        n = np.array([-d[1], d[0]])
        return self.origin + np.asarray(a)[..., None] * d + np.asarray(b)[..., None] * n

    def global_to_road(self, xy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        rel = np.asarray(xy)[..., :2] - self.origin
        c, s = np.cos(self.heading), np.sin(self.heading)
        return rel[..., 0] * c + rel[..., 1] * s, -rel[..., 0] * s + rel[..., 1] * c

    def ego2global(self, t: float) -> np.ndarray:
        xy = self.road_to_global(np.array(self.ego_speed * t), np.array(self.ego_b))
        c, s = np.cos(self.heading), np.sin(self.heading)
        out = np.eye(4)
        out[:2, :2] = [[c, -s], [s, c]]
        out[:2, 3] = xy
        return out

    def boxes_at(self, t: float) -> np.ndarray:
        boxes = self.object_boxes.copy()
        boxes[:, :2] += boxes[:, 7:9] * t
        return boxes


def _box(world_xy: np.ndarray, size: tuple[float, float, float], yaw: float, vel: np.ndarray) -> np.ndarray:
    w, length, h = size
    return np.array([world_xy[0], world_xy[1], h / 2, w, length, h, yaw, vel[0], vel[1]])


def _place_along(
    rng: np.random.Generator,
    occupied: list[tuple[float, float]],
    length: float,
    lo: float,
    hi: float,
    gap: float,
) -> float | None:
    """A position in [lo, hi] whose interval does not overlap ``occupied`` (list of (start, end))."""
    for _ in range(30):
        a = float(rng.uniform(lo, hi))
        if all(a + length / 2 + gap < s or a - length / 2 - gap > e for s, e in occupied):
            occupied.append((a - length / 2, a + length / 2))
            return a
    return None


def build_scene(rng: np.random.Generator, scene_index: int, duration: float) -> SceneWorld:
    """Random but plausible content for one scene lasting ``duration`` seconds."""
    heading = float(rng.uniform(-np.pi, np.pi))
    origin = np.array([300.0 + 250.0 * scene_index, 800.0 + 150.0 * scene_index]) + rng.uniform(-20, 20, 2)
    ego_speed = float(rng.uniform(4.0, 8.0))
    world = SceneWorld(
        origin=origin,
        heading=heading,
        ego_speed=ego_speed,
        ego_b=LANE_CENTRES[1],
        object_boxes=np.zeros((0, 9)),
        object_classes=[],
        object_attributes=[],
        object_colors=np.zeros((0, 3), np.uint8),
        scenery_boxes=np.zeros((0, 9)),
        scenery_colors=np.zeros((0, 3), np.uint8),
        scenery_occ=np.zeros(0, np.int64),
    )
    boxes, classes, attrs = [], [], []
    ego_end = ego_speed * duration
    span = (-40.0, ego_end + 70.0)  # objects the ego will see during the scene

    def add(cls: str, a: float, b: float, direction: float, speed: float, attribute: str, size=None) -> None:
        size = size or tuple(np.array(CLASS_SIZES[cls]) * rng.uniform(0.92, 1.08))
        # Objects move along the road; their own heading follows the direction of travel.
        yaw = heading + (0.0 if direction > 0 else np.pi)
        vel = speed * direction * np.array([np.cos(heading), np.sin(heading)])
        # Place the centre at a(t=0) so that the object is in ``span`` half-way through the scene.
        boxes.append(_box(world.road_to_global(np.array(a), np.array(b)), size, yaw, vel))
        classes.append(cls)
        attrs.append(attribute)

    # Vehicles in lanes: each lane has one speed, so vehicles in it never collide.
    lane_speeds = [
        float(rng.choice([0.0, rng.uniform(3, 7)])),
        ego_speed,
        float(rng.uniform(4, 10)),
        float(rng.uniform(4, 10)),
    ]
    vehicle_mix = ["car"] * 6 + ["truck", "bus", "trailer", "construction_vehicle"]
    for lane, b in enumerate(LANE_CENTRES):
        speed = lane_speeds[lane]
        direction = 1.0 if b < 0 else -1.0
        occupied: list[tuple[float, float]] = []
        if lane == 1:  # the ego's own spot at mid-scene (it moves with this lane's speed)
            ego_mid = ego_speed * duration / 2
            occupied.append((ego_mid - 8.0, ego_mid + 8.0))
        for n in range(int(rng.integers(3, 6))):
            # Each lane's first vehicle is one of the large classes, so every scene has all of them.
            cls = (
                ("truck", "bus", "trailer", "construction_vehicle")[lane]
                if n == 0
                else str(rng.choice(vehicle_mix))
            )
            length = CLASS_SIZES[cls][1]
            # Where the lane's traffic is at mid-scene determines what stays visible.
            a = _place_along(rng, occupied, length, span[0] - 20, span[1] + 20, gap=4.0)
            if a is None:
                continue
            a0 = a - direction * speed * duration / 2
            attribute = (
                "vehicle.moving" if speed > 0.2 else ("vehicle.stopped" if lane == 0 else "vehicle.parked")
            )
            add(cls, a0, b, direction, speed, attribute)
    # Two-wheelers near the right edge of each carriageway.
    for cls in ("motorcycle", "bicycle"):
        for side in (-1.0, 1.0):
            moving = bool(rng.random() < 0.6)
            speed = float(rng.uniform(2.5, 6.0)) if moving else 0.0
            # Moving ones use the cycle lane at the sidewalk's edge, parked ones stand beyond the sidewalk.
            b = side * (SIDEWALK_OUTER + 0.5) if not moving else side * (ROAD_HALF_WIDTH + 0.6)
            # Near the ego's mid-scene position, so they are in range (40 m for two-wheelers) of the ego.
            a = float(rng.uniform(ego_speed * duration / 2 - 25, ego_speed * duration / 2 + 30))
            a += side * speed * duration / 2
            add(cls, a, b, -side, speed, "cycle.with_rider" if moving else "cycle.without_rider")
    # Pedestrians on both sidewalks.
    for _ in range(int(rng.integers(5, 9))):
        side = float(rng.choice([-1.0, 1.0]))
        moving = bool(rng.random() < 0.6)
        speed = float(rng.uniform(0.8, 1.6)) if moving else 0.0
        direction = float(rng.choice([-1.0, 1.0]))
        b = side * float(rng.uniform(ROAD_HALF_WIDTH + 1.4, SIDEWALK_OUTER - 0.4))
        a = float(rng.uniform(*span)) - direction * speed * duration / 2
        add("pedestrian", a, b, direction, speed, "pedestrian.moving" if moving else "pedestrian.standing")
    # Road works: a row of cones and barriers at the edge of the road.
    for _ in range(2):
        side = float(rng.choice([-1.0, 1.0]))
        a_start = float(rng.uniform(span[0] + 20, span[1] - 20))
        for k in range(3):
            add("traffic_cone", a_start + 3.0 * k, side * (ROAD_HALF_WIDTH - 0.1), 1.0, 0.0, "")
        for k in range(2):
            add(
                "barrier",
                a_start + 12.0 + 3.0 * k,
                side * (ROAD_HALF_WIDTH - 0.05),
                1.0,
                0.0,
                "",
                size=(2.5, 0.5, 1.0),
            )
    world.object_boxes = np.array(boxes).reshape(-1, 9)
    # A barrier's heading points across the road, so its long side (w, across the heading) runs along it.
    for i, cls in enumerate(classes):
        if cls == "barrier":
            world.object_boxes[i, 6] += np.pi / 2
    world.object_classes = classes
    world.object_attributes = attrs
    jitter = rng.integers(-12, 13, size=(len(classes), 3))
    world.object_colors = np.clip(np.array([CLASS_COLORS[c] for c in classes]) + jitter, 0, 255).astype(
        np.uint8
    )
    _add_scenery(world, rng)
    _add_traffic_elements(world, rng)
    return world


def _add_scenery(world: SceneWorld, rng: np.random.Generator) -> None:
    boxes, colors, occ = [], [], []
    for side in (-1.0, 1.0):
        a = ROAD_A_RANGE[0]
        while a < ROAD_A_RANGE[1]:
            length = float(rng.uniform(12, 30))
            depth, height = float(rng.uniform(8, 14)), float(rng.uniform(6, 16))
            b = side * (SIDEWALK_OUTER + 5.0 + depth / 2)
            boxes.append(
                _box(
                    world.road_to_global(np.array(a + length / 2), np.array(b)),
                    (depth, length, height),
                    world.heading,
                    np.zeros(2),
                )
            )
            grey = int(rng.integers(120, 200))
            colors.append((grey, grey - 10, grey - 25))
            occ.append(15)  # manmade
            a += length + float(rng.uniform(4, 12))
        for a in np.arange(ROAD_A_RANGE[0], ROAD_A_RANGE[1], 18.0) + rng.uniform(0, 6):
            b = side * (SIDEWALK_OUTER + 2.0)
            boxes.append(
                _box(
                    world.road_to_global(np.array(a), np.array(b)),
                    (1.8, 1.8, 4.5),
                    world.heading,
                    np.zeros(2),
                )
            )
            colors.append((40, int(rng.integers(95, 130)), 40))
            occ.append(16)  # vegetation
    world.scenery_boxes = np.array(boxes)
    world.scenery_colors = np.array(colors, dtype=np.uint8)
    world.scenery_occ = np.array(occ, dtype=np.int64)


def _traffic_element(world: SceneWorld, a: float, b: float, size: tuple[float, float, float], height: float,
                     category: int, attribute: int, lane_bs: list[float], color, a_offset: float = 0.0) -> dict:
    """A static traffic element for road position ``a`` (the box sits ``a_offset`` further along) and
    lateral ``b``, its centre ``height`` m up, facing +a."""
    box = _box(world.road_to_global(np.array(a + a_offset), np.array(b)), size, world.heading, np.zeros(2))
    box[2] = height
    return dict(box=box, category=category, attribute=attribute, a=float(a), lane_bs=lane_bs, color=color)


def _add_traffic_elements(world: SceneWorld, rng: np.random.Generator) -> None:
    """Traffic lights over the ego carriageway at stop lines (a multiple of SEGMENT_LENGTH) and road signs
    on the right sidewalk, as static boxes facing oncoming (+a) traffic."""
    elements = []
    for a in np.arange(2 * SEGMENT_LENGTH, ROAD_A_RANGE[1], 3 * SEGMENT_LENGTH):
        attribute = int(rng.integers(1, 4))
        for b in LANE_CENTRES[:2]:
            elements.append(_traffic_element(world, a, b, (0.45, 0.3, 1.1), 5.0, 1, attribute, [b],
                                             TE_COLORS[attribute], a_offset=0.3))
        sign_a = a - SEGMENT_LENGTH - 5.0
        attribute = int(rng.choice([4, 5, 6, 7, 8]))
        elements.append(_traffic_element(world, sign_a, -ROAD_HALF_WIDTH - 1.0, (0.9, 0.1, 0.9), 2.6, 2, attribute,
                                         list(LANE_CENTRES[:2]), SIGN_COLOR))
    world.traffic_elements = elements


def detection_class_index(name: str) -> int:
    return DETECTION_CLASSES.index(name)
