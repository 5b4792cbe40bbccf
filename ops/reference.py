"""Pure-PyTorch reference implementations of DCNv3 and multi-scale deformable attention.

These are the truth the compiled kernels are tested against and the last-resort fallback when no
kernel can be built. They are differentiable through ordinary autograd.

Memory: the official DCNv3 reference materialises a (N·G, Cg, H·W, P) tensor (P = 9 points), i.e.
nine copies of the feature map. Here we loop over sampling points and gather the four bilinear
corners with one integer index per (pixel, group), so peak extra memory is a few feature-map-sized
buffers whatever the number of points or levels.

Sampling convention shared by both ops: pixel centres sit at integer coordinates; a sample at
(h, w) reads the four neighbours floor(h)/floor(h)+1 × floor(w)/floor(w)+1 with bilinear weights;
neighbours outside the map contribute zero; a sample with h <= -1, h >= H, w <= -1, w >= W, or a
non-finite coordinate contributes nothing (zero padding).
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["bilinear_gather", "dcnv3_reference", "ms_deform_attn_reference", "dcnv3_output_size"]


def dcnv3_output_size(size: int, kernel: int, stride: int, pad: int, dilation: int) -> int:
    """Output length of a DCNv3 window sweep along one axis (same formula as a convolution)."""
    return (size + 2 * pad - (dilation * (kernel - 1) + 1)) // stride + 1


def bilinear_gather(flat_value: Tensor, batch_group_base: Tensor, height: int, width: int,
                    groups: int, loc_h: Tensor, loc_w: Tensor) -> Tensor:
    """Bilinearly sample rows of ``flat_value`` at fractional pixel positions.

    Args:
        flat_value: (B·height·width·groups, C) rows ordered (b, y, x, g), i.e. a flattened
            channels-last map whose channels are split into ``groups`` blocks of C.
        batch_group_base: integer tensor broadcastable to ``loc_h``: the row of pixel (0, 0) for
            each sample's (b, g), i.e. ``b·height·width·groups + g``.
        loc_h, loc_w: sample positions in pixel coordinates, same shape S.
    Returns:
        (*S, C) sampled values; out-of-range corners and non-finite positions contribute zero.
    """
    inside = (loc_h > -1) & (loc_h < height) & (loc_w > -1) & (loc_w < width)
    # Replace positions we will not read so that floor()/long() never see NaN or inf.
    loc_h = torch.where(inside, loc_h, torch.zeros_like(loc_h))
    loc_w = torch.where(inside, loc_w, torch.zeros_like(loc_w))
    h0 = torch.floor(loc_h)
    w0 = torch.floor(loc_w)
    lh = loc_h - h0
    lw = loc_w - w0
    h0 = h0.long()
    w0 = w0.long()
    out = None
    for dy, wy in ((0, 1 - lh), (1, lh)):
        for dx, wx in ((0, 1 - lw), (1, lw)):
            y = h0 + dy
            x = w0 + dx
            valid = inside & (y >= 0) & (y < height) & (x >= 0) & (x < width)
            row = batch_group_base + (y.clamp(0, height - 1) * width + x.clamp(0, width - 1)) * groups
            weight = torch.where(valid, wy * wx, torch.zeros_like(wy))
            term = flat_value[row] * weight.unsqueeze(-1).to(flat_value.dtype)
            out = term if out is None else out + term
    return out


def _kernel_points(kernel_h: int, kernel_w: int, dilation_h: int, dilation_w: int,
                   remove_center: bool) -> list[tuple[int, int]]:
    """Regular-grid displacements (dx, dy) of the window in the official point order.

    The width index is the outer loop and the height index the inner loop (p = i·k_h + j); with
    ``remove_center`` the centre point is skipped.
    """
    half_w = dilation_w * (kernel_w - 1) // 2
    half_h = dilation_h * (kernel_h - 1) // 2
    points = []
    for i in range(kernel_w):
        for j in range(kernel_h):
            if remove_center and i == kernel_w // 2 and j == kernel_h // 2:
                continue
            points.append((i * dilation_w - half_w, j * dilation_h - half_h))
    return points


def dcnv3_reference(input: Tensor, offset: Tensor, mask: Tensor, kernel_h: int, kernel_w: int,
                    stride_h: int, stride_w: int, pad_h: int, pad_w: int, dilation_h: int,
                    dilation_w: int, group: int, group_channels: int, offset_scale: float,
                    remove_center: bool = False, mask_softmax: bool = False) -> Tensor:
    """DCNv3 core: input (N, H, W, G·Cg), offset (N, Ho, Wo, G·P·2), mask (N, Ho, Wo, G·P).

    For output pixel (ho, wo), group g and window point (dx, dy):
        loc_w = wo·stride_w + half_w − pad_w + (dx + Δx)·offset_scale
        loc_h = ho·stride_h + half_h − pad_h + (dy + Δy)·offset_scale
    and out = Σ_p mask · bilinear(input, loc_h, loc_w), per group. With ``mask_softmax`` the mask
    holds logits and is first softmaxed over each group's points.
    """
    n, height, width, channels = input.shape
    points = _kernel_points(kernel_h, kernel_w, dilation_h, dilation_w, remove_center)
    out_h = dcnv3_output_size(height, kernel_h, stride_h, pad_h, dilation_h)
    out_w = dcnv3_output_size(width, kernel_w, stride_w, pad_w, dilation_w)
    num_points = len(points)
    offset = offset.reshape(n, out_h, out_w, group, num_points, 2)
    mask = mask.reshape(n, out_h, out_w, group, num_points)
    if mask_softmax:
        mask = mask.softmax(-1)
    flat = input.reshape(n * height * width * group, group_channels)
    device = input.device
    base = (torch.arange(n, device=device).view(n, 1, 1, 1) * (height * width * group)
            + torch.arange(group, device=device).view(1, 1, 1, group))
    half_h = dilation_h * (kernel_h - 1) // 2
    half_w = dilation_w * (kernel_w - 1) // 2
    coord_dtype = torch.promote_types(offset.dtype, torch.float32)
    centre_h = (torch.arange(out_h, device=device, dtype=coord_dtype) * stride_h + half_h - pad_h)
    centre_w = (torch.arange(out_w, device=device, dtype=coord_dtype) * stride_w + half_w - pad_w)
    centre_h = centre_h.view(1, out_h, 1, 1)
    centre_w = centre_w.view(1, 1, out_w, 1)
    out = None
    for p, (dx, dy) in enumerate(points):
        loc_w = centre_w + (dx + offset[..., p, 0].to(coord_dtype)) * offset_scale
        loc_h = centre_h + (dy + offset[..., p, 1].to(coord_dtype)) * offset_scale
        sampled = bilinear_gather(flat, base, height, width, group, loc_h, loc_w)
        term = sampled * mask[..., p].unsqueeze(-1).to(sampled.dtype)
        out = term if out is None else out + term
    if out is None:  # a 1x1 window with remove_center has no points
        out = input.new_zeros(n, out_h, out_w, group, group_channels)
    return out.reshape(n, out_h, out_w, group * group_channels).to(input.dtype)


def ms_deform_attn_reference(value: Tensor, spatial_shapes: Tensor, level_start_index: Tensor,
                             sampling_locations: Tensor, attention_weights: Tensor) -> Tensor:
    """Multi-scale deformable attention.

    value (N, ΣHW, M, D); spatial_shapes (L, 2) as (H, W); level_start_index (L,);
    sampling_locations (N, Q, M, L, P, 2) as normalised (x, y) in [0, 1] with
    ``grid_sample(align_corners=False)`` meaning (pixel = loc·size − 0.5);
    attention_weights (N, Q, M, L, P). Returns (N, Q, M·D).
    """
    n, _, heads, dim = value.shape
    _, queries, _, levels, points, _ = sampling_locations.shape
    shapes = [(int(h), int(w)) for h, w in spatial_shapes.tolist()]
    starts = [int(s) for s in level_start_index.tolist()]
    coord_dtype = torch.promote_types(sampling_locations.dtype, torch.float32)
    heads_index = torch.arange(heads, device=value.device).view(1, 1, heads)
    out = None
    for lvl, (height, width) in enumerate(shapes):
        level_value = value[:, starts[lvl]:starts[lvl] + height * width]
        flat = level_value.reshape(n * height * width * heads, dim)
        base = torch.arange(n, device=value.device).view(n, 1, 1) * (height * width * heads) + heads_index
        for p in range(points):
            loc = sampling_locations[:, :, :, lvl, p].to(coord_dtype)
            loc_w = loc[..., 0] * width - 0.5
            loc_h = loc[..., 1] * height - 0.5
            sampled = bilinear_gather(flat, base, height, width, heads, loc_h, loc_w)
            term = sampled * attention_weights[:, :, :, lvl, p].unsqueeze(-1).to(sampled.dtype)
            out = term if out is None else out + term
    if out is None:
        out = value.new_zeros(n, queries, heads, dim)
    return out.reshape(n, queries, heads * dim).to(value.dtype)
