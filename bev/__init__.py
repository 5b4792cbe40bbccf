"""BEVFormer v2 on InternImage: view transformer, temporal fusion, 3D detection and perspective heads.

Importing this package registers its modules in the project's mmengine MODELS registry, so configs
can say ``type='BEVFormerV2'``.
"""

from perception.engine import MODELS, register_lower_layers
from perception.models.necks import FPN

from .box_coder import decode_boxes, encode_boxes
from .detection_head import BEVDetectionHead
from .detector import BEVFormerV2
from .encoder import BEVEncoder, SpatialCrossAttention
from .perspective_head import PerspectiveHead
from .temporal import ResidualConvFusion

for _cls in (BEVFormerV2, BEVEncoder, BEVDetectionHead, PerspectiveHead, FPN):
    MODELS.register_module(module=_cls, force=True)
register_lower_layers()

__all__ = ["BEVDetectionHead", "BEVEncoder", "BEVFormerV2", "PerspectiveHead", "ResidualConvFusion",
           "SpatialCrossAttention", "decode_boxes", "encode_boxes"]
