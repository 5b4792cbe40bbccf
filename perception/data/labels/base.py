"""The label-type registry and the interface every label type implements.

A *label type* is one kind of ground truth (3D boxes, occupancy, lanes, 2D boxes, ...). It is a class
registered in :data:`LABEL_TYPES` that knows

* ``keys``: the ``results`` / sample keys it produces (unique across label types);
* :meth:`LabelType.load`: how to load them for one sample from its info (``load(results, info,
  data_root)``);
* :meth:`LabelType.bev_transform`: how they follow a BEV augmentation ``mat`` (4x4, ego -> augmented
  ego: rotation about z, scale, mirrors);
* :meth:`LabelType.image_transform`: how their image-space parts follow the per-camera image
  transforms (resize, crop, flip), if they have any;
* :meth:`LabelType.pack`: how they become tensors of the sample dict;
* :meth:`LabelType.collate`: how a batch of them is formed (``stack_keys`` are stacked, every other
  key becomes a per-sample list).

The dataset loads the label types named in its ``labels`` argument; ``apply_bev_transform``,
``ResizeCropFlipImage``, ``PackBEVInputs`` and ``bev_collate`` loop over the label types present in
the sample (:func:`active_label_types`), so a new task adds a file with a registered class instead of
editing those functions.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch

from perception.engine.registry import LABEL_TYPES  # the project's one registry tree


class LabelLoadError(RuntimeError):
    """The labels of a sample are missing or unreadable (the message names the file and the sample token).
    Each label type raises its own subclass (``OccupancyLoadError``, ``LaneLoadError``, ...)."""


@dataclass(frozen=True)
class CameraImageTransform:
    """The image transform of one camera: resize by ``scale`` (exact per-axis factors (sx, sy) of the
    integer resize), crop at ``crop`` (x0, y0) in pixels of the resized image, optionally mirror inside the
    output of ``out_size`` (w, h). ``matrix`` is the same transform as the 4x4 folded into ``ego2img``.

    A crop may be fractional: an upscale resamples only the input from pixel ``origin`` (column, row) on,
    which puts the crop at ``scale * origin`` plus whole output pixels (docs/data.md, "Loader speed")."""

    scale: tuple[float, float]
    crop: tuple[float, float]
    flip: bool
    out_size: tuple[int, int]
    matrix: np.ndarray = field(compare=False, repr=False)
    origin: tuple[int, int] = (0, 0)

    def points(self, uv: np.ndarray) -> np.ndarray:
        """Pixel points (..., 2) of the input image -> pixels of the output image (not clipped)."""
        out = np.asarray(uv, dtype=np.float64) * np.array(self.scale) - np.array(self.crop)
        if self.flip:
            out[..., 0] = self.out_size[0] - out[..., 0]
        return out

    def boxes(self, boxes: np.ndarray) -> np.ndarray:
        """Pixel boxes (K, 4) ``x1, y1, x2, y2`` -> boxes of the output image, clipped to it."""
        corners = self.points(np.asarray(boxes, dtype=np.float64).reshape(-1, 2, 2))
        out = np.concatenate([corners.min(1), corners.max(1)], 1)
        return np.clip(out, 0, [*self.out_size, *self.out_size])


def to_tensor(value: Any) -> Any:
    """numpy -> torch (float64 becomes float32, other dtypes are kept); lists convert element-wise."""
    if isinstance(value, (list, tuple)):
        return [to_tensor(v) for v in value]
    if isinstance(value, np.ndarray):
        return torch.as_tensor(value, dtype=torch.float32 if value.dtype == np.float64 else None)
    return value


class LabelType:
    """Base class of the registered label types. Subclasses set ``keys`` (and ``stack_keys``) and
    implement :meth:`load`; the other hooks default to "nothing to do"."""

    keys: ClassVar[tuple[str, ...]] = ()
    stack_keys: ClassVar[tuple[str, ...]] = ()

    def setup(self, dataset) -> None:
        """Called once by the dataset that loads this label type (e.g. to read its class list)."""

    def present(self, results: Mapping) -> bool:
        return any(k in results for k in self.keys)

    def load(self, results: dict, info: dict, data_root: str) -> None:
        """Add this label type's keys to ``results`` from the sample's ``info`` (paths relative to
        ``data_root``); raise a :class:`LabelLoadError` subclass naming the file and sample."""
        raise NotImplementedError

    def bev_transform(self, results: dict, mat: np.ndarray) -> None:
        """Follow the BEV augmentation ``mat`` (4x4, ego -> augmented ego)."""

    def image_transform(self, results: dict, transforms: Mapping[str, CameraImageTransform]) -> None:
        """Follow the image transforms of the current frame, per camera name (rig order)."""

    def pack(self, results: dict, sample: dict) -> None:
        """Put this label type's keys into the sample dict as tensors."""
        for key in self.keys:
            if key in results:
                sample[key] = to_tensor(results[key])

    @classmethod
    def collate(cls, key: str, values: list) -> Any:
        return torch.stack(values) if key in cls.stack_keys else list(values)


_DEFAULTS: dict[type, LabelType] = {}


def registered_label_types() -> list[type[LabelType]]:
    """Every registered label-type class, once each, in registration order."""
    return list(dict.fromkeys(LABEL_TYPES.module_dict.values()))


def default_label_type(cls: type[LabelType]) -> LabelType:
    if cls not in _DEFAULTS:
        _DEFAULTS[cls] = cls()
    return _DEFAULTS[cls]


def build_label_type(cfg: str | dict | LabelType) -> LabelType:
    """A label type from its registered name, a config dict ``dict(type=name, **kwargs)`` or an instance."""
    if isinstance(cfg, LabelType):
        return cfg
    cfg = dict(type=cfg) if isinstance(cfg, str) else dict(cfg)
    name = cfg.pop("type")
    cls = LABEL_TYPES.get(name)
    if cls is None:
        raise KeyError(f"unknown label type {name!r}; registered: {sorted(LABEL_TYPES.module_dict)}")
    return cls(**cfg)


def build_label_types(labels: Iterable[str | dict | LabelType]) -> dict[str, LabelType]:
    out = {}
    for cfg in labels:
        label = build_label_type(cfg)
        name = cfg if isinstance(cfg, str) else (cfg["type"] if isinstance(cfg, Mapping) else type(label).__name__)
        out[name] = label
    return out


def active_label_types(results: Mapping) -> list[LabelType]:
    """The label types present in ``results``: those the dataset built (``results['label_types']``) and,
    for keys added otherwise (e.g. by ``LoadOccupancy``), each registered type's default instance."""
    chosen = list(results.get("label_types", {}).values())
    seen = {type(t) for t in chosen}
    for cls in registered_label_types():
        if cls not in seen and any(k in results for k in cls.keys):
            chosen.append(default_label_type(cls))
    return [t for t in chosen if t.present(results)]


def label_type_of_key(key: str) -> type[LabelType] | None:
    """The registered label type producing sample key ``key`` (None if no label type does)."""
    for cls in registered_label_types():
        if key in cls.keys:
            return cls
    return None
