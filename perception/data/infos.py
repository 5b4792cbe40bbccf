"""Per-sample info files for nuScenes-format datasets (real nuScenes, the synthetic world) and any other
camera rig converted to this format.

Format ``perception.nuscenes_infos`` version 2, a pickle holding::

    {"metadata": {"format": "perception.nuscenes_infos", "format_version": 2, "version": "v1.0-mini",
                  "split": "val", "classes": DETECTION_CLASSES,
                  "cameras": [name, ...],               # the rig: camera names, in order
                  "image_sizes": {name: (w, h), ...}},  # native image size per camera
     "infos": [info, ...]}              # ordered by scene, then time

Each ``info`` (numpy float64 arrays; every box in the key frame's ego frame, our box convention)::

    token, scene_token, scene_name, frame_index (0 at a scene start), timestamp (us), prev, next
    ego2global (4,4)        key frame (LIDAR_TOP) ego pose
    prev2curr (4,4)         previous key frame's ego -> this ego (identity at a scene start)
    lidar_path, lidar2ego (4,4)
    cams: {name: entry} for every camera of the rig, in the rig's order; each entry
          {data_path, sample_data_token, timestamp, image_size (w, h), intrinsics (3,3),
           cam2ego (4,4) (camera -> key-frame ego, through the camera's own ego pose),
           sensor2ego (4,4) (calibration), cam_ego2global (4,4), ego2img (4,4), lidar2img (4,4)}
    gt_boxes (N,9), gt_names (N,) detection class or "ignore", gt_labels (N,) (-1 for ignore), gt_attributes,
    num_lidar_pts, num_radar_pts, valid_flag (lidar + radar points > 0), instance_tokens, ann_tokens
    occ_path (Occ3D labels.npz, relative to the data root, absolute when an Occ3D release folder outside
              it holds the labels, or None), openlane_path (OpenLane-V2 frame json relative to the data root, or
              None), openlane_key (that frame's data_dict key (split, segment_id, timestamp), three str, or None;
              added in version 2 without a version bump: readers use info.get("openlane_key"))

Infos converted from OpenLane-V2 (:mod:`perception.data.openlane_v2`) have the same keys: no LiDAR
(``lidar_path`` None, ``lidar2ego`` identity, ``lidar2img`` = ``ego2img``), empty 3D boxes (``gt_boxes``
(0, 9) etc.), one ego pose per frame (``cam2ego`` = ``sensor2ego``, ``cam_ego2global`` = ``ego2global``),
``distortion`` per camera and ``source_id`` (the frame's ``meta_data.source_id``).

Camera order: the nuScenes order (FRONT, FRONT_RIGHT, FRONT_LEFT, BACK, BACK_LEFT, BACK_RIGHT) when the six
nuScenes channels are present, else the order of the camera channels in the sensor table
(:func:`perception.structures.cameras.rig_camera_order`). Version 1 files (no rig in the metadata) still
load: their rig is inferred from the first sample (its cameras in order and their ``image_size``).

Paths are relative to the data root. ``data_path`` etc. use forward slashes.
"""

from __future__ import annotations

import os
import pickle
import queue
import traceback
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from perception.engine.files import read_pickle
from perception.structures.cameras import compose_ego2img, rig_camera_order
from perception.structures.classes import DETECTION_CLASSES, NUSCENES_CATEGORY_TO_DETECTION
from perception.structures.nuscenes_boxes import global_boxes_to_ego
from perception.structures.transforms import make_transform

INFO_FORMAT = "perception.nuscenes_infos"
INFO_FORMAT_VERSION = 2
READABLE_FORMAT_VERSIONS = (1, 2)  # version 1: no rig in the metadata (inferred from the first sample)
REQUIRED_KEYS = ("token", "scene_token", "frame_index", "timestamp", "ego2global", "prev2curr", "cams")
REQUIRED_CAM_KEYS = ("data_path", "intrinsics", "cam2ego", "ego2img")


class InfoFileError(ValueError):
    """An info file is missing, truncated, of another format or inconsistent."""


# -- building from the devkit tables -------------------------------------------------------------------
def _pose(record: dict) -> np.ndarray:
    return make_transform(record["rotation"], record["translation"])


def _camera_entry(nusc, sd_token: str, key_ego2global: np.ndarray, lidar2ego: np.ndarray) -> dict:
    sd = nusc.get("sample_data", sd_token)
    calib = nusc.get("calibrated_sensor", sd["calibrated_sensor_token"])
    cam_ego2global = _pose(nusc.get("ego_pose", sd["ego_pose_token"]))
    sensor2ego = _pose(calib)
    # Cameras fire at their own times: go camera -> its ego -> global -> key-frame ego.
    cam2ego = np.linalg.inv(key_ego2global) @ cam_ego2global @ sensor2ego
    intrinsics = np.array(calib["camera_intrinsic"], dtype=np.float64)
    ego2img = compose_ego2img(intrinsics, cam2ego)
    return dict(
        data_path=sd["filename"],
        sample_data_token=sd_token,
        timestamp=sd["timestamp"],
        image_size=(sd["width"], sd["height"]),
        intrinsics=intrinsics,
        cam2ego=cam2ego,
        sensor2ego=sensor2ego,
        cam_ego2global=cam_ego2global,
        ego2img=ego2img,
        lidar2img=ego2img @ lidar2ego,
    )


