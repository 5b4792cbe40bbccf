"""Argument validation with messages that name the offending argument."""

from __future__ import annotations

import weakref

import torch
from torch import Tensor
from torch._subclasses.fake_tensor import is_fake

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
    _check_level_table(op, keys, spatial_shapes, level_start_index)


def _check_level_table(op: str, keys: int, spatial_shapes: Tensor, level_start_index: Tensor) -> None:
    """Refuse a level table that does not describe ``keys`` flattened keys, level after level.

    Level ``l`` must start at ``sum(H*W)`` of the levels before it and the levels must fill all
    ``keys`` exactly; otherwise the kernels read the wrong rows and return a finite, wrong answer.
    The table is data, so it is read only in eager mode (see :func:`_capturing`). On CPU the read is
    a copy of a few integers and happens every call. On a GPU it is a host sync, so a table already
    accepted is not read again: :func:`_accepted` remembers the last few by identity and version.
    """
    if _capturing(spatial_shapes, level_start_index):
        return
    on_cpu = spatial_shapes.device.type == "cpu"
    if not on_cpu and _accepted(spatial_shapes, level_start_index, keys):
        return
    shapes, given = _read_table(spatial_shapes, level_start_index)
    for lvl, (h, w) in enumerate(shapes):
        if h < 1 or w < 1:
            raise ValueError(f"{op}: spatial_shapes gives level {lvl} a size of {h}x{w}; each level needs "
                             f"H >= 1 and W >= 1")
    areas = [h * w for h, w in shapes]
    expected = [sum(areas[:lvl]) for lvl in range(len(areas))]
    if given != expected:
        raise ValueError(f"{op}: level_start_index must be the exclusive cumulative sum of H*W of spatial_shapes "
                         f"{shapes}: expected {expected}, given {given}")
    if keys != sum(areas):
        raise ValueError(f"{op}: value has {keys} keys (dim 1) but spatial_shapes {shapes} describe "
                         f"sum(H*W) = {sum(areas)}")
    if not on_cpu:
        _remember(spatial_shapes, level_start_index, keys)


def _read_table(spatial_shapes: Tensor, level_start_index: Tensor) -> tuple[list[list[int]], list[int]]:
    """The [H, W] of each level and the given starts, as Python integers."""
    if spatial_shapes.device.type == "cpu":  # two plain reads: about 1 us, where a torch.cat costs 15-40 us
        return spatial_shapes.tolist(), level_start_index.tolist()
    # Elsewhere one transfer for both tensors: one host sync rather than two.
    levels = level_start_index.shape[0]
    table = torch.cat([spatial_shapes.reshape(-1).long(), level_start_index.long()]).tolist()
    return [table[2 * lvl:2 * lvl + 2] for lvl in range(levels)], table[2 * levels:]


def _capturing(*tensors: Tensor) -> bool:
    """Whether a graph is being captured, where the level table is unknown or must not be read.

    Under torch.compile/torch.export the tensors are fake and reading them would break the graph;
    torch.jit.trace and the TorchScript ONNX exporter would bake the values in as constants; meta
    tensors have no values; a read during CUDA graph capture would break the capture. The kernels
    skip levels that do not fit in value, so a traced graph still never reads out of bounds.
    """
    if torch.compiler.is_compiling() or torch.jit.is_tracing() or torch.onnx.is_in_onnx_export():
        return True
    # A plain torch.Tensor is never fake: is_fake is asked only about subclasses.
    return (any(t.device.type == "meta" or (type(t) is not Tensor and is_fake(t)) for t in tensors)
            or _capturing_cuda_graph(tensors[0]))


# Level tables on a GPU that passed the check: (spatial_shapes, its version, level_start_index, its
# version, keys). Weak references, so a remembered table can be freed and its id reused without
# matching; versions, so an in-place edit is read again. A model passes one or two tables per
# forward (one per memory), the same objects to every layer: a few entries suffice.
_ACCEPTED_TABLES: list[tuple[weakref.ref, int, weakref.ref, int, int]] = []
_ACCEPTED_LIMIT = 8


def _accepted(spatial_shapes: Tensor, level_start_index: Tensor, keys: int) -> bool:
    return any(shapes_ref() is spatial_shapes and shapes_version == spatial_shapes._version
               and starts_ref() is level_start_index and starts_version == level_start_index._version
               and accepted_keys == keys
               for shapes_ref, shapes_version, starts_ref, starts_version, accepted_keys in _ACCEPTED_TABLES)


def _remember(spatial_shapes: Tensor, level_start_index: Tensor, keys: int) -> None:
    _ACCEPTED_TABLES.append((weakref.ref(spatial_shapes), spatial_shapes._version, weakref.ref(level_start_index),
                             level_start_index._version, keys))
    del _ACCEPTED_TABLES[:-_ACCEPTED_LIMIT]


def _capturing_cuda_graph(t: Tensor) -> bool:
    return t.is_cuda and torch.cuda.is_current_stream_capturing()
