"""The Waymo Open Dataset v2 (parquet) components this project reads: their tags (folder names), key
columns and value columns with their arrow types, named as the official files name them
(``key.<field>`` for keys, ``[ComponentClass].<field>.<sub>`` for values; docs/waymo.md, "Data").

A v2 split folder holds ``{tag}/{segment_context_name}.parquet``, one file per 20 s segment per
component. The reader (:mod:`perception.data.waymo.reader`) selects these columns; the fixture writer
(:mod:`perception.data.waymo.fixture`) writes them with these types.
"""

from __future__ import annotations

import pyarrow as pa

SEGMENT = "key.segment_context_name"
TIMESTAMP = "key.frame_timestamp_micros"
CAMERA = "key.camera_name"
LASER_OBJECT = "key.laser_object_id"

CAMERA_IMAGE = "camera_image"
CAMERA_CALIBRATION = "camera_calibration"
VEHICLE_POSE = "vehicle_pose"
LIDAR_BOX = "lidar_box"
SYNCED_BOX = "lidar_camera_synced_box"
COMPONENTS = (CAMERA_IMAGE, CAMERA_CALIBRATION, VEHICLE_POSE, LIDAR_BOX, SYNCED_BOX)

_IMG, _CAL, _POSE = "[CameraImageComponent]", "[CameraCalibrationComponent]", "[VehiclePoseComponent]"
_BOX, _SYNC = "[LiDARBoxComponent]", "[LiDARCameraSyncedBoxComponent]"


def _xyz(prefix: str) -> list[tuple[str, pa.DataType]]:
    return [(f"{prefix}.{axis}", pa.float64()) for axis in "xyz"]


_TRANSFORM = pa.list_(pa.float64())
COLUMNS: dict[str, list[tuple[str, pa.DataType]]] = {
    CAMERA_IMAGE: [
        (SEGMENT, pa.string()),
        (TIMESTAMP, pa.int64()),
        (CAMERA, pa.int8()),
        (f"{_IMG}.image", pa.binary()),
        (f"{_IMG}.pose.transform", _TRANSFORM),
        *_xyz(f"{_IMG}.velocity.linear_velocity"),
        *_xyz(f"{_IMG}.velocity.angular_velocity"),
        (f"{_IMG}.pose_timestamp", pa.float64()),
        (f"{_IMG}.rolling_shutter_params.shutter", pa.float64()),
        (f"{_IMG}.rolling_shutter_params.camera_trigger_time", pa.float64()),
        (f"{_IMG}.rolling_shutter_params.camera_readout_done_time", pa.float64()),
    ],
    CAMERA_CALIBRATION: [
        (SEGMENT, pa.string()),
        (CAMERA, pa.int8()),
        *[(f"{_CAL}.intrinsic.{k}", pa.float64()) for k in ("f_u", "f_v", "c_u", "c_v", "k1", "k2", "p1", "p2", "k3")],
        (f"{_CAL}.extrinsic.transform", _TRANSFORM),
        (f"{_CAL}.width", pa.int32()),
        (f"{_CAL}.height", pa.int32()),
        (f"{_CAL}.rolling_shutter_direction", pa.int8()),
    ],
    VEHICLE_POSE: [
        (SEGMENT, pa.string()),
        (TIMESTAMP, pa.int64()),
        (f"{_POSE}.world_from_vehicle.transform", _TRANSFORM),
    ],
    LIDAR_BOX: [
        (SEGMENT, pa.string()),
        (TIMESTAMP, pa.int64()),
        (LASER_OBJECT, pa.string()),
        *_xyz(f"{_BOX}.box.center"),
        *_xyz(f"{_BOX}.box.size"),
        (f"{_BOX}.box.heading", pa.float64()),
        (f"{_BOX}.type", pa.int8()),
        (f"{_BOX}.num_lidar_points_in_box", pa.int64()),
        (f"{_BOX}.num_top_lidar_points_in_box", pa.int64()),
        *_xyz(f"{_BOX}.speed"),
        *_xyz(f"{_BOX}.acceleration"),
        (f"{_BOX}.difficulty_level.detection", pa.int8()),
        (f"{_BOX}.difficulty_level.tracking", pa.int8()),
    ],
    SYNCED_BOX: [
        (SEGMENT, pa.string()),
        (TIMESTAMP, pa.int64()),
        (LASER_OBJECT, pa.string()),
        (f"{_SYNC}.most_visible_camera_name", pa.string()),
        *_xyz(f"{_SYNC}.camera_synced_box.center"),
        *_xyz(f"{_SYNC}.camera_synced_box.size"),
        (f"{_SYNC}.camera_synced_box.heading", pa.float64()),
    ],
}
KEYS: dict[str, tuple[str, ...]] = {
    CAMERA_IMAGE: (SEGMENT, TIMESTAMP, CAMERA),
    CAMERA_CALIBRATION: (SEGMENT, CAMERA),
    VEHICLE_POSE: (SEGMENT, TIMESTAMP),
    LIDAR_BOX: (SEGMENT, TIMESTAMP, LASER_OBJECT),
    SYNCED_BOX: (SEGMENT, TIMESTAMP, LASER_OBJECT),
}


def schema(component: str) -> pa.Schema:
    """The arrow schema of a component's columns (those this project uses)."""
    return pa.schema(COLUMNS[component])


# Value columns the reader uses, by short name.
IMAGE = f"{_IMG}.image"
IMAGE_POSE = f"{_IMG}.pose.transform"
INTRINSIC = {k: f"{_CAL}.intrinsic.{k}" for k in ("f_u", "f_v", "c_u", "c_v", "k1", "k2", "p1", "p2", "k3")}
EXTRINSIC = f"{_CAL}.extrinsic.transform"
WIDTH, HEIGHT = f"{_CAL}.width", f"{_CAL}.height"
ROLLING_SHUTTER_DIRECTION = f"{_CAL}.rolling_shutter_direction"
WORLD_FROM_VEHICLE = f"{_POSE}.world_from_vehicle.transform"
BOX_CENTER = [f"{_BOX}.box.center.{a}" for a in "xyz"]
BOX_SIZE = [f"{_BOX}.box.size.{a}" for a in "xyz"]
BOX_HEADING = f"{_BOX}.box.heading"
BOX_TYPE = f"{_BOX}.type"
BOX_POINTS = f"{_BOX}.num_lidar_points_in_box"
BOX_SPEED = [f"{_BOX}.speed.{a}" for a in "xy"]
BOX_DIFFICULTY = f"{_BOX}.difficulty_level.detection"
SYNCED_CAMERA = f"{_SYNC}.most_visible_camera_name"
SYNCED_CENTER = [f"{_SYNC}.camera_synced_box.center.{a}" for a in "xyz"]
SYNCED_SIZE = [f"{_SYNC}.camera_synced_box.size.{a}" for a in "xyz"]
SYNCED_HEADING = f"{_SYNC}.camera_synced_box.heading"
