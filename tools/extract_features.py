#!/usr/bin/env python
"""Save the outputs of named modules of an InternImage for one image (forward hooks).

    python tools/extract_features.py internimage_t IMAGE --checkpoint internimage_t_1k_224.pth \
        --keys patch_embed levels.0.downsample levels.0.blocks.0.dcn --out features.safetensors

The image is resized (shorter side = --size, bicubic) and normalised with the ImageNet statistics.
Module names are those of the official model (``print(model)`` lists them).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from PIL import Image

import backbones
from backbones.features import extract_features
from perception.data.classification.transforms import PackClsInputs, ResizeShorter


def main(argv: list[str] | None = None) -> dict[str, torch.Tensor]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", help=f"one of {backbones.list_models()}")
    parser.add_argument("image", help="image file")
    parser.add_argument("--checkpoint", help="weights (any form backbones.load_pretrained reads)")
    parser.add_argument("--trust-checkpoint", action="store_true",
                        help="the checkpoint is trusted: unpickle it in full if it holds Python types outside the "
                             "allow-list (docs/backbones.md, 'Loading checkpoints')")
    parser.add_argument("--num-classes", type=int, default=1000)
    parser.add_argument("--keys", nargs="+", required=True, help="dotted module names to capture")
    parser.add_argument("--size", type=int, default=224, help="shorter side of the resized image")
    parser.add_argument("--out", help="save the captured tensors (.safetensors, or torch.save for other suffixes)")
    parser.add_argument("--model-args", nargs="*", default=[], metavar="K=V",
                        help="architecture overrides, e.g. channels=32 (values parsed as Python literals)")
    args = parser.parse_args(argv)

    import ast

    overrides = {}
    for item in args.model_args:
        key, _, value = item.partition("=")
        try:
            overrides[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            overrides[key] = value
    model = backbones.create_model(args.model, num_classes=args.num_classes, **overrides)
    if args.checkpoint:
        print(backbones.load_pretrained(model, args.checkpoint, strict=False,
                                        trusted=args.trust_checkpoint).table())
    model.eval()
    if not Path(args.image).is_file():
        parser.error(f"image not found: {args.image}")
    with Image.open(args.image) as img:
        sample = ResizeShorter(args.size)({"img": img.convert("RGB")})
    inputs = PackClsInputs()(sample)["inputs"][None]
    features = extract_features(model, inputs, args.keys)
    for name, tensor in features.items():
        print(f"{name:<40} {tuple(tensor.shape)}")
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        if out.suffix == ".safetensors":
            from safetensors.torch import save_file

            save_file({k: v.contiguous() for k, v in features.items()}, str(out))
        else:
            torch.save(features, out)
        print(f"saved {len(features)} tensors to {out}")
    return features


if __name__ == "__main__":
    from _cli import run_tool

    run_tool(main, "extract_features.py")
