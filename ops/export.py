"""Export mode and the ONNX lowerings of the deformable ops.

Export mode (``set_exportable(True)`` or ``with exportable():``, in the style of timm's
``set_exportable``) is a process-wide switch that models read to take static-shape, trace-friendly
paths: no host reads of tensor values, fixed query counts, top-k with a fixed k. It lives here, in
the lowest layer, so every model above can read it. Export mode computes the same outputs as eager
mode (the models' tests check it); it is only slower where it trades a data-dependent shortcut (e.g.
computing only the visible BEV queries) for a static shape.

While ``torch.onnx.export`` traces (``torch.onnx.is_in_onnx_export()``), :func:`ops.dcnv3` and
:func:`ops.ms_deform_attn` lower themselves to standard ONNX operators, so the exported file runs in
a stock runtime with no custom-op library (docs/deployment.md):

* DCNv3 is ONNX ``DeformConv`` (opset 19) with all-ones depthwise weights (``group = channels``),
  ``offset_group = group``, and its offsets and mask re-laid out (:func:`dcnv3_as_deform_conv`);
* multi-scale deformable attention is one ``GridSample`` per level and a weighted sum
  (:func:`ms_deform_attn_grid_sample`), or optionally one fused custom-domain node for runtimes
  with such a kernel (:func:`set_msda_export`).

The level sizes of multi-scale deformable attention are Python integers in the exported graph (each
level is reshaped to its own map): tracing sees ``spatial_shapes`` only as data, so the models build
it with :func:`level_table`, which keeps the sizes next to the tensor.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import Tensor

from .reference import _kernel_points, dcnv3_output_size

__all__ = ["MSDA_EXPORTS", "LoweringError", "dcnv3_as_deform_conv", "exportable", "inverse_4x4", "is_exportable",
           "level_table", "lowering_active", "ms_deform_attn_grid_sample", "set_exportable", "set_msda_export",
           "static_level_shapes", "take_lowering_error"]

DEFORM_CONV_OPSET = 19  # the first opset with DeformConv
MSDA_EXPORTS = ("grid_sample", "trt_plugin")
_state = {"exportable": False, "msda": "grid_sample", "lowering_error": None}


class LoweringError(ValueError):
    """An op cannot be lowered to standard ONNX operators as called (the message says why and what to do)."""


def take_lowering_error() -> LoweringError | None:
    """The last lowering error since the previous call, cleared. torch.onnx.export retries a failed trace with
    other strategies that skip the lowering and then fail with a message about the op's missing ONNX
    function, so exporters report this error instead (tools/_onnx_common.py)."""
    error, _state["lowering_error"] = _state["lowering_error"], None
    return error


# -- the switch ------------------------------------------------------------------------------------
def set_exportable(enabled: bool) -> None:
    """Switch export mode on or off for the whole process."""
    _state["exportable"] = bool(enabled)


def is_exportable() -> bool:
    """Whether models should take their static-shape, trace-friendly paths."""
    return _state["exportable"]


@contextmanager
def exportable(enabled: bool = True) -> Iterator[None]:
    """Export mode inside the ``with`` block; the previous setting afterwards."""
    previous = _state["exportable"]
    set_exportable(enabled)
    try:
        yield
    finally:
        set_exportable(previous)


def set_msda_export(kind: str) -> None:
    """How :func:`ops.ms_deform_attn` is exported: ``"grid_sample"`` (standard ops, the default, tested)
    or ``"trt_plugin"`` (one ``trt::MultiscaleDeformableAttnPlugin_TRT`` node with TensorRT's plugin
    inputs: int32 level table, 4-D output; NOT tested: TensorRT cannot be installed on our machines)."""
    if kind not in MSDA_EXPORTS:
        raise ValueError(f"set_msda_export: kind must be one of {MSDA_EXPORTS}, got {kind!r}")
    _state["msda"] = kind


def lowering_active() -> bool:
    """Whether the ops should emit their ONNX lowering instead of calling a kernel."""
    return torch.onnx.is_in_onnx_export()


# -- static level sizes ------------------------------------------------------------------------------
_LEVEL_SIZES = "_static_level_shapes"


def level_table(shapes: Sequence[tuple[int, int]], device: torch.device | None = None) -> Tensor:
    """The (levels, 2) int64 ``spatial_shapes`` table of :func:`ops.ms_deform_attn` for the (H, W) of
    each level. The Python sizes stay attached to the tensor object, because while exporting the
    table's values are symbolic and each level must be reshaped to a static map."""
    sizes = tuple((int(h), int(w)) for h, w in shapes)
    table = torch.tensor(sizes, dtype=torch.long, device=device).reshape(len(sizes), 2)
    setattr(table, _LEVEL_SIZES, sizes)
    return table


