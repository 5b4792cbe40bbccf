"""Waymo Open Dataset v2 -> our info format (``perception.nuscenes_infos`` version 2,
perception/data/infos.py), one info per (sampled) frame (docs/waymo.md, "Infos").

* The rig is described by the data: the five cameras in enum order with their calibrated image sizes.
* Each camera's JPEG is copied (not re-encoded) from ``camera_image`` to
  ``{out}/images/{split}/{segment}/{timestamp}_{CAMERA}.jpg``, streaming the segment's rows.
* ``cam2ego`` goes camera -> the vehicle at the camera's capture (``camera_image.pose``) -> world ->
  the frame's vehicle, as for nuScenes cameras; ``prev2curr`` maps the previous sampled frame's vehicle
  frame into this one.
* GT (training, validation): the camera-synced boxes with velocity from ``lidar_box.speed``;
  ``gt_names`` are :data:`~perception.data.waymo.conventions.WAYMO_CLASSES` or "ignore" (signs),
  ``valid_flag`` marks the boxes the camera-only task scores (seen by a camera, with LiDAR points).
* Waymo keys per info: ``context_name`` (segment) and ``timestamp`` (frame_timestamp_micros), which the
  submission needs; ``token`` is ``{context_name}_{timestamp}``.

Per-segment shards under ``{out}/shards/waymo_{split}_every{interval}/`` make a run resumable: a shard is
written (atomically) only when its segment is complete, and a rerun skips it.
"""

from __future__ import annotations

import os
import pickle
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import numpy as np
from tqdm import tqdm

from perception.data.infos import info_metadata
from perception.structures.cameras import compose_ego2img

from .conventions import RIG, WAYMO_CLASSES
from .reader import (
    CameraCalibration,
    FrameBoxes,
    WaymoDataError,
    frame_boxes,
    iter_camera_images,
    list_segments,
    read_calibrations,
    read_ground_truth,
    read_vehicle_poses,
)

SPLITS = ("training", "validation", "testing")
DATASET_VERSION = "waymo-v2"


def infos_name(split: str) -> str:
    return f"waymo_infos_{split}.pkl"


def _image_path(split: str, segment: str, timestamp: int, camera: str) -> str:
    return f"images/{split}/{segment}/{timestamp}_{camera}.jpg"


def _extract_images(split_dir: Path, segment: str, split: str, out_dir: Path, frames: set[int]) -> dict:
    """Write the JPEGs of ``frames``; returns {(timestamp, camera): camera-time world_from_vehicle}."""
    poses = {}
    for image in iter_camera_images(split_dir, segment):
        if image.timestamp not in frames:
            continue
        path = out_dir / _image_path(split, segment, image.timestamp, image.camera)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(image.jpeg)
        os.replace(tmp, path)
        poses[(image.timestamp, image.camera)] = image.world_from_vehicle
    return poses


def _camera_entry(calib: CameraCalibration, data_path: str, token: str, timestamp: int,
                  ego2global: np.ndarray, cam_ego2global: np.ndarray) -> dict:
    cam2ego = np.linalg.inv(ego2global) @ cam_ego2global @ calib.cam2ego
    ego2img = compose_ego2img(calib.intrinsics, cam2ego)
    return dict(data_path=data_path, sample_data_token=f"{token}_{calib.name}", timestamp=timestamp,
                image_size=calib.image_size, intrinsics=calib.intrinsics, distortion=calib.distortion,
                cam2ego=cam2ego, sensor2ego=calib.cam2ego, cam_ego2global=cam_ego2global, ego2img=ego2img,
                lidar2img=ego2img)  # no LiDAR in the infos: its frame is the vehicle frame


def _ground_truth(boxes: FrameBoxes, token: str) -> dict:
    names = boxes.names
    return dict(
        gt_boxes=boxes.boxes,
        gt_names=names,
        gt_labels=np.array([WAYMO_CLASSES.index(n) if n in WAYMO_CLASSES else -1 for n in names], np.int64),
        gt_attributes=np.array([""] * len(names), dtype=object),
        gt_types=boxes.types,
        num_lidar_pts=boxes.num_lidar_points,
        num_radar_pts=np.zeros(len(names), np.int64),
        valid_flag=boxes.camera_visible,
        difficulty=boxes.difficulty,
        most_visible_camera=boxes.most_visible_camera,
        instance_tokens=boxes.object_ids,
        ann_tokens=np.array([f"{token}_{i}" for i in boxes.object_ids], dtype=object),
    )


