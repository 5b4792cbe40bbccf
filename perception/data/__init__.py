"""Datasets, pipelines, info files and the synthetic world generator.

Importing this package registers the BEV dataset (DATASETS), its transforms (TRANSFORMS) and the
``bev_collate`` function (mmengine FUNCTIONS). The classification data lives in
``perception.data.classification`` and is imported separately.
"""

from . import transforms_bev  # noqa: F401  (registers the transforms)
from .infos import InfoFileError, create_nuscenes_infos, load_infos
from .nuscenes_dataset import NuScenesBEVDataset, bev_collate
from .transforms_bev import ImageLoadError

__all__ = [
    "ImageLoadError",
    "InfoFileError",
    "NuScenesBEVDataset",
    "bev_collate",
    "create_nuscenes_infos",
    "load_infos",
]
