"""Argument validation with messages that name the offending argument."""

from __future__ import annotations

import torch
from torch import Tensor

from .reference import dcnv3_output_size


def _check_tensor(name: str, t: object, rank: int, op: str, layout: str) -> Tensor:
    if not isinstance(t, Tensor):
        raise TypeError(f"{op}: {name} must be a torch.Tensor, got {type(t).__name__}")
    if t.dim() != rank:
        raise ValueError(f"{op}: {name} must be {rank}-D {layout}, got shape {tuple(t.shape)}")
    return t


def _check_float(op: str, **tensors: Tensor) -> None:
    for name, t in tensors.items():
        if not t.is_floating_point():
            raise TypeError(f"{op}: {name} must be a floating-point tensor, got {t.dtype}")


def _check_same_device(op: str, **tensors: Tensor) -> None:
    (first_name, first), *rest = tensors.items()
    for name, t in rest:
        if t.device != first.device:
            raise ValueError(f"{op}: {name} is on {t.device} but {first_name} is on {first.device}")


def _check_positive(op: str, minimum: int, **values: int) -> None:
    for name, v in values.items():
        if not isinstance(v, int) or isinstance(v, bool) or v < minimum:
            raise ValueError(f"{op}: {name} must be an integer >= {minimum}, got {v!r}")


def _check_shape(op: str, name: str, t: Tensor, expected: tuple[int, ...], why: str) -> None:
    if tuple(t.shape) != expected:
        raise ValueError(f"{op}: {name} must have shape {expected} ({why}), got {tuple(t.shape)}")


_INT32_LIMIT = 2**31


def check_dcnv3(input: Tensor, offset: Tensor, mask: Tensor, kernel_h: int, kernel_w: int, stride_h: int,
                stride_w: int, pad_h: int, pad_w: int, dilation_h: int, dilation_w: int, group: int,
                group_channels: int, remove_center: bool) -> None:
    op = "dcnv3"
    for name, t, layout in (("input", input, "(N, H, W, C) channels-last"),
                            ("offset", offset, "(N, H_out, W_out, group*points*2)"),
                            ("mask", mask, "(N, H_out, W_out, group*points)")):
        _check_tensor(name, t, 4, op, layout)
    _check_float(op, input=input, offset=offset, mask=mask)
    _check_same_device(op, input=input, offset=offset, mask=mask)
    _check_positive(op, 1, kernel_h=kernel_h, kernel_w=kernel_w, stride_h=stride_h, stride_w=stride_w,
                    dilation_h=dilation_h, dilation_w=dilation_w, group=group, group_channels=group_channels)
    _check_positive(op, 0, pad_h=pad_h, pad_w=pad_w)
    if remove_center and (kernel_h % 2 == 0 or kernel_w % 2 == 0):
        raise ValueError(f"{op}: remove_center needs an odd kernel, got {kernel_h}x{kernel_w}")
    n, height, width, channels = input.shape
    if height < 1 or width < 1:
        raise ValueError(f"{op}: input has an empty {height}x{width} map")
    if height * width >= _INT32_LIMIT or channels >= _INT32_LIMIT:
        # The kernels index pixels and channel strides with 32-bit integers (fewer instructions).
        raise ValueError(f"{op}: maps of 2^31 or more pixels or channels are not supported, got "
                         f"{height}x{width} with {channels} channels")
    if channels != group * group_channels:
        raise ValueError(f"{op}: input has {channels} channels but group*group_channels = "
                         f"{group}*{group_channels} = {group * group_channels}")
    out_h = dcnv3_output_size(height, kernel_h, stride_h, pad_h, dilation_h)
    out_w = dcnv3_output_size(width, kernel_w, stride_w, pad_w, dilation_w)
    if out_h < 1 or out_w < 1:
        raise ValueError(f"{op}: input of size {height}x{width} is too small for a {kernel_h}x{kernel_w} "
                         f"window with pad ({pad_h}, {pad_w}) and dilation ({dilation_h}, {dilation_w})")
    points = kernel_h * kernel_w - int(bool(remove_center))
    _check_shape(op, "offset", offset, (n, out_h, out_w, group * points * 2),
                 f"group={group} x points={points} x (x, y)")
    _check_shape(op, "mask", mask, (n, out_h, out_w, group * points), f"group={group} x points={points}")


def check_ms_deform_attn(value: Tensor, spatial_shapes: Tensor, level_start_index: Tensor,
                         sampling_locations: Tensor, attention_weights: Tensor) -> None:
    op = "ms_deform_attn"
    _check_tensor("value", value, 4, op, "(N, sum(H*W), heads, dim)")
    _check_tensor("spatial_shapes", spatial_shapes, 2, op, "(levels, 2) as (H, W)")
    _check_tensor("level_start_index", level_start_index, 1, op, "(levels,)")
    _check_tensor("sampling_locations", sampling_locations, 6, op, "(N, queries, heads, levels, points, 2)")
    _check_tensor("attention_weights", attention_weights, 5, op, "(N, queries, heads, levels, points)")
    _check_float(op, value=value, sampling_locations=sampling_locations, attention_weights=attention_weights)
    for name, t in (("spatial_shapes", spatial_shapes), ("level_start_index", level_start_index)):
        if t.dtype not in (torch.int64, torch.int32):
            raise TypeError(f"{op}: {name} must be an integer tensor, got {t.dtype}")
    _check_same_device(op, value=value, spatial_shapes=spatial_shapes, level_start_index=level_start_index,
                       sampling_locations=sampling_locations, attention_weights=attention_weights)
    n, keys, heads, dim = value.shape
    if heads * dim >= _INT32_LIMIT:
        raise ValueError(f"{op}: heads*dim = {heads}*{dim} must be below 2^31 (32-bit key strides)")
    queries, levels, points = sampling_locations.shape[1], sampling_locations.shape[3], sampling_locations.shape[4]
    _check_shape(op, "spatial_shapes", spatial_shapes, (levels, 2), "one (H, W) per level of sampling_locations")
    _check_shape(op, "level_start_index", level_start_index, (levels,), "one start per level")
    _check_shape(op, "sampling_locations", sampling_locations, (n, queries, heads, levels, points, 2),
                 "batch and heads as in value, (x, y) last")
    _check_shape(op, "attention_weights", attention_weights, (n, queries, heads, levels, points),
                 "matching sampling_locations")
    if torch.compiler.is_compiling() or value.device.type == "meta" or _capturing_cuda_graph(value):
        # The level table is data: unreadable on meta, and reading it to the host would break a
        # compiled graph or a CUDA graph capture. The kernels skip levels that do not fit in value.
        return
    shapes = spatial_shapes.tolist()
    starts = level_start_index.tolist()
    for lvl, ((h, w), start) in enumerate(zip(shapes, starts)):
        if h < 1 or w < 1 or start < 0 or start + h * w > keys:
            raise ValueError(f"{op}: level {lvl} of size {h}x{w} starting at {start} does not fit in value's "
                             f"{keys} keys (check spatial_shapes and level_start_index)")


def _capturing_cuda_graph(t: Tensor) -> bool:
    return t.is_cuda and torch.cuda.is_current_stream_capturing()
