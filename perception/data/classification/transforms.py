"""Image-classification transforms on Pillow images (no torchvision).

Each transform maps a ``results`` dict (``img``: PIL image, ``gt_label``: int, ...) to a new one.
Training follows the official InternImage recipe (timm ``create_transform``): random-resized crop
(bicubic), horizontal flip, RandAugment ``rand-m9-mstd0.5-inc1``, to tensor + ImageNet
normalisation, random erasing (pixel mode). Evaluation: resize the shorter side to
``crop_ratio × size`` (bicubic), centre crop, normalise. Batch-level mixup/cutmix lives in
:mod:`perception.data.classification.mixup`.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageEnhance, ImageOps

from perception.engine.registry import TRANSFORMS

__all__ = ["CenterCrop", "Compose", "LoadImage", "PackClsInputs", "RandAugment", "RandomErasing",
           "RandomFlip", "RandomResizedCrop", "ResizeShorter", "IMAGENET_MEAN", "IMAGENET_STD"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_INTERPOLATION = {"bicubic": Image.BICUBIC, "bilinear": Image.BILINEAR, "nearest": Image.NEAREST}


def _interp(name: str) -> int:
    if name not in _INTERPOLATION:
        raise ValueError(f"interpolation must be one of {sorted(_INTERPOLATION)}, got {name!r}")
    return _INTERPOLATION[name]


class Compose:
    """Apply transforms (objects or registry configs) in order; a transform returning None drops the sample."""

    def __init__(self, transforms: Sequence[dict | Callable]) -> None:
        self.transforms = [TRANSFORMS.build(t) if isinstance(t, dict) else t for t in transforms]

    def __call__(self, results: dict) -> dict | None:
        for transform in self.transforms:
            results = transform(results)
            if results is None:
                return None
        return results


@TRANSFORMS.register_module()
class LoadImage:
    """Decode ``img_path`` with Pillow into an RGB image."""

    def __call__(self, results: dict) -> dict:
        with Image.open(results["img_path"]) as img:
            results["img"] = img.convert("RGB")
        return results


@TRANSFORMS.register_module()
class RandomResizedCrop:
    """Crop a random area fraction in ``scale`` with log-uniform aspect ratio in ``ratio``, resize to ``size``."""

    def __init__(self, size: int | Sequence[int], scale: Sequence[float] = (0.08, 1.0),
                 ratio: Sequence[float] = (3 / 4, 4 / 3), interpolation: str = "bicubic") -> None:
        self.size = (size, size) if isinstance(size, int) else tuple(size)
        self.scale, self.ratio, self.interpolation = tuple(scale), tuple(ratio), _interp(interpolation)

    def _box(self, width: int, height: int) -> tuple[int, int, int, int]:
        area = width * height
        log_ratio = (math.log(self.ratio[0]), math.log(self.ratio[1]))
        for _ in range(10):
            target = area * random.uniform(*self.scale)
            aspect = math.exp(random.uniform(*log_ratio))
            w = int(round(math.sqrt(target * aspect)))
            h = int(round(math.sqrt(target / aspect)))
            if 0 < w <= width and 0 < h <= height:
                return random.randint(0, width - w), random.randint(0, height - h), w, h
        # fallback: central crop with the aspect ratio clamped into range
        in_ratio = width / height
        if in_ratio < min(self.ratio):
            w, h = width, int(round(width / min(self.ratio)))
        elif in_ratio > max(self.ratio):
            h, w = height, int(round(height * max(self.ratio)))
        else:
            w, h = width, height
        return (width - w) // 2, (height - h) // 2, w, h

    def __call__(self, results: dict) -> dict:
        img = results["img"]
        x, y, w, h = self._box(*img.size)
        results["img"] = img.resize((self.size[1], self.size[0]), self.interpolation, box=(x, y, x + w, y + h))
        return results


@TRANSFORMS.register_module()
class RandomFlip:
    """Horizontal flip with probability ``prob``."""

    def __init__(self, prob: float = 0.5) -> None:
        self.prob = prob

    def __call__(self, results: dict) -> dict:
        if random.random() < self.prob:
            results["img"] = results["img"].transpose(Image.FLIP_LEFT_RIGHT)
        return results


@TRANSFORMS.register_module()
class ResizeShorter:
    """Resize so the shorter side is ``size`` (aspect kept; the long side truncated like torchvision)."""

    def __init__(self, size: int, interpolation: str = "bicubic") -> None:
        self.size, self.interpolation = int(size), _interp(interpolation)

    def __call__(self, results: dict) -> dict:
        img = results["img"]
        width, height = img.size
        if width <= height:
            new = (self.size, int(self.size * height / width))
        else:
            new = (int(self.size * width / height), self.size)
        if new != (width, height):
            results["img"] = img.resize(new, self.interpolation)
        return results


@TRANSFORMS.register_module()
class CenterCrop:
    """Crop the central ``size`` x ``size`` window (offsets rounded like torchvision)."""

    def __init__(self, size: int) -> None:
        self.size = int(size)

    def __call__(self, results: dict) -> dict:
        img = results["img"]
        width, height = img.size
        if width < self.size or height < self.size:
            raise ValueError(f"CenterCrop({self.size}) needs an image at least that large, got {width}x{height}")
        top = int(round((height - self.size) / 2.0))
        left = int(round((width - self.size) / 2.0))
        results["img"] = img.crop((left, top, left + self.size, top + self.size))
        return results


# ------------------------------------------------------------------------------------------------
# RandAugment, timm's "rand-m{M}-mstd{S}-inc1" flavour: two ops per image, each applied with
# probability 0.5, magnitude M (out of 10) jittered by N(0, S) per op, "increasing" op variants
# (a larger magnitude always means a stronger change).
_FILL = (124, 116, 104)  # ImageNet mean in 0..255, the fill of geometric ops
_RESAMPLE = Image.BICUBIC  # timm passes the training interpolation (bicubic for InternImage) to the ops


def _signed(value: float) -> float:
    return -value if random.random() < 0.5 else value


def _affine(img: Image.Image, matrix: tuple[float, ...]) -> Image.Image:
    return img.transform(img.size, Image.AFFINE, matrix, resample=_RESAMPLE, fillcolor=_FILL)


def _rotate(img, m):
    return img.rotate(_signed(m * 30.0), resample=_RESAMPLE, fillcolor=_FILL)


def _shear_x(img, m):
    return _affine(img, (1, _signed(m * 0.3), 0, 0, 1, 0))


def _shear_y(img, m):
    return _affine(img, (1, 0, 0, _signed(m * 0.3), 1, 0))


def _translate_x(img, m):
    return _affine(img, (1, 0, _signed(m * 0.45) * img.size[0], 0, 1, 0))


def _translate_y(img, m):
    return _affine(img, (1, 0, 0, 0, 1, _signed(m * 0.45) * img.size[1]))


def _enhance(kind):
    def op(img, m):
        return kind(img).enhance(1.0 + _signed(m * 0.9))

    return op


def _solarize_add(img, m, threshold=128):
    add = int(m * 110)
    lut = [min(255, i + add) if i < threshold else i for i in range(256)]
    return img.point(lut * len(img.getbands()))


RAND_AUGMENT_OPS: dict[str, Callable[[Image.Image, float], Image.Image]] = {
    "AutoContrast": lambda img, m: ImageOps.autocontrast(img),
    "Equalize": lambda img, m: ImageOps.equalize(img),
    "Invert": lambda img, m: ImageOps.invert(img),
    "Rotate": _rotate,
    # 4 - int(4m) bits; current Pillow rejects 0 bits (reached only at the magnitude cap), so keep >= 1
    "PosterizeIncreasing": lambda img, m: ImageOps.posterize(img, max(1, 4 - int(m * 4))),
    "SolarizeIncreasing": lambda img, m: ImageOps.solarize(img, 256 - int(m * 256)),
    "SolarizeAdd": _solarize_add,
    "ColorIncreasing": _enhance(ImageEnhance.Color),
    "ContrastIncreasing": _enhance(ImageEnhance.Contrast),
    "BrightnessIncreasing": _enhance(ImageEnhance.Brightness),
    "SharpnessIncreasing": _enhance(ImageEnhance.Sharpness),
    "ShearX": _shear_x,
    "ShearY": _shear_y,
    "TranslateXRel": _translate_x,
    "TranslateYRel": _translate_y,
}


@TRANSFORMS.register_module()
class RandAugment:
    """RandAugment with timm's ``rand-m9-mstd0.5-inc1`` defaults."""

    def __init__(self, num_ops: int = 2, magnitude: float = 9.0, magnitude_std: float = 0.5,
                 prob: float = 0.5, max_magnitude: float = 10.0, ops: Sequence[str] | None = None) -> None:
        self.ops = list(ops or RAND_AUGMENT_OPS)
        unknown = [o for o in self.ops if o not in RAND_AUGMENT_OPS]
        if unknown:
            raise ValueError(f"unknown RandAugment ops {unknown}; choose from {list(RAND_AUGMENT_OPS)}")
        self.num_ops, self.magnitude, self.magnitude_std = num_ops, magnitude, magnitude_std
        self.prob, self.max_magnitude = prob, max_magnitude

    def __call__(self, results: dict) -> dict:
        img = results["img"]
        for name in random.choices(self.ops, k=self.num_ops):
            if random.random() > self.prob:
                continue
            magnitude = self.magnitude
            if self.magnitude_std > 0:
                magnitude = random.gauss(magnitude, self.magnitude_std)
            magnitude = min(max(magnitude, 0.0), self.max_magnitude) / self.max_magnitude
            img = RAND_AUGMENT_OPS[name](img, magnitude)
        results["img"] = img
        return results


