"""The ``DCNv3`` layer and the ``MultiScaleDeformableAttention`` module.

Parameter names follow the official checkpoints (InternImage ``dcn.*`` keys; mmcv's MSDA keys), so
released weights load unchanged.
"""

from __future__ import annotations

import math
import warnings

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .deform_attn import ms_deform_attn
from .deform_conv import dcnv3

__all__ = ["DCNv3", "MultiScaleDeformableAttention", "ToChannelsFirst", "ToChannelsLast", "init_deformable_attention",
           "sampling_locations"]


class ToChannelsLast(nn.Module):
    """NCHW -> NHWC (a parameter-free module so Sequential indices match the official keys)."""

    def forward(self, x: Tensor) -> Tensor:
        return x.permute(0, 2, 3, 1)


class ToChannelsFirst(nn.Module):
    """NHWC -> NCHW."""

    def forward(self, x: Tensor) -> Tensor:
        return x.permute(0, 3, 1, 2)


def _activation(name: str) -> nn.Module:
    layers = {"GELU": nn.GELU, "ReLU": lambda: nn.ReLU(inplace=True), "SiLU": lambda: nn.SiLU(inplace=True)}
    if name not in layers:
        raise ValueError(f"act_layer must be one of {sorted(layers)}, got {name!r}")
    return layers[name]()


def _channels_first_norm_to_last(norm_layer: str, channels: int) -> nn.Sequential:
    """Norm over an NCHW map, output NHWC. LN -> [to_last, LN] (key .1); BN -> [BN, to_last] (key .0)."""
    if norm_layer == "LN":
        return nn.Sequential(ToChannelsLast(), nn.LayerNorm(channels, eps=1e-6))
    if norm_layer == "BN":
        return nn.Sequential(nn.BatchNorm2d(channels), ToChannelsLast())
    raise ValueError(f"norm_layer must be 'LN' or 'BN', got {norm_layer!r}")


