"""Waymo Open Dataset v2 (parquet) without TensorFlow: the reader, the conversion of its conventions to ours,
the info converter and a Waymo-format fixture of the synthetic world (docs/waymo.md)."""

from .conventions import RIG, WAYMO_CLASSES
from .reader import WaymoDataError

__all__ = ["RIG", "WAYMO_CLASSES", "WaymoDataError"]
