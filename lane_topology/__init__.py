"""Lane topology (OpenLane-V2) on the BEV spine: :class:`LaneTopologyHead` (directed centerlines on the
BEV, traffic elements on the front camera, lane -> lane and lane -> traffic-element topology), built
from the shared DETR toolkit. See docs/lanes.md.

Importing this package registers the head in the project's mmengine MODELS registry, so a BEVFormerV2
config can say ``heads=dict(lanes=dict(type='LaneTopologyHead', ...))``.
"""

from perception.engine import MODELS, register_lower_layers

from .head import OPENLANE_V2_RANGE, LaneGeometry, LaneTopologyHead
from .topology import LaneElementTopology, LaneLaneTopology, matched_pair_focal_loss

MODELS.register_module(module=LaneTopologyHead, force=True)
register_lower_layers()

__all__ = ["OPENLANE_V2_RANGE", "LaneElementTopology", "LaneGeometry", "LaneLaneTopology", "LaneTopologyHead",
           "matched_pair_focal_loss"]
