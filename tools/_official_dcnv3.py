"""The official InternImage DCNv3 core on CPU, as a baseline for the benchmark tools.

The official code has no CPU kernel: on CPU its DCNv3 module runs a pure-PyTorch core that samples
every point of every group with one ``F.grid_sample`` call over the zero-padded input
(docs/ops.md, "CPU speed against the official formulation"). This file re-states that formulation
so that the tools can time what users of the official code run. It is a measuring stick, not a
second implementation of the op: nothing in the library imports it (tools/ is not a package), and
``tests/ops/test_official_baseline.py`` checks that it computes the same function as ``ops.dcnv3``.

Steps, for input (N, H, W, G·Cg) channels-last:
1. zero-pad the input spatially by (pad_h, pad_w);
2. each output pixel's window centre, normalised in the padded image: (half + 0.5 + o·stride) / size;
3. the window's regular grid, (i·dilation − half) / size, width index outer, height index inner,
   the same for every group (the centre dropped with remove_center);
4. locations = centre + grid·offset_scale + offset·offset_scale / (W_pad, H_pad);
5. ``grid_sample(2·loc − 1, bilinear, zeros, align_corners=False)`` on the input viewed as
   (N·G, Cg, H_pad, W_pad), with the grids as (N·G, H_out·W_out, P, 2);
6. times the mask as (N·G, 1, H_out·W_out, P), summed over P, back to channels-last.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["grid_sample_dcnv3", "grid_sample_dcnv3_call", "official_core"]


def _window_centres(out_h: int, out_w: int, h_pad: int, w_pad: int, half_h: int, half_w: int, stride_h: int,
                    stride_w: int, like: Tensor) -> Tensor:
    """(1, H_out, W_out, 1, 2): each window centre as normalised (x, y) in the padded image."""
    ys = (torch.arange(out_h, dtype=like.dtype, device=like.device) * stride_h + half_h + 0.5) / h_pad
    xs = (torch.arange(out_w, dtype=like.dtype, device=like.device) * stride_w + half_w + 0.5) / w_pad
    centre_y, centre_x = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack((centre_x, centre_y), dim=-1).view(1, out_h, out_w, 1, 2)


def _window_grid(kernel_h: int, kernel_w: int, dilation_h: int, dilation_w: int, h_pad: int, w_pad: int,
                 group: int, remove_center: bool, like: Tensor) -> Tensor:
    """(1, 1, 1, G·P, 2): the window's normalised (x, y) displacements, width index outer."""
    half_h, half_w = dilation_h * (kernel_h - 1) // 2, dilation_w * (kernel_w - 1) // 2
    dx = (torch.arange(kernel_w, dtype=like.dtype, device=like.device) * dilation_w - half_w) / w_pad
    dy = (torch.arange(kernel_h, dtype=like.dtype, device=like.device) * dilation_h - half_h) / h_pad
    grid_x, grid_y = torch.meshgrid(dx, dy, indexing="ij")  # (k_w, k_h): x outer, y inner
    grid = torch.stack((grid_x, grid_y), dim=-1).reshape(kernel_w * kernel_h, 2)
    if remove_center:
        centre = (kernel_w // 2) * kernel_h + kernel_h // 2
        grid = torch.cat((grid[:centre], grid[centre + 1:]))
    return grid.repeat(group, 1).view(1, 1, 1, -1, 2)


def grid_sample_dcnv3(input: Tensor, offset: Tensor, mask: Tensor, kernel_h: int, kernel_w: int, stride_h: int,
                      stride_w: int, pad_h: int, pad_w: int, dilation_h: int, dilation_w: int, group: int,
                      group_channels: int, offset_scale: float, remove_center: bool = False) -> Tensor:
    """The official CPU DCNv3 core: same arguments and layouts as ``ops.dcnv3`` (mask post-softmax).

    Returns (N, H_out, W_out, G·Cg), differentiable through ordinary autograd.
    """
    padded = F.pad(input, (0, 0, pad_w, pad_w, pad_h, pad_h))
    n, h_pad, w_pad, channels = padded.shape
    half_h, half_w = dilation_h * (kernel_h - 1) // 2, dilation_w * (kernel_w - 1) // 2
    out_h = (h_pad - (dilation_h * (kernel_h - 1) + 1)) // stride_h + 1
    out_w = (w_pad - (dilation_w * (kernel_w - 1) + 1)) // stride_w + 1
    centres = _window_centres(out_h, out_w, h_pad, w_pad, half_h, half_w, stride_h, stride_w, padded)
    grid = _window_grid(kernel_h, kernel_w, dilation_h, dilation_w, h_pad, w_pad, group, remove_center, padded)
    points = grid.shape[3] // group
    size = torch.tensor([w_pad, h_pad], dtype=padded.dtype, device=padded.device)
    locations = (centres + grid * offset_scale).flatten(3, 4) + offset * offset_scale / size.repeat(group * points)
    grids = (2 * locations - 1).view(n, out_h * out_w, group, points, 2).transpose(1, 2).flatten(0, 1)
    value = padded.view(n, h_pad * w_pad, channels).transpose(1, 2).reshape(n * group, group_channels, h_pad, w_pad)
    sampled = F.grid_sample(value, grids, mode="bilinear", padding_mode="zeros", align_corners=False)
    weights = mask.view(n, out_h * out_w, group, points).transpose(1, 2).reshape(n * group, 1, out_h * out_w, points)
    out = (sampled * weights).sum(-1).view(n, channels, out_h * out_w)
    return out.transpose(1, 2).reshape(n, out_h, out_w, channels).contiguous()


def grid_sample_dcnv3_call(input: Tensor, offset: Tensor, mask: Tensor, kernel_h: int, kernel_w: int,
                           stride_h: int, stride_w: int, pad_h: int, pad_w: int, dilation_h: int, dilation_w: int,
                           group: int, group_channels: int, offset_scale: float, remove_center: bool = False,
                           backend: str | None = None, *, mask_softmax: bool = False) -> Tensor:
    """``ops.dcnv3``'s signature on the official core: with ``mask_softmax`` the mask holds logits and
    is softmaxed over each group's points first, as the official module does before its core call."""
    if mask_softmax:
        shape = mask.shape
        mask = mask.view(*shape[:-1], group, -1).softmax(-1).view(shape)
    return grid_sample_dcnv3(input, offset, mask, kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w, dilation_h,
                             dilation_w, group, group_channels, offset_scale, remove_center)


@contextlib.contextmanager
def official_core() -> Iterator[None]:
    """Within this block every ``ops.DCNv3`` layer calls the official core instead of our op."""
    import ops.modules

    original = ops.modules.dcnv3
    ops.modules.dcnv3 = grid_sample_dcnv3_call
    try:
        yield
    finally:
        ops.modules.dcnv3 = original
