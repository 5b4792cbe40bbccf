"""A Waymo Open Dataset v2 fixture: the synthetic world (perception/data/synthetic) written as v2 parquet
segments, so tests and the demo exercise the real reader (docs/waymo.md, "The fixture").

``DIR/{training,validation}/{component}/{segment}.parquet`` with the official column names and types
(:mod:`perception.data.waymo.schema`): JPEG camera images of five cameras of two sizes (the real rig's
1920x1280 and 1920x886, scaled by ``image_width / 1920``), ``camera_calibration`` with Waymo camera axes and
camera->vehicle extrinsics, ``vehicle_pose``, ``lidar_box`` (with ``speed``) and ``lidar_camera_synced_box``.
Frames are 10 Hz, as in the dataset. Boxes are those of the synthetic world's vehicles, pedestrians and
cyclists (bicycles, motorcycles) within :data:`LABEL_RANGE` of the vehicle; there is no rolling shutter, so
the camera-synced box equals the LiDAR box. ``num_lidar_points_in_box`` holds the number of image pixels
showing the object (a stand-in: the fixture renders no LiDAR), ``most_visible_camera_name`` the camera with
the most such pixels ("" when none). Deterministic per seed.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image
from tqdm import tqdm

from perception.data.synthetic.generator import _solids
from perception.data.synthetic.render import render_camera
from perception.data.synthetic.world import SceneWorld, build_scene
from perception.structures.boxes import transform_boxes
from perception.structures.transforms import make_transform

from . import schema as S
from .conventions import (
    CAMERA_IDS,
    CLASS_TYPES,
    NATIVE_IMAGE_SIZES,
    RIG,
    boxes_to_waymo,
    extrinsic_from_cam2ego,
)

FRAME_PERIOD_US = 100_000  # 10 Hz
START_US = 1_550_000_000_000_000
LABEL_RANGE = 75.0  # metres from the vehicle
NATIVE_FOCAL = 2060.0  # pixels at 1920 px width, about the real cameras' 50 degree field of view
# (x, y, z, yaw in degrees) of each camera in the vehicle frame, close to the real rig.
CAMERA_POSES = {
    "FRONT": (1.54, -0.02, 2.12, 0.0),
    "FRONT_LEFT": (1.50, 0.09, 2.11, 45.0),
    "FRONT_RIGHT": (1.49, -0.10, 2.11, -45.0),
    "SIDE_LEFT": (1.43, 0.12, 2.10, 90.0),
    "SIDE_RIGHT": (1.42, -0.12, 2.10, -90.0),
}
# Synthetic-world classes -> Waymo types (barriers and cones are not labelled).
SYNTHETIC_TYPES = {
    **{c: CLASS_TYPES["vehicle"] for c in ("car", "truck", "bus", "trailer", "construction_vehicle")},
    "pedestrian": CLASS_TYPES["pedestrian"],
    "bicycle": CLASS_TYPES["cyclist"],
    "motorcycle": CLASS_TYPES["cyclist"],
}


@dataclass(frozen=True)
class WaymoFixtureConfig:
    out_dir: str
    seed: int = 0
    training_segments: int = 2
    validation_segments: int = 1
    frames_per_segment: int = 5
    image_width: int = 192  # the real cameras are 1920 wide: sizes scale by image_width / 1920


def fixture_segments(config: WaymoFixtureConfig) -> list[tuple[str, str, int]]:
    """(split, segment context name, world index) of every segment of the fixture."""
    out = []
    for split, count in (("training", config.training_segments), ("validation", config.validation_segments)):
        for _ in range(count):
            index = len(out)
            digest = int(hashlib.md5(f"waymo-fixture/{config.seed}/{index}".encode()).hexdigest(), 16)
            start = 100 * (index + 1)
            out.append((split, f"{digest % 10**19:019d}_{start}_000_{start + 20}_000", index))
    return out


def segment_world(config: WaymoFixtureConfig, index: int) -> SceneWorld:
    """The synthetic world of fixture segment ``index`` (deterministic per seed)."""
    duration = (config.frames_per_segment - 1) * FRAME_PERIOD_US * 1e-6
    return build_scene(np.random.default_rng([config.seed, 7919, index]), index, duration)


def camera_image_size(config: WaymoFixtureConfig, camera: str) -> tuple[int, int]:
    native_w, native_h = NATIVE_IMAGE_SIZES[camera]
    scale = config.image_width / native_w
    return config.image_width, int(round(native_h * scale))


def camera_intrinsics(config: WaymoFixtureConfig, camera: str) -> np.ndarray:
    width, height = camera_image_size(config, camera)
    focal = NATIVE_FOCAL * width / NATIVE_IMAGE_SIZES[camera][0]
    return np.array([[focal, 0.0, width / 2], [0.0, focal, height / 2], [0.0, 0.0, 1.0]])


def camera_cam2ego(camera: str) -> np.ndarray:
    """The renderer's camera -> vehicle transform, OpenCV axes (x right, y down, z forward)."""
    x, y, z, yaw_deg = CAMERA_POSES[camera]
    yaw = np.deg2rad(yaw_deg)
    forward = np.array([np.cos(yaw), np.sin(yaw), 0.0])
    right = np.array([np.sin(yaw), -np.cos(yaw), 0.0])
    return make_transform(np.stack([right, [0.0, 0.0, -1.0], forward], 1), (x, y, z))


