#!/usr/bin/env python
"""Parameters and FLOPs of the InternImage variants.

FLOPs follow the InternImage repository's convention (MACs of every conv/linear layer plus
5·H·W·9·C per DCNv3 layer; docs/backbones.md, "Parameters and FLOPs"). Models are built on the meta
device: no memory, no weights.

    python tools/model_info.py                      # all variants at their published resolutions
    python tools/model_info.py internimage_t --size 224 --num-classes 1000
"""

from __future__ import annotations

import argparse

import torch

import backbones
from backbones.flops import count_macs

# Published parameters and FLOPs, at their resolutions (the table in docs/backbones.md, "Parameters and FLOPs").
PUBLISHED = {"internimage_t": (224, "30M", "5G"), "internimage_s": (224, "50M", "8G"),
             "internimage_b": (224, "97M", "16G"), "internimage_l": (384, "223M", "108G"),
             "internimage_xl": (384, "335M", "163G"), "internimage_h": (640, "1.08B", "1478G"),
             "internimage_g": (512, "3B", "2700G")}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="*", default=list(PUBLISHED), help="model names (default: all)")
    parser.add_argument("--size", type=int, default=None, help="input side (default: the published one)")
    parser.add_argument("--num-classes", type=int, default=1000)
    parser.add_argument("--backbone", action="store_true", help="count the feature extractor (no head)")
    args = parser.parse_args(argv)
    print(f"{'model':<16} {'params':>15} {'size':>5} {'GFLOPs':>9}   published (params, FLOPs)")
    for name in args.models:
        if name not in PUBLISHED:
            parser.error(f"unknown model {name!r}; choose from {list(PUBLISHED)}")
        size = args.size or PUBLISHED[name][0]
        with torch.device("meta"):
            model = (backbones.create_backbone(name) if args.backbone
                     else backbones.create_model(name, num_classes=args.num_classes))
        params = sum(p.numel() for p in model.parameters())
        macs = count_macs(model, (1, 3, size, size))
        _, pub_params, pub_flops = PUBLISHED[name]
        published = f"{pub_params}, {pub_flops} @ {PUBLISHED[name][0]}"
        print(f"{name:<16} {params:>15,} {size:>5} {macs.gmacs:>9.2f}   {published}", flush=True)


if __name__ == "__main__":
    from _cli import run_tool

    run_tool(main, "model_info.py")
