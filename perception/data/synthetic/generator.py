"""Writes a synthetic world in nuScenes v1.0 format (tables, camera JPEGs, LIDAR_TOP .pcd.bin) with
Occ3D-style ``gts/<scene>/<token>/labels.npz`` and OpenLane-V2-style frame jsons for the same frames
(201-point centerlines), plus ``openlane_v2/data_dict_synthetic_{split}.pkl`` per split, built from them
as the OpenLane-V2 preprocessing builds its data_dicts (val lanes subsampled to 11 points;
perception/data/openlane_v2.py).

The version is ``v1.0-mini`` and scenes take names from the devkit's ``mini_train`` / ``mini_val``
split lists, so the devkit's split logic (``create_splits_scenes``, ``DetectionEval(eval_set=
'mini_val')``) works unchanged. Deterministic per seed.
"""

from __future__ import annotations

import hashlib
import json
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from perception.structures.cameras import CAMERA_NAMES, compose_ego2img
from perception.structures.classes import DETECTION_CLASS_TO_OCC
from perception.structures.transforms import (
    make_transform,
    matrix_to_quaternion,
    rotation_z,
    yaw_to_quaternion,
)

from .labels import occupancy_labels, openlane_annotation
from .render import Solids, render_camera, render_lidar
from .world import CLASS_CATEGORIES, SceneWorld, build_scene

VERSION = "v1.0-mini"
MINI_TRAIN = (
    "scene-0061",
    "scene-0553",
    "scene-0655",
    "scene-0757",
    "scene-0796",
    "scene-1077",
    "scene-1094",
    "scene-1100",
)
MINI_VAL = ("scene-0103", "scene-0916")
SAMPLE_PERIOD_US = 500_000  # key frames at 2 Hz
START_US = 1_531_000_000_000_000

# (x, y, z, yaw in degrees, full-resolution focal length at 1600 px width) per camera, nuScenes-like.
CAMERA_RIG = {
    "CAM_FRONT": (1.70, 0.00, 1.51, 0.0, 1266.0),
    "CAM_FRONT_RIGHT": (1.55, -0.49, 1.50, -55.0, 1260.0),
    "CAM_FRONT_LEFT": (1.52, 0.49, 1.51, 55.0, 1260.0),
    "CAM_BACK": (0.03, 0.00, 1.57, 180.0, 800.0),
    "CAM_BACK_LEFT": (1.04, 0.48, 1.56, 110.0, 1260.0),
    "CAM_BACK_RIGHT": (1.03, -0.48, 1.59, -110.0, 1260.0),
}
LIDAR_POSE = (0.94, 0.0, 1.84, -90.0)  # nuScenes' LIDAR_TOP: x right, y forward (yaw -90 deg in ego)
CATEGORY_NAMES = sorted(set(CLASS_CATEGORIES.values()))
ATTRIBUTE_NAMES = (
    "vehicle.moving",
    "vehicle.parked",
    "vehicle.stopped",
    "pedestrian.moving",
    "pedestrian.standing",
    "pedestrian.sitting_lying_down",
    "cycle.with_rider",
    "cycle.without_rider",
)
VISIBILITY_LEVELS = (("1", "v0-40"), ("2", "v40-60"), ("3", "v60-80"), ("4", "v80-100"))


@dataclass(frozen=True)
class WorldConfig:
    out_dir: str
    seed: int = 0
    num_scenes: int = 5
    samples_per_scene: int = 20
    image_size: tuple[int, int] = (320, 180)  # (width, height)
    workers: int = 2


def camera_intrinsics(name: str, size: tuple[int, int]) -> np.ndarray:
    width, height = size
    focal = CAMERA_RIG[name][4] * width / 1600.0
    return np.array([[focal, 0.0, width / 2], [0.0, focal, height / 2], [0.0, 0.0, 1.0]])


