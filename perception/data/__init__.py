"""Datasets, pipelines, label types, info files and the synthetic world generator.

Importing this package registers the BEV dataset (DATASETS, as ``BEVDataset`` and its alias
``NuScenesBEVDataset``), its transforms (TRANSFORMS), the label types (``perception.data.labels.LABEL_TYPES``)
and the ``bev_collate`` function (mmengine FUNCTIONS). The classification data lives in
``perception.data.classification`` and is imported separately.
"""

from . import transforms_bev  # noqa: F401  (registers the transforms)
from .bev_dataset import BEVDataset, NuScenesBEVDataset, bev_collate
from .infos import InfoFileError, create_nuscenes_infos, load_infos
from .labels import LABEL_TYPES, LabelLoadError, LabelType, LaneLoadError, OccupancyLoadError
from .openlane_v2 import (
    OpenLaneV2Error,
    create_openlane_v2_infos,
    frame_from_json,
    load_data_dict,
    write_data_dict,
)
from .transforms_bev import ImageLoadError

__all__ = [
    "BEVDataset",
    "ImageLoadError",
    "InfoFileError",
    "LABEL_TYPES",
    "LabelLoadError",
    "LabelType",
    "LaneLoadError",
    "NuScenesBEVDataset",
    "OccupancyLoadError",
    "OpenLaneV2Error",
    "bev_collate",
    "create_nuscenes_infos",
    "create_openlane_v2_infos",
    "frame_from_json",
    "load_data_dict",
    "load_infos",
    "write_data_dict",
]