def _ground_truth(nusc, sample: dict, ego2global: np.ndarray) -> dict:
    anns = [nusc.get("sample_annotation", t) for t in sample["anns"]]
    velocities = np.array([nusc.box_velocity(a["token"])[:2] for a in anns]).reshape(-1, 2)
    boxes = global_boxes_to_ego(
        np.array([a["translation"] for a in anns]).reshape(-1, 3),
        np.array([a["size"] for a in anns]).reshape(-1, 3),
        np.array([a["rotation"] for a in anns]).reshape(-1, 4),
        velocities,
        ego2global,
    )
    names = np.array(
        [NUSCENES_CATEGORY_TO_DETECTION.get(a["category_name"], "ignore") for a in anns], dtype=object
    )
    lidar_pts = np.array([a["num_lidar_pts"] for a in anns], dtype=np.int64)
    radar_pts = np.array([a["num_radar_pts"] for a in anns], dtype=np.int64)
    attribute_names = [
        nusc.get("attribute", a["attribute_tokens"][0])["name"] if a["attribute_tokens"] else "" for a in anns
    ]
    return dict(
        gt_attributes=np.array(attribute_names, dtype=object),
        gt_boxes=boxes,
        gt_names=names,
        gt_labels=np.array([DETECTION_CLASSES.index(n) if n != "ignore" else -1 for n in names], np.int64),
        num_lidar_pts=lidar_pts,
        num_radar_pts=radar_pts,
        valid_flag=(lidar_pts + radar_pts) > 0,
        instance_tokens=np.array([a["instance_token"] for a in anns], dtype=object),
        ann_tokens=np.array([a["token"] for a in anns], dtype=object),
    )


def rig_cameras(nusc) -> list[str]:
    """The camera channels of a devkit dataset's sensor table, in rig order (nuScenes order when the six
    nuScenes cameras are present)."""
    return rig_camera_order(s["channel"] for s in nusc.sensor if s["modality"] == "camera")


def scene_infos(nusc, scene: dict, with_gt: bool = True, cameras: Iterable[str] | None = None) -> list[dict]:
    """Infos of every key frame of one scene, in time order (``cameras``: the rig, default
    :func:`rig_cameras`)."""
    cameras = rig_cameras(nusc) if cameras is None else list(cameras)
    infos, token, frame, prev_e2g = [], scene["first_sample_token"], 0, None
    root = Path(nusc.dataroot)
    while token:
        sample = nusc.get("sample", token)
        lidar_sd = nusc.get("sample_data", sample["data"]["LIDAR_TOP"])
        ego2global = _pose(nusc.get("ego_pose", lidar_sd["ego_pose_token"]))
        lidar2ego = _pose(nusc.get("calibrated_sensor", lidar_sd["calibrated_sensor_token"]))
        prev2curr = np.eye(4) if prev_e2g is None else np.linalg.inv(ego2global) @ prev_e2g
        info = dict(
            token=token,
            scene_token=scene["token"],
            scene_name=scene["name"],
            frame_index=frame,
            timestamp=sample["timestamp"],
            prev=sample["prev"],
            next=sample["next"],
            ego2global=ego2global,
            prev2curr=prev2curr,
            lidar_path=lidar_sd["filename"],
            lidar2ego=lidar2ego,
            cams={c: _camera_entry(nusc, _channel(sample, c), ego2global, lidar2ego) for c in cameras},
        )
        if with_gt:
            info.update(_ground_truth(nusc, sample, ego2global))
        info["occ_path"] = occupancy_label_path(root, scene["name"], token, root)
        info["openlane_path"], info["openlane_key"] = _openlane_frame(root, scene["token"], sample["timestamp"])
        infos.append(info)
        prev_e2g, token, frame = ego2global, sample["next"], frame + 1
    return infos


def _channel(sample: dict, channel: str) -> str:
    if channel not in sample["data"]:
        raise InfoFileError(
            f"sample {sample['token']} has no data for camera {channel} of the rig "
            f"(it has {sorted(sample['data'])})"
        )
    return sample["data"][channel]


def _openlane_frame(root: Path, scene_token: str, timestamp: int) -> tuple[str | None, tuple | None]:
    """(openlane_path, openlane_key) of a sample's OpenLane-V2 frame json under ``root/openlane_v2/``
    (the synthetic world's layout), or (None, None). The key is the frame's data_dict key
    ``(split, segment_id, timestamp)``, three str (perception/data/openlane_v2.py)."""
    for split in ("train", "val", "test"):
        rel = f"openlane_v2/{split}/{scene_token}/info/{timestamp}.json"
        if (root / rel).exists():
            return rel, (split, str(scene_token), str(timestamp))
    return None, None


