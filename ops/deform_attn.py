"""Multi-scale deformable attention as a ``torch.library`` custom op, plus :func:`ms_deform_attn`.

Same structure as :mod:`ops.deform_conv`: CPU/CUDA kernels, fake kernels, autograd, and a public
function that validates, applies the dtype rules and picks the backend.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from . import _extension
from ._checks import check_ms_deform_attn
from ._dtypes import kernel_dtype, unify_dtypes
from .backend import calls_kernels_directly, select_backend
from .export import lowering_active, ms_deform_attn_lowered
from .reference import ms_deform_attn_reference

__all__ = ["ms_deform_attn"]


@torch.library.custom_op("perception_ops::ms_deform_attn", mutates_args=())
def _msda_op(value: Tensor, spatial_shapes: Tensor, level_start_index: Tensor, sampling_locations: Tensor,
             attention_weights: Tensor) -> Tensor:
    return _extension.loaded_kernels[value.device.type].ms_deform_attn_forward(
        value, spatial_shapes, level_start_index, sampling_locations, attention_weights)


@_msda_op.register_fake
def _(value, spatial_shapes, level_start_index, sampling_locations, attention_weights):
    n, _, heads, dim = value.shape
    return value.new_empty(n, sampling_locations.shape[1], heads * dim)


@torch.library.custom_op("perception_ops::ms_deform_attn_backward", mutates_args=())
def _msda_backward_op(value: Tensor, spatial_shapes: Tensor, level_start_index: Tensor,
                      sampling_locations: Tensor, attention_weights: Tensor,
                      grad_output: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    return tuple(_extension.loaded_kernels[value.device.type].ms_deform_attn_backward(
        value, spatial_shapes, level_start_index, sampling_locations, attention_weights, grad_output))


@_msda_backward_op.register_fake
def _(value, spatial_shapes, level_start_index, sampling_locations, attention_weights, grad_output):
    return torch.empty_like(value), torch.empty_like(sampling_locations), torch.empty_like(attention_weights)


def _setup_context(ctx, inputs, output):
    ctx.save_for_backward(*inputs)


def _gradients(backward_kernel, ctx, grad_output: Tensor) -> tuple[Tensor, None, None, Tensor, Tensor]:
    """The autograd formula of both call paths (the level table gets no gradient)."""
    value, shapes, starts, locations, weights = ctx.saved_tensors
    grad_value, grad_loc, grad_weights = backward_kernel(value, shapes, starts, locations, weights,
                                                         grad_output.contiguous())
    return grad_value, None, None, grad_loc, grad_weights


def _backward(ctx, grad_output):
    return _gradients(_msda_backward_op, ctx, grad_output)


_msda_op.register_autograd(_backward, setup_context=_setup_context)


class _MSDADirect(torch.autograd.Function):
    """The same kernels as ``perception_ops::ms_deform_attn``, without the dispatcher (eager mode
    only; see :func:`ops.backend.calls_kernels_directly`)."""

    @staticmethod
    def forward(ctx, value: Tensor, spatial_shapes: Tensor, level_start_index: Tensor,
                sampling_locations: Tensor, attention_weights: Tensor) -> Tensor:
        inputs = (value, spatial_shapes, level_start_index, sampling_locations, attention_weights)
        ctx.save_for_backward(*inputs)
        return _extension.loaded_kernels[value.device.type].ms_deform_attn_forward(*inputs)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_output):
        return _gradients(_extension.loaded_kernels[grad_output.device.type].ms_deform_attn_backward, ctx,
                          grad_output)


def ms_deform_attn(value: Tensor, spatial_shapes: Tensor, level_start_index: Tensor, sampling_locations: Tensor,
                   attention_weights: Tensor, backend: str | None = None) -> Tensor:
    """Multi-scale deformable attention (the Deformable-DETR contract).

    Args:
        value: (N, ΣH·W, heads, dim), the flattened levels one after another.
        spatial_shapes: (levels, 2) integer (H, W) of each level.
        level_start_index: (levels,) integer offset of each level in ``value``.
        sampling_locations: (N, queries, heads, levels, points, 2), normalised (x, y) in [0, 1] with
            ``grid_sample(align_corners=False)`` meaning; outside samples contribute zero.
        attention_weights: (N, queries, heads, levels, points).
        backend: None (automatic), "reference", "cpu" or "cuda".
    Returns:
        (N, queries, heads·dim).
    """
    check_ms_deform_attn(value, spatial_shapes, level_start_index, sampling_locations, attention_weights)
    sampling_locations, attention_weights = unify_dtypes(
        "ms_deform_attn", "value", value, sampling_locations=sampling_locations,
        attention_weights=attention_weights)
    if lowering_active():  # torch.onnx.export: GridSample per level, or a fused node (ops/export.py)
        return ms_deform_attn_lowered(value, spatial_shapes, level_start_index, sampling_locations,
                                      attention_weights)
    chosen = select_backend(backend, value.device)
    if chosen == "reference":
        return ms_deform_attn_reference(value, spatial_shapes, level_start_index, sampling_locations,
                                        attention_weights)
    dtype = kernel_dtype(chosen, value.dtype)
    tensors = (value.to(dtype).contiguous(), spatial_shapes.long().contiguous(), level_start_index.long().contiguous(),
               sampling_locations.to(dtype).contiguous(), attention_weights.to(dtype).contiguous())
    op = _MSDADirect.apply if calls_kernels_directly(*tensors) else _msda_op
    return op(*tensors).to(value.dtype)
