"""Random inputs for the ops tests, in the official layouts, and the shape families under test."""

from __future__ import annotations

import torch


def dcnv3_case(n=2, h=8, w=8, group=4, group_channels=16, kernel=(3, 3), stride=1, pad=1, dilation=1,
               remove_center=False, offset_scale=1.0, offset_range=3.0, dtype=torch.float64, seed=0,
               device="cpu"):
    """(input, offset, mask, args) for ops.dcnv3, with offsets in [-offset_range, offset_range]."""
    g = torch.Generator().manual_seed(seed)
    kh, kw = kernel
    out_h = (h + 2 * pad - (dilation * (kh - 1) + 1)) // stride + 1
    out_w = (w + 2 * pad - (dilation * (kw - 1) + 1)) // stride + 1
    points = kh * kw - int(remove_center)
    input = torch.randn(n, h, w, group * group_channels, generator=g, dtype=dtype)
    offset = (torch.rand(n, out_h, out_w, group * points * 2, generator=g, dtype=dtype) * 2 - 1) * offset_range
    mask = torch.rand(n, out_h, out_w, group, points, generator=g, dtype=dtype) + 1e-5
    mask = (mask / mask.sum(-1, keepdim=True)).reshape(n, out_h, out_w, group * points)
    args = (kh, kw, stride, stride, pad, pad, dilation, dilation, group, group_channels, offset_scale, remove_center)
    return input.to(device), offset.to(device), mask.to(device), args


def msda_case(n=2, shapes=((6, 8), (3, 4)), heads=2, dim=8, queries=5, points=3, dtype=torch.float64, seed=0,
              device="cpu"):
    """(value, spatial_shapes, level_start_index, locations, weights); some locations fall outside [0, 1]."""
    g = torch.Generator().manual_seed(seed)
    spatial_shapes = torch.tensor(shapes, dtype=torch.long)
    areas = spatial_shapes.prod(1)
    level_start_index = torch.cat([areas.new_zeros(1), areas.cumsum(0)[:-1]])
    value = torch.randn(n, int(areas.sum()), heads, dim, generator=g, dtype=dtype)
    levels = len(shapes)
    locations = torch.rand(n, queries, heads, levels, points, 2, generator=g, dtype=dtype) * 1.2 - 0.1
    weights = torch.rand(n, queries, heads, levels * points, generator=g, dtype=dtype)
    weights = (weights / weights.sum(-1, keepdim=True)).view(n, queries, heads, levels, points)
    return tuple(t.to(device) for t in (value, spatial_shapes, level_start_index, locations, weights))


DCNV3_CASES = {
    "base": dict(),
    "odd_sizes_gc24": dict(n=1, h=7, w=9, group=2, group_channels=24),
    "stride2_gc32": dict(n=2, h=9, w=7, group=3, group_channels=32, stride=2),
    "dilation2": dict(n=1, h=10, w=11, group=2, group_channels=16, dilation=2, pad=2),
    "pad0": dict(n=2, h=6, w=6, group=2, group_channels=16, pad=0),
    "remove_center": dict(n=1, h=8, w=8, group=2, group_channels=16, remove_center=True),
    "offset_scale2": dict(offset_scale=2.0),
    "kernel5x3": dict(n=1, h=6, w=9, group=1, group_channels=8, kernel=(5, 3), pad=2),
    "big_offsets": dict(n=1, h=5, w=5, group=2, group_channels=4, offset_range=12.0),
    # 12 channels run as three 4-channel chunks whose partial gradients are summed per sample.
    "gc12_three_chunks": dict(n=1, h=5, w=6, group=2, group_channels=12),
}

MSDA_CASES = {
    "two_levels": dict(),
    "four_levels_4pts": dict(n=1, shapes=((5, 7), (3, 3), (2, 2), (1, 1)), heads=4, dim=16, queries=7, points=4),
    "one_level_8pts": dict(n=3, shapes=((4, 9),), heads=1, dim=3, queries=2, points=8),
    "dim12_three_chunks": dict(n=1, shapes=((4, 5), (2, 3)), heads=2, dim=12, queries=4, points=2),
    "dim32": dict(n=1, shapes=((6, 5), (3, 3), (2, 1)), heads=2, dim=32, queries=6, points=4),
}