# -- Occ3D occupancy labels ---------------------------------------------------------------------------
OCC3D_LABELS = "gts/{scene}/{token}/labels.npz"  # layout of an Occ3D-nuScenes release (docs/occupancy.md)
OCC3D_ANNOTATIONS = "annotations.json"


def occupancy_label_path(
    occ_root: str | Path, scene_name: str, token: str, data_root: str | Path
) -> str | None:
    """The ``occ_path`` of one sample whose Occ3D labels lie under ``occ_root``
    (``occ_root/gts/<scene name>/<sample token>/labels.npz``): relative to ``data_root`` (forward slashes)
    when the file is inside it, else absolute; None when the file does not exist. The dataset and the
    metrics join ``data_root / occ_path``, which leaves an absolute path as it is."""
    path = Path(occ_root) / OCC3D_LABELS.format(scene=scene_name, token=token)
    if not path.is_file():
        return None
    return _data_root_relative(path, Path(data_root))


def _data_root_relative(path: Path, data_root: Path) -> str:
    for resolve in (os.path.abspath, os.path.realpath):  # lexical first, then through symlinks
        try:
            return Path(resolve(path)).relative_to(resolve(data_root)).as_posix()
        except ValueError:
            continue
    return Path(os.path.abspath(path)).as_posix()


def load_occ3d_annotations(occ_root: str | Path) -> dict | None:
    """``annotations.json`` of an Occ3D release folder (``train_split``, ``val_split``, ``scene_infos``:
    {scene name: {sample token: frame entry}}), or None when the folder has none. InfoFileError when it
    cannot be read or has no ``scene_infos`` mapping."""
    import json

    path = Path(occ_root) / OCC3D_ANNOTATIONS
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise InfoFileError(f"{path} is not readable JSON ({type(err).__name__}: {err})") from err
    scenes = data.get("scene_infos") if isinstance(data, dict) else None
    if not isinstance(scenes, dict) or not all(isinstance(v, dict) for v in scenes.values()):
        keys = sorted(data)[:8] if isinstance(data, dict) else type(data).__name__
        raise InfoFileError(
            f"{path} has no 'scene_infos' mapping {{scene name: {{sample token: ...}}}} (top level: {keys})"
        )
    return data


@dataclass
class OccupancyAttachment:
    """What :func:`attach_occupancy` found: ``with_labels`` of ``samples`` got an ``occ_path``.

    With an ``annotations.json`` (``annotations`` True): ``listed`` samples are in its ``scene_infos``,
    ``unlisted_with_labels`` have a labels file that it does not list, ``listed_without_labels`` are listed
    but have no file, ``other_scene`` are listed under another scene than the info's. ``examples`` holds
    one sample token per kind of mismatch."""

    occ_root: str
    samples: int = 0
    with_labels: int = 0
    annotations: bool = False
    listed: int = 0
    unlisted_with_labels: int = 0
    listed_without_labels: int = 0
    other_scene: int = 0
    examples: dict[str, str] = field(default_factory=dict)

    def summary(self) -> str:
        text = f"{self.with_labels}/{self.samples} samples with Occ3D labels from {self.occ_root}"
        if not self.annotations:
            return text + f" (no {OCC3D_ANNOTATIONS})"
        text += f"; {OCC3D_ANNOTATIONS} lists {self.listed}"
        for key in ("unlisted_with_labels", "listed_without_labels", "other_scene"):
            if getattr(self, key):
                text += f", {key.replace('_', ' ')} {getattr(self, key)} (e.g. {self.examples[key]})"
        return text


def attach_occupancy(
    infos: list[dict],
    occ_root: str | Path,
    data_root: str | Path,
    annotations: Mapping | None = None,
    progress: bool = False,
) -> OccupancyAttachment:
    """Set every info's ``occ_path`` to its labels in the Occ3D release folder ``occ_root``
    (:func:`occupancy_label_path`; None where the release has no file) and cross-check the sample and
    scene tokens against ``annotations`` (default: ``occ_root/annotations.json`` when present). The infos
    are changed in place; the returned report counts what was found."""
    occ_root = Path(occ_root)
    if not occ_root.is_dir():
        raise InfoFileError(f"Occ3D root {occ_root} is not a directory")
    if not (occ_root / "gts").is_dir():
        raise InfoFileError(f"Occ3D root {occ_root} has no gts/ folder (gts/<scene name>/<sample token>/labels.npz)")
    if annotations is None:
        annotations = load_occ3d_annotations(occ_root)
    report = OccupancyAttachment(str(occ_root), samples=len(infos), annotations=annotations is not None)
    listed_scene = {}
    if annotations is not None:
        listed_scene = {tok: scene for scene, frames in annotations["scene_infos"].items() for tok in frames}
    for info in tqdm(infos, desc="Occ3D labels", unit="sample", disable=not progress):
        scene = info.get("scene_name", info["scene_token"])
        info["occ_path"] = occupancy_label_path(occ_root, scene, info["token"], data_root)
        has = info["occ_path"] is not None
        report.with_labels += has
        if annotations is None:
            continue
        kind = None
        if info["token"] in listed_scene:
            report.listed += 1
            if listed_scene[info["token"]] != scene:
                kind = "other_scene"
            elif not has:
                kind = "listed_without_labels"
        elif has:
            kind = "unlisted_with_labels"
        if kind:
            setattr(report, kind, getattr(report, kind) + 1)
            report.examples.setdefault(kind, info["token"])
    return report


