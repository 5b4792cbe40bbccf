"""Reading Waymo Open Dataset v2 parquet segments with pyarrow, without TensorFlow (docs/waymo.md).

A split folder (e.g. ``DIR/validation``) holds ``{component}/{segment_context_name}.parquet``. Everything
here works one segment at a time: calibrations, poses and boxes are small and read whole; camera images
are streamed in row batches (:func:`iter_camera_images`), so a segment's images are never all in memory.
Components are joined on their ``key.*`` columns. Waymo's conventions become ours only through
:mod:`perception.data.waymo.conventions`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from perception.data.infos import InfoFileError

from . import schema as S
from .conventions import (
    CAMERA_NAMES,
    RIG,
    boxes_from_waymo,
    cam2ego_from_extrinsic,
    class_name_of_type,
    intrinsics_matrix,
    transform_from_row_major,
)


class WaymoDataError(InfoFileError):
    """A Waymo v2 split folder, component file or column is missing or malformed (the message names it)."""


def component_path(split_dir: str | Path, component: str, segment: str) -> Path:
    return Path(split_dir) / component / f"{segment}.parquet"


def list_segments(split_dir: str | Path, component: str = S.VEHICLE_POSE) -> list[str]:
    """The segment context names of a split folder (the files of ``component``), sorted."""
    folder = Path(split_dir) / component
    if not folder.is_dir():
        present = sorted(p.name for p in Path(split_dir).iterdir()) if Path(split_dir).is_dir() else "no such folder"
        raise WaymoDataError(
            f"{split_dir} is not a Waymo v2 split folder: it has no {component}/ (expected "
            f"{{component}}/{{segment}}.parquet; found {present})"
        )
    segments = sorted(p.stem for p in folder.glob("*.parquet"))
    if not segments:
        raise WaymoDataError(f"{folder} holds no .parquet segment files")
    return segments


def _open(path: Path) -> pq.ParquetFile:
    if not path.is_file():
        raise WaymoDataError(f"component file {path} does not exist")
    try:
        return pq.ParquetFile(path)
    except (OSError, pa.ArrowException) as err:
        raise WaymoDataError(f"{path} is not a readable parquet file ({type(err).__name__}: {err})") from err


def _check_columns(path: Path, available: Sequence[str], wanted: Sequence[str]) -> None:
    missing = [c for c in wanted if c not in available]
    if missing:
        raise WaymoDataError(f"{path} lacks column(s) {missing} (has {list(available)[:12]}...)")


def read_component(split_dir: str | Path, component: str, segment: str,
                   columns: Sequence[str] | None = None) -> pa.Table:
    """One component of one segment (``columns``: default the keys and the values this project uses)."""
    path = component_path(split_dir, component, segment)
    file = _open(path)
    columns = list(columns) if columns is not None else [name for name, _ in S.COLUMNS[component]]
    _check_columns(path, file.schema_arrow.names, columns)
    try:
        return file.read(columns=columns)
    except (OSError, pa.ArrowException) as err:
        raise WaymoDataError(f"{path} could not be read ({type(err).__name__}: {err})") from err


def _numbers(table: pa.Table, column: str, dtype=np.float64) -> np.ndarray:
    return table.column(column).to_numpy(zero_copy_only=False).astype(dtype)


def _stack(table: pa.Table, columns: Sequence[str]) -> np.ndarray:
    return np.stack([_numbers(table, c) for c in columns], 1) if table.num_rows else np.zeros((0, len(columns)))


@dataclass
class CameraCalibration:
    """One camera of a segment, in our conventions (``cam2ego``: OpenCV camera axes -> vehicle frame)."""

    name: str
    intrinsics: np.ndarray  # (3, 3)
    distortion: np.ndarray  # (5,) k1, k2, p1, p2, k3
    extrinsic: np.ndarray  # (4, 4) Waymo camera -> vehicle, Waymo camera axes (as stored)
    cam2ego: np.ndarray  # (4, 4)
    image_size: tuple[int, int]  # (w, h)


def read_calibrations(split_dir: str | Path, segment: str) -> dict[str, CameraCalibration]:
    """The five cameras of a segment, in rig order (FRONT, FRONT_LEFT, FRONT_RIGHT, SIDE_LEFT, SIDE_RIGHT)."""
    table = read_component(split_dir, S.CAMERA_CALIBRATION, segment)
    rows = table.to_pylist()
    found = {}
    for row in rows:
        name = CAMERA_NAMES.get(int(row[S.CAMERA]))
        if name is None:
            continue  # REAR_* cameras exist only in the enum
        intr = {k: float(row[c]) for k, c in S.INTRINSIC.items()}
        extrinsic = transform_from_row_major(row[S.EXTRINSIC])
        found[name] = CameraCalibration(
            name=name,
            intrinsics=intrinsics_matrix(intr["f_u"], intr["f_v"], intr["c_u"], intr["c_v"]),
            distortion=np.array([intr[k] for k in ("k1", "k2", "p1", "p2", "k3")]),
            extrinsic=extrinsic,
            cam2ego=cam2ego_from_extrinsic(extrinsic),
            image_size=(int(row[S.WIDTH]), int(row[S.HEIGHT])),
        )
    missing = [c for c in RIG if c not in found]
    if missing:
        path = component_path(split_dir, S.CAMERA_CALIBRATION, segment)
        raise WaymoDataError(f"{path} lacks the calibration of camera(s) {missing}")
    return {c: found[c] for c in RIG}


def read_vehicle_poses(split_dir: str | Path, segment: str) -> dict[int, np.ndarray]:
    """{frame_timestamp_micros: world_from_vehicle (4, 4)} (our ego2global), in time order."""
    table = read_component(split_dir, S.VEHICLE_POSE, segment, [S.TIMESTAMP, S.WORLD_FROM_VEHICLE])
    stamps = table.column(S.TIMESTAMP).to_pylist()
    poses = table.column(S.WORLD_FROM_VEHICLE).to_pylist()
    return {int(t): transform_from_row_major(p) for t, p in sorted(zip(stamps, poses), key=lambda x: x[0])}


@dataclass
class FrameBoxes:
    """The camera-synced boxes of one frame (the camera-only challenge's ground truth), our conventions."""

    boxes: np.ndarray  # (N, 9) vehicle frame, (x, y, z, w, l, h, yaw, vx, vy), speed from lidar_box
    types: np.ndarray  # (N,) Waymo Label.Type
    names: np.ndarray  # (N,) object our class name or "ignore"
    object_ids: np.ndarray  # (N,) laser_object_id
    num_lidar_points: np.ndarray  # (N,)
    difficulty: np.ndarray  # (N,) detection difficulty level (0 = unset, which Waymo treats as LEVEL_1)
    most_visible_camera: np.ndarray  # (N,) camera name, "" when no camera sees the box

    @property
    def camera_visible(self) -> np.ndarray:
        """The boxes the camera-only task scores: seen by a camera (``most_visible_camera_name`` set) and
        with LiDAR points; the others are ignored (docs/waymo.md, "Evaluation")."""
        seen = np.array([bool(c) for c in self.most_visible_camera], dtype=bool)
        return seen & (np.asarray(self.num_lidar_points) > 0)


def _empty_boxes() -> FrameBoxes:
    return FrameBoxes(np.zeros((0, 9)), np.zeros(0, np.int64), np.zeros(0, object), np.zeros(0, object),
                      np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, object))


