#!/usr/bin/env python
"""Generate the embedded procedural classification set (shapes and textures, ImageNet-style folders).

    python tools/create_classification_data.py [--root data/shapes] [--train-per-class 60] [--val-per-class 20]
"""

from __future__ import annotations

import argparse

from perception.data.classification.shapes import SHAPE_CLASSES, generate_shapes_dataset


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", default="data/shapes")
    parser.add_argument("--train-per-class", type=int, default=60)
    parser.add_argument("--val-per-class", type=int, default=20)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    root = generate_shapes_dataset(args.root, train_per_class=args.train_per_class,
                                   val_per_class=args.val_per_class, image_size=args.image_size, seed=args.seed)
    print(f"{len(SHAPE_CLASSES)} classes x ({args.train_per_class} train + {args.val_per_class} val) images "
          f"of {args.image_size}px in {root}")


if __name__ == "__main__":
    from _cli import run_tool

    run_tool(main, "create_classification_data.py")
