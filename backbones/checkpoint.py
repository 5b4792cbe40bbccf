"""Reading official InternImage checkpoints (and our own) into the models of this package.

Accepted inputs:

* ``.pth``/``.pt``/``.bin`` files holding a bare state dict or one wrapped in ``model``,
  ``state_dict``, ``module`` or ``model_ema`` (official classification training checkpoints carry
  both ``model`` and ``model_ema``; ``use_ema=True`` picks the EMA weights);
* mmdet/mmseg checkpoints (``backbone.`` prefix; neck/head keys are dropped), DDP ``module.``
  prefixes, HuggingFace exports (``model.`` prefix, ``layer_scale1/2`` for ``gamma1/2``);
* ``.safetensors`` files (our own format: :func:`save_checkpoint`).

T's released classification checkpoint has no layer-scale gammas; a model built with
``layer_scale`` (downstream configs use 1.0) gets gammas of 1.0 for missing ones, which leaves
its function unchanged (docs/backbones.md). A 21841-class head can be mapped to 1000 classes with a
class-map file (one 22k index per line, e.g. upstream ``meta_data/map22kto1k.txt``), or dropped.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

__all__ = ["HEAD_PREFIXES", "LoadReport", "convert_state_dict", "export_safetensors", "extract_state_dict",
           "load_checkpoint_file", "load_pretrained", "map_head_22k_to_1k", "save_checkpoint"]

WRAPPER_KEYS = ("state_dict", "model", "module", "model_ema")
# Keys of the classification heads (absent from a feature extractor).
HEAD_PREFIXES = ("conv_head.", "head.", "dcnv3_head_x4.", "dcnv3_head_x3.", "clip_projector.", "fc_norm.")
_HF_RENAMES = ((re.compile(r"\.layer_scale1$"), ".gamma1"), (re.compile(r"\.layer_scale2$"), ".gamma2"))
_GAMMA = re.compile(r"\.gamma[12]$")


def load_checkpoint_file(path: str | Path) -> Any:
    """Read a checkpoint file (``.safetensors`` or a torch pickle) onto the CPU."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint file not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path), device="cpu")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # official training checkpoints pickle their yacs config
        warnings.warn(f"{path}: not loadable with weights_only=True (it pickles Python objects, e.g. a "
                      "training config); loading it with full unpickling - only do this for files you trust",
                      stacklevel=2)
        return torch.load(path, map_location="cpu", weights_only=False)


def extract_state_dict(obj: Any, use_ema: bool = False) -> dict[str, Tensor]:
    """The state dict inside a checkpoint container (see the module docstring)."""
    if not isinstance(obj, Mapping):
        raise TypeError(f"a checkpoint must be a dict, got {type(obj).__name__}")
    if use_ema:
        if "model_ema" not in obj:
            raise KeyError(f"use_ema=True but the checkpoint has no 'model_ema' (keys: {sorted(obj)[:10]})")
        obj = obj["model_ema"]
    else:
        for key in WRAPPER_KEYS:
            if key in obj and isinstance(obj[key], Mapping):
                obj = obj[key]
                break
    # nested containers (e.g. {'model_ema': {'state_dict': ...}} or {'module': {...}})
    while isinstance(obj, Mapping) and any(k in obj for k in WRAPPER_KEYS) \
            and not any(isinstance(v, Tensor) for v in obj.values()):
        obj = next(obj[k] for k in WRAPPER_KEYS if k in obj)
    state = {k: v for k, v in obj.items() if isinstance(v, Tensor)}
    if not state:
        raise ValueError("no tensors found in the checkpoint (expected a state dict, possibly wrapped in "
                         f"one of {WRAPPER_KEYS})")
    return state


def convert_state_dict(state: Mapping[str, Tensor], prefix: str | None = None) -> dict[str, Tensor]:
    """Official key names: strip ``module.``/``model.`` (HF) and, for detection/segmentation
    checkpoints, keep only the ``backbone.`` keys without the prefix; rename HF layer scales.

    ``prefix`` forces the prefix to strip (keys without it are dropped).
    """
    state = {k.removeprefix("module."): v for k, v in state.items()}
    keys = list(state)
    if prefix is None:
        if any(k.startswith("backbone.") for k in keys):
            prefix = "backbone."
        elif keys and all(k.startswith("model.") for k in keys):
            prefix = "model."
        else:
            prefix = ""
    out: dict[str, Tensor] = {}
    for key, value in state.items():
        if not key.startswith(prefix):
            continue
        key = key[len(prefix):]
        for pattern, replacement in _HF_RENAMES:
            key = pattern.sub(replacement, key)
        out[key] = value
    return out


def map_head_22k_to_1k(state: dict[str, Tensor], class_map: str | Path) -> dict[str, Tensor]:
    """Keep the rows of ``head.weight/bias`` listed (one 22k class index per line) in ``class_map``."""
    path = Path(class_map)
    if not path.is_file():
        raise FileNotFoundError(f"class-map file not found: {path}")
    indices = [int(line.split()[0]) for line in path.read_text().splitlines() if line.strip()]
    index = torch.tensor(indices, dtype=torch.long)
    out = dict(state)
    for key in ("head.weight", "head.bias"):
        if key not in out:
            raise KeyError(f"cannot map the head: the checkpoint has no {key!r}")
        if index.max() >= out[key].shape[0]:
            raise ValueError(f"{path}: class index {int(index.max())} is outside the head's "
                             f"{out[key].shape[0]} classes")
        out[key] = out[key][index].clone()
    return out