def _write_scene_shard(nusc, scene_token: str, shard_path: str, with_gt: bool, cameras: list[str]) -> str:
    infos = scene_infos(nusc, nusc.get("scene", scene_token), with_gt, cameras)
    tmp = shard_path + ".tmp"
    with open(tmp, "wb") as f:
        pickle.dump(infos, f)
    os.replace(tmp, shard_path)  # a shard exists only when complete, so a rerun can skip it
    return shard_path


def _run_scene_workers(nusc, todo: list[tuple[str, str, bool]], workers: int, cameras: list[str], bar) -> None:
    """Write the shards of ``todo`` in ``workers`` fork-started processes pulling scene jobs from a queue.

    The target closes over the devkit object ``nusc``: a fork-started process inherits it and its target
    is never pickled, so the (for trainval, huge) tables are not copied per job. A failing job or a
    worker that dies stops the run with the scene's error."""
    import multiprocessing as mp

    ctx = mp.get_context("fork")
    jobs, done = ctx.Queue(), ctx.Queue()

    def work() -> None:
        while (job := jobs.get()) is not None:
            try:
                _write_scene_shard(nusc, *job, cameras)
                done.put((job[1], None))
            except BaseException:
                done.put((job[1], traceback.format_exc()))
                return

    for job in todo:
        jobs.put(job)
    procs = [ctx.Process(target=work, name=f"infos-worker-{i}", daemon=True) for i in range(workers)]
    for _ in procs:
        jobs.put(None)
    for proc in procs:
        proc.start()
    try:
        remaining = len(todo)
        while remaining:
            try:
                shard, error = done.get(timeout=1.0)
            except queue.Empty:
                dead = [p for p in procs if p.exitcode not in (None, 0)]
                if dead or all(p.exitcode is not None for p in procs):
                    codes = [p.exitcode for p in procs]
                    raise RuntimeError(
                        f"info workers stopped with {remaining} scene(s) left (exit codes {codes}); "
                        f"rerun to resume from the finished shards"
                    ) from None
                continue
            if error is not None:
                raise RuntimeError(f"building info shard {shard} failed:\n{error}")
            remaining -= 1
            bar.update()
    finally:
        for proc in procs:
            if proc.is_alive():
                proc.terminate()
            proc.join()
        jobs.close()
        done.close()


def split_scene_names(version: str) -> dict[str, list[str]]:
    """Scene names per output split for a devkit version (the devkit's official split lists)."""
    from nuscenes.utils.splits import create_splits_scenes

    splits = create_splits_scenes()
    if version == "v1.0-trainval":
        return {"train": splits["train"], "val": splits["val"]}
    if version == "v1.0-mini":
        return {"train": splits["mini_train"], "val": splits["mini_val"]}
    if version == "v1.0-test":
        return {"test": splits["test"]}
    raise ValueError(f"unknown nuScenes version {version!r} (v1.0-trainval, v1.0-mini or v1.0-test)")


