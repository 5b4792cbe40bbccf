"""Compatibility module: the dataset is rig-neutral now, see :mod:`perception.data.bev_dataset`
(``NuScenesBEVDataset`` is a registered alias of :class:`~perception.data.bev_dataset.BEVDataset`)."""

from .bev_dataset import BEVDataset, NuScenesBEVDataset, bev_collate, build_pipeline

__all__ = ["BEVDataset", "NuScenesBEVDataset", "bev_collate", "build_pipeline"]
