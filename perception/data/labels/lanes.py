"""OpenLane-V2 lanes, traffic elements and topology of one frame (collated as per-sample lists).

``lanes`` (L, P, 3) centerlines in the key frame's ego frame, each resampled by arc length to P =
``num_points`` points (start and end exact, direction kept); ``traffic_elements`` (K, 4) ``x1, y1, x2,
y2`` pixel boxes of the front camera's (augmented) image; ``traffic_element_labels`` (K,) attribute
(0..12); ``traffic_element_categories`` (K,) (1 traffic light, 2 road sign); ``topology_lane_lane``
(L, L) and ``topology_lane_te`` (L, K) float32.

Augmentation rules (docs/data.md, "OpenLane-V2"):

* the front camera's image transform (resize, crop, flip) moves the boxes; boxes left with no area
  inside the output image are dropped with their ``topology_lane_te`` columns. A horizontal flip
  swaps the left/right attributes (turn_left <-> turn_right, no_left_turn <-> no_right_turn,
  slight_left <-> slight_right): boxes and attributes say what the augmented image shows. (The spine
  flips mirrored images' features back, and the lane head mirrors such boxes back and swaps their
  attributes back, so after the spine an image flip changes nothing the lanes could disagree with.)
* a BEV transform (rotation, scale, x/y mirrors) moves the lane points; their order is kept, so a
  lane's start stays its start. It does not touch the images, so boxes and attributes stay as they
  are (``bev_mirror="keep"``, the default): every label stays consistent with what it is read from
  (boxes and attributes with the image, lanes with the BEV, ``ego2img`` tying the two). What a BEV
  *mirror* (an odd number of x/y reflections) does break is the turn sense: a sign showing a left
  arrow now governs lanes that turn right in the mirrored BEV, and swapping the attribute would
  contradict the image instead; no image flip can repair it (the spine undoes image flips). No label
  or metric relates an attribute to its lanes' turn (the lane-TE topology is an association), so this
  is accepted by default; ``bev_mirror="refuse"`` raises a ValueError for a mirrored sample that holds
  a left/right attribute instead;
* the topologies are associations and follow neither.

``pack`` also puts into the sample's ``meta``: ``openlane_key`` (the frame's data_dict key),
``traffic_element_camera`` and ``traffic_element_img_aug`` (that camera's 4x4 image-augmentation
matrix of the current frame, float64), so that predicted boxes can be mapped back to native pixels.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from perception.structures.classes import MIRRORED_TRAFFIC_ELEMENT_ATTRIBUTE, TRAFFIC_ELEMENT_ATTRIBUTES

from .base import LABEL_TYPES, CameraImageTransform, LabelLoadError, LabelType

# The attribute a mirrored image shows (left and right swap) and the attributes that change so (docs/data.md).
MIRRORED_ATTRIBUTE = np.array(MIRRORED_TRAFFIC_ELEMENT_ATTRIBUTE)
LEFT_RIGHT_ATTRIBUTES = tuple(int(a) for a in np.flatnonzero(MIRRORED_ATTRIBUTE != np.arange(len(MIRRORED_ATTRIBUTE))))


class LaneLoadError(LabelLoadError):
    """A sample's OpenLane-V2 frame json is missing, unreadable or holds an unusable lane."""


def resample_polyline(points: np.ndarray, num_points: int) -> np.ndarray:
    """(n, 3) polyline -> (num_points, 3) points equally spaced by arc length along it, first and last
    points exact (a zero-length polyline gives its point repeated)."""
    pts = np.asarray(points, dtype=np.float64)
    seg = np.linalg.norm(np.diff(pts, axis=0), axis=1)
    keep = np.concatenate([[True], seg > 0])  # repeated points would make the arc length non-increasing
    pts, s = pts[keep], np.concatenate([[0.0], np.cumsum(seg[seg > 0])])
    if len(pts) == 1:
        return np.repeat(pts, num_points, axis=0)
    t = np.linspace(0.0, s[-1], num_points)
    out = np.stack([np.interp(t, s, pts[:, d]) for d in range(pts.shape[1])], 1)
    out[0], out[-1] = pts[0], pts[-1]
    return out