@dataclass
class LoadReport:
    """What did not line up between a checkpoint and a model."""

    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    wrong_shape: list[tuple[str, tuple, tuple]] = field(default_factory=list)
    filled_with_ones: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.missing or self.unexpected or self.wrong_shape)

    def table(self) -> str:
        """A readable table of the problems (and of the tolerated differences)."""
        rows = [("missing (in model, not in checkpoint)", k, "") for k in self.missing]
        rows += [("unexpected (in checkpoint, not in model)", k, "") for k in self.unexpected]
        rows += [("wrong shape", k, f"checkpoint {list(c)} vs model {list(m)}") for k, c, m in self.wrong_shape]
        rows += [("layer scale filled with 1.0", k, "") for k in self.filled_with_ones]
        rows += [("dropped (head)", k, "") for k in self.dropped]
        if not rows:
            return "all keys matched"
        width = max(len(r[0]) for r in rows)
        key_width = max(len(r[1]) for r in rows)
        lines = [f"{'problem'.ljust(width)}  {'key'.ljust(key_width)}  detail", "-" * (width + key_width + 10)]
        lines += [f"{a.ljust(width)}  {b.ljust(key_width)}  {c}".rstrip() for a, b, c in rows]
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.table()


def load_pretrained(model: nn.Module, checkpoint: str | Path | Mapping[str, Tensor], strict: bool = True,
                    head: str = "keep", class_map: str | Path | None = None, use_ema: bool = False,
                    prefix: str | None = None) -> LoadReport:
    """Load an official (or our own) checkpoint into an InternImage model.

    Args:
        checkpoint: a file path or an already-loaded checkpoint/state dict.
        strict: raise (with the mismatch table) unless every key and shape matches.
        head: ``'keep'`` load the head as is; ``'drop'`` ignore the checkpoint's head (a feature
            extractor always drops it); ``'map'`` map a 22k head to 1k with ``class_map``.
        use_ema: take ``model_ema`` from a training checkpoint.
        prefix: force the key prefix to strip (default: detected).
    Returns:
        The :class:`LoadReport`.
    """
    if head not in ("keep", "drop", "map"):
        raise ValueError(f"head must be 'keep', 'drop' or 'map', got {head!r}")
    raw = load_checkpoint_file(checkpoint) if isinstance(checkpoint, str | Path) else checkpoint
    state = convert_state_dict(extract_state_dict(raw, use_ema=use_ema), prefix=prefix)
    if head == "map":
        if class_map is None:
            raise ValueError("head='map' needs class_map (a file with one 22k class index per line)")
        state = map_head_22k_to_1k(state, class_map)
    target = model.state_dict()
    report = LoadReport()
    drop_head = head == "drop" or not any(k.startswith(HEAD_PREFIXES) for k in target)
    if drop_head:
        report.dropped = sorted(k for k in state if k.startswith(HEAD_PREFIXES))
        state = {k: v for k, v in state.items() if not k.startswith(HEAD_PREFIXES)}
    for key in list(target):
        if key not in state and _GAMMA.search(key):
            state[key] = torch.ones_like(target[key], device="cpu")
            report.filled_with_ones.append(key)
    report.missing = sorted(k for k in target
                            if k not in state and not (drop_head and k.startswith(HEAD_PREFIXES)))
    report.unexpected = sorted(k for k in state if k not in target)
    report.wrong_shape = [(k, tuple(state[k].shape), tuple(target[k].shape)) for k in target
                          if k in state and state[k].shape != target[k].shape]
    if strict and not report.ok:
        raise RuntimeError(f"checkpoint does not match the model:\n{report.table()}")
    loadable = {k: v for k, v in state.items() if k in target and v.shape == target[k].shape}
    model.load_state_dict(loadable, strict=False)
    if not report.ok:
        warnings.warn(f"checkpoint loaded partially:\n{report.table()}", stacklevel=2)
    return report


def save_checkpoint(model_or_state: nn.Module | Mapping[str, Tensor], path: str | Path,
                    metadata: Mapping[str, str] | None = None) -> Path:
    """Save weights as safetensors (official key names; shared tensors are copied)."""
    from safetensors.torch import save_file

    state = model_or_state.state_dict() if isinstance(model_or_state, nn.Module) else model_or_state
    state = {k: v.detach().cpu().contiguous().clone() for k, v in state.items()}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(path), metadata=dict(metadata or {}))
    return path


def export_safetensors(source: str | Path, destination: str | Path, use_ema: bool = False) -> Path:
    """Convert any checkpoint this module reads (official .pth, mmengine/mmdet, HF) to a safetensors
    file with the official key names."""
    state = convert_state_dict(extract_state_dict(load_checkpoint_file(source), use_ema=use_ema))
    return save_checkpoint(state, destination, metadata={"source": Path(source).name})


def _main(argv: list[str] | None = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(description="Convert an InternImage checkpoint to safetensors with the "
                                                 "official key names: python -m backbones.checkpoint SRC DST")
    parser.add_argument("source")
    parser.add_argument("destination")
    parser.add_argument("--use-ema", action="store_true", help="take 'model_ema' from a training checkpoint")
    args = parser.parse_args(argv)
    path = export_safetensors(args.source, args.destination, use_ema=args.use_ema)
    print(f"wrote {path}")


if __name__ == "__main__":
    _main()
