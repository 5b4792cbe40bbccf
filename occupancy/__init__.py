"""Semantic occupancy (Occ3D-nuScenes) on the BEV spine: :class:`OccupancyHead` (its own voxel grid,
FlashOcc channel-to-height, class-weighted cross-entropy + Lovász-softmax over the camera / LiDAR /
no mask) and its losses. See docs/occupancy.md.

Importing this package registers its modules in the project's mmengine MODELS registry, so a BEVFormerV2
config can say ``heads=dict(occupancy=dict(type='OccupancyHead', in_channels=256, ...))``.
"""

from perception.engine import MODELS, register_lower_layers

from .head import OccupancyHead, bev_sampling_grid, resample_bev
from .losses import class_weights_from_frequencies, jaccard_loss_increments, lovasz_softmax, weighted_cross_entropy

MODELS.register_module(module=OccupancyHead, force=True)
register_lower_layers()

__all__ = ["OccupancyHead", "bev_sampling_grid", "class_weights_from_frequencies", "jaccard_loss_increments",
           "lovasz_softmax", "resample_bev", "weighted_cross_entropy"]
