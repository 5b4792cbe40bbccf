"""Label types: registered loaders/packers of each kind of ground truth (see :mod:`.base`).

Registered names: ``boxes`` (3D boxes), ``boxes_2d`` (per-camera image boxes), ``occupancy`` (Occ3D),
``lanes`` (OpenLane-V2 lanes, traffic elements and topology). A new task registers its own class::

    from perception.data.labels import LABEL_TYPES, LabelType

    @LABEL_TYPES.register_module(name="my_points")
    class MyPoints(LabelType):
        keys = ("my_points",)
        def load(self, results, info, data_root): results["my_points"] = ...
        def bev_transform(self, results, mat): ...

and the dataset loads it with ``labels=("boxes", "my_points")``.
"""

from .base import (
    LABEL_TYPES,
    CameraImageTransform,
    LabelLoadError,
    LabelType,
    active_label_types,
    build_label_type,
    build_label_types,
    label_type_of_key,
    registered_label_types,
    to_tensor,
)
from .boxes import Boxes2D, Boxes3D, BoxLoadError
from .lanes import LaneLoadError, Lanes, resample_polyline
from .occupancy import Occupancy, OccupancyLoadError, resample_occupancy

__all__ = [
    "LABEL_TYPES",
    "BoxLoadError",
    "Boxes2D",
    "Boxes3D",
    "CameraImageTransform",
    "LabelLoadError",
    "LabelType",
    "LaneLoadError",
    "Lanes",
    "Occupancy",
    "OccupancyLoadError",
    "active_label_types",
    "build_label_type",
    "build_label_types",
    "label_type_of_key",
    "registered_label_types",
    "resample_occupancy",
    "resample_polyline",
    "to_tensor",
]