def frame_time_us(config: WaymoFixtureConfig, index: int, frame: int) -> int:
    return START_US + index * 10**9 + frame * FRAME_PERIOD_US


def _table(component: str, rows: list[dict]) -> pa.Table:
    names = [name for name, _ in S.COLUMNS[component]]
    return pa.Table.from_pydict({n: [r[n] for r in rows] for n in names}, schema=S.schema(component))


def _calibration_rows(config: WaymoFixtureConfig, segment: str) -> list[dict]:
    rows = []
    for camera in RIG:
        k = camera_intrinsics(config, camera)
        width, height = camera_image_size(config, camera)
        extrinsic = extrinsic_from_cam2ego(camera_cam2ego(camera))
        row = {S.SEGMENT: segment, S.CAMERA: CAMERA_IDS[camera], S.EXTRINSIC: extrinsic.reshape(-1).tolist(),
               S.WIDTH: width, S.HEIGHT: height, S.ROLLING_SHUTTER_DIRECTION: 0}
        row.update({c: 0.0 for c in S.INTRINSIC.values()})
        row.update({S.INTRINSIC["f_u"]: k[0, 0], S.INTRINSIC["f_v"]: k[1, 1], S.INTRINSIC["c_u"]: k[0, 2],
                    S.INTRINSIC["c_v"]: k[1, 2]})
        rows.append(row)
    return rows


def _render_frame(config: WaymoFixtureConfig, world: SceneWorld, t: float):
    """JPEG bytes per camera and per-object pixel counts (objects x cameras) of one frame."""
    solids, _, _ = _solids(world, t)
    ego2global = world.ego2global(t)
    num_objects = len(world.object_classes)
    jpegs, pixels = {}, np.zeros((num_objects, len(RIG)), np.int64)
    for c, camera in enumerate(RIG):
        image, _, ids, _ = render_camera(world, solids, camera_intrinsics(config, camera),
                                         ego2global @ camera_cam2ego(camera), camera_image_size(config, camera))
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, format="JPEG", quality=93, subsampling=0)
        jpegs[camera] = buffer.getvalue()
        pixels[:, c] = np.bincount(ids[ids >= 0], minlength=len(solids.boxes))[:num_objects]
    return jpegs, pixels