def create_nuscenes_infos(
    root: str,
    version: str,
    out_dir: str,
    workers: int = 4,
    progress: bool = True,
    nusc=None,
    occ_root: str | None = None,
    occupancy_reports: dict | None = None,
) -> dict[str, Path]:
    """Write ``nuscenes_infos_{split}.pkl`` for every split of ``version``; per-scene shards under
    ``out_dir/shards/<version>/`` make the run resumable (finished scenes are skipped).

    ``occ_root``: an Occ3D-nuScenes release folder whose labels the infos name (:func:`attach_occupancy`,
    paths relative to ``root`` when inside it); without it, labels under ``root/gts/`` are used. Each
    split's :class:`OccupancyAttachment` goes into ``occupancy_reports`` when a dict is given."""
    if nusc is None:
        from nuscenes.nuscenes import NuScenes

        nusc = NuScenes(version=version, dataroot=root, verbose=False)
    with_gt = version != "v1.0-test"
    cameras = rig_cameras(nusc)
    # Read the release's annotations.json before the long shard build, so a bad one fails at once.
    annotations = load_occ3d_annotations(occ_root) if occ_root is not None else None
    shard_dir = Path(out_dir) / "shards" / version
    shard_dir.mkdir(parents=True, exist_ok=True)
    by_name = {s["name"]: s for s in nusc.scene}
    todo, shards = [], {}
    for split, names in split_scene_names(version).items():
        for name in names:
            if name in by_name:
                path = shard_dir / f"{name}.pkl"
                shards.setdefault(split, []).append(path)
                if not path.exists():
                    todo.append((by_name[name]["token"], str(path), with_gt))
    bar = tqdm(total=len(todo), desc=f"infos {version}", unit="scene", disable=not progress)
    try:
        if workers > 1 and len(todo) > 1:
            _run_scene_workers(nusc, todo, min(workers, len(todo)), cameras, bar)
        else:
            for job in todo:
                _write_scene_shard(nusc, *job, cameras)
                bar.update()
    finally:
        bar.close()
    written = {}
    for split, paths in shards.items():
        infos = []
        for path in paths:
            with open(path, "rb") as f:
                infos += pickle.load(f)
        if occ_root is not None:  # the shards keep the labels under root; a release folder replaces them
            report = attach_occupancy(infos, occ_root, root, annotations, progress)
            if occupancy_reports is not None:
                occupancy_reports[split] = report
        written[split] = save_infos(
            infos, Path(out_dir) / f"nuscenes_infos_{split}.pkl", version, split, cameras=cameras
        )
    return written


# -- reading and validating ----------------------------------------------------------------------------
def rig_metadata(
    infos: list[dict], cameras: Iterable[str] | None = None, image_sizes: Mapping[str, Iterable[int]] | None = None
) -> dict:
    """``cameras`` / ``image_sizes`` metadata of a rig; what is not given comes from the first sample
    (its cameras in order, their ``image_size``)."""
    first = infos[0]["cams"] if infos else {}
    cameras = list(first) if cameras is None else list(cameras)
    if image_sizes is None:
        image_sizes = {c: first[c]["image_size"] for c in cameras if c in first and "image_size" in first[c]}
    return dict(cameras=cameras, image_sizes={c: _size(v) for c, v in image_sizes.items()})


def _size(value) -> tuple[int, int]:
    w, h = value
    return int(w), int(h)


def info_metadata(
    infos: list[dict],
    version: str,
    split: str,
    cameras: Iterable[str] | None = None,
    image_sizes: Mapping[str, Iterable[int]] | None = None,
    **extra,
) -> dict:
    """The metadata of an info file of the current format version (rig as in :func:`rig_metadata`)."""
    return dict(
        format=INFO_FORMAT,
        format_version=INFO_FORMAT_VERSION,
        version=version,
        split=split,
        classes=list(DETECTION_CLASSES),
        **rig_metadata(infos, cameras, image_sizes),
        **extra,
    )


