#!/usr/bin/env python
"""Training-step time, peak memory and inference throughput of a BEV model config (any heads).

Inputs are random images with a nominal nuScenes camera rig (6 cameras, intrinsics scaled to the
chosen resolution, padded to a multiple of 32) and random targets for the heads (a few GT boxes,
Occ3D-sized voxel labels), so the numbers measure the model, not data loading.

    python tools/benchmark_model.py configs/bev/bevformer_v2_internimage_b_nus.py \
        --resolution 640x1600 --amp bfloat16 --with-cp
    python tools/benchmark_model.py configs/occupancy/bevformer_occ_internimage_s_occ3d.py \
        --resolution 900x1600 --amp bfloat16 --with-cp
    python tools/benchmark_model.py configs/bev/bevformer_v2_tiny_synthetic.py --device cpu --iters 2
"""

from __future__ import annotations

import argparse
import math
import sys

import numpy as np
import torch
from _profile import format_profile, profile_steps
from _runner_common import DictAction, register_all
from _timing import median_seconds


def nominal_ego2img(height: int, width: int) -> torch.Tensor:
    """(6, 4, 4) ego->pixel matrices of the nuScenes-like rig of the synthetic world, at this size."""
    from perception.data.synthetic.generator import camera_intrinsics, camera_to_ego
    from perception.structures.cameras import CAMERA_NAMES, compose_ego2img

    mats = [compose_ego2img(camera_intrinsics(name, (width, height)), camera_to_ego(name)) for name in CAMERA_NAMES]
    return torch.tensor(np.stack(mats), dtype=torch.float32)


def synthetic_batch(batch: int, frames: int, height: int, width: int, device: torch.device, model=None) -> dict:
    """Random images on the nominal rig, plus random targets of every kind the model's heads read
    (3D boxes; Occ3D-style voxel labels and masks on the occupancy head's grid)."""
    gen = torch.Generator().manual_seed(0)
    ego2img = nominal_ego2img(height, width).expand(batch, frames, -1, -1, -1).clone()
    prev2curr = torch.eye(4).repeat(batch, frames, 1, 1)
    prev2curr[:, :, 0, 3] = -0.5 * torch.arange(frames - 1, -1, -1, dtype=torch.float32)  # 0.5 m per frame
    data = dict(img=torch.randn(batch, frames, 6, 3, height, width, generator=gen),
                cams=dict(ego2img=ego2img), ego=dict(prev2curr=prev2curr,
                                                     history_valid=torch.ones(batch, frames, dtype=torch.bool)))
    heads = getattr(model, "heads", {}) if model is not None else {}
    wanted = {key for head in heads.values() for key in (*head.required_targets, *head.optional_targets)}
    if not heads or "gt_boxes" in wanted:
        data.update(gt_boxes=[_random_boxes(gen) for _ in range(batch)],
                    gt_labels=[torch.randint(0, 10, (30,), generator=gen) for _ in range(batch)])
    grids = [head.voxel_grid for head in heads.values() if hasattr(head, "voxel_grid")]
    if grids and "occ_semantics" in wanted:
        shape = (batch, *grids[0].voxel_shape)
        data.update(occ_semantics=torch.randint(0, 18, shape, generator=gen, dtype=torch.uint8),
                    occ_mask_camera=torch.rand(shape, generator=gen) < 0.1,
                    occ_mask_lidar=torch.rand(shape, generator=gen) < 0.15)
    return _to(data, device)


def _random_boxes(gen: torch.Generator) -> torch.Tensor:
    b = torch.rand(30, 9, generator=gen)
    b[:, :2] = b[:, :2] * 80 - 40
    b[:, 2] = b[:, 2] * 2 - 1
    b[:, 3:6] = b[:, 3:6] * 3 + 0.5
    b[:, 6] = b[:, 6] * 2 * math.pi - math.pi
    return b


def _to(data, device):
    if isinstance(data, torch.Tensor):
        return data.to(device)
    if isinstance(data, dict):
        return {k: _to(v, device) for k, v in data.items()}
    if isinstance(data, list):
        return [_to(v, device) for v in data]
    return data


def build_model(config: str, options: dict | None, with_cp: bool, frames: int | None):
    from mmengine.config import Config

    from perception.engine import MODELS

    register_all()
    cfg = Config.fromfile(config)
    if options:
        cfg.merge_from_dict(options)
    if with_cp:
        cfg.model.backbone.with_cp = True
    if frames is not None:
        cfg.model.num_frames = frames
    return MODELS.build(cfg.model), cfg.model.num_frames


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config")
    parser.add_argument("--resolution", default="640x1600", help="HxW of each camera image")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--frames", type=int, default=None, help="override the config's num_frames")
    parser.add_argument("--amp", choices=["none", "float16", "bfloat16"], default="none")
    parser.add_argument("--with-cp", action="store_true", help="gradient checkpointing in the backbone")
    parser.add_argument("--iters", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--cfg-options", nargs="+", action=DictAction)
    parser.add_argument("--profile", type=int, default=0, metavar="STEPS",
                        help="after timing, profile this many training steps and print where their time goes")
    args = parser.parse_args(argv)
    height, width = (-(-int(v) // 32) * 32 for v in args.resolution.lower().split("x"))  # padded as the pipeline pads
    device = torch.device(args.device)
    model, frames = build_model(args.config, args.cfg_options, args.with_cp, args.frames)
    model.to(device)
    data = synthetic_batch(args.batch, frames, height, width, device, model)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    amp = args.amp != "none"
    dtype = getattr(torch, args.amp) if amp else torch.float32
    scaler = torch.amp.GradScaler(device.type, enabled=args.amp == "float16")

    def train_step() -> None:
        with torch.autocast(device.type, dtype=dtype, enabled=amp):
            losses = model(**data, mode="loss")
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(sum(losses.values())).backward()
        scaler.step(optimizer)
        scaler.update()

    def infer() -> None:
        with torch.no_grad(), torch.autocast(device.type, dtype=dtype, enabled=amp):
            model(**data, mode="predict")

    params = sum(p.numel() for p in model.parameters())
    print(f"config {args.config} | {params / 1e6:.1f} M parameters | {args.batch} x {frames} frames x 6 cameras "
          f"at {height}x{width} (padded) | amp {args.amp} | with_cp {args.with_cp} | device {device}")
    model.train()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    step = median_seconds(train_step, device, args.iters, args.warmup)
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else float("nan")
    model.eval()
    inference = median_seconds(infer, device, args.iters, args.warmup)
    print(f"training step: {step * 1e3:.1f} ms median | peak memory {peak:.2f} GiB")
    print(f"inference: {inference * 1e3:.1f} ms per batch | {args.batch / inference:.2f} samples/s | "
          f"{6 * args.batch / inference:.1f} current-frame camera images/s")
    if args.profile:
        model.train()
        print("training step profile:")
        print(format_profile(profile_steps(train_step, device, steps=args.profile, warmup=1), device), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
