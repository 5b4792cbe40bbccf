"""OpenLane-V2 lanes, traffic elements and topology of one frame (collated as per-sample lists).

``lanes`` (L, P, 3) centerlines in the key frame's ego frame; ``traffic_elements`` (K, 4) ``x1, y1, x2,
y2`` pixel boxes of the front camera's image; ``traffic_element_labels`` (K,) attribute;
``topology_lane_lane`` (L, L) and ``topology_lane_te`` (L, K) float32.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from .base import LABEL_TYPES, CameraImageTransform, LabelLoadError, LabelType


class LaneLoadError(LabelLoadError):
    """A sample's OpenLane-V2 frame json is missing or unreadable."""


@LABEL_TYPES.register_module(name="lanes")
class Lanes(LabelType):
    """Lanes + traffic elements + topology from the frame json named by the info's ``openlane_path``.

    Args:
        camera: the camera whose pixels the traffic elements are in; None: the rig's first camera (the
            front camera of nuScenes, OpenLane-V2 and Waymo rigs).
        num_points: points per lane (for the empty array of a frame without lanes).
    """

    keys = ("lanes", "traffic_elements", "traffic_element_labels", "topology_lane_lane", "topology_lane_te")

    def __init__(self, camera: str | None = None, num_points: int = 11) -> None:
        self.camera, self.num_points = camera, num_points

    def load(self, results: dict, info: dict, data_root: str) -> None:
        rel = info.get("openlane_path")
        self.load_file(results, str(Path(data_root) / rel) if rel else None)

    def load_file(self, results: dict, path: str | None) -> None:
        token = results["sample_token"]
        if path is None:
            raise LaneLoadError(f"sample {token} has no lane labels (openlane_path is None)")
        if not Path(path).exists():
            raise LaneLoadError(f"lane file {path} of sample {token} does not exist")
        try:
            ann = json.loads(Path(path).read_text())["annotation"]
            lanes = [np.asarray(lane["points"], dtype=np.float64) for lane in ann["lane_centerline"]]
            tes = ann["traffic_element"]
            out = dict(
                lanes=np.stack(lanes) if lanes else np.zeros((0, self.num_points, 3)),
                traffic_elements=np.array([np.ravel(t["points"]) for t in tes], dtype=np.float64).reshape(-1, 4),
                traffic_element_labels=np.array([t["attribute"] for t in tes], dtype=np.int64),
                topology_lane_lane=np.array(ann["topology_lclc"], dtype=np.float32).reshape(len(lanes), len(lanes)),
                topology_lane_te=np.array(ann["topology_lcte"], dtype=np.float32).reshape(len(lanes), len(tes)),
            )
        except Exception as err:  # json, key and shape errors for corrupt files
            raise LaneLoadError(
                f"lane file {path} of sample {token} is corrupt or unreadable: {type(err).__name__}: {err}"
            ) from err
        results.update(out)

    def bev_transform(self, results: dict, mat: np.ndarray) -> None:
        if len(results.get("lanes", ())):
            results["lanes"] = results["lanes"] @ mat[:3, :3].T + mat[:3, 3]

    def image_transform(self, results: dict, transforms: Mapping[str, CameraImageTransform]) -> None:
        if "traffic_elements" not in results or not len(results["traffic_elements"]):
            return
        camera = self.camera or next(iter(transforms))
        if camera not in transforms:
            raise ValueError(f"traffic elements are in camera {camera!r}, not in the rig {list(transforms)}")
        results["traffic_elements"] = transforms[camera].boxes(results["traffic_elements"])