def save_infos(
    infos: list[dict],
    path: str | Path,
    version: str,
    split: str,
    cameras: Iterable[str] | None = None,
    image_sizes: Mapping[str, Iterable[int]] | None = None,
) -> Path:
    """Write an info file; the rig (``cameras``, ``image_sizes``) defaults to the first sample's."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = dict(metadata=info_metadata(infos, version, split, cameras, image_sizes), infos=infos)
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "wb") as f:
        pickle.dump(data, f, protocol=pickle.HIGHEST_PROTOCOL)
    os.replace(tmp, path)
    return path


def load_infos(path: str | Path) -> tuple[dict, list[dict]]:
    """Load and validate an info file of our format; other formats are converted when recognised
    (mmdet3d 1.x ``data_list`` files, BEVFormer/mmdet3d 0.x temporal ``infos`` files)."""
    path = Path(path)
    data = read_pickle(path, "info file", InfoFileError, hint="; regenerate it with tools/create_data.py")
    return validate_infos(convert_foreign_infos(data, source=str(path)), source=str(path))


def validate_infos(data, source: str = "<infos>") -> tuple[dict, list[dict]]:
    """Check the format and every sample against the metadata's rig; returns (metadata, infos), the
    metadata always with ``cameras`` and ``image_sizes`` (inferred for version 1 files)."""
    if not isinstance(data, dict) or "metadata" not in data or "infos" not in data:
        raise InfoFileError(
            f"{source}: expected a dict with 'metadata' and 'infos', got "
            f"{type(data).__name__} with keys {sorted(data)[:8] if isinstance(data, dict) else '-'}"
        )
    meta = dict(data["metadata"])
    if meta.get("format") != INFO_FORMAT or meta.get("format_version") not in READABLE_FORMAT_VERSIONS:
        raise InfoFileError(
            f"{source}: format {meta.get('format')!r} version {meta.get('format_version')!r}, "
            f"expected {INFO_FORMAT!r} version {' or '.join(map(str, READABLE_FORMAT_VERSIONS))}; regenerate the file"
        )
    infos = data["infos"]
    if meta["format_version"] == 1:  # written before the rig was recorded: the first sample's
        if infos and "cams" not in infos[0]:
            raise InfoFileError(f"{source}: sample {infos[0].get('token', '#0')} lacks keys ['cams']")
        meta.update(rig_metadata(infos))
    elif "cameras" not in meta or "image_sizes" not in meta:
        raise InfoFileError(
            f"{source}: version {meta['format_version']} metadata lacks the rig ('cameras', 'image_sizes'), "
            f"has {sorted(meta)}; regenerate the file"
        )
    rig = list(meta["cameras"])
    sizes = {c: _size(v) for c, v in meta["image_sizes"].items()}
    if len(set(rig)) != len(rig) or not rig and infos:
        raise InfoFileError(f"{source}: the rig's cameras {rig} must be distinct and not empty")
    if meta["format_version"] > 1 and sorted(sizes) != sorted(rig):
        raise InfoFileError(
            f"{source}: the rig's image_sizes name cameras {sorted(sizes)}, its cameras are {rig}"
        )
    meta["cameras"], meta["image_sizes"] = rig, sizes
    for i, info in enumerate(infos):
        missing = [k for k in REQUIRED_KEYS if k not in info]
        token = info.get("token", f"#{i}")
        if missing:
            raise InfoFileError(f"{source}: sample {token} lacks keys {missing}")
        _check_rig(info["cams"], rig, f"{source}: sample {token}")
        for cam, entry in info["cams"].items():
            lacking = [k for k in REQUIRED_CAM_KEYS if k not in entry]
            if lacking:
                raise InfoFileError(f"{source}: sample {token} camera {cam} lacks keys {lacking}")
            if "image_size" in entry and cam in sizes and _size(entry["image_size"]) != sizes[cam]:
                raise InfoFileError(
                    f"{source}: sample {token} camera {cam} has image_size {tuple(entry['image_size'])}, "
                    f"the rig's is {sizes[cam]}"
                )
            _check_matrix(entry["ego2img"], (4, 4), f"{source}: sample {token} camera {cam} ego2img")
            _check_matrix(entry["intrinsics"], (3, 3), f"{source}: sample {token} camera {cam} intrinsics")
        _check_matrix(info["ego2global"], (4, 4), f"{source}: sample {token} ego2global")
        boxes = np.asarray(info.get("gt_boxes", np.zeros((0, 9))))
        if boxes.size and (boxes.ndim != 2 or boxes.shape[1] != 9):
            raise InfoFileError(
                f"{source}: sample {token} gt_boxes must be (N, 9) (x, y, z, w, l, h, yaw, vx, vy), "
                f"got shape {np.shape(info['gt_boxes'])}"
            )
        if "gt_boxes" in info and len(info["gt_boxes"]) != len(info.get("gt_labels", ())):
            raise InfoFileError(
                f"{source}: sample {token} has {len(info['gt_boxes'])} boxes but "
                f"{len(info.get('gt_labels', ()))} labels"
            )
    return meta, infos


def _check_rig(cams: Mapping, rig: list[str], what: str) -> None:
    names = list(cams)
    if names == rig:
        return
    lacking = [c for c in rig if c not in cams]
    extra = [c for c in names if c not in rig]
    detail = (
        (f"; lacks camera(s) {lacking}" if lacking else "")
        + (f"; camera(s) {extra} are not in the rig" if extra else "")
        + ("" if lacking or extra else "; same cameras in another order")
    )
    raise InfoFileError(f"{what} has cameras {names}, expected the rig's {rig}{detail}")


def _check_matrix(value, shape: tuple[int, int], what: str) -> None:
    arr = np.asarray(value, dtype=np.float64)
    if arr.shape != shape or not np.isfinite(arr).all():
        raise InfoFileError(f"{what} must be a finite {shape[0]}x{shape[1]} matrix, got shape {arr.shape}")


# -- converters from other codebases' info files -----------------------------------------------------
def convert_foreign_infos(data, source: str = "<infos>"):
    """Recognise mmdet3d 1.x (``data_list``) and BEVFormer / mmdet3d 0.x (``infos`` with ``lidar2ego_*``)
    info dicts and convert them to ours; our own format passes through."""
    if isinstance(data, dict) and "data_list" in data:
        return convert_mmdet3d_v1_infos(data)
    if (
        isinstance(data, dict)
        and isinstance(data.get("infos"), list)
        and data["infos"]
        and "lidar2ego_translation" in data["infos"][0]
    ):
        return convert_bevformer_infos(data)
    return data


def _converted_rig(cameras: Mapping, path_key: str) -> list[str]:
    """The cameras of a foreign info item in rig order (entries without an image path, e.g. mmdet3d's
    empty slots, are not cameras)."""
    return rig_camera_order(name for name, entry in cameras.items() if isinstance(entry, Mapping) and path_key in entry)


def _converted_camera(data_path: str, sample_data_token: str, timestamp: int, image_size: tuple[int, int],
                      intrinsics: np.ndarray, cam2ego: np.ndarray, sensor2ego: np.ndarray,
                      cam_ego2global: np.ndarray, lidar2ego: np.ndarray) -> dict:
    """One camera entry of our info format, built from another format's calibration."""
    ego2img = compose_ego2img(intrinsics, cam2ego)
    return dict(data_path=data_path, sample_data_token=sample_data_token, timestamp=timestamp,
                image_size=image_size, intrinsics=intrinsics, cam2ego=cam2ego, sensor2ego=sensor2ego,
                cam_ego2global=cam_ego2global, ego2img=ego2img, lidar2img=ego2img @ lidar2ego)