def _box_rows(segment: str, stamp: int, world: SceneWorld, t: float, pixels: np.ndarray):
    ego2global = world.ego2global(t)
    boxes = transform_boxes(world.boxes_at(t), np.linalg.inv(ego2global))  # vehicle frame, speed rotated too
    lidar_rows, synced_rows = [], []
    for n, name in enumerate(world.object_classes):
        if name not in SYNTHETIC_TYPES or np.linalg.norm(boxes[n, :2]) > LABEL_RANGE:
            continue
        w = boxes_to_waymo(boxes[n : n + 1])
        key = {S.SEGMENT: segment, S.TIMESTAMP: stamp, S.LASER_OBJECT: f"object-{n:04d}"}
        visible = int(pixels[n].sum())
        lidar = dict(key)
        lidar.update(zip(S.BOX_CENTER, w["center"][0]))
        lidar.update(zip(S.BOX_SIZE, w["size"][0]))
        lidar.update({S.BOX_HEADING: w["heading"][0], S.BOX_TYPE: SYNTHETIC_TYPES[name], S.BOX_POINTS: visible,
                      S.BOX_DIFFICULTY: 1 if visible >= 20 else 2})
        lidar.update(zip(S.BOX_SPEED, w["speed"][0]))
        for column, _ in S.COLUMNS[S.LIDAR_BOX]:
            lidar.setdefault(column, 0.0 if column.split(".")[-1] in "xyz" else 0)
        synced = dict(key)
        synced.update(zip(S.SYNCED_CENTER, w["center"][0]))
        synced.update(zip(S.SYNCED_SIZE, w["size"][0]))
        synced.update({S.SYNCED_HEADING: w["heading"][0],
                       S.SYNCED_CAMERA: RIG[int(np.argmax(pixels[n]))] if visible else ""})
        lidar_rows.append(lidar)
        synced_rows.append(synced)
    return lidar_rows, synced_rows


def _image_row(segment: str, stamp: int, camera: str, jpeg: bytes, ego2global: np.ndarray, t: float) -> dict:
    row = {S.SEGMENT: segment, S.TIMESTAMP: stamp, S.CAMERA: CAMERA_IDS[camera], S.IMAGE: jpeg,
           S.IMAGE_POSE: ego2global.reshape(-1).tolist()}
    for column, _ in S.COLUMNS[S.CAMERA_IMAGE]:
        row.setdefault(column, t if column.endswith(("pose_timestamp", "trigger_time", "done_time")) else 0.0)
    return row


def write_segment(config: WaymoFixtureConfig, split: str, segment: str, index: int) -> None:
    """Write one segment's five components (camera images one row group per frame)."""
    world = segment_world(config, index)
    split_dir = Path(config.out_dir) / split
    for component in S.COMPONENTS:
        (split_dir / component).mkdir(parents=True, exist_ok=True)
    pq.write_table(_table(S.CAMERA_CALIBRATION, _calibration_rows(config, segment)),
                   split_dir / S.CAMERA_CALIBRATION / f"{segment}.parquet")
    poses, lidar_rows, synced_rows = [], [], []
    with pq.ParquetWriter(split_dir / S.CAMERA_IMAGE / f"{segment}.parquet", S.schema(S.CAMERA_IMAGE)) as images:
        for frame in range(config.frames_per_segment):
            t = frame * FRAME_PERIOD_US * 1e-6
            stamp = frame_time_us(config, index, frame)
            ego2global = world.ego2global(t)
            jpegs, pixels = _render_frame(config, world, t)
            images.write_table(_table(S.CAMERA_IMAGE, [_image_row(segment, stamp, c, jpegs[c], ego2global, t)
                                                       for c in RIG]))
            poses.append({S.SEGMENT: segment, S.TIMESTAMP: stamp,
                          S.WORLD_FROM_VEHICLE: ego2global.reshape(-1).tolist()})
            lidar, synced = _box_rows(segment, stamp, world, t, pixels)
            lidar_rows += lidar
            synced_rows += synced
    pq.write_table(_table(S.VEHICLE_POSE, poses), split_dir / S.VEHICLE_POSE / f"{segment}.parquet")
    pq.write_table(_table(S.LIDAR_BOX, lidar_rows), split_dir / S.LIDAR_BOX / f"{segment}.parquet")
    pq.write_table(_table(S.SYNCED_BOX, synced_rows), split_dir / S.SYNCED_BOX / f"{segment}.parquet")


def write_waymo_fixture(config: WaymoFixtureConfig, progress: bool = True) -> Path:
    """Write the fixture into ``config.out_dir``; returns it."""
    if config.frames_per_segment < 1 or config.image_width < 16:
        raise ValueError(f"frames_per_segment must be >= 1 and image_width >= 16, got {config.frames_per_segment}, "
                         f"{config.image_width}")
    segments = fixture_segments(config)
    for split, segment, index in tqdm(segments, desc="synthetic waymo", unit="segment", disable=not progress):
        write_segment(config, split, segment, index)
    return Path(config.out_dir)
