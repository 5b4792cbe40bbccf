"""``tools/demo.py --tasks detection2d``: the tiny DINO on the synthetic COCO-format set, on CPU.

1. write the synthetic 2D sets (``tools/create_data.py synthetic-2d``) under ``--out``/synthetic_2d unless
   they are there already;
2. evaluate the untrained model (COCO box AP through pycocotools);
3. train within what the ``--max-minutes`` budget leaves, the learning rate annealed over it;
4. evaluate again, draw predictions next to GT for a few val images and print
   ``RESULT AP=<trained> untrained_AP=<untrained>`` (fractions, AP at IoU 0.50:0.95).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from _demo_common import evaluate_train_evaluate
from _runner_common import load_config

__all__ = ["run_detection2d"]


def ensure_sets(root: Path, args: argparse.Namespace) -> Path:
    """The synthetic sets' COCO folder, generated when missing."""
    from perception.data.synthetic.sets2d import Synthetic2DConfig, generate_2d_sets

    coco = root / "coco"
    if (coco / "annotations" / "instances_val.json").is_file():
        print(f"[demo] using the existing synthetic 2D sets in {root}")
        return coco
    print(f"[demo] generating the synthetic 2D sets in {root}")
    generate_2d_sets(Synthetic2DConfig(str(root), seed=args.seed, num_scenes=args.scenes,
                                       samples_per_scene=args.samples_per_scene))
    return coco


def build_runner(args: argparse.Namespace, coco: Path, work_dir: Path):
    from mmengine.runner import Runner

    cfg = load_config(args.config, args.cfg_options, str(work_dir), seed=args.seed)
    if args.schedule == "budget":
        cfg.param_scheduler = None  # the TimeBudgetHook sets the rate
    for loader, split in (("train_dataloader", "train"), ("val_dataloader", "val"), ("test_dataloader", "val")):
        cfg[loader].dataset.ann_file = str(coco / "annotations" / f"instances_{split}.json")
        cfg[loader].dataset.img_dir = str(coco / split)
    for evaluator in ("val_evaluator", "test_evaluator"):
        cfg[evaluator].ann_file = str(coco / "annotations" / "instances_val.json")
    return Runner.from_cfg(cfg)


def draw_pictures(runner, out_dir: Path, count: int, score_threshold: float = 0.2) -> list[Path]:
    """GT next to predictions for the first ``count`` val images with objects, in original image pixels."""
    import torch
    from PIL import Image

    from perception.data.coco import coco_collate
    from perception.structures.boxes2d import box_xywh_to_xyxy
    from perception.visualization.detection2d import render_detection_comparison

    dataset = runner.val_dataloader.dataset
    classes = dataset.metainfo["classes"]
    out_dir.mkdir(parents=True, exist_ok=True)
    model = runner.model
    model.eval()
    paths = []
    for index, info in enumerate(dataset.images):
        if len(paths) >= count:
            break
        anns = [a for a in dataset.annotations[int(info["id"])] if not a.get("iscrowd", 0)]
        if not anns:
            continue
        with torch.no_grad():
            pred = model.test_step(coco_collate([dataset[index]]))[0]
        gt_boxes = box_xywh_to_xyxy(torch.tensor([a["bbox"] for a in anns], dtype=torch.float32))
        gt_labels = [dataset.label_of[int(a["category_id"])] for a in anns]
        with Image.open(dataset.img_dir / info["file_name"]) as image:
            picture = render_detection_comparison(image, gt_boxes, gt_labels, pred["boxes"].cpu(),
                                                  pred["scores"].cpu(), pred["labels"].cpu(), classes,
                                                  score_threshold)
        path = out_dir / f"detection2d_{Path(info['file_name']).stem}.png"
        picture.save(path)
        paths.append(path)
    return paths


def run_detection2d(args: argparse.Namespace) -> int:
    """The demo for ``--tasks detection2d`` (the budget rule of tools/_demo_common.py)."""
    start = time.monotonic()
    out = Path(args.out)
    coco = ensure_sets(out / "synthetic_2d", args)
    runner = build_runner(args, coco, out / "train_detection2d")
    untrained, trained = evaluate_train_evaluate(runner, args.max_minutes, args.schedule == "budget", start)
    pictures = draw_pictures(runner, out / "pictures", args.pictures)
    for key in ("AP", "AP50", "AP75", "APs", "APm", "APl"):
        print(f"[demo] {key:5s} untrained {untrained.get(f'coco/{key}', float('nan')):.4f} "
              f"trained {trained.get(f'coco/{key}', float('nan')):.4f}")
    for path in pictures:
        print(f"[demo] picture: {path}")
    print(f"[demo] total time {(time.monotonic() - start) / 60:.1f} min")
    print(f"RESULT AP={trained['coco/AP']:.4f} untrained_AP={untrained['coco/AP']:.4f}")
    return 0