def _root_relative(path: str, camera: str | None = None) -> str:
    """Paths in foreign infos: BEVFormer stores './data/nuscenes/samples/...', mmdet3d 1.x a bare file name
    (its config adds 'samples/<CAM>/'). Ours are relative to the data root."""
    path = str(path).replace("\\", "/")
    for folder in ("samples/", "sweeps/"):
        if folder in path:
            return path[path.index(folder) :]
    if "/" not in path and camera is not None:
        return f"samples/{camera}/{path}"
    return path


def _names_to_labels(names: Iterable[str]) -> np.ndarray:
    return np.array([DETECTION_CLASSES.index(n) if n in DETECTION_CLASSES else -1 for n in names], np.int64)


def _lidar_boxes_to_ego(
    centres: np.ndarray, wlh: np.ndarray, yaw: np.ndarray, vel: np.ndarray, lidar2ego: np.ndarray
) -> np.ndarray:
    """LiDAR-frame boxes with native nuScenes yaw -> ego boxes (velocity rotated with them)."""
    from perception.structures.boxes import transform_boxes

    boxes = np.concatenate([centres, wlh, yaw[:, None], np.nan_to_num(vel)], 1).reshape(-1, 9)
    return transform_boxes(boxes, lidar2ego)


def _info_common(token, scene_token, frame_index, timestamp_us, prev, nxt, ego2global, lidar2ego, lidar_path):
    return dict(
        token=token,
        scene_token=scene_token,
        scene_name=scene_token,
        frame_index=frame_index,
        timestamp=int(timestamp_us),
        prev=prev,
        next=nxt,
        ego2global=ego2global,
        lidar2ego=lidar2ego,
        lidar_path=lidar_path,
        occ_path=None,
        openlane_path=None,
        openlane_key=None,
    )


def _fill_prev2curr(infos: list[dict]) -> None:
    by_token = {i["token"]: i for i in infos}
    for info in infos:
        prev = by_token.get(info["prev"]) if info["frame_index"] > 0 else None
        info["prev2curr"] = (
            np.eye(4) if prev is None else np.linalg.inv(info["ego2global"]) @ prev["ego2global"]
        )


def convert_mmdet3d_v1_infos(data: dict) -> dict:
    """mmdet3d >= 1.0 nuScenes infos -> ours. Their ``bbox_3d`` is ``[x, y, z_centre, l, w, h, yaw]`` in the
    LiDAR frame (native yaw, (l, w, h) size order), ``velocity`` LiDAR-frame (vx, vy); poses are 4x4 lists;
    ``cam2img`` the intrinsics. They carry no prev/next, so frames follow the list order per scene."""
    infos, last_scene, frame = [], None, 0
    items = data["data_list"]
    for n, item in enumerate(items):
        ego2global = np.array(item["ego2global"], dtype=np.float64)
        lidar = item.get("lidar_points", {})
        lidar2ego = np.array(lidar.get("lidar2ego", np.eye(4)), dtype=np.float64)
        scene = item.get("scene_token", "scene")
        frame = frame + 1 if scene == last_scene else 0
        last_scene = scene
        prev = items[n - 1]["token"] if frame > 0 else ""
        nxt = (
            items[n + 1]["token"]
            if n + 1 < len(items) and items[n + 1].get("scene_token", "scene") == scene
            else ""
        )
        info = _info_common(
            item["token"],
            scene,
            frame,
            item["timestamp"] * 1e6,
            prev,
            nxt,
            ego2global,
            lidar2ego,
            _root_relative(lidar.get("lidar_path", ""), "LIDAR_TOP"),
        )
        cams = {}
        for cam in _converted_rig(item["images"], "img_path"):
            img = item["images"][cam]
            intrinsics = np.array(img["cam2img"], dtype=np.float64)[:3, :3]
            cam2ego = np.array(img["cam2ego"], dtype=np.float64)
            cams[cam] = _converted_camera(
                _root_relative(img["img_path"], cam), img.get("sample_data_token", ""),
                int(img.get("timestamp", item["timestamp"]) * 1e6), (img.get("width", 1600), img.get("height", 900)),
                intrinsics, cam2ego, cam2ego, ego2global, lidar2ego)
        info["cams"] = cams
        classes = data.get("metainfo", {}).get("categories", {})
        index_to_name = {v: k for k, v in classes.items()} if classes else dict(enumerate(DETECTION_CLASSES))
        inst = item.get("instances", [])
        b = np.array([i["bbox_3d"] for i in inst], dtype=np.float64).reshape(-1, 7)
        vel = np.array([i.get("velocity", [0.0, 0.0]) for i in inst], dtype=np.float64).reshape(-1, 2)
        info["gt_boxes"] = _lidar_boxes_to_ego(b[:, :3], b[:, [4, 3, 5]], b[:, 6], vel, lidar2ego)
        names = np.array([index_to_name.get(i["bbox_label_3d"], "ignore") for i in inst], dtype=object)
        info["gt_names"], info["gt_labels"] = names, _names_to_labels(names)
        info["num_lidar_pts"] = np.array([i.get("num_lidar_pts", 1) for i in inst], np.int64)
        info["num_radar_pts"] = np.array([i.get("num_radar_pts", 0) for i in inst], np.int64)
        info["valid_flag"] = np.array([bool(i.get("bbox_3d_isvalid", True)) for i in inst], bool)
        infos.append(info)
    _fill_prev2curr(infos)
    version = data.get("metainfo", {}).get("version", "unknown")
    return dict(metadata=info_metadata(infos, version, "converted", source="mmdet3d-1.x"), infos=infos)