class DCNv3(nn.Module):
    """Deformable convolution v3 layer on channels-last input (N, H, W, C).

    input_proj gives the sampled "value"; a depthwise conv + norm + activation of the input gives
    the features from which the offsets and the per-group softmax point weights are predicted;
    the op aggregates; an optional centre-feature scale blends in the projected input; output_proj.
    """

    def __init__(self, channels: int = 64, kernel_size: int = 3, dw_kernel_size: int | None = None,
                 stride: int = 1, pad: int = 1, dilation: int = 1, group: int = 4, offset_scale: float = 1.0,
                 act_layer: str = "GELU", norm_layer: str = "LN", center_feature_scale: bool = False,
                 remove_center: bool = False, backend: str | None = None) -> None:
        super().__init__()
        if channels % group != 0:
            raise ValueError(f"DCNv3: channels ({channels}) must be divisible by group ({group})")
        if remove_center and kernel_size % 2 == 0:
            raise ValueError(f"DCNv3: remove_center needs an odd kernel_size, got {kernel_size}")
        group_channels = channels // group
        if group_channels & (group_channels - 1):
            warnings.warn(f"DCNv3: channels per group ({group_channels}) is not a power of 2; "
                          "the kernels are fastest with powers of 2", stacklevel=2)
        dw_kernel_size = dw_kernel_size if dw_kernel_size is not None else kernel_size
        self.channels, self.kernel_size, self.dw_kernel_size = channels, kernel_size, dw_kernel_size
        self.stride, self.pad, self.dilation = stride, pad, dilation
        self.group, self.group_channels, self.offset_scale = group, group_channels, offset_scale
        self.center_feature_scale, self.remove_center = center_feature_scale, remove_center
        self.backend = backend
        self.points = kernel_size * kernel_size - int(remove_center)

        self.dw_conv = nn.Sequential(
            nn.Conv2d(channels, channels, dw_kernel_size, stride=1, padding=(dw_kernel_size - 1) // 2,
                      groups=channels),
            _channels_first_norm_to_last(norm_layer, channels),
            _activation(act_layer),
        )
        self.offset = nn.Linear(channels, group * self.points * 2)
        self.mask = nn.Linear(channels, group * self.points)
        self.input_proj = nn.Linear(channels, channels)
        self.output_proj = nn.Linear(channels, channels)
        if center_feature_scale:
            self.center_feature_scale_proj_weight = nn.Parameter(torch.zeros(group, channels))
            self.center_feature_scale_proj_bias = nn.Parameter(torch.zeros(group))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Official initialisation: zero offsets and mask logits (a uniform average over the window)."""
        for layer in (self.offset, self.mask):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)
        for layer in (self.input_proj, self.output_proj):
            nn.init.xavier_uniform_(layer.weight)
            nn.init.zeros_(layer.bias)

    def forward(self, input: Tensor) -> Tensor:
        n, height, width, _ = input.shape
        x = self.input_proj(input)
        x_proj = x
        x1 = self.dw_conv(input.permute(0, 3, 1, 2))
        offset = self.offset(x1)
        # Logits: the op applies the softmax over each group's points itself (mask_softmax).
        mask_logits = self.mask(x1).type_as(x)
        x = dcnv3(x, offset, mask_logits, self.kernel_size, self.kernel_size, self.stride, self.stride, self.pad,
                  self.pad, self.dilation, self.dilation, self.group, self.group_channels, self.offset_scale,
                  self.remove_center, backend=self.backend, mask_softmax=True)
        if self.center_feature_scale:
            scale = torch.sigmoid(F.linear(x1, self.center_feature_scale_proj_weight,
                                           self.center_feature_scale_proj_bias))
            scale = scale.repeat_interleave(self.group_channels, dim=-1)
            x = x * (1 - scale) + x_proj * scale
        return self.output_proj(x)


def init_deformable_attention(sampling_offsets: nn.Linear, attention_weights: nn.Linear, value_proj: nn.Linear,
                              output_proj: nn.Linear, num_heads: int, num_levels: int, num_points: int) -> None:
    """Standard Deformable-DETR initialisation: offsets start on rays at evenly spaced angles per
    head, point i at distance i+1 (max-norm 1 direction); uniform attention; xavier projections."""
    nn.init.zeros_(sampling_offsets.weight)
    thetas = torch.arange(num_heads, dtype=torch.float32) * (2.0 * math.pi / num_heads)
    grid = torch.stack([thetas.cos(), thetas.sin()], -1)
    grid = grid / grid.abs().max(-1, keepdim=True)[0]
    grid = grid.view(num_heads, 1, 1, 2).repeat(1, num_levels, num_points, 1)
    grid = grid * torch.arange(1, num_points + 1, dtype=torch.float32).view(1, 1, -1, 1)
    with torch.no_grad():
        sampling_offsets.bias.copy_(grid.flatten())
    nn.init.zeros_(attention_weights.weight)
    nn.init.zeros_(attention_weights.bias)
    for layer in (value_proj, output_proj):
        nn.init.xavier_uniform_(layer.weight)
        nn.init.zeros_(layer.bias)


class MultiScaleDeformableAttention(nn.Module):
    """Multi-scale deformable attention (Deformable-DETR), with mmcv-compatible parameter names.

    ``forward`` adds the residual (``identity``, default the query) after dropout, as mmcv does.
    ``reference_points`` are normalised (N, Q, levels, 2) centres, or (N, Q, levels, 4) boxes
    (cx, cy, w, h) whose half-size scales the offsets.
    """

    def __init__(self, embed_dims: int = 256, num_heads: int = 8, num_levels: int = 4, num_points: int = 4,
                 dropout: float = 0.1, batch_first: bool = True, value_proj_ratio: float = 1.0,
                 backend: str | None = None) -> None:
        super().__init__()
        if embed_dims % num_heads != 0:
            raise ValueError(f"embed_dims ({embed_dims}) must be divisible by num_heads ({num_heads})")
        self.embed_dims, self.num_heads = embed_dims, num_heads
        self.num_levels, self.num_points = num_levels, num_points
        self.batch_first, self.backend = batch_first, backend
        value_dims = int(embed_dims * value_proj_ratio)
        if value_dims % num_heads != 0:
            raise ValueError(f"embed_dims*value_proj_ratio ({value_dims}) must be divisible by num_heads")
        self.sampling_offsets = nn.Linear(embed_dims, num_heads * num_levels * num_points * 2)
        self.attention_weights = nn.Linear(embed_dims, num_heads * num_levels * num_points)
        self.value_proj = nn.Linear(embed_dims, value_dims)
        self.output_proj = nn.Linear(value_dims, embed_dims)
        self.dropout = nn.Dropout(dropout)
        self.init_weights()

    def init_weights(self) -> None:
        init_deformable_attention(self.sampling_offsets, self.attention_weights, self.value_proj, self.output_proj,
                                  self.num_heads, self.num_levels, self.num_points)

    def forward(self, query: Tensor, key: Tensor | None = None, value: Tensor | None = None,
                identity: Tensor | None = None, query_pos: Tensor | None = None,
                key_padding_mask: Tensor | None = None, reference_points: Tensor | None = None,
                spatial_shapes: Tensor | None = None, level_start_index: Tensor | None = None) -> Tensor:
        if reference_points is None or spatial_shapes is None or level_start_index is None:
            raise ValueError("MultiScaleDeformableAttention needs reference_points, spatial_shapes and "
                             "level_start_index")
        value = query if value is None else value
        identity = query if identity is None else identity
        if query_pos is not None:
            query = query + query_pos
        if not self.batch_first:
            query, value = query.transpose(0, 1), value.transpose(0, 1)
        n, num_query, _ = query.shape
        value = self.value_proj(value)
        if key_padding_mask is not None:
            value = value.masked_fill(key_padding_mask[..., None], 0.0)
        value = value.reshape(n, value.shape[1], self.num_heads, -1)
        shape = (n, num_query, self.num_heads, self.num_levels, self.num_points)
        offsets = self.sampling_offsets(query).view(*shape, 2)
        weights = self.attention_weights(query).view(n, num_query, self.num_heads, -1)
        weights = weights.softmax(-1).view(*shape)
        locations = self._sampling_locations(reference_points, offsets, spatial_shapes)
        output = ms_deform_attn(value, spatial_shapes, level_start_index, locations, weights,
                                backend=self.backend)
        output = self.output_proj(output)
        if not self.batch_first:
            output = output.transpose(0, 1)
        return self.dropout(output) + identity

    def _sampling_locations(self, reference_points: Tensor, offsets: Tensor, spatial_shapes: Tensor) -> Tensor:
        ref = reference_points[:, :, None, :, None, :]
        if reference_points.shape[-1] == 2:
            return sampling_locations(ref, offsets, spatial_shapes)
        if reference_points.shape[-1] == 4:
            return ref[..., :2] + offsets / self.num_points * ref[..., 2:] * 0.5
        raise ValueError(f"reference_points must end in 2 or 4 values, got shape {tuple(reference_points.shape)}")


def sampling_locations(reference: Tensor, offsets: Tensor, spatial_shapes: Tensor) -> Tensor:
    """Normalised (x, y) sampling locations of :func:`ms_deform_attn` from reference points and pixel offsets.

    offsets (..., L, P, 2) are in pixels of each level (x, y); reference (normalised x, y) broadcasts
    against them; spatial_shapes (L, 2) hold each level's (H, W). An offset of one pixel moves the
    location by 1/W (x) or 1/H (y) of that level."""
    normalizer = torch.stack([spatial_shapes[..., 1], spatial_shapes[..., 0]], -1).to(offsets.dtype)
    return reference + offsets / normalizer[:, None, :]