def segment_infos(split_dir: str | Path, segment: str, split: str, out_dir: str | Path, with_gt: bool = True,
                  interval: int = 1) -> list[dict]:
    """Infos of every ``interval``-th frame of one segment, in time order (images written under ``out_dir``)."""
    split_dir, out_dir = Path(split_dir), Path(out_dir)
    calibrations = read_calibrations(split_dir, segment)
    poses = read_vehicle_poses(split_dir, segment)
    stamps = list(poses)[::interval]
    ground_truth = read_ground_truth(split_dir, segment) if with_gt else {}
    camera_poses = _extract_images(split_dir, segment, split, out_dir, set(stamps))
    infos, prev = [], None
    for n, stamp in enumerate(stamps):
        lacking = [c for c in RIG if (stamp, c) not in camera_poses]
        if lacking:
            raise WaymoDataError(f"segment {segment} frame {stamp}: camera_image has no image of camera(s) {lacking}")
        token, ego2global = f"{segment}_{stamp}", poses[stamp]
        info = dict(
            token=token, scene_token=segment, scene_name=segment, context_name=segment, frame_index=n,
            timestamp=stamp, prev=prev["token"] if prev else "",
            next=f"{segment}_{stamps[n + 1]}" if n + 1 < len(stamps) else "",
            ego2global=ego2global,
            prev2curr=np.eye(4) if prev is None else np.linalg.inv(ego2global) @ prev["ego2global"],
            lidar_path=None, lidar2ego=np.eye(4),
            cams={c: _camera_entry(calibrations[c], _image_path(split, segment, stamp, c), token, stamp, ego2global,
                                   camera_poses[(stamp, c)]) for c in RIG},
            occ_path=None, openlane_path=None, openlane_key=None,
        )
        info.update(_ground_truth(frame_boxes(ground_truth, stamp), token))
        infos.append(info)
        prev = info
    return infos


def _write_shard(split_dir: str, segment: str, split: str, out_dir: str, with_gt: bool, interval: int,
                 shard: str) -> str:
    infos = segment_infos(split_dir, segment, split, out_dir, with_gt, interval)
    tmp = shard + ".tmp"
    with open(tmp, "wb") as f:
        pickle.dump(infos, f, protocol=pickle.HIGHEST_PROTOCOL)
    os.replace(tmp, shard)  # a shard exists only when complete, so a rerun can skip it
    return segment


def create_waymo_infos(root: str | Path, split: str, out_dir: str | Path | None = None, interval: int = 1,
                       workers: int = 1, progress: bool = True) -> Path:
    """Write ``waymo_infos_{split}.pkl`` (default into ``root``; paths relative to ``out_dir``) for the v2
    split folder ``root/split``; returns its path. ``interval``: keep every interval-th frame."""
    if split not in SPLITS:
        raise WaymoDataError(f"split {split!r} is not one of {SPLITS}")
    if interval < 1:
        raise WaymoDataError(f"interval must be >= 1, got {interval}")
    root = Path(root)
    out_dir = Path(out_dir) if out_dir is not None else root
    split_dir = root / split
    segments = list_segments(split_dir)
    with_gt = split != "testing"
    shard_dir = out_dir / "shards" / f"waymo_{split}_every{interval}"
    shard_dir.mkdir(parents=True, exist_ok=True)
    shards = {s: shard_dir / f"{s}.pkl" for s in segments}
    todo = [s for s in segments if not shards[s].exists()]
    jobs = [(str(split_dir), s, split, str(out_dir), with_gt, interval, str(shards[s])) for s in todo]
    with tqdm(total=len(todo), desc=f"waymo {split} infos", unit="segment", disable=not progress) as bar:
        if workers > 1 and len(jobs) > 1:
            with ProcessPoolExecutor(min(workers, len(jobs))) as pool:
                for future in as_completed([pool.submit(_write_shard, *job) for job in jobs]):
                    future.result()  # a failing segment stops the run; finished shards stay
                    bar.update()
        else:
            for job in jobs:
                _write_shard(*job)
                bar.update()
    infos = []
    for segment in segments:
        with open(shards[segment], "rb") as f:
            infos += pickle.load(f)
    return save_waymo_infos(infos, out_dir / infos_name(split), split)


def save_waymo_infos(infos: list[dict], path: str | Path, split: str) -> Path:
    """Write an info file with the Waymo rig (from the first frame) and :data:`WAYMO_CLASSES`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    metadata = info_metadata(infos, DATASET_VERSION, split, cameras=RIG, dataset="waymo")
    metadata["classes"] = list(WAYMO_CLASSES)
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "wb") as f:
        pickle.dump(dict(metadata=metadata, infos=infos), f, protocol=pickle.HIGHEST_PROTOCOL)
    os.replace(tmp, path)
    return path
