"""Independent formulations of both ops, used as truth for the reference implementation.

They follow the published algorithm literally (pad, build normalised grids, ``F.grid_sample`` with
``align_corners=False``, weight and sum), which shares no code with ``ops.reference`` (a gather
formulation) or the C++/CUDA kernels. Written for float64 checks on small shapes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def dcnv3_by_grid_sample(input, offset, mask, kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w,
                         dilation_h, dilation_w, group, group_channels, offset_scale, remove_center):
    x = F.pad(input, [0, 0, pad_w, pad_w, pad_h, pad_h])
    n, h_pad, w_pad, _ = x.shape
    out_h = (h_pad - (dilation_h * (kernel_h - 1) + 1)) // stride_h + 1
    out_w = (w_pad - (dilation_w * (kernel_w - 1) + 1)) // stride_w + 1
    half_h = dilation_h * (kernel_h - 1) // 2
    half_w = dilation_w * (kernel_w - 1) // 2
    # Window centres in the padded image, normalised so that grid_sample(align_corners=False) reads
    # pixel centre c at (c + 0.5) / size.
    ys = (half_h + 0.5 + torch.arange(out_h, dtype=x.dtype) * stride_h) / h_pad
    xs = (half_w + 0.5 + torch.arange(out_w, dtype=x.dtype) * stride_w) / w_pad
    ref_y, ref_x = torch.meshgrid(ys, xs, indexing="ij")
    ref = torch.stack([ref_x, ref_y], -1).view(1, out_h, out_w, 1, 2)
    # Kernel grid with "ij" meshgrid over (x, y): x is the outer index, y the inner one.
    gx = (torch.arange(kernel_w, dtype=x.dtype) * dilation_w - half_w) / w_pad
    gy = (torch.arange(kernel_h, dtype=x.dtype) * dilation_h - half_h) / h_pad
    mx, my = torch.meshgrid(gx, gy, indexing="ij")
    grid = torch.stack([mx, my], -1).reshape(-1, 2)
    if remove_center:
        centre = (kernel_w // 2) * kernel_h + kernel_h // 2
        grid = torch.cat([grid[:centre], grid[centre + 1:]])
    points = grid.shape[0]
    grid = grid.repeat(group, 1).view(1, 1, 1, group * points, 2)
    norm = torch.tensor([w_pad, h_pad], dtype=x.dtype)
    loc = ref + grid * offset_scale + offset.view(n, out_h, out_w, group * points, 2) * offset_scale / norm
    value = x.view(n, h_pad * w_pad, group * group_channels).transpose(1, 2)
    value = value.reshape(n * group, group_channels, h_pad, w_pad)
    grids = (2 * loc - 1).view(n, out_h * out_w, group, points, 2).transpose(1, 2).flatten(0, 1)
    sampled = F.grid_sample(value, grids, mode="bilinear", padding_mode="zeros", align_corners=False)
    weights = mask.view(n, out_h * out_w, group, points).transpose(1, 2).reshape(n * group, 1, out_h * out_w, points)
    out = (sampled * weights).sum(-1).view(n, group * group_channels, out_h * out_w)
    return out.transpose(1, 2).reshape(n, out_h, out_w, -1)


def msda_by_grid_sample(value, spatial_shapes, level_start_index, sampling_locations, attention_weights):
    n, _, heads, dim = value.shape
    _, queries, _, levels, points, _ = sampling_locations.shape
    grids = 2 * sampling_locations - 1
    per_level = []
    for lvl, (h, w) in enumerate(spatial_shapes.tolist()):
        start = int(level_start_index[lvl])
        v = value[:, start:start + h * w].flatten(2).transpose(1, 2).reshape(n * heads, dim, h, w)
        g = grids[:, :, :, lvl].transpose(1, 2).flatten(0, 1)
        per_level.append(F.grid_sample(v, g, mode="bilinear", padding_mode="zeros", align_corners=False))
    sampled = torch.stack(per_level, dim=-2).flatten(-2)
    weights = attention_weights.transpose(1, 2).reshape(n * heads, 1, queries, levels * points)
    out = (sampled * weights).sum(-1).view(n, heads * dim, queries)
    return out.transpose(1, 2).contiguous()