@TRANSFORMS.register_module()
class PackClsInputs:
    """PIL image -> normalised float CHW tensor ``inputs``; ``gt_label`` -> ``data_samples`` (int)."""

    def __init__(self, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD) -> None:
        self.mean = torch.tensor(mean, dtype=torch.float32).view(3, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(3, 1, 1)

    def __call__(self, results: dict) -> dict[str, Any]:
        array = np.asarray(results["img"].convert("RGB"), dtype=np.uint8)
        tensor = torch.from_numpy(array.copy()).permute(2, 0, 1).float().div_(255.0)
        out = {"inputs": (tensor - self.mean) / self.std, "data_samples": int(results.get("gt_label", -1))}
        if "extra" in results:
            out["extra"] = results["extra"]
        return out


@TRANSFORMS.register_module()
class RandomErasing:
    """Erase one random rectangle of the normalised tensor with per-pixel normal noise (timm 'pixel' mode)."""

    def __init__(self, prob: float = 0.25, min_area: float = 0.02, max_area: float = 1 / 3,
                 min_aspect: float = 0.3) -> None:
        self.prob, self.min_area, self.max_area = prob, min_area, max_area
        self.log_aspect = (math.log(min_aspect), math.log(1 / min_aspect))

    def __call__(self, results: dict) -> dict:
        if random.random() > self.prob:
            return results
        img = results["inputs"]
        channels, height, width = img.shape
        area = height * width
        for _ in range(10):
            target = random.uniform(self.min_area, self.max_area) * area
            aspect = math.exp(random.uniform(*self.log_aspect))
            h = int(round(math.sqrt(target * aspect)))
            w = int(round(math.sqrt(target / aspect)))
            if w < width and h < height:
                top, left = random.randint(0, height - h), random.randint(0, width - w)
                img = img.clone()
                img[:, top:top + h, left:left + w] = torch.randn(channels, h, w)
                results["inputs"] = img
                break
        return results
