"""DCNv3 as a ``torch.library`` custom op, plus the public :func:`dcnv3` function.

``perception_ops::dcnv3`` and ``perception_ops::dcnv3_backward`` have CPU and CUDA kernels (the JIT
built extension), fake kernels (so ``torch.compile(fullgraph=True)`` and ``torch.export`` can trace
them) and an autograd formula. :func:`dcnv3` validates arguments, applies the dtype rules and picks
the backend; models call it and never touch a kernel directly.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from . import _extension
from ._checks import check_dcnv3
from ._dtypes import kernel_dtype, unify_dtypes
from .backend import calls_kernels_directly, select_backend
from .export import dcnv3_as_deform_conv, lowering_active
from .reference import dcnv3_output_size, dcnv3_reference

__all__ = ["dcnv3"]


def _kernels(device: torch.device):
    return _extension.loaded_kernels[device.type]


@torch.library.custom_op("perception_ops::dcnv3", mutates_args=())
def _dcnv3_op(input: Tensor, offset: Tensor, mask: Tensor, kernel_h: int, kernel_w: int, stride_h: int,
              stride_w: int, pad_h: int, pad_w: int, dilation_h: int, dilation_w: int, group: int,
              group_channels: int, offset_scale: float, remove_center: bool, mask_softmax: bool = False) -> Tensor:
    return _kernels(input.device).dcnv3_forward(
        input, offset, mask, kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w, dilation_h, dilation_w,
        group, group_channels, offset_scale, remove_center, mask_softmax)


@_dcnv3_op.register_fake
def _(input, offset, mask, kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w, dilation_h, dilation_w,
      group, group_channels, offset_scale, remove_center, mask_softmax=False):
    n, height, width, channels = input.shape
    out_h = dcnv3_output_size(height, kernel_h, stride_h, pad_h, dilation_h)
    out_w = dcnv3_output_size(width, kernel_w, stride_w, pad_w, dilation_w)
    return input.new_empty(n, out_h, out_w, channels)


@torch.library.custom_op("perception_ops::dcnv3_backward", mutates_args=())
def _dcnv3_backward_op(input: Tensor, offset: Tensor, mask: Tensor, grad_output: Tensor, kernel_h: int,
                       kernel_w: int, stride_h: int, stride_w: int, pad_h: int, pad_w: int, dilation_h: int,
                       dilation_w: int, group: int, group_channels: int, offset_scale: float,
                       remove_center: bool, mask_softmax: bool = False) -> tuple[Tensor, Tensor, Tensor]:
    return tuple(_kernels(input.device).dcnv3_backward(
        input, offset, mask, grad_output, kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w, dilation_h,
        dilation_w, group, group_channels, offset_scale, remove_center, mask_softmax))


@_dcnv3_backward_op.register_fake
def _(input, offset, mask, grad_output, *args):
    return torch.empty_like(input), torch.empty_like(offset), torch.empty_like(mask)


def _setup_context(ctx, inputs, output):
    input, offset, mask, *scalars = inputs
    ctx.save_for_backward(input, offset, mask)
    ctx.scalars = scalars  # the schema default fills in mask_softmax when a caller omits it


def _gradients(backward_kernel: Callable[..., tuple[Tensor, Tensor, Tensor]], ctx,
               grad_output: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """The autograd formula of both call paths: the backward kernel gives all three gradients."""
    input, offset, mask = ctx.saved_tensors
    return tuple(backward_kernel(input, offset, mask, grad_output.contiguous(), *ctx.scalars))


def _backward(ctx, grad_output):
    return (*_gradients(_dcnv3_backward_op, ctx, grad_output), *([None] * len(ctx.scalars)))


_dcnv3_op.register_autograd(_backward, setup_context=_setup_context)


class _DCNv3Direct(torch.autograd.Function):
    """The same kernels as ``perception_ops::dcnv3``, without the dispatcher (eager mode only; see
    :func:`ops.backend.calls_kernels_directly`). The scalars travel as one tuple and ``forward``
    takes ``ctx``: this older Function style costs about a quarter of the host time of the
    ``setup_context`` style."""

    @staticmethod
    def forward(ctx, input: Tensor, offset: Tensor, mask: Tensor, scalars: tuple) -> Tensor:
        ctx.save_for_backward(input, offset, mask)
        ctx.scalars = scalars
        return _kernels(input.device).dcnv3_forward(input, offset, mask, *scalars)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_output):
        return (*_gradients(_kernels(grad_output.device).dcnv3_backward, ctx, grad_output), None)


def dcnv3(input: Tensor, offset: Tensor, mask: Tensor, kernel_h: int, kernel_w: int, stride_h: int,
          stride_w: int, pad_h: int, pad_w: int, dilation_h: int, dilation_w: int, group: int,
          group_channels: int, offset_scale: float, remove_center: bool = False,
          backend: str | None = None, *, mask_softmax: bool = False) -> Tensor:
    """DCNv3 core with the official arguments in the official order (no ``im2col_step``).

    Args:
        input: (N, H, W, group·group_channels), channels-last.
        offset: (N, H_out, W_out, group·P·2), per group and point the (x, y) offset in pixels.
        mask: (N, H_out, W_out, group·P), the (post-softmax) weight of each point, or with
            ``mask_softmax`` its logits.
        remove_center: drop the window centre (P = k_h·k_w − 1).
        backend: None (automatic), "reference", "cpu" or "cuda".
        mask_softmax: softmax the mask over each group's points inside the op (one pass over the
            logits instead of a separate softmax, whose output would also be kept for backward).
    Returns:
        (N, H_out, W_out, group·group_channels).
    """
    check_dcnv3(input, offset, mask, kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w, dilation_h,
                dilation_w, group, group_channels, remove_center)
    offset, mask = unify_dtypes("dcnv3", "input", input, offset=offset, mask=mask)
    args = (kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w, dilation_h, dilation_w, group, group_channels,
            float(offset_scale), bool(remove_center), bool(mask_softmax))
    if lowering_active():  # torch.onnx.export: one standard DeformConv node (ops/export.py)
        return dcnv3_as_deform_conv(input, offset, mask, *args)
    chosen = select_backend(backend, input.device)
    if chosen == "reference":
        return dcnv3_reference(input, offset, mask, *args)
    dtype = kernel_dtype(chosen, input.dtype)
    tensors = tuple(_as_kernel_input(t, dtype) for t in (input, offset, mask))
    if not calls_kernels_directly(*tensors):
        out = _dcnv3_op(*tensors, *args)
    elif torch.is_grad_enabled() and any(t.requires_grad for t in tensors):
        out = _DCNv3Direct.apply(*tensors, args)
    else:  # nothing to differentiate (inference): the kernel itself, without the Function's host time
        out = _kernels(input.device).dcnv3_forward(*tensors, *args)
    return out if out.dtype == input.dtype else out.to(input.dtype)


def _as_kernel_input(t: Tensor, dtype: torch.dtype) -> Tensor:
    """``t`` in ``dtype``, contiguous; ``t`` itself when it already is (each skipped call saves host time)."""
    return (t if t.dtype == dtype else t.to(dtype)).contiguous()
