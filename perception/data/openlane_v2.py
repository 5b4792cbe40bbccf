"""OpenLane-V2: the ``data_dict`` pickles of its frames and the converter of its frames to our info format
(docs/data.md, section "OpenLane-V2").

An OpenLane-V2 root holds ``{split}/{segment_id}/image/{camera}/{timestamp}.jpg`` and
``{split}/{segment_id}/info/{timestamp}.json`` (one frame json per key frame: ``sensor``, ``pose``,
``annotation``), and, once preprocessed, ``data_dict_subset_{A,B}_{split}.pkl``: a dict keyed by
``(split, segment_id, timestamp)`` (three ``str``; the timestamp is the json's file stem) holding each
frame json with numpy arrays (:func:`frame_from_json`). The lane metric reads those pickles; the
synthetic world writes ``openlane_v2/data_dict_synthetic_{split}.pkl`` the same way.

:func:`create_openlane_v2_infos` writes our info format (``perception.nuscenes_infos`` version 2,
:mod:`perception.data.infos`) for one split: the rig from the frames (front camera first), no 3D boxes,
``openlane_path`` (the frame json) and ``openlane_key`` (its data_dict key).
"""

from __future__ import annotations

import json
import os
import pickle
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np
from tqdm import tqdm

from perception.engine.files import read_pickle
from perception.structures.cameras import compose_ego2img, rig_camera_order
from perception.structures.transforms import make_transform

from .infos import InfoFileError, save_infos

# Every 20th of the 201 ground-truth points (11 points) in the val/test data_dicts; train keeps all.
VAL_POINT_INTERVAL = 20
FRONT_CAMERAS = ("ring_front_center", "CAM_FRONT")
# The two released rigs: camera -> native (w, h), used when a camera's images are absent.
KNOWN_IMAGE_SIZES = {
    "ring_front_center": (1550, 2048),  # subset_A (Argoverse 2): the front camera is portrait
    **{
        c: (2048, 1550)
        for c in (
            "ring_front_left",
            "ring_front_right",
            "ring_rear_left",
            "ring_rear_right",
            "ring_side_left",
            "ring_side_right",
        )
    },
    **{
        c: (1600, 900)  # subset_B (nuScenes)
        for c in ("CAM_FRONT", "CAM_FRONT_RIGHT", "CAM_FRONT_LEFT", "CAM_BACK", "CAM_BACK_LEFT", "CAM_BACK_RIGHT")
    },
}
# Timestamps of the frame jsons: Argoverse 2 (subset A) counts nanoseconds, nuScenes (subset B) and the
# synthetic world microseconds; our infos hold microseconds.
TIMESTAMP_DIVISOR = {"A": 1000, "B": 1}
NO_BOXES = 9  # (x, y, z, w, l, h, yaw, vx, vy)


class OpenLaneV2Error(InfoFileError):
    """An OpenLane-V2 data_dict or frame json is missing, truncated, corrupt or of unexpected content
    (the message names the file)."""


# -- data_dict files -----------------------------------------------------------------------------------
def _array(value, dtype) -> np.ndarray:
    return np.array(value, dtype=dtype)


def frame_from_json(json_dict: Mapping, *, subsample_val: bool) -> dict:
    """One frame json as a data_dict value: ``pose`` and every camera's ``intrinsic`` / ``extrinsic``
    entries become float64 arrays; lane ``points`` float32 (n, 3), every 20th point when
    ``subsample_val`` (val/test: 201 -> 11 points), traffic-element ``points`` float32 (2, 2), the
    topologies int8 arrays of shape (lanes, lanes) and (lanes, traffic elements). Other entries are kept
    as they are; the input is not modified."""
    frame = {k: v for k, v in json_dict.items() if k not in ("pose", "sensor", "annotation")}
    frame["pose"] = {k: _array(v, np.float64) for k, v in json_dict["pose"].items()}
    sensors = {}
    for camera, entry in json_dict["sensor"].items():
        sensors[camera] = dict(entry)
        for part in ("intrinsic", "extrinsic"):
            if part in entry:
                sensors[camera][part] = {k: _array(v, np.float64) for k, v in entry[part].items()}
    frame["sensor"] = sensors
    if "annotation" not in json_dict:  # test frames carry none
        return frame
    ann = json_dict["annotation"]
    step = VAL_POINT_INTERVAL if subsample_val else 1
    lanes = [dict(lane, points=_array(lane["points"], np.float32)[::step]) for lane in ann["lane_centerline"]]
    elements = [dict(te, points=_array(te["points"], np.float32)) for te in ann["traffic_element"]]
    out = {k: v for k, v in ann.items() if k not in ("lane_centerline", "traffic_element")}
    out["lane_centerline"], out["traffic_element"] = lanes, elements
    out["topology_lclc"] = _array(ann["topology_lclc"], np.int8).reshape(len(lanes), len(lanes))
    out["topology_lcte"] = _array(ann["topology_lcte"], np.int8).reshape(len(lanes), len(elements))
    frame["annotation"] = out
    return frame