def convert_bevformer_infos(data: dict) -> dict:
    """BEVFormer (mmdet3d 0.17) temporal infos -> ours. Their ``gt_boxes`` are ``[x, y, z_centre, w, l, h,
    -yaw - pi/2]`` in the LiDAR frame, ``gt_velocity`` LiDAR-frame; poses are quaternions (w, x, y, z);
    cameras carry ``sensor2ego_*`` (at the camera's time) and ``cam_intrinsic``."""
    infos = []
    for item in data["infos"]:
        ego2global = make_transform(item["ego2global_rotation"], item["ego2global_translation"])
        lidar2ego = make_transform(item["lidar2ego_rotation"], item["lidar2ego_translation"])
        info = _info_common(
            item["token"],
            item.get("scene_token", "scene"),
            item.get("frame_idx", 0),
            item["timestamp"],
            item.get("prev", ""),
            item.get("next", ""),
            ego2global,
            lidar2ego,
            _root_relative(item.get("lidar_path", "")),
        )
        cams = {}
        for cam in _converted_rig(item["cams"], "data_path"):
            c = item["cams"][cam]
            cam_e2g = make_transform(c["ego2global_rotation"], c["ego2global_translation"])
            sensor2ego = make_transform(c["sensor2ego_rotation"], c["sensor2ego_translation"])
            cam2ego = np.linalg.inv(ego2global) @ cam_e2g @ sensor2ego
            intrinsics = np.array(c["cam_intrinsic"], dtype=np.float64)
            cams[cam] = _converted_camera(
                _root_relative(c["data_path"], cam), c.get("sample_data_token", ""),
                c.get("timestamp", item["timestamp"]), (c.get("width", 1600), c.get("height", 900)), intrinsics,
                cam2ego, sensor2ego, cam_e2g, lidar2ego)
        info["cams"] = cams
        b = np.asarray(item.get("gt_boxes", np.zeros((0, 7))), dtype=np.float64).reshape(-1, 7)
        vel = np.asarray(item.get("gt_velocity", np.zeros((len(b), 2))), dtype=np.float64).reshape(-1, 2)
        info["gt_boxes"] = _lidar_boxes_to_ego(b[:, :3], b[:, 3:6], -b[:, 6] - np.pi / 2, vel, lidar2ego)
        names = np.array([NUSCENES_NAME_MAPPING.get(n, n) for n in item.get("gt_names", [])], dtype=object)
        info["gt_names"], info["gt_labels"] = names, _names_to_labels(names)
        info["num_lidar_pts"] = np.asarray(item.get("num_lidar_pts", np.ones(len(b))), np.int64)
        info["num_radar_pts"] = np.asarray(item.get("num_radar_pts", np.zeros(len(b))), np.int64)
        info["valid_flag"] = np.asarray(item.get("valid_flag", np.ones(len(b), bool)), bool)
        infos.append(info)
    _fill_prev2curr(infos)
    version = data.get("metadata", {}).get("version", "unknown")
    return dict(metadata=info_metadata(infos, version, "converted", source="bevformer"), infos=infos)


# BEVFormer infos already hold the 10 class names; this maps any raw category left in them.
NUSCENES_NAME_MAPPING = dict(NUSCENES_CATEGORY_TO_DETECTION)
