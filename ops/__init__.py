"""Deformable sampling ops: DCNv3 and multi-scale deformable attention.

Public API::

    from ops import dcnv3, ms_deform_attn, DCNv3, MultiScaleDeformableAttention

Each function takes ``backend=None | "reference" | "cpu" | "cuda"`` (see :mod:`ops.backend`).
Kernels are built just in time on first use (:mod:`ops._extension`); importing compiles nothing.
"""

from .backend import BACKEND_ENV, BACKENDS, select_backend
from .deform_attn import ms_deform_attn
from .deform_conv import dcnv3
from .modules import DCNv3, MultiScaleDeformableAttention
from .reference import dcnv3_reference, ms_deform_attn_reference

__all__ = [
    "BACKENDS",
    "BACKEND_ENV",
    "DCNv3",
    "MultiScaleDeformableAttention",
    "dcnv3",
    "dcnv3_reference",
    "ms_deform_attn",
    "ms_deform_attn_reference",
    "select_backend",
]
