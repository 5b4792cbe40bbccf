"""Small reusable layers of the InternImage family.

Module and parameter names follow the official InternImage code so that released checkpoints load
with ``strict=True``. In particular norms are ``nn.Sequential`` wrappers (with parameter-free
permutes) because the official state dicts carry their Sequential indices (``norm1.0.weight``,
``patch_embed.norm1.1.weight``, ...).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ops.modules import ToChannelsFirst, ToChannelsLast

__all__ = [
    "AttentionPoolingBlock",
    "CrossAttention",
    "DownsampleLayer",
    "DropPath",
    "MLPLayer",
    "StemLayer",
    "build_act_layer",
    "build_norm_layer",
]

LN_EPS = 1e-6


def build_norm_layer(dim: int, norm_layer: str = "LN", in_format: str = "channels_last",
                     out_format: str = "channels_last", eps: float = LN_EPS) -> nn.Sequential:
    """A norm wrapped with the permutes that take ``in_format`` to ``out_format``.

    LN normalises the last dim, so a channels-first input is permuted first (index of the LN = 1);
    BN needs channels-first, so a channels-last input is permuted first (index of the BN = 1).
    """
    for name, value in (("in_format", in_format), ("out_format", out_format)):
        if value not in ("channels_first", "channels_last"):
            raise ValueError(f"{name} must be 'channels_first' or 'channels_last', got {value!r}")
    layers: list[nn.Module] = []
    if norm_layer == "LN":
        if in_format == "channels_first":
            layers.append(ToChannelsLast())
        layers.append(nn.LayerNorm(dim, eps=eps))
        if out_format == "channels_first":
            layers.append(ToChannelsFirst())
    elif norm_layer == "BN":
        if in_format == "channels_last":
            layers.append(ToChannelsFirst())
        layers.append(nn.BatchNorm2d(dim))
        if out_format == "channels_last":
            layers.append(ToChannelsLast())
    else:
        raise ValueError(f"norm_layer must be 'LN' or 'BN', got {norm_layer!r}")
    return nn.Sequential(*layers)


def build_act_layer(name: str) -> nn.Module:
    """``GELU``, ``ReLU`` (in place) or ``SiLU`` (in place)."""
    if name == "GELU":
        return nn.GELU()
    if name == "ReLU":
        return nn.ReLU(inplace=True)
    if name == "SiLU":
        return nn.SiLU(inplace=True)
    raise ValueError(f"act_layer must be 'GELU', 'ReLU' or 'SiLU', got {name!r}")


class DropPath(nn.Module):
    """Stochastic depth per sample: drops the residual branch with probability ``drop_prob`` and
    rescales the kept samples by 1/keep_prob (timm semantics)."""

    def __init__(self, drop_prob: float = 0.0) -> None:
        super().__init__()
        self.drop_prob = float(drop_prob)

    def forward(self, x: Tensor) -> Tensor:
        if self.drop_prob == 0.0 or not self.training:
            return x
        keep_prob = 1.0 - self.drop_prob
        shape = (x.shape[0],) + (1,) * (x.ndim - 1)
        keep = x.new_empty(shape).bernoulli_(keep_prob)
        if keep_prob > 0.0:
            keep.div_(keep_prob)
        return x * keep

    def extra_repr(self) -> str:
        return f"drop_prob={self.drop_prob:.3f}"


class StemLayer(nn.Module):
    """conv3x3/2 -> norm -> act -> conv3x3/2 -> norm; NCHW in, NHWC out (stride 4)."""

    def __init__(self, in_chans: int = 3, out_chans: int = 96, act_layer: str = "GELU",
                 norm_layer: str = "LN") -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_chans, out_chans // 2, kernel_size=3, stride=2, padding=1)
        self.norm1 = build_norm_layer(out_chans // 2, norm_layer, "channels_first", "channels_first")
        self.act = build_act_layer(act_layer)
        self.conv2 = nn.Conv2d(out_chans // 2, out_chans, kernel_size=3, stride=2, padding=1)
        self.norm2 = build_norm_layer(out_chans, norm_layer, "channels_first", "channels_last")

    def forward(self, x: Tensor) -> Tensor:
        x = self.act(self.norm1(self.conv1(x)))
        return self.norm2(self.conv2(x))


class DownsampleLayer(nn.Module):
    """conv3x3/2 (no bias) C -> 2C, then norm; NHWC in and out."""

    def __init__(self, channels: int, norm_layer: str = "LN") -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, 2 * channels, kernel_size=3, stride=2, padding=1, bias=False)
        self.norm = build_norm_layer(2 * channels, norm_layer, "channels_first", "channels_last")

    def forward(self, x: Tensor) -> Tensor:
        return self.norm(self.conv(x.permute(0, 3, 1, 2)))


class MLPLayer(nn.Module):
    """fc1 -> act -> dropout -> fc2 -> dropout, on the last dim."""

    def __init__(self, in_features: int, hidden_features: int | None = None, out_features: int | None = None,
                 act_layer: str = "GELU", drop: float = 0.0) -> None:
        super().__init__()
        out_features = out_features or in_features
        hidden_features = hidden_features or in_features
        self.fc1 = nn.Linear(in_features, hidden_features)
        self.act = build_act_layer(act_layer)
        self.fc2 = nn.Linear(hidden_features, out_features)
        self.drop = nn.Dropout(drop)

    def forward(self, x: Tensor) -> Tensor:
        x = self.drop(self.act(self.fc1(x)))
        return self.drop(self.fc2(x))


class CrossAttention(nn.Module):
    """Multi-head attention with separate bias-free q/k/v projections and optional learnable
    ``q_bias``/``k_bias``/``v_bias`` (the official CLIP-projector layout)."""

    def __init__(self, dim: int, num_heads: int = 8, qkv_bias: bool = False, qk_scale: float | None = None,
                 attn_drop: float = 0.0, proj_drop: float = 0.0, attn_head_dim: int | None = None,
                 out_dim: int | None = None) -> None:
        super().__init__()
        out_dim = out_dim or dim
        head_dim = attn_head_dim or dim // num_heads
        all_head_dim = head_dim * num_heads
        self.num_heads = num_heads
        self.scale = qk_scale or head_dim ** -0.5
        self.q = nn.Linear(dim, all_head_dim, bias=False)
        self.k = nn.Linear(dim, all_head_dim, bias=False)
        self.v = nn.Linear(dim, all_head_dim, bias=False)
        if qkv_bias:
            self.q_bias = nn.Parameter(torch.zeros(all_head_dim))
            self.k_bias = nn.Parameter(torch.zeros(all_head_dim))
            self.v_bias = nn.Parameter(torch.zeros(all_head_dim))
        else:
            self.q_bias = self.k_bias = self.v_bias = None
        self.attn_drop = nn.Dropout(attn_drop)
        self.proj = nn.Linear(all_head_dim, out_dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def _heads(self, x: Tensor, layer: nn.Linear, bias: Tensor | None) -> Tensor:
        n, length, _ = x.shape
        return F.linear(x, layer.weight, bias).reshape(n, length, self.num_heads, -1).transpose(1, 2)

    def forward(self, x: Tensor, k: Tensor, v: Tensor) -> Tensor:
        n, length, _ = x.shape
        q = self._heads(x, self.q, self.q_bias) * self.scale
        key = self._heads(k, self.k, self.k_bias)
        value = self._heads(v, self.v, self.v_bias)
        attn = self.attn_drop((q @ key.transpose(-2, -1)).softmax(dim=-1))
        x = (attn @ value).transpose(1, 2).reshape(n, length, -1)
        return self.proj_drop(self.proj(x))


class AttentiveBlock(nn.Module):
    """LayerNorm on query, key and value, then cross attention (called ``cross_dcn`` upstream)."""

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = False, qk_scale: float | None = None,
                 drop: float = 0.0, attn_drop: float = 0.0, norm_layer: str = "LN",
                 attn_head_dim: int | None = None, out_dim: int | None = None) -> None:
        super().__init__()
        self.norm1_q = build_norm_layer(dim, norm_layer)
        self.norm1_k = build_norm_layer(dim, norm_layer)
        self.norm1_v = build_norm_layer(dim, norm_layer)
        self.cross_dcn = CrossAttention(dim, num_heads=num_heads, qkv_bias=qkv_bias, qk_scale=qk_scale,
                                        attn_drop=attn_drop, proj_drop=drop, attn_head_dim=attn_head_dim,
                                        out_dim=out_dim)

    def forward(self, x_q: Tensor, x_kv: Tensor, pos_q: Tensor | float = 0.0,
                pos_k: Tensor | float = 0.0) -> Tensor:
        x_q = self.norm1_q(x_q + pos_q)
        x_k = self.norm1_k(x_kv + pos_k)
        x_v = self.norm1_v(x_kv)
        return self.cross_dcn(x_q, k=x_k, v=x_v)


class AttentionPoolingBlock(AttentiveBlock):
    """Pools tokens (N, L, C) to (N, out_dim): the query is the mean token, keys/values all tokens."""

    def forward(self, x: Tensor) -> Tensor:  # type: ignore[override]
        x_q = x.mean(1, keepdim=True)
        return super().forward(x_q, x).squeeze(1)