def openlane_key_of_path(path: str) -> tuple[str, str, str] | None:
    """``(split, segment_id, timestamp)`` of a frame json ``.../{split}/{segment_id}/info/{timestamp}.json``."""
    p = Path(path)
    if p.parent.name != "info" or len(p.parts) < 4:
        return None
    return p.parent.parent.parent.name, p.parent.parent.name, p.stem


@LABEL_TYPES.register_module(name="lanes")
class Lanes(LabelType):
    """Lanes + traffic elements + topology from the frame json named by the info's ``openlane_path``.

    Args:
        camera: the camera whose pixels the traffic elements are in; None: the rig's first camera (the
            front camera of nuScenes, OpenLane-V2 and Waymo rigs).
        num_points: points per lane after arc-length resampling (the lane head's point count).
        bev_mirror: what a BEV mirror does to a sample holding a left/right traffic-element attribute:
            ``"keep"`` (default: attributes stay as the image shows them) or ``"refuse"`` (raise
            ValueError); see the module docstring.
    """

    keys = (
        "lanes",
        "traffic_elements",
        "traffic_element_labels",
        "traffic_element_categories",
        "topology_lane_lane",
        "topology_lane_te",
    )

    def __init__(self, camera: str | None = None, num_points: int = 11, bev_mirror: str = "keep") -> None:
        if num_points < 2:
            raise ValueError(f"num_points must be >= 2, got {num_points}")
        if bev_mirror not in ("refuse", "keep"):
            raise ValueError(f"bev_mirror must be 'refuse' or 'keep', got {bev_mirror!r}")
        self.camera, self.num_points, self.bev_mirror = camera, num_points, bev_mirror

    def load(self, results: dict, info: dict, data_root: str) -> None:
        rel = info.get("openlane_path")
        if info.get("openlane_key") is not None:
            results["openlane_key"] = tuple(info["openlane_key"])
        self.load_file(results, str(Path(data_root) / rel) if rel else None)

    def load_file(self, results: dict, path: str | None) -> None:
        token = results["sample_token"]
        if path is None:
            raise LaneLoadError(f"sample {token} has no lane labels (openlane_path is None)")
        if not Path(path).exists():
            raise LaneLoadError(f"lane file {path} of sample {token} does not exist")
        try:
            ann = json.loads(Path(path).read_text())["annotation"]
            raw = [(lane.get("id"), np.asarray(lane["points"], dtype=np.float64)) for lane in ann["lane_centerline"]]
            tes = ann["traffic_element"]
            boxes = np.array([np.ravel(t["points"]) for t in tes], dtype=np.float64).reshape(-1, 2, 2)
            out = dict(
                traffic_elements=np.concatenate([boxes.min(1), boxes.max(1)], 1),
                traffic_element_labels=np.array([t["attribute"] for t in tes], dtype=np.int64),
                traffic_element_categories=np.array([t["category"] for t in tes], dtype=np.int64),
                topology_lane_lane=np.array(ann["topology_lclc"], dtype=np.float32).reshape(len(raw), len(raw)),
                topology_lane_te=np.array(ann["topology_lcte"], dtype=np.float32).reshape(len(raw), len(tes)),
            )
        except Exception as err:  # json, key and shape errors for corrupt files
            raise LaneLoadError(
                f"lane file {path} of sample {token} is corrupt or unreadable: {type(err).__name__}: {err}"
            ) from err
        lanes = []
        for lane_id, pts in raw:
            if pts.ndim != 2 or pts.shape[1] != 3 or len(pts) < 2 or not np.isfinite(pts).all():
                finite = "" if np.isfinite(pts).all() else " with non-finite values"
                raise LaneLoadError(
                    f"lane file {path} of sample {token}: lane {lane_id} has points of shape {pts.shape}{finite}; "
                    f"a lane needs >= 2 finite 3-D points"
                )
            lanes.append(resample_polyline(pts, self.num_points))
        labels = out["traffic_element_labels"]
        if len(labels) and (labels.min() < 0 or labels.max() >= len(TRAFFIC_ELEMENT_ATTRIBUTES)):
            raise LaneLoadError(
                f"lane file {path} of sample {token}: traffic-element attributes {sorted(set(labels.tolist()))} "
                f"outside 0..{len(TRAFFIC_ELEMENT_ATTRIBUTES) - 1}"
            )
        out["lanes"] = np.stack(lanes) if lanes else np.zeros((0, self.num_points, 3))
        results.update(out)
        if results.get("openlane_key") is None:
            results["openlane_key"] = openlane_key_of_path(path)
        results["lanes_bev_mirrors"] = 0  # reflections of the BEV augmentation so far (see bev_mirror)

    def bev_transform(self, results: dict, mat: np.ndarray) -> None:
        if len(results.get("lanes", ())):
            results["lanes"] = results["lanes"] @ mat[:3, :3].T + mat[:3, 3]
        if np.linalg.det(mat[:2, :2]) < 0:  # an odd number of x/y mirrors: left and right swap in the BEV
            results["lanes_bev_mirrors"] = results.get("lanes_bev_mirrors", 0) + 1

    def traffic_element_camera(self, results: Mapping, cameras=None) -> str:
        names = list(cameras if cameras is not None else results.get("cameras") or ())
        camera = self.camera or (names[0] if names else None)
        if camera is None or camera not in names:
            raise ValueError(f"traffic elements are in camera {camera!r}, not in the rig {names}")
        return camera

    def image_transform(self, results: dict, transforms: Mapping[str, CameraImageTransform]) -> None:
        if "traffic_elements" not in results:
            return
        t = transforms[self.traffic_element_camera(results, list(transforms))]
        boxes = t.boxes(results["traffic_elements"])
        keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])  # inside the output, with area
        results["traffic_elements"] = boxes[keep]
        for key in ("traffic_element_labels", "traffic_element_categories"):  # absent in hand-made results
            if key in results:
                results[key] = np.asarray(results[key])[keep]
        if t.flip and "traffic_element_labels" in results:
            results["traffic_element_labels"] = MIRRORED_ATTRIBUTE[results["traffic_element_labels"]]
        if "topology_lane_te" in results:
            results["topology_lane_te"] = np.asarray(results["topology_lane_te"])[:, keep]

    def check_mirror(self, results: Mapping) -> None:
        """Raise when the sample's BEV is mirrored and it holds a left/right attribute (``bev_mirror="refuse"``)."""
        mirrors = results.get("lanes_bev_mirrors", 0)
        labels = np.asarray(results.get("traffic_element_labels", ()), dtype=np.int64)
        turning = sorted({TRAFFIC_ELEMENT_ATTRIBUTES[a] for a in labels if a in LEFT_RIGHT_ATTRIBUTES})
        if mirrors % 2 and turning:
            raise ValueError(
                f"sample {results.get('sample_token')}: the BEV augmentation mirrors the lanes but not the front "
                f"image, so its traffic-element attributes {turning} cannot agree with both the image and the lanes; "
                f"use BEVAugmentation(flip_x_prob=0, flip_y_prob=0) with lanes, or the lanes label type's "
                f"bev_mirror='keep' to keep the attributes as the image shows them (docs/data.md, OpenLane-V2)"
            )

    def pack(self, results: dict, sample: dict) -> None:
        if self.bev_mirror == "refuse":
            self.check_mirror(results)
        super().pack(results, sample)
        meta = sample.setdefault("meta", {})
        meta["openlane_key"] = results.get("openlane_key")
        cameras = list(results.get("cameras") or ())
        if cameras and results.get("frames"):
            camera = self.traffic_element_camera(results)
            aug = np.asarray(results["frames"][-1]["img_aug"], dtype=np.float64)
            meta["traffic_element_camera"] = camera
            meta["traffic_element_img_aug"] = (aug if aug.ndim == 2 else aug[cameras.index(camera)]).copy()
