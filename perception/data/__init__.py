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
    "bev_collate",
    "create_nuscenes_infos",
    "load_infos",
]