def write_data_dict(path: str | Path, frames: Mapping[tuple[str, str, str], dict]) -> Path:
    """Write a data_dict pickle ``{(split, segment_id, timestamp): frame}`` atomically (a temporary file
    renamed into place, so a reader never sees half a file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = dict(frames)
    for key in data:
        _check_key(key, path)
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "wb") as f:
        pickle.dump(data, f, protocol=pickle.HIGHEST_PROTOCOL)
    os.replace(tmp, path)
    return path


def _check_key(key, path) -> None:
    if not (isinstance(key, tuple) and len(key) == 3 and all(isinstance(k, str) for k in key)):
        raise OpenLaneV2Error(
            f"data_dict {path}: keys must be (split, segment_id, timestamp) tuples of str, got {key!r}"
        )


def load_data_dict(path: str | Path) -> dict:
    """Read a data_dict pickle and check its content: keys ``(split, segment_id, timestamp)`` of str,
    values frame dicts with ``sensor`` and ``pose``. :class:`OpenLaneV2Error` naming the file when it is
    missing, truncated, not a pickle or of other content."""
    path = Path(path)
    data = read_pickle(path, "data_dict", OpenLaneV2Error)
    if not isinstance(data, dict):
        raise OpenLaneV2Error(
            f"data_dict {path} holds a {type(data).__name__}, expected a dict {{(split, segment_id, timestamp): frame}}"
        )
    for key, frame in data.items():
        _check_key(key, path)
        if not isinstance(frame, Mapping) or not {"sensor", "pose"} <= set(frame):
            got = sorted(frame)[:8] if isinstance(frame, Mapping) else type(frame).__name__
            raise OpenLaneV2Error(f"data_dict {path}: frame {key} lacks 'sensor'/'pose' (has {got})")
    return data


def read_frame_json(path: str | Path) -> dict:
    """A frame json, with :class:`OpenLaneV2Error` naming the file when it is missing, not JSON or lacks
    ``sensor`` / ``pose``."""
    path = Path(path)
    if not path.is_file():
        raise OpenLaneV2Error(f"frame json {path} does not exist")
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise OpenLaneV2Error(f"frame json {path} is truncated or not JSON ({type(err).__name__}: {err})") from err
    if not isinstance(data, dict) or not {"sensor", "pose"} <= set(data):
        got = sorted(data)[:8] if isinstance(data, dict) else type(data).__name__
        raise OpenLaneV2Error(f"frame json {path} lacks 'sensor'/'pose' (has {got})")
    return data


def frame_jsons(root: str | Path, split: str) -> list[tuple[tuple[str, str, str], Path]]:
    """(data_dict key, path) of every frame json ``root/split/<segment_id>/info/<timestamp>.json``."""
    base = Path(root) / split
    return [
        ((split, p.parent.parent.name, p.stem), p) for p in sorted(base.glob("*/info/*.json"))
    ]


# -- the info converter --------------------------------------------------------------------------------
def rig_from_frame(sensor: Mapping) -> list[str]:
    """The rig of a frame's cameras: the nuScenes order for the six nuScenes cameras, else the json's
    order with the front camera (``ring_front_center``, ``CAM_FRONT``) moved first."""
    cameras = rig_camera_order(sensor)
    front = [c for c in cameras if c in FRONT_CAMERAS]
    return front[:1] + [c for c in cameras if c not in front[:1]]


def image_sizes_of(root: Path, frame: Mapping, cameras: Iterable[str]) -> dict[str, tuple[int, int]]:
    """Native (w, h) per camera: read from the header of the frame's image (PIL, no decoding) when it
    exists, else the size of that camera in the two released rigs (:data:`KNOWN_IMAGE_SIZES`)."""
    from PIL import Image

    sizes = {}
    for camera in cameras:
        path = root / frame["sensor"][camera]["image_path"]
        if path.is_file():
            try:
                with Image.open(path) as im:  # reads the header only
                    sizes[camera] = (int(im.size[0]), int(im.size[1]))
                continue
            except OSError as err:
                raise OpenLaneV2Error(f"image {path} of camera {camera} is unreadable: {err}") from err
        if camera not in KNOWN_IMAGE_SIZES:
            raise OpenLaneV2Error(
                f"camera {camera}: image {path} does not exist and the camera is not one of the released rigs "
                f"({sorted(KNOWN_IMAGE_SIZES)}), so its image size is unknown"
            )
        sizes[camera] = KNOWN_IMAGE_SIZES[camera]
    return sizes


def _timestamp_us(stem: str, subset: str) -> int:
    try:
        return int(stem) // TIMESTAMP_DIVISOR.get(subset, 1)
    except ValueError:
        raise OpenLaneV2Error(f"timestamp {stem!r} is not an integer") from None


def _sort_key(key: tuple[str, str, str]):
    split, segment, stamp = key
    return segment, int(stamp) if stamp.isdigit() else 0, stamp


def _camera_entry(sensor: Mapping, token: str, timestamp: int, size, ego2global: np.ndarray) -> dict:
    intrinsics = np.asarray(sensor["intrinsic"]["K"], dtype=np.float64).reshape(3, 3)
    extrinsic = sensor["extrinsic"]
    cam2ego = make_transform(np.asarray(extrinsic["rotation"], np.float64), np.asarray(extrinsic["translation"]))
    ego2img = compose_ego2img(intrinsics, cam2ego)
    return dict(
        data_path=str(sensor["image_path"]).replace("\\", "/"),
        sample_data_token=token,
        timestamp=timestamp,
        image_size=tuple(size),
        intrinsics=intrinsics,
        distortion=np.asarray(sensor["intrinsic"].get("distortion", ()), dtype=np.float64),
        # One pose per frame: the cameras share the frame's ego pose.
        cam2ego=cam2ego,
        sensor2ego=cam2ego,
        cam_ego2global=ego2global,
        ego2img=ego2img,
        lidar2img=ego2img,  # no LiDAR: its frame is the ego frame (lidar2ego identity)
    )


def _empty_ground_truth() -> dict:
    return dict(
        gt_boxes=np.zeros((0, NO_BOXES)),
        gt_names=np.zeros(0, dtype=object),
        gt_labels=np.zeros(0, dtype=np.int64),
        gt_attributes=np.zeros(0, dtype=object),
        num_lidar_pts=np.zeros(0, dtype=np.int64),
        num_radar_pts=np.zeros(0, dtype=np.int64),
        valid_flag=np.zeros(0, dtype=bool),
        instance_tokens=np.zeros(0, dtype=object),
        ann_tokens=np.zeros(0, dtype=object),
    )


def openlane_infos(
    root: str | Path,
    frames: Mapping[tuple[str, str, str], Mapping],
    subset: str,
    image_sizes: Mapping[str, tuple[int, int]] | None = None,
    progress: bool = False,
) -> tuple[list[dict], list[str], dict[str, tuple[int, int]]]:
    """Our infos (ordered by segment, then time) of data_dict ``frames``; returns (infos, cameras,
    image_sizes). Every frame must have the rig of the first one."""
    root = Path(root)
    keys = sorted(frames, key=_sort_key)
    if not keys:
        return [], [], dict(image_sizes or {})
    first = frames[keys[0]]
    cameras = rig_from_frame(first["sensor"])
    sizes = dict(image_sizes) if image_sizes is not None else image_sizes_of(root, first, cameras)
    tokens = [f"{segment}_{stamp}" for _, segment, stamp in keys]
    infos, prev_e2g = [], None
    for n, key in enumerate(tqdm(keys, desc=f"OpenLane-V2 {subset} infos", unit="frame", disable=not progress)):
        split, segment, stamp = key
        frame = frames[key]
        if sorted(frame["sensor"]) != sorted(cameras):
            raise OpenLaneV2Error(
                f"frame {key} has cameras {sorted(frame['sensor'])}, the rig (first frame) has {sorted(cameras)}"
            )
        new_segment = n == 0 or keys[n - 1][1] != segment
        ego2global = make_transform(np.asarray(frame["pose"]["rotation"], np.float64),
                                    np.asarray(frame["pose"]["translation"]))
        prev2curr = np.eye(4) if new_segment else np.linalg.inv(ego2global) @ prev_e2g
        timestamp = _timestamp_us(stamp, subset)
        last = n + 1 == len(keys) or keys[n + 1][1] != segment
        info = dict(
            token=tokens[n],
            scene_token=segment,
            scene_name=segment,
            frame_index=0 if new_segment else infos[-1]["frame_index"] + 1,
            timestamp=timestamp,
            prev="" if new_segment else tokens[n - 1],
            next="" if last else tokens[n + 1],
            ego2global=ego2global,
            prev2curr=prev2curr,
            lidar_path=None,
            lidar2ego=np.eye(4),
            source_id=frame.get("meta_data", {}).get("source_id"),
            cams={
                c: _camera_entry(frame["sensor"][c], f"{tokens[n]}_{c}", timestamp, sizes[c], ego2global)
                for c in cameras
            },
            **_empty_ground_truth(),
            occ_path=None,
            openlane_path=f"{split}/{segment}/info/{stamp}.json",
            openlane_key=key,
        )
        infos.append(info)
        prev_e2g = ego2global
    return infos, cameras, sizes


def data_dict_name(subset: str, split: str) -> str:
    return f"data_dict_subset_{subset}_{split}.pkl"


def create_openlane_v2_infos(
    root: str | Path,
    subset: str,
    split: str,
    out_path: str | Path | None = None,
    *,
    data_dict_path: str | Path | None = None,
    image_sizes: Mapping[str, tuple[int, int]] | None = None,
    progress: bool = True,
) -> Path:
    """Write our info file for one split of an OpenLane-V2 root and return its path (default
    ``root/openlane_v2_infos_subset_{subset}_{split}.pkl``).

    The frames come from ``data_dict_path`` (default ``root/data_dict_subset_{subset}_{split}.pkl``) or,
    when that file does not exist, from the frame jsons ``root/split/*/info/*.json``. Paths in the infos
    are relative to ``root``. ``image_sizes``: {camera: (w, h)}, default read from the first frame's
    image headers (:func:`image_sizes_of`)."""
    root = Path(root)
    if not (root / split).is_dir() and data_dict_path is None and not (root / data_dict_name(subset, split)).is_file():
        raise OpenLaneV2Error(f"OpenLane-V2 root {root} has neither {split}/ nor {data_dict_name(subset, split)}")
    path = Path(data_dict_path) if data_dict_path is not None else root / data_dict_name(subset, split)
    if path.is_file():
        frames = {k: v for k, v in load_data_dict(path).items() if k[0] == split}
    else:
        frames = {}
        for key, json_path in tqdm(frame_jsons(root, split), desc=f"OpenLane-V2 {split} jsons", unit="frame",
                                   disable=not progress):
            frames[key] = read_frame_json(json_path)
    if not frames:
        raise OpenLaneV2Error(f"no {split} frames in {path if path.is_file() else root / split}")
    infos, cameras, sizes = openlane_infos(root, frames, subset, image_sizes, progress)
    out = Path(out_path) if out_path is not None else root / f"openlane_v2_infos_subset_{subset}_{split}.pkl"
    return save_infos(infos, out, f"openlane_v2-subset_{subset}", split, cameras=cameras, image_sizes=sizes)
