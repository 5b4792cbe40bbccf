#!/usr/bin/env python
"""Export a model of this project to ONNX that runs in stock ONNX Runtime (docs/deployment.md).

    python tools/export.py configs/classification/internimage_t_1k_224.py CKPT --out internimage_t.onnx
    python tools/export.py configs/classification/internimage_t_1k_224.py CKPT --part backbone --out ii_t_bb.onnx
    python tools/export.py configs/bev/bevformer_v2_tiny_synthetic.py CKPT --out bev_tiny.onnx --dynamic-batch
    python tools/export.py configs/detection2d/dino_tiny_synthetic.py CKPT --out dino.onnx --resolution 192x320
    python tools/export.py configs/segmentation/upernet_tiny_synthetic.py CKPT --out upernet.onnx

CHECKPOINT is a checkpoint file, or ``random`` for the config's random initialisation. The model is
traced in export mode (ops/export.py): DCNv3 becomes ONNX ``DeformConv``, multi-scale deformable
attention ``GridSample`` per level. The file is checked with ``onnx.checker``, run in ONNX Runtime on
the same inputs as PyTorch, and the largest difference is printed; above the tolerance (``--tolerance``)
the export is refused (exit 2).

What the graphs take and give:

* classifier: ``image`` (B, 3, H, W), normalised -> ``logits``; backbone: -> ``stage{i}`` maps.
* BEV models (any heads): the current frame only, ``img`` (B, Ncam, 3, H, W) float, normalised (the
  file's ``img_mean``/``img_std`` metadata) and zero-padded at the bottom and right, ``ego2img``
  (B, Ncam, 4, 4), ``valid_hw`` (B, Ncam, 2) int64 rows and columns of each camera's real image inside
  the padded input; with ``num_frames`` > 1 also ``history`` (B, T-1, C, Nx, Ny), the earlier frames'
  BEVs aligned with the current frame, oldest first, and ``history_valid`` (B, T-1) bool. They give
  ``bev`` (B, C, Nx, Ny), this frame's unfused BEV, and per head: detection ``detection.boxes``
  (B, k, 9), ``.scores``, ``.labels``, ``.inside`` (B, k) (the fixed top-k of the decoder's predict);
  other heads their raw outputs (``<head>.<path>``). The history, i.e. the video cache, lives in the
  caller: the history BEV of an earlier frame t is this graph's ``bev`` output for frame t's images
  with ``ego2img_t @ inv(prev2curr_t)`` (tools/infer_onnx.py).
* 2D heads, at one static input size (``--resolution HxW``, default the config's ``crop_size``, else 512x512;
  padded to 32), every pixel a real one: ``image`` (B, 3, H, W) normalised (``img_mean``/``img_std`` metadata).
  Resize to the input size (DINO sees zero padding as image, where eager PyTorch masks it; UperNet pads
  exactly as eager PyTorch does: crop the logits). DINO gives its fixed top-k (k = ``max_detections``;
  no denoising queries): ``boxes`` (B, k, 4) xyxy input pixels clipped to the input, ``scores``, ``labels``
  (B, k). UperNet gives ``logits`` (B, classes, H, W) of whole-image inference; a ``test_mode='slide'`` config
  is refused (its windows are a Python loop).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
from _cli import UsageError, run_tool
from _export_graphs import BEVGraph, build, graph_and_inputs  # noqa: F401  (BEVGraph: tests and users)
from _onnx_common import add_metadata, export_onnx, max_difference, ort_session, run_onnx
from torch import Tensor, nn

# Largest |ONNX Runtime - PyTorch| accepted, relative to max(1, largest |PyTorch output|): float32 kernels
# differ in summation order (measured about 1e-6 on InternImage-T logits); fp16 rounds at 1e-3.
TOLERANCE = {"fp32": 1e-4, "fp16": 2e-2}


# -- main ------------------------------------------------------------------------------------------------
def refuse_unexportable(model: nn.Module) -> None:
    """Fail with a message naming the part of a model whose computation cannot be a static graph."""
    spine = getattr(model, "spine", None)
    if spine is not None and spine.video_mode:
        raise UsageError("the spine's video mode (spine.video_mode = True) caches features by sample token in "
                         "Python: export the current-frame graph (video_mode off) and keep the cache in the caller")


def graph_metadata(model: nn.Module, cfg=None) -> dict[str, str]:
    """What a numpy-only caller (tools/infer_onnx.py) needs to feed a BEV or 2D graph: the image
    normalisation (RGB, 0..255 scale) that the model applies to uint8 images, as JSON lists."""
    spine = getattr(model, "spine", None)
    if spine is None:
        return _image_2d_metadata(model, cfg)
    from perception.data.transforms_bev import IMAGENET_MEAN, IMAGENET_STD

    # The spine's own img_norm where it has one (bev/spine.py), else the loader's ImageNet statistics.
    mean, std = getattr(spine, "img_mean", IMAGENET_MEAN), getattr(spine, "img_std", IMAGENET_STD)
    return {"img_mean": json.dumps([float(v) for v in mean]), "img_std": json.dumps([float(v) for v in std])}


def _image_2d_metadata(model: nn.Module, cfg) -> dict[str, str]:
    """The 2D heads' normalisation: the segmentor's data preprocessor, or the detector's test dataset (DINO
    normalises in perception/data/coco.py, ImageNet statistics unless the config says otherwise)."""
    if hasattr(model, "decode_head"):
        mean, std = model.data_preprocessor.mean.flatten().tolist(), model.data_preprocessor.std.flatten().tolist()
    elif hasattr(model, "select_queries"):
        from perception.data.coco import IMAGENET_MEAN, IMAGENET_STD

        dataset = ((cfg or {}).get("test_dataloader") or {}).get("dataset") or {}
        mean, std = dataset.get("mean", IMAGENET_MEAN), dataset.get("std", IMAGENET_STD)
    else:
        return {}
    return {"img_mean": json.dumps([float(v) for v in mean]), "img_std": json.dumps([float(v) for v in std])}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config")
    parser.add_argument("checkpoint", help="checkpoint file, or 'random' for random weights")
    parser.add_argument("--out", required=True, help="the .onnx file to write")
    parser.add_argument("--part", choices=["model", "backbone"], default="model",
                        help="classification configs: the classifier (default) or its backbone")
    parser.add_argument("--dynamic-batch", action="store_true", help="a symbolic batch dimension")
    parser.add_argument("--fp16", action="store_true", help="export in float16 (checked in ONNX Runtime when it can)")
    parser.add_argument("--batch", type=int, default=1, help="batch of the example inputs")
    parser.add_argument("--size", type=int, default=None, help="classifier input side (default 224)")
    parser.add_argument("--resolution", default=None,
                        help="BEV models: HxW of each camera image; 2D heads: HxW of the image")
    parser.add_argument("--tolerance", type=float, default=None,
                        help="largest accepted difference relative to max(1, |output|) (default: 1e-4, fp16 2e-2)")
    args = parser.parse_args(argv)
    if args.batch < 1:
        raise UsageError(f"--batch must be >= 1, got {args.batch}")
    model, cfg = build(args.config, args.checkpoint)
    refuse_unexportable(model)
    graph, inputs, input_names, output_names = graph_and_inputs(model, cfg, args.part, args.batch, args.size,
                                                                 args.resolution)
    precision = "fp16" if args.fp16 else "fp32"
    tolerance = args.tolerance if args.tolerance is not None else TOLERANCE[precision]
    if args.fp16:
        graph = graph.half()
        inputs = [x.half() if x.is_floating_point() else x for x in inputs]
    path = export_onnx(graph, inputs, args.out, input_names, output_names, args.dynamic_batch)
    add_metadata(path, graph_metadata(model, cfg))
    print(f"wrote {path} ({path.stat().st_size / 2**20:.1f} MiB; onnx.checker passed)")
    worst, scale = verify(graph, inputs, input_names, path, args.fp16)
    print(f"largest |ONNX Runtime - PyTorch| = {worst:.3g} (outputs up to {scale:.3g}; tolerance {tolerance:g} "
          f"x max(1, |output|))")
    if not worst <= tolerance * max(1.0, scale):
        print(f"export.py: error: {path} differs from PyTorch by {worst:.3g} > {tolerance * max(1.0, scale):.3g}; "
              "refusing it", file=sys.stderr)
        path.unlink()
        return 2
    return 0


def verify(graph: nn.Module, inputs: list[Tensor], input_names: list[str], path: Path, fp16: bool
           ) -> tuple[float, float]:
    """(largest difference, largest |PyTorch output|) between PyTorch and ONNX Runtime on ``inputs``.
    fp16 is compared against the float32 model (PyTorch's CPU float16 kernels are not a reference)."""
    reference = graph.float() if fp16 else graph
    with torch.no_grad():
        want = reference(*[x.float() if x.is_floating_point() else x for x in inputs])
    want = [want] if isinstance(want, Tensor) else list(want)
    got = run_onnx(ort_session(path), {n: x.numpy() for n, x in zip(input_names, inputs)})
    scale = max((float(w.abs().max()) for w in want if w.is_floating_point() and w.numel()), default=1.0)
    return max_difference(want, got), scale


if __name__ == "__main__":
    run_tool(main, "export.py")