def static_level_shapes(spatial_shapes: Tensor) -> tuple[tuple[int, int], ...]:
    """The (H, W) of each level as Python integers: the sizes :func:`level_table` attached, else the
    values themselves when they are readable (a real tensor)."""
    sizes = getattr(spatial_shapes, _LEVEL_SIZES, None)
    if sizes is not None:
        return sizes
    if isinstance(spatial_shapes, torch._subclasses.fake_tensor.FakeTensor) or spatial_shapes.is_meta:
        error = LoweringError("ms_deform_attn: exporting needs the level sizes as Python integers; build "
                              "spatial_shapes with ops.export.level_table(...) (a table computed inside the traced "
                              "model is symbolic)")
        _state["lowering_error"] = error
        raise error
    return tuple((int(h), int(w)) for h, w in spatial_shapes.tolist())


# -- DCNv3 -> DeformConv ---------------------------------------------------------------------------------
def _deform_conv_offsets(offset: Tensor, mask: Tensor, kernel_h: int, kernel_w: int, dilation_h: int,
                         dilation_w: int, group: int, offset_scale: float, remove_center: bool,
                         mask_softmax: bool) -> tuple[Tensor, Tensor]:
    """DCNv3's (N, Ho, Wo, G·P·2) offsets and (N, Ho, Wo, G·P) mask as DeformConv's NCHW
    (N, G·kh·kw·2, Ho, Wo) offsets and (N, G·kh·kw, Ho, Wo) mask.

    DCNv3 orders its points with the width index outer (p = i·kh + j, ops/reference.py) and stores
    (x, y); DeformConv orders kernel positions row-major (kh·kw) and stores (Δh, Δw). DCNv3 scales its
    regular grid by ``offset_scale`` too, DeformConv does not, so with s = offset_scale and (dx, dy)
    the point's grid displacement: Δ_deformconv = s·Δ + (s − 1)·(dx, dy). A removed centre becomes
    a kernel position of zero mask."""
    n, out_h, out_w, _ = offset.shape
    points = _kernel_points(kernel_h, kernel_w, dilation_h, dilation_w, remove_center)
    offset = offset.reshape(n, out_h, out_w, group, len(points), 2)
    mask = mask.reshape(n, out_h, out_w, group, len(points))
    if mask_softmax:
        mask = mask.softmax(-1)
    if offset_scale != 1.0:
        grid = torch.tensor(points, dtype=offset.dtype, device=offset.device)
        offset = offset * offset_scale + grid * (offset_scale - 1.0)
    if remove_center:
        centre = (kernel_w // 2) * kernel_h + kernel_h // 2  # its index in the full window's order
        offset = torch.cat([offset[..., :centre, :], offset.new_zeros(n, out_h, out_w, group, 1, 2),
                            offset[..., centre:, :]], dim=-2)
        mask = torch.cat([mask[..., :centre], mask.new_zeros(n, out_h, out_w, group, 1), mask[..., centre:]], dim=-1)
    # (.., i over kernel_w, j over kernel_h, (x, y)) -> (.., j, i, (y, x)), then channels first.
    offset = offset.reshape(n, out_h, out_w, group, kernel_w, kernel_h, 2).transpose(4, 5).flip(-1)
    mask = mask.reshape(n, out_h, out_w, group, kernel_w, kernel_h).transpose(4, 5)
    offset = offset.reshape(n, out_h, out_w, group * kernel_h * kernel_w * 2).permute(0, 3, 1, 2)
    mask = mask.reshape(n, out_h, out_w, group * kernel_h * kernel_w).permute(0, 3, 1, 2)
    return offset, mask


def dcnv3_as_deform_conv(input: Tensor, offset: Tensor, mask: Tensor, kernel_h: int, kernel_w: int, stride_h: int,
                         stride_w: int, pad_h: int, pad_w: int, dilation_h: int, dilation_w: int, group: int,
                         group_channels: int, offset_scale: float, remove_center: bool = False,
                         mask_softmax: bool = False) -> Tensor:
    """:func:`ops.dcnv3` (same arguments and layouts) as one ONNX ``DeformConv`` node. Only meaningful
    while ``torch.onnx.export`` traces: outside it the node has no values."""
    n, height, width, channels = input.shape
    out_h = dcnv3_output_size(height, kernel_h, stride_h, pad_h, dilation_h)
    out_w = dcnv3_output_size(width, kernel_w, stride_w, pad_w, dilation_w)
    offset, mask = _deform_conv_offsets(offset.to(input.dtype), mask.to(input.dtype), kernel_h, kernel_w,
                                        dilation_h, dilation_w, group, offset_scale, remove_center, mask_softmax)
    # DeformConv convolves after sampling; all-ones depthwise weights make that the plain weighted sum.
    ones = torch.ones(channels, 1, kernel_h, kernel_w, dtype=input.dtype, device=input.device)
    attrs = dict(dilations=[dilation_h, dilation_w], group=channels, kernel_shape=[kernel_h, kernel_w],
                 offset_group=group, pads=[pad_h, pad_w, pad_h, pad_w], strides=[stride_h, stride_w])
    out = torch.onnx.ops.symbolic("::DeformConv", (input.permute(0, 3, 1, 2), ones, offset, None, mask), attrs,
                                  dtype=input.dtype, shape=(n, channels, out_h, out_w), version=DEFORM_CONV_OPSET)
    return out.permute(0, 2, 3, 1)


# -- multi-scale deformable attention -> GridSample ------------------------------------------------------
def ms_deform_attn_grid_sample(value: Tensor, level_shapes: Sequence[tuple[int, int]], sampling_locations: Tensor,
                               attention_weights: Tensor) -> Tensor:
    """:func:`ops.ms_deform_attn` from standard operators: per level one bilinear ``grid_sample`` with
    zero padding and ``align_corners=False`` (the op's sampling convention, ops/reference.py), then the
    attention-weighted sum over points and levels. Runs in eager mode too; the levels are assumed to
    be stored one after another from key 0 (as the models' level tables are)."""
    n, keys, heads, dim = value.shape
    _, queries, _, levels, points, _ = sampling_locations.shape
    if len(level_shapes) != levels:
        raise ValueError(f"ms_deform_attn: {len(level_shapes)} level sizes for {levels} levels of sampling_locations")
    grids = sampling_locations.to(value.dtype).permute(0, 2, 1, 3, 4, 5) * 2 - 1  # (N, M, Q, L, P, 2)
    grids = grids.reshape(n * heads, queries, levels, points, 2)
    weights = attention_weights.to(value.dtype).permute(0, 2, 1, 3, 4).reshape(n * heads, 1, queries, levels, points)
    out = None
    start = 0
    for level, (height, width) in enumerate(level_shapes):
        level_value = value[:, start:start + height * width].permute(0, 2, 3, 1)  # (N, M, D, HW)
        level_value = level_value.reshape(n * heads, dim, height, width)
        start += height * width
        sampled = F.grid_sample(level_value, grids[:, :, level], mode="bilinear", padding_mode="zeros",
                                align_corners=False)  # (N·M, D, Q, P)
        term = (sampled * weights[..., level, :]).sum(-1)
        out = term if out is None else out + term
    if start > keys:
        raise ValueError(f"ms_deform_attn: the levels {tuple(level_shapes)} need {start} keys, value has {keys}")
    return out.reshape(n, heads * dim, queries).transpose(1, 2)


def ms_deform_attn_trt_plugin(value: Tensor, spatial_shapes: Tensor, level_start_index: Tensor,
                              sampling_locations: Tensor, attention_weights: Tensor) -> Tensor:
    """One ``trt::MultiscaleDeformableAttnPlugin_TRT`` node (TensorRT's built-in plugin: int32 level
    table and starts, output (N, Q, M, D)). Untested: no TensorRT on our machines."""
    n, _, heads, dim = value.shape
    queries = sampling_locations.shape[1]
    out = torch.onnx.ops.symbolic(
        "trt::MultiscaleDeformableAttnPlugin_TRT",
        (value, spatial_shapes.to(torch.int32), level_start_index.to(torch.int32), sampling_locations.to(value.dtype),
         attention_weights.to(value.dtype)), {}, dtype=value.dtype, shape=(n, queries, heads, dim), version=1)
    return out.reshape(n, queries, heads * dim)


def ms_deform_attn_lowered(value: Tensor, spatial_shapes: Tensor, level_start_index: Tensor,
                           sampling_locations: Tensor, attention_weights: Tensor) -> Tensor:
    """The export-time form of :func:`ops.ms_deform_attn` chosen by :func:`set_msda_export`."""
    if _state["msda"] == "trt_plugin":
        return ms_deform_attn_trt_plugin(value, spatial_shapes, level_start_index, sampling_locations,
                                         attention_weights)
    return ms_deform_attn_grid_sample(value, static_level_shapes(spatial_shapes), sampling_locations,
                                      attention_weights)


# -- small helpers with no ONNX operator -------------------------------------------------------------
def inverse_4x4(matrix: Tensor) -> Tensor:
    """The inverse of each (..., 4, 4) matrix from its adjugate (ONNX has no matrix inverse; the
    exporter cannot translate ``torch.linalg.inv``). Computed in at least float32; singular matrices
    give inf/NaN instead of an error."""
    m = matrix.to(torch.promote_types(matrix.dtype, torch.float32))
    a = [[m[..., i, j] for j in range(4)] for i in range(4)]
    # 2x2 minors of the top two rows (s) and of the bottom two rows (c), by column pairs.
    pairs = ((0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3))
    s = [a[0][i] * a[1][j] - a[1][i] * a[0][j] for i, j in pairs]
    c = [a[2][i] * a[3][j] - a[3][i] * a[2][j] for i, j in pairs]
    det = s[0] * c[5] - s[1] * c[4] + s[2] * c[3] + s[3] * c[2] - s[4] * c[1] + s[5] * c[0]
    rows = [
        [a[1][1] * c[5] - a[1][2] * c[4] + a[1][3] * c[3], -a[0][1] * c[5] + a[0][2] * c[4] - a[0][3] * c[3],
         a[3][1] * s[5] - a[3][2] * s[4] + a[3][3] * s[3], -a[2][1] * s[5] + a[2][2] * s[4] - a[2][3] * s[3]],
        [-a[1][0] * c[5] + a[1][2] * c[2] - a[1][3] * c[1], a[0][0] * c[5] - a[0][2] * c[2] + a[0][3] * c[1],
         -a[3][0] * s[5] + a[3][2] * s[2] - a[3][3] * s[1], a[2][0] * s[5] - a[2][2] * s[2] + a[2][3] * s[1]],
        [a[1][0] * c[4] - a[1][1] * c[2] + a[1][3] * c[0], -a[0][0] * c[4] + a[0][1] * c[2] - a[0][3] * c[0],
         a[3][0] * s[4] - a[3][1] * s[2] + a[3][3] * s[0], -a[2][0] * s[4] + a[2][1] * s[2] - a[2][3] * s[0]],
        [-a[1][0] * c[3] + a[1][1] * c[1] - a[1][2] * c[0], a[0][0] * c[3] - a[0][1] * c[1] + a[0][2] * c[0],
         -a[3][0] * s[3] + a[3][1] * s[1] - a[3][2] * s[0], a[2][0] * s[3] - a[2][1] * s[1] + a[2][2] * s[0]],
    ]
    adjugate = torch.stack([torch.stack(row, -1) for row in rows], -2)
    return adjugate / det[..., None, None]
