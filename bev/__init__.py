"""The BEV spine every BEV task shares, the meta-architecture with named task heads, and the 3D
detection head (DETR box decoder + perspective head and BEV centre heatmaps with two-stage queries).

Importing this package registers its modules in the project's mmengine MODELS registry, so configs
can say ``type='BEVFormerV2'``, ``type='Detection3DHead'`` and so on.
"""

from perception.engine import MODELS, register_lower_layers
from perception.models.necks import FPN

from .box_coder import decode_boxes, encode_boxes
from .centre_head import BEVCentreHead
from .detection_head import BEVDetectionHead
from .encoder import BEVEncoder, SpatialCrossAttention
from .heads import Detection3DHead, TaskHead
from .model import BEVFormerV2
from .perspective_head import PerspectiveHead
from .spine import BEVSpine, SpineOutput
from .temporal import ResidualConvFusion

for _cls in (BEVFormerV2, BEVSpine, BEVEncoder, BEVCentreHead, BEVDetectionHead, Detection3DHead, PerspectiveHead, FPN):
    MODELS.register_module(module=_cls, force=True)
register_lower_layers()

__all__ = ["BEVCentreHead", "BEVDetectionHead", "BEVEncoder", "BEVFormerV2", "BEVSpine", "Detection3DHead",
           "PerspectiveHead", "ResidualConvFusion", "SpatialCrossAttention", "SpineOutput", "TaskHead", "decode_boxes",
           "encode_boxes"]