def read_ground_truth(split_dir: str | Path, segment: str) -> dict[int, FrameBoxes]:
    """{frame_timestamp_micros: FrameBoxes}: ``lidar_camera_synced_box`` joined with ``lidar_box`` on
    (segment, timestamp, laser_object_id) for the type, speed, point count and difficulty."""
    keys = list(S.KEYS[S.SYNCED_BOX])
    synced = read_component(split_dir, S.SYNCED_BOX, segment,
                            keys + [S.SYNCED_CAMERA, *S.SYNCED_CENTER, *S.SYNCED_SIZE, S.SYNCED_HEADING])
    lidar = read_component(split_dir, S.LIDAR_BOX, segment,
                           keys + [S.BOX_TYPE, S.BOX_POINTS, *S.BOX_SPEED, S.BOX_DIFFICULTY])
    joined = synced.join(lidar, keys=keys, join_type="left outer")
    if joined.column(S.BOX_TYPE).null_count:
        path = component_path(split_dir, S.LIDAR_BOX, segment)
        raise WaymoDataError(f"{path} lacks {joined.column(S.BOX_TYPE).null_count} box(es) of "
                             f"{component_path(split_dir, S.SYNCED_BOX, segment)}")
    boxes = boxes_from_waymo(_stack(joined, S.SYNCED_CENTER), _stack(joined, S.SYNCED_SIZE),
                             _numbers(joined, S.SYNCED_HEADING), _stack(joined, S.BOX_SPEED))
    types = _numbers(joined, S.BOX_TYPE, np.int64)
    stamps = _numbers(joined, S.TIMESTAMP, np.int64)
    ids = np.array(joined.column(S.LASER_OBJECT).to_pylist(), dtype=object)
    cameras = np.array([c or "" for c in joined.column(S.SYNCED_CAMERA).to_pylist()], dtype=object)
    points = _numbers(joined, S.BOX_POINTS, np.int64)
    difficulty = _numbers(joined, S.BOX_DIFFICULTY, np.int64)
    out = {}
    for stamp in np.unique(stamps):
        sel = np.nonzero(stamps == stamp)[0]
        sel = sel[np.argsort(ids[sel].astype(str), kind="stable")]  # a fixed order, whatever the file's
        out[int(stamp)] = FrameBoxes(boxes[sel], types[sel], np.array([class_name_of_type(t) for t in types[sel]],
                                     dtype=object), ids[sel], points[sel], difficulty[sel], cameras[sel])
    return out


