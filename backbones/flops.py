"""A small multiply-accumulate (MAC) counter with forward hooks.

Convention of the InternImage repository (docs/backbones.md), which reports MACs as "FLOPs": every
Conv2d and Linear counts output elements x (input channels / groups) x kernel area (biases, norms
and activations are not counted), and every DCNv3 layer adds 5·H·W·P·C for its sampling core
(P = 9 points, or 8 with ``remove_center``). Run it on the meta device to count without memory.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import torch
from torch import nn

from ops import DCNv3

__all__ = ["MacCount", "count_macs"]


@dataclass
class MacCount:
    """Total MACs and a breakdown by module type."""

    total: int = 0
    by_type: dict[str, int] = field(default_factory=lambda: defaultdict(int))

    def add(self, kind: str, macs: int) -> None:
        self.total += int(macs)
        self.by_type[kind] += int(macs)

    @property
    def gmacs(self) -> float:
        return self.total / 1e9


def _conv_macs(module: nn.Conv2d, output: torch.Tensor) -> int:
    kh, kw = module.kernel_size
    return output.numel() * (module.in_channels // module.groups) * kh * kw


def count_macs(model: nn.Module, input_shape: tuple[int, ...] = (1, 3, 224, 224),
               device: str | torch.device = "meta") -> MacCount:
    """MACs of one forward pass of ``model`` (already on ``device``) on a zero input of ``input_shape``."""
    count = MacCount()

    def conv_hook(module, inputs, output):
        count.add("Conv2d", _conv_macs(module, output))

    def linear_hook(module, inputs, output):
        count.add("Linear", output.numel() * module.in_features)

    def dcn_hook(module, inputs, output):
        n, height, width, channels = output.shape
        count.add("DCNv3 core", 5 * n * height * width * module.points * channels)

    handles = []
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            handles.append(module.register_forward_hook(conv_hook))
        elif isinstance(module, nn.Linear):
            handles.append(module.register_forward_hook(linear_hook))
        elif isinstance(module, DCNv3):
            handles.append(module.register_forward_hook(dcn_hook))
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros(input_shape, device=device))
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    count.by_type = dict(count.by_type)
    return count