def camera_to_ego(name: str) -> np.ndarray:
    """cam2ego with OpenCV camera axes (x right, y down, z forward) looking along the rig yaw."""
    x, y, z, yaw_deg, _ = CAMERA_RIG[name]
    yaw = np.deg2rad(yaw_deg)
    forward = np.array([np.cos(yaw), np.sin(yaw), 0.0])
    right = np.array([np.sin(yaw), -np.cos(yaw), 0.0])
    return make_transform(np.stack([right, [0.0, 0.0, -1.0], forward], 1), (x, y, z))


def lidar_to_ego() -> np.ndarray:
    x, y, z, yaw = LIDAR_POSE
    return make_transform(rotation_z(np.deg2rad(yaw)), (x, y, z))


def _token(seed: int, *key) -> str:
    return hashlib.md5((f"synthetic/{seed}/" + "/".join(map(str, key))).encode()).hexdigest()


def scene_names(num_scenes: int) -> list[tuple[str, str]]:
    """(name, split) per scene: about 2/5 go to mini_val (at least one), the rest to mini_train."""
    if not 1 <= num_scenes <= len(MINI_TRAIN) + len(MINI_VAL):
        raise ValueError(
            f"--scenes must be in 1..{len(MINI_TRAIN) + len(MINI_VAL)} (the v1.0-mini scene names), "
            f"got {num_scenes}"
        )
    n_val = 1 if num_scenes <= 2 else min(2, max(1, num_scenes * 2 // 5))
    names = [(name, "train") for name in MINI_TRAIN[: num_scenes - n_val]]
    return names + [(name, "val") for name in MINI_VAL[:n_val]]


def _solids(world: SceneWorld, t: float) -> tuple[Solids, np.ndarray, list[int]]:
    """Every cuboid at time t, their Occ3D classes and the solid index of each traffic element."""
    objects = world.boxes_at(t)
    te_boxes = np.array([te["box"] for te in world.traffic_elements]).reshape(-1, 9)
    boxes = np.concatenate([objects, world.scenery_boxes, te_boxes])
    colors = np.concatenate(
        [
            world.object_colors,
            world.scenery_colors,
            np.array([te["color"] for te in world.traffic_elements], np.uint8).reshape(-1, 3),
        ]
    )
    vehicles = {"car", "truck", "bus", "trailer", "construction_vehicle"}
    kinds = np.array(
        [1 if c in vehicles else 0 for c in world.object_classes]
        + [0] * (len(world.scenery_boxes) + len(te_boxes))
    )
    occ = np.concatenate(
        [
            [DETECTION_CLASS_TO_OCC[c] for c in world.object_classes],
            world.scenery_occ,
            np.full(len(te_boxes), 15),
        ]
    ).astype(np.uint8)
    te_index = list(range(len(objects) + len(world.scenery_boxes), len(boxes)))
    return Solids(boxes, colors, kinds), occ, te_index


@dataclass
class SampleJob:
    out_dir: str
    world: SceneWorld
    scene_name: str
    scene_token: str
    split: str
    sample_token: str
    time_s: float
    timestamp: int
    image_size: tuple[int, int]
    filenames: dict  # channel -> relative filename


def render_sample(job: SampleJob) -> dict:
    """Renders one key frame and writes its files; returns per-object LiDAR point counts and visibility."""
    world, out = job.world, Path(job.out_dir)
    solids, occ_classes, te_index = _solids(world, job.time_s)
    ego2global = world.ego2global(job.time_s)
    num_objects = len(world.object_classes)
    hits = np.zeros(num_objects)
    visible = np.zeros(num_objects)
    cameras, front = [], None
    for name in CAMERA_NAMES:
        intr, cam2ego = camera_intrinsics(name, job.image_size), camera_to_ego(name)
        image, depth, ids, box_hits = render_camera(world, solids, intr, ego2global @ cam2ego, job.image_size)
        path = out / job.filenames[name]
        path.parent.mkdir(parents=True, exist_ok=True)
        # Full-resolution chroma (no 4:2:0 subsampling) keeps object colours crisp at edges.
        Image.fromarray(image).save(path, quality=93, subsampling=0)
        hits += box_hits[:num_objects]
        visible += np.bincount(ids[ids >= 0], minlength=len(solids.boxes))[:num_objects]
        cameras.append((compose_ego2img(intr, cam2ego), depth))
        if name == "CAM_FRONT":
            front = (compose_ego2img(intr, cam2ego), ids)
    lidar2ego = lidar_to_ego()
    cloud, point_ids = render_lidar(world, solids, ego2global @ lidar2ego)
    path = out / job.filenames["LIDAR_TOP"]
    path.parent.mkdir(parents=True, exist_ok=True)
    cloud.tofile(path)
    points_ego = cloud[:, :3].astype(np.float64) @ lidar2ego[:3, :3].T + lidar2ego[:3, 3]
    occ = occupancy_labels(
        world, solids.boxes, occ_classes, ego2global, cameras, points_ego, lidar2ego[:3, 3]
    )
    occ_dir = out / "gts" / job.scene_name / job.sample_token
    occ_dir.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(occ_dir / "labels.npz", **occ)
    frame = _write_openlane(job, ego2global, openlane_annotation(world, ego2global, front[0], front[1], te_index))
    num_pts = np.bincount(point_ids[point_ids >= 0], minlength=len(solids.boxes))[:num_objects]
    with np.errstate(invalid="ignore", divide="ignore"):
        fraction = np.where(hits > 0, visible / np.maximum(hits, 1), 0.0)
    return dict(sample_token=job.sample_token, num_lidar_pts=num_pts.tolist(), visibility=fraction.tolist(),
                openlane_frame=_data_dict_frame(job, frame))


def _data_dict_frame(job: SampleJob, frame: dict) -> dict:
    """The data_dict value of a frame json just written (the same dict, not re-read from disk: json floats
    round-trip exactly), val/test lanes subsampled to 11 points as the OpenLane-V2 preprocessing does."""
    from perception.data.openlane_v2 import frame_from_json

    return frame_from_json(frame, subsample_val=job.split != "train")


def _write_openlane(job: SampleJob, ego2global: np.ndarray, annotation: dict) -> dict:
    sensors = {}
    for name in CAMERA_NAMES:
        cam2ego = camera_to_ego(name)
        sensors[name] = dict(
            image_path=job.filenames[name],
            extrinsic=dict(rotation=cam2ego[:3, :3].tolist(), translation=cam2ego[:3, 3].tolist()),
            intrinsic=dict(K=camera_intrinsics(name, job.image_size).tolist(), distortion=[0.0] * 5),
        )
    frame = dict(
        version="v2.1.0-synthetic",
        segment_id=job.scene_token,
        timestamp=job.timestamp,
        meta_data=dict(source="synthetic-nuscenes", source_id=job.sample_token),
        sensor=sensors,
        pose=dict(rotation=ego2global[:3, :3].tolist(), translation=ego2global[:3, 3].tolist()),
        annotation=annotation,
    )
    path = _openlane_json(job)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(frame))
    return frame


def write_openlane_data_dicts(out: Path, jobs: list[SampleJob], results: dict[str, dict]) -> dict[str, Path]:
    """``openlane_v2/data_dict_synthetic_{split}.pkl`` of the frames the jobs wrote (``results``: sample
    token -> :func:`render_sample` result), keyed (split, scene token, timestamp) like the OpenLane-V2
    data_dicts."""
    from perception.data.openlane_v2 import write_data_dict

    frames: dict[str, dict] = {}
    for job in jobs:
        key = (job.split, job.scene_token, str(job.timestamp))
        frames.setdefault(job.split, {})[key] = results[job.sample_token].pop("openlane_frame")
    return {
        split: write_data_dict(out / "openlane_v2" / f"data_dict_synthetic_{split}.pkl", data)
        for split, data in frames.items()
    }


def _openlane_json(job: SampleJob) -> Path:
    return Path(job.out_dir) / "openlane_v2" / job.split / job.scene_token / "info" / f"{job.timestamp}.json"


def generate_world(config: WorldConfig, progress: bool = True) -> Path:
    """Generate the world into ``config.out_dir``; returns the output path."""
    out = Path(config.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    seed = config.seed
    tables: dict[str, list[dict]] = {
        k: []
        for k in (
            "scene",
            "sample",
            "sample_data",
            "ego_pose",
            "calibrated_sensor",
            "sensor",
            "log",
            "map",
            "instance",
            "sample_annotation",
            "category",
            "attribute",
            "visibility",
        )
    }
    tables["category"] = [
        dict(token=_token(seed, "category", n), name=n, description=n) for n in CATEGORY_NAMES
    ]
    tables["attribute"] = [
        dict(token=_token(seed, "attribute", n), name=n, description=n) for n in ATTRIBUTE_NAMES
    ]
    tables["visibility"] = [
        dict(token=t, level=lvl, description=f"visibility of whole object is {lvl}")
        for t, lvl in VISIBILITY_LEVELS
    ]
    channels = list(CAMERA_NAMES) + ["LIDAR_TOP"]
    tables["sensor"] = [
        dict(token=_token(seed, "sensor", c), channel=c, modality="lidar" if c == "LIDAR_TOP" else "camera")
        for c in channels
    ]
    category_token = {r["name"]: r["token"] for r in tables["category"]}
    attribute_token = {r["name"]: r["token"] for r in tables["attribute"]}
    map_token = _token(seed, "map")
    map_file = f"maps/{map_token}.png"
    (out / "maps").mkdir(exist_ok=True)
    Image.fromarray(np.full((20, 20), 255, np.uint8)).save(out / map_file)
    tables["map"] = [dict(token=map_token, log_tokens=[], category="semantic_prior", filename=map_file)]

    jobs, annotations = [], []  # annotations: (record, scene, object index, sample token)
    duration = (config.samples_per_scene - 1) * SAMPLE_PERIOD_US * 1e-6
    for s, (name, split) in enumerate(scene_names(config.num_scenes)):
        world = build_scene(np.random.default_rng([seed, s]), s, duration)
        jobs += _scene_tables(
            config, tables, world, s, name, split, category_token, attribute_token, annotations
        )
    tables["map"][0]["log_tokens"] = [r["token"] for r in tables["log"]]

    results = {}
    workers = max(1, min(config.workers, os.cpu_count() or 1))
    bar = tqdm(total=len(jobs), desc="synthetic world", unit="frame", disable=not progress)
    if workers == 1:
        for job in jobs:
            results[job.sample_token] = render_sample(job)
            bar.update()
    else:
        with ProcessPoolExecutor(workers) as pool:
            for res in pool.map(render_sample, jobs, chunksize=2):
                results[res["sample_token"]] = res
                bar.update()
    bar.close()
    write_openlane_data_dicts(out, jobs, results)
    for record, obj_index, sample_token in annotations:
        res = results[sample_token]
        record["num_lidar_pts"] = int(res["num_lidar_pts"][obj_index])
        fraction = res["visibility"][obj_index]
        record["visibility_token"] = str(1 + int(np.searchsorted([0.4, 0.6, 0.8], fraction, side="right")))
    table_dir = out / VERSION
    table_dir.mkdir(exist_ok=True)
    for key, rows in tables.items():
        (table_dir / f"{key}.json").write_text(json.dumps(rows, indent=0))
    return out


def _scene_tables(
    config: WorldConfig,
    tables: dict,
    world: SceneWorld,
    s: int,
    name: str,
    split: str,
    category_token: dict,
    attribute_token: dict,
    annotations: list,
) -> list[SampleJob]:
    seed, n = config.seed, config.samples_per_scene
    scene_token, log_token = _token(seed, "scene", s), _token(seed, "log", s)
    logfile = f"n000-2026-01-0{1 + s % 9}-00-00-00+0000-synthetic{s}"
    tables["log"].append(
        dict(
            token=log_token,
            logfile=logfile,
            vehicle="n000",
            date_captured="2026-01-01",
            location=("singapore-onenorth", "boston-seaport")[s % 2],
        )
    )
    calib = {}
    for channel in list(CAMERA_NAMES) + ["LIDAR_TOP"]:
        if channel == "LIDAR_TOP":
            pose, intr = lidar_to_ego(), []
        else:
            pose, intr = camera_to_ego(channel), camera_intrinsics(channel, config.image_size).tolist()
        calib[channel] = _token(seed, "calib", s, channel)
        tables["calibrated_sensor"].append(
            dict(
                token=calib[channel],
                sensor_token=_token(seed, "sensor", channel),
                translation=pose[:3, 3].tolist(),
                rotation=matrix_to_quaternion(pose[:3, :3]).tolist(),
                camera_intrinsic=intr,
            )
        )
    sample_tokens = [_token(seed, "sample", s, k) for k in range(n)]
    tables["scene"].append(
        dict(
            token=scene_token,
            log_token=log_token,
            nbr_samples=n,
            name=name,
            description=f"synthetic {split} scene {s}",
            first_sample_token=sample_tokens[0],
            last_sample_token=sample_tokens[-1],
        )
    )
    jobs = []
    for k, sample_token in enumerate(sample_tokens):
        timestamp = START_US + s * 1_000_000_000 + k * SAMPLE_PERIOD_US
        tables["sample"].append(
            dict(
                token=sample_token,
                timestamp=timestamp,
                scene_token=scene_token,
                prev=sample_tokens[k - 1] if k else "",
                next=sample_tokens[k + 1] if k + 1 < n else "",
            )
        )
        ego2global = world.ego2global(k * SAMPLE_PERIOD_US * 1e-6)
        filenames = {}
        for channel in list(CAMERA_NAMES) + ["LIDAR_TOP"]:
            sd_token = _token(seed, "sd", s, k, channel)
            ext = "pcd.bin" if channel == "LIDAR_TOP" else "jpg"
            filenames[channel] = f"samples/{channel}/{logfile}__{channel}__{timestamp}.{ext}"
            tables["ego_pose"].append(
                dict(
                    token=sd_token,
                    timestamp=timestamp,
                    translation=ego2global[:3, 3].tolist(),
                    rotation=matrix_to_quaternion(ego2global[:3, :3]).tolist(),
                )
            )
            is_cam = channel != "LIDAR_TOP"
            tables["sample_data"].append(
                dict(
                    token=sd_token,
                    sample_token=sample_token,
                    ego_pose_token=sd_token,
                    calibrated_sensor_token=calib[channel],
                    timestamp=timestamp,
                    fileformat=ext.split(".")[0],
                    is_key_frame=True,
                    height=config.image_size[1] if is_cam else 0,
                    width=config.image_size[0] if is_cam else 0,
                    filename=filenames[channel],
                    prev=_token(seed, "sd", s, k - 1, channel) if k else "",
                    next=_token(seed, "sd", s, k + 1, channel) if k + 1 < n else "",
                )
            )
        jobs.append(
            SampleJob(
                str(config.out_dir),
                world,
                name,
                scene_token,
                split,
                sample_token,
                k * SAMPLE_PERIOD_US * 1e-6,
                timestamp,
                tuple(config.image_size),
                filenames,
            )
        )
    for i, cls in enumerate(world.object_classes):
        instance_token = _token(seed, "instance", s, i)
        ann_tokens = [_token(seed, "ann", s, i, k) for k in range(n)]
        tables["instance"].append(
            dict(
                token=instance_token,
                category_token=category_token[CLASS_CATEGORIES[cls]],
                nbr_annotations=n,
                first_annotation_token=ann_tokens[0],
                last_annotation_token=ann_tokens[-1],
            )
        )
        attribute = world.object_attributes[i]
        for k in range(n):
            box = world.boxes_at(k * SAMPLE_PERIOD_US * 1e-6)[i]
            record = dict(
                token=ann_tokens[k],
                sample_token=sample_tokens[k],
                instance_token=instance_token,
                visibility_token="4",
                attribute_tokens=[attribute_token[attribute]] if attribute else [],
                translation=box[:3].tolist(),
                size=box[3:6].tolist(),
                rotation=yaw_to_quaternion(float(box[6])),
                prev=ann_tokens[k - 1] if k else "",
                next=ann_tokens[k + 1] if k + 1 < n else "",
                num_lidar_pts=0,
                num_radar_pts=0,
            )
            tables["sample_annotation"].append(record)
            annotations.append((record, i, sample_tokens[k]))
    return jobs
