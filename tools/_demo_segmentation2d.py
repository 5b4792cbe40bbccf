"""``tools/demo.py --tasks segmentation2d``: the tiny UperNet on the synthetic ADE20K-format set, on CPU.

1. write the synthetic 2D sets (``tools/create_data.py synthetic-2d``) under ``--out``/synthetic_2d unless
   they are there already (shared with ``--tasks detection2d``);
2. evaluate the untrained model (mIoU pooled over the val split, mmseg's definition);
3. train within what the ``--max-minutes`` budget leaves, the learning rate annealed over it;
4. evaluate again, draw colour-coded masks (GT next to prediction, with a legend) for a few val images and
   print ``RESULT mIoU=<trained> untrained_mIoU=<untrained>`` (percent).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from _demo_common import evaluate_train_evaluate
from _demo_detection2d import ensure_sets
from _runner_common import load_config

__all__ = ["run_segmentation2d"]


def build_runner(args: argparse.Namespace, ade: Path, work_dir: Path):
    from mmengine.runner import Runner

    cfg = load_config(args.config, args.cfg_options, str(work_dir), seed=args.seed)
    if args.schedule == "budget":
        cfg.param_scheduler = None  # the TimeBudgetHook sets the rate
    # The demo validates before training; mmengine's best-checkpoint bookkeeping needs the training set-up first.
    cfg.default_hooks.checkpoint.save_best = None
    for loader in ("train_dataloader", "val_dataloader", "test_dataloader"):
        cfg[loader].dataset.data_root = str(ade)
    return Runner.from_cfg(cfg)


def draw_pictures(runner, out_dir: Path, count: int) -> list[Path]:
    """Image | GT | prediction for ``count`` val images spread over the split, at the original size."""
    import numpy as np
    import torch

    from perception.data.segmentation import seg_collate
    from perception.visualization.segmentation import render_segmentation_comparison

    dataset = runner.val_dataloader.dataset
    classes = dataset.metainfo["classes"] or [str(c) for c in range(runner.model.num_classes)]
    model = runner.model
    model.eval()
    paths = []
    for index in np.linspace(0, len(dataset) - 1, count).round().astype(int):
        sample = dataset[int(index)]
        with torch.no_grad():
            pred = model.test_step(seg_collate([sample]))[0]
        info = dataset.get_data_info(int(index))
        image = dataset.pipeline.transforms[0](dict(info))["img"]  # the loader: the image at its original size
        correct = (pred["pred_seg"] == pred["gt_seg"])[pred["gt_seg"] != 255].float().mean().item()
        path = out_dir / f"segmentation2d_{Path(info['img_path']).stem}.png"
        render_segmentation_comparison(image, pred["gt_seg"].cpu().numpy(), pred["pred_seg"].cpu().numpy(), classes,
                                       title=f"{Path(info['img_path']).name}: pixel accuracy {100 * correct:.1f}%",
                                       path=path)
        paths.append(path)
    return paths


def run_segmentation2d(args: argparse.Namespace) -> int:
    """The demo for ``--tasks segmentation2d`` (the budget rule of tools/_demo_common.py)."""
    start = time.monotonic()
    out = Path(args.out)
    ensure_sets(out / "synthetic_2d", args)
    ade = out / "synthetic_2d" / "ade"
    runner = build_runner(args, ade, out / "train_segmentation2d")
    untrained, trained = evaluate_train_evaluate(runner, args.max_minutes, args.schedule == "budget", start)
    pictures = draw_pictures(runner, out / "pictures", args.pictures)
    for key in ("mIoU", "aAcc"):
        print(f"[demo] {key:5s} untrained {untrained.get(f'segmentation/{key}', float('nan')):6.2f} "
              f"trained {trained.get(f'segmentation/{key}', float('nan')):6.2f}")
    per_class = {k.split("/")[-1]: v for k, v in trained.items() if k.startswith("segmentation/IoU/")}
    print("[demo] per-class IoU: " + ", ".join(f"{name} {value:.1f}" for name, value in per_class.items()))
    for path in pictures:
        print(f"[demo] picture: {path}")
    print(f"[demo] total time {(time.monotonic() - start) / 60:.1f} min")
    print(f"RESULT mIoU={trained['segmentation/mIoU']:.2f} untrained_mIoU={untrained['segmentation/mIoU']:.2f}")
    return 0
