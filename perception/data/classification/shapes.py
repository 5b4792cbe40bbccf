"""The embedded procedural classification set: shapes and textures as an ImageNet-style folder.

``generate_shapes_dataset(root)`` writes::

    root/classes.txt                      one class name per line (label = line index)
    root/train/<class>/<class>_00000.png  ...
    root/val/<class>/<class>_00000.png    ...
    root/train.txt, root/val.txt          the file-list form: "<relative path> <label>" per line

Five shape classes (random colours, size, position, rotation, on a noisy background) and three
texture classes (stripes and checkerboards with random period, phase and colours). Output is
deterministic for a given seed and arguments; a finished set is reused.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
from filelock import FileLock
from PIL import Image, ImageDraw

__all__ = ["SHAPE_CLASSES", "generate_shapes_dataset"]

SHAPE_CLASSES = ("circle", "square", "triangle", "cross", "ring", "horizontal_stripes", "vertical_stripes",
                 "checkerboard")
_DONE = "generated.json"


def _colour(rng: np.random.Generator) -> tuple[int, int, int]:
    return tuple(int(c) for c in rng.integers(0, 256, size=3))


def _distinct_colours(rng: np.random.Generator) -> tuple[tuple, tuple]:
    while True:
        a, b = _colour(rng), _colour(rng)
        if sum(abs(x - y) for x, y in zip(a, b)) > 180:
            return a, b


def _noisy(img: Image.Image, rng: np.random.Generator, sigma: float = 12.0) -> Image.Image:
    array = np.asarray(img, dtype=np.float32) + rng.normal(0.0, sigma, size=(img.size[1], img.size[0], 3))
    return Image.fromarray(np.clip(array, 0, 255).astype(np.uint8))


def _polygon(cx: float, cy: float, radius: float, sides: int, angle: float) -> list[tuple[float, float]]:
    return [(cx + radius * math.cos(angle + 2 * math.pi * k / sides),
             cy + radius * math.sin(angle + 2 * math.pi * k / sides)) for k in range(sides)]


def _draw_shape(name: str, size: int, rng: np.random.Generator) -> Image.Image:
    background, foreground = _distinct_colours(rng)
    img = Image.new("RGB", (size, size), background)
    draw = ImageDraw.Draw(img)
    radius = size * rng.uniform(0.18, 0.32)
    cx, cy = (rng.uniform(radius + 2, size - radius - 2) for _ in range(2))
    angle = rng.uniform(0, 2 * math.pi)
    box = (cx - radius, cy - radius, cx + radius, cy + radius)
    if name == "circle":
        draw.ellipse(box, fill=foreground)
    elif name == "ring":
        draw.ellipse(box, outline=foreground, width=max(2, int(radius * 0.3)))
    elif name == "square":
        draw.polygon(_polygon(cx, cy, radius * 1.2, 4, angle), fill=foreground)
    elif name == "triangle":
        draw.polygon(_polygon(cx, cy, radius * 1.2, 3, angle), fill=foreground)
    elif name == "cross":
        half = max(2.0, radius * 0.3)
        arms = [(-radius, -half, radius, half), (-half, -radius, half, radius)]
        c, s = math.cos(angle), math.sin(angle)
        for x0, y0, x1, y1 in arms:
            corners = [(x0, y0), (x1, y0), (x1, y1), (x0, y1)]
            draw.polygon([(cx + x * c - y * s, cy + x * s + y * c) for x, y in corners], fill=foreground)
    else:
        raise ValueError(f"unknown shape class {name!r}")
    return img


def _draw_texture(name: str, size: int, rng: np.random.Generator) -> Image.Image:
    first, second = _distinct_colours(rng)
    period = rng.uniform(size / 10, size / 4)
    phase = rng.uniform(0, period)
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32)
    if name == "horizontal_stripes":
        on = ((ys + phase) // (period / 2)) % 2 == 0
    elif name == "vertical_stripes":
        on = ((xs + phase) // (period / 2)) % 2 == 0
    elif name == "checkerboard":
        on = (((xs + phase) // (period / 2)) + ((ys + phase) // (period / 2))) % 2 == 0
    else:
        raise ValueError(f"unknown texture class {name!r}")
    array = np.where(on[..., None], np.array(first, np.uint8), np.array(second, np.uint8))
    return Image.fromarray(array.astype(np.uint8))


def draw_sample(name: str, size: int, rng: np.random.Generator) -> Image.Image:
    """One image of class ``name``."""
    if name in ("horizontal_stripes", "vertical_stripes", "checkerboard"):
        img = _draw_texture(name, size, rng)
    else:
        img = _draw_shape(name, size, rng)
    return _noisy(img, rng)


def generate_shapes_dataset(root: str | Path, train_per_class: int = 60, val_per_class: int = 20,
                            image_size: int = 64, seed: int = 0) -> Path:
    """Write (or reuse) the shapes set under ``root``; returns ``root``."""
    root = Path(root)
    params = dict(train_per_class=train_per_class, val_per_class=val_per_class, image_size=image_size,
                  seed=seed, classes=list(SHAPE_CLASSES))
    done = root / _DONE
    if done.is_file() and json.loads(done.read_text()) == params:
        return root
    root.mkdir(parents=True, exist_ok=True)
    with FileLock(str(root / ".generating.lock")):  # several ranks/processes may ask at once
        if done.is_file() and json.loads(done.read_text()) == params:
            return root
        _write(root, params, train_per_class, val_per_class, image_size, seed)
    return root


def _write(root: Path, params: dict, train_per_class: int, val_per_class: int, image_size: int,
           seed: int) -> None:
    done = root / _DONE
    done.unlink(missing_ok=True)
    rng = np.random.default_rng(seed)
    (root / "classes.txt").write_text("\n".join(SHAPE_CLASSES) + "\n")
    for split, count in (("train", train_per_class), ("val", val_per_class)):
        lines = []
        shutil.rmtree(root / split, ignore_errors=True)  # no stale images from other arguments
        for label, name in enumerate(SHAPE_CLASSES):
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                relative = f"{split}/{name}/{name}_{i:05d}.png"
                draw_sample(name, image_size, rng).save(root / relative)
                lines.append(f"{relative} {label}")
        (root / f"{split}.txt").write_text("\n".join(lines) + "\n")
    done.write_text(json.dumps(params))
