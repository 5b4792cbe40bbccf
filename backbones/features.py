"""Capture intermediate outputs of named modules with forward hooks (``tools/extract_features.py``)."""

from __future__ import annotations

import difflib
from collections.abc import Sequence

import torch
from torch import Tensor, nn

__all__ = ["extract_features"]


def _as_tensors(name: str, output) -> dict[str, Tensor]:
    if isinstance(output, Tensor):
        return {name: output.detach()}
    if isinstance(output, list | tuple):
        out = {}
        for i, item in enumerate(output):
            out.update(_as_tensors(f"{name}.{i}", item))
        return out
    return {}


def extract_features(model: nn.Module, inputs: Tensor, names: Sequence[str]) -> dict[str, Tensor]:
    """Run ``model(inputs)`` once (no grad) and return the outputs of the modules called ``names``
    (dotted paths such as ``patch_embed``, ``levels.0.downsample``, ``levels.0.blocks.0.dcn``).
    A module returning a tuple/list contributes ``name.0``, ``name.1``, ..."""
    modules = dict(model.named_modules())
    missing = [n for n in names if n not in modules]
    if missing:
        hints = {n: difflib.get_close_matches(n, list(modules), n=3) for n in missing}
        raise KeyError(f"no module named {missing} in {type(model).__name__}; close matches: {hints}")
    captured: dict[str, Tensor] = {}
    handles = [modules[name].register_forward_hook(
        lambda _module, _inputs, output, name=name: captured.update(_as_tensors(name, output)))
        for name in names]
    try:
        with torch.no_grad():
            model(inputs)
    finally:
        for handle in handles:
            handle.remove()
    return captured