def frame_boxes(ground_truth: dict[int, FrameBoxes], timestamp: int) -> FrameBoxes:
    """The boxes of one frame (none when the frame has no box rows)."""
    return ground_truth.get(int(timestamp), _empty_boxes())


@dataclass
class CameraImage:
    """One row of ``camera_image``: the JPEG bytes and the vehicle pose at the camera's capture."""

    timestamp: int
    camera: str
    jpeg: bytes
    world_from_vehicle: np.ndarray  # (4, 4)


def iter_camera_images(split_dir: str | Path, segment: str, batch_rows: int = 10) -> Iterator[CameraImage]:
    """Stream a segment's camera images, ``batch_rows`` rows at a time (REAR_* rows are skipped)."""
    path = component_path(split_dir, S.CAMERA_IMAGE, segment)
    file = _open(path)
    columns = [S.TIMESTAMP, S.CAMERA, S.IMAGE, S.IMAGE_POSE]
    _check_columns(path, file.schema_arrow.names, columns)
    try:
        for batch in file.iter_batches(batch_size=batch_rows, columns=columns):
            for row in batch.to_pylist():
                name = CAMERA_NAMES.get(int(row[S.CAMERA]))
                if name is not None:
                    yield CameraImage(int(row[S.TIMESTAMP]), name, row[S.IMAGE],
                                      transform_from_row_major(row[S.IMAGE_POSE]))
    except pa.ArrowException as err:
        raise WaymoDataError(f"{path} could not be read ({type(err).__name__}: {err})") from err


def frame_timestamps(split_dir: str | Path, segment: str) -> list[int]:
    """The frames of a segment (the timestamps of ``vehicle_pose``), in time order."""
    return list(read_vehicle_poses(split_dir, segment))
