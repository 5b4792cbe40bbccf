#!/usr/bin/env python
"""The main job, end to end on the embedded synthetic world, on CPU:

1. generate the synthetic nuScenes-format world (skipped when ``--out`` already holds it);
2. evaluate the untrained tiny BEVFormer v2 with the nuScenes devkit (the baseline);
3. train it through the mmengine Runner within the time budget;
4. evaluate the trained model with the devkit (NDS, mAP);
5. draw camera + BEV pictures of predictions next to GT;
6. print the metrics, the picture paths, and one final line
   ``RESULT NDS=<trained> mAP=<trained> untrained_NDS=<untrained>``.

    python tools/demo.py --out work_dirs/demo --max-minutes 12
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from _runner_common import DictAction, load_config, register_all

import ops
from perception.engine import TimeBudgetHook

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "bev" / "bevformer_v2_tiny_synthetic.py"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="output folder (world, checkpoints, pictures, logs)")
    parser.add_argument("--max-minutes", type=float, default=12.0,
                        help="wall-clock budget for the whole demo; training gets what the other steps leave")
    parser.add_argument("--config", default=str(CONFIG))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--scenes", type=int, default=6)
    parser.add_argument("--samples-per-scene", type=int, default=20)
    parser.add_argument("--pictures", type=int, default=3, help="number of val samples to draw")
    parser.add_argument("--cfg-options", nargs="+", action=DictAction,
                        help="override config entries, e.g. model.hybrid_queries=30")
    return parser.parse_args(argv)


def ensure_world(root: Path, args: argparse.Namespace) -> None:
    from perception.data.infos import create_nuscenes_infos
    from perception.data.synthetic.generator import VERSION, WorldConfig, generate_world

    if (root / "nuscenes_infos_val.pkl").exists() and (root / "v1.0-mini").exists():
        print(f"[demo] using the existing world in {root}")
        return
    print(f"[demo] generating the synthetic world in {root}")
    generate_world(WorldConfig(out_dir=str(root), seed=args.seed, num_scenes=args.scenes,
                               samples_per_scene=args.samples_per_scene))
    create_nuscenes_infos(str(root), VERSION, str(root), workers=1)


def build_runner(args: argparse.Namespace, world: Path, work_dir: Path):
    from mmengine.runner import Runner

    cfg = load_config(args.config, args.cfg_options, str(work_dir), seed=args.seed)
    for loader, split in (("train_dataloader", "train"), ("val_dataloader", "val"), ("test_dataloader", "val")):
        cfg[loader].dataset.data_root = str(world)
        cfg[loader].dataset.ann_file = str(world / f"nuscenes_infos_{split}.pkl")
    for evaluator in ("val_evaluator", "test_evaluator"):
        cfg[evaluator].data_root = str(world)
        cfg[evaluator].ann_file = str(world / "nuscenes_infos_val.pkl")
        cfg[evaluator].out_dir = str(work_dir / "nuscenes_eval")
    return Runner.from_cfg(cfg)


def training_minutes(max_minutes: float, elapsed_s: float, evaluation_s: float) -> float:
    """What the budget leaves for training once the world exists and the untrained model is scored.

    The trained model's evaluation costs about what the untrained one did and the pictures less, so
    the reserve is twice the measured evaluation plus a minute for the last checkpoint and jitter.
    It shrinks with the evaluation, so a fast device is not held to a CPU-sized reserve.
    """
    reserve_s = 2 * evaluation_s + 60
    return max(0.5, max_minutes - (elapsed_s + reserve_s) / 60)


def draw_pictures(runner, out_dir: Path, count: int, score_threshold: float = 0.25) -> list[Path]:
    """Camera + BEV pictures of predictions (magenta) next to GT (green) for ``count`` val samples."""
    import numpy as np
    import torch
    from PIL import Image

    from perception.data.nuscenes_dataset import bev_collate
    from perception.visualization.sample import render_sample

    model, dataset = runner.model, runner.val_dataloader.dataset
    model.eval()
    paths = []
    for idx in np.linspace(0, len(dataset) - 1, count).round().astype(int):
        sample = dataset[int(idx)]
        batch = model.data_preprocessor(bev_collate([sample]), False)
        with torch.no_grad():
            pred = model(**batch, mode="predict")[0]["detection"]
        info = dataset.infos[dataset.indices[int(idx)]]
        cameras = list(info["cams"])  # the rig's order (checked when the infos load)
        images = [Image.open(dataset.data_root / info["cams"][c]["data_path"]) for c in cameras]
        ego2img = np.stack([info["cams"][c]["ego2img"] for c in cameras])
        picture = render_sample(images, ego2img, gt_boxes=sample["gt_boxes"].numpy(),
                                gt_labels=sample["gt_labels"].numpy(), pred_boxes=pred["boxes"].cpu().numpy(),
                                pred_labels=pred["labels"].cpu().numpy(), pred_scores=pred["scores"].cpu().numpy(),
                                score_threshold=score_threshold, bev_range=32.0, camera_names=cameras,
                                title=f"{info['scene_name']} frame {info['frame_index']}: predictions with score "
                                      f">= {score_threshold} vs ground truth")
        paths.append(picture.save(out_dir / f"{info['scene_name']}_{info['frame_index']:02d}.png"))
    return paths


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    start = time.monotonic()
    out = Path(args.out)
    world = out / "world"
    register_all()
    ensure_world(world, args)
    runner = build_runner(args, world, out / "train")
    # Build (or load from the cache) the op kernels now, so that the timed evaluation below measures
    # evaluation alone: a first build takes longer than an evaluation and would inflate the reserve.
    ops.select_backend(None, next(runner.model.parameters()).device)
    print("[demo] evaluating the untrained model")
    evaluation_start = time.monotonic()
    untrained = runner.val()
    evaluation_s = time.monotonic() - evaluation_start
    train_minutes = training_minutes(args.max_minutes, time.monotonic() - start, evaluation_s)
    runner.register_hook(TimeBudgetHook(train_minutes))
    print(f"[demo] training for up to {train_minutes:.1f} min (an evaluation took {evaluation_s:.0f} s)")
    runner.train()
    print("[demo] evaluating the trained model")
    trained = runner.val()
    pictures = draw_pictures(runner, out / "pictures", args.pictures)
    for key in ("NDS", "mAP", "mATE", "mASE", "mAOE", "mAVE", "mAAE"):
        print(f"[demo] {key:5s} untrained {untrained.get(f'nuscenes/{key}', float('nan')):.4f} "
              f"trained {trained.get(f'nuscenes/{key}', float('nan')):.4f}")
    for path in pictures:
        print(f"[demo] picture: {path}")
    print(f"[demo] total time {(time.monotonic() - start) / 60:.1f} min")
    print(f"RESULT NDS={trained['nuscenes/NDS']:.4f} mAP={trained['nuscenes/mAP']:.4f} "
          f"untrained_NDS={untrained['nuscenes/NDS']:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
