#!/usr/bin/env python
"""The main job, end to end on the embedded synthetic world, on CPU: one tiny BEV spine with the
detection, occupancy and lane-topology heads (the default ``--tasks``), or any one of them.

1. generate the synthetic nuScenes-format world with its Occ3D and OpenLane-V2 labels (skipped when
   ``--out`` already holds it);
2. evaluate the untrained tiny model (the baseline): detection with the nuScenes devkit, occupancy
   with the Occ3D camera-mask mIoU and RayIoU, lanes with OLS v2.1;
3. train it through the mmengine Runner within the time budget, the learning rate annealed over it;
4. evaluate the trained model again;
5. draw pictures of predictions next to GT for every task (cameras + BEV boxes, BEV occupancy, BEV
   lanes and the front camera's traffic elements);
6. print the metrics, the picture paths, and one final line:
   ``RESULT NDS=.. mAP=.. mIoU=.. RayIoU=.. OLS=.. untrained_NDS=.. untrained_mIoU=.. untrained_OLS=..``
   for the three heads, or a task's own part of it with ``--tasks detection``, ``occupancy``,
   ``lanes`` (which adds ``DET_l``) or ``detection,occupancy``.

``--tasks detection2d`` runs the 2D pretraining demo instead (tools/_demo_detection2d.py): the tiny DINO on
the synthetic COCO-format set, ``RESULT AP=.. untrained_AP=..``; ``--tasks segmentation2d`` the tiny UperNet
on the synthetic ADE20K-format set (tools/_demo_segmentation2d.py), ``RESULT mIoU=.. untrained_mIoU=..``.

    python tools/demo.py --out work_dirs/demo --max-minutes 12 [--tasks detection]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import torch
from _demo_common import evaluate_train_evaluate, training_minutes  # noqa: F401 (tests read demo.training_minutes)
from _demo_detection2d import run_detection2d
from _demo_segmentation2d import run_segmentation2d
from _runner_common import TRUST_CHECKPOINT_HELP, DictAction, allow_runner_checkpoints, load_config, register_all

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
TASK_CONFIGS = {
    ("detection",): CONFIGS / "bev" / "bevformer_v2_tiny_synthetic.py",
    ("occupancy",): CONFIGS / "occupancy" / "occupancy_tiny_synthetic.py",
    ("detection", "occupancy"): CONFIGS / "multitask" / "detection_occupancy_tiny_synthetic.py",
    ("lanes",): CONFIGS / "lanes" / "lanes_tiny_synthetic.py",
    ("detection", "lanes", "occupancy"): CONFIGS / "multitask" / "detection_occupancy_lanes_tiny_synthetic.py",
    ("detection2d",): CONFIGS / "detection2d" / "dino_tiny_synthetic.py",  # tools/_demo_detection2d.py
    ("segmentation2d",): CONFIGS / "segmentation" / "upernet_tiny_synthetic.py",  # tools/_demo_segmentation2d.py
}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="output folder (world, checkpoints, pictures, logs)")
    parser.add_argument("--max-minutes", type=float, default=12.0,
                        help="wall-clock budget for the whole demo; training gets what the other steps leave")
    parser.add_argument("--tasks", default="detection,occupancy,lanes",
                        help="comma-separated heads on one spine: detection, occupancy, lanes, "
                             "detection,occupancy or detection,occupancy,lanes; or detection2d (DINO) "
                             "or segmentation2d (UperNet)")
    parser.add_argument("--config", default=None, help="a config of your own (default: the tiny one of --tasks)")
    parser.add_argument("--trust-checkpoint", action="store_true", help=TRUST_CHECKPOINT_HELP)
    parser.add_argument("--schedule", choices=("budget", "config"), default="budget",
                        help="budget: warm-up, then a cosine over the time budget to 5%% of the rate (the "
                             "TimeBudgetHook, docs/bev.md); config: the config's param_scheduler")
    parser.add_argument("--threads", type=int, default=0,
                        help="torch threads on CPU (default 0: every core; pass fewer for a heavy data pipeline "
                             "of your own, docs/bev.md, \"The demo's schedule\")")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--scenes", type=int, default=6)
    parser.add_argument("--samples-per-scene", type=int, default=20)
    parser.add_argument("--pictures", type=int, default=3, help="number of val samples to draw")
    parser.add_argument("--cfg-options", nargs="+", action=DictAction,
                        help="override config entries, e.g. model.hybrid_queries=30")
    args = parser.parse_args(argv)
    args.tasks = tuple(sorted({t.strip() for t in args.tasks.split(",") if t.strip()}))
    if args.tasks not in TASK_CONFIGS:
        parser.error(f"--tasks must be one of {', '.join(','.join(t) for t in TASK_CONFIGS)}, got {args.tasks}")
    args.config = args.config or str(TASK_CONFIGS[args.tasks])
    return args


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
    if args.schedule == "budget":
        cfg.param_scheduler = None  # the TimeBudgetHook sets the rate (main())
    for loader, split in (("train_dataloader", "train"), ("val_dataloader", "val"), ("test_dataloader", "val")):
        cfg[loader].dataset.data_root = str(world)
        cfg[loader].dataset.ann_file = str(world / f"nuscenes_infos_{split}.pkl")
    for evaluator in ("val_evaluator", "test_evaluator"):
        for metric in cfg[evaluator] if isinstance(cfg[evaluator], list) else [cfg[evaluator]]:
            metric.data_root = str(world)
            metric.ann_file = str(world / "nuscenes_infos_val.pkl")
            if metric.type == "NuScenesDetectionMetric":
                metric.out_dir = str(work_dir / "nuscenes_eval")
    return Runner.from_cfg(cfg)


def cpu_threads(requested: int) -> int:
    """Torch's intra-op threads for a CPU run: ``requested`` if positive, else every core. The tiny
    configs' training pipeline costs about 36 ms of CPU a sample (three heads), a few percent of a loader
    worker's core beside a step of about a second, so the worker seldom takes a core from torch's threads:
    on the quiet 2-core machine two threads trained 580 three-head iterations in the budget where one
    thread had trained 345-435 in E10-E14 (docs/bev.md, "The demo's schedule"). A heavier pipeline of your own
    (``--config``) stalls torch's parallel ops whenever a worker takes one of their cores: pass
    ``--threads`` to leave the workers theirs."""
    if requested > 0:
        return requested
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def draw_pictures(runner, out_dir: Path, count: int, tasks: tuple[str, ...], score_threshold: float = 0.25
                  ) -> list[Path]:
    """Pictures of ``count`` val samples: cameras + BEV with predicted boxes (magenta) next to GT (green),
    and the BEV occupancy of GT and prediction side by side (outside the camera mask dimmed)."""
    import numpy as np
    import torch

    from perception.data import bev_collate

    model, dataset = runner.model, runner.val_dataloader.dataset
    model.eval()
    paths = []
    for idx in np.linspace(0, len(dataset) - 1, count).round().astype(int):
        sample = dataset[int(idx)]
        batch = model.data_preprocessor(bev_collate([sample]), False)
        with torch.no_grad():
            pred = model(**batch, mode="predict")[0]
        info = dataset.infos[dataset.indices[int(idx)]]
        name = f"{info['scene_name']}_{info['frame_index']:02d}"
        if "detection" in tasks:
            picture = _boxes_picture(dataset, info, sample, pred["detection"], score_threshold)
            paths.append(picture.save(out_dir / f"{name}.png"))
        if "occupancy" in tasks:
            paths.append(_occupancy_picture(info, sample, pred["occupancy"], out_dir / f"{name}_occupancy.png"))
        if "lanes" in tasks:
            paths.append(_lanes_picture(dataset, info, pred["lanes"], out_dir / f"{name}_lanes.png"))
    return paths


def _boxes_picture(dataset, info: dict, sample: dict, pred: dict, score_threshold: float):
    import numpy as np
    from PIL import Image

    from perception.visualization.sample import render_sample

    cameras = list(info["cams"])  # the rig's order (checked when the infos load)
    images = [Image.open(dataset.data_root / info["cams"][c]["data_path"]) for c in cameras]
    ego2img = np.stack([info["cams"][c]["ego2img"] for c in cameras])
    return render_sample(images, ego2img, gt_boxes=sample["gt_boxes"].numpy(), gt_labels=sample["gt_labels"].numpy(),
                         pred_boxes=pred["boxes"].cpu().numpy(), pred_labels=pred["labels"].cpu().numpy(),
                         pred_scores=pred["scores"].cpu().numpy(), score_threshold=score_threshold, bev_range=32.0,
                         camera_names=cameras,
                         title=f"{info['scene_name']} frame {info['frame_index']}: predictions with score "
                               f">= {score_threshold} vs ground truth")


def _occupancy_picture(info: dict, sample: dict, pred: dict, path: Path) -> Path:
    from perception.evaluation.occupancy import confusion_matrix, miou_from_confusion
    from perception.visualization.occupancy import render_occupancy_comparison

    gt, mask = sample["occ_semantics"].numpy(), sample["occ_mask_camera"].numpy()
    semantics = pred["semantics"].numpy()
    miou = miou_from_confusion(confusion_matrix(semantics, gt, mask))["mIoU"]
    render_occupancy_comparison(gt, semantics, mask, title=f"{info['scene_name']} frame {info['frame_index']}",
                                iou=miou, path=path)
    return path


def _lanes_picture(dataset, info: dict, pred: dict, path: Path) -> Path:
    """GT (the frame json of the info) next to the prediction: BEV centerlines and links, and the front
    camera with traffic elements and the projected centerlines."""
    import json

    from PIL import Image

    from perception.evaluation.openlane_v2 import frame_from_prediction
    from perception.visualization.lanes import render_lane_comparison

    frame = json.loads((dataset.data_root / info["openlane_path"]).read_text())
    front = next(iter(info["cams"]))  # the rig's first camera, the traffic elements' camera
    image = Image.open(dataset.data_root / info["cams"][front]["data_path"])
    render_lane_comparison(frame["annotation"], frame_from_prediction(pred), front_image=image,
                           ego2img=info["cams"][front]["ego2img"],
                           title=f"{info['scene_name']} frame {info['frame_index']}", path=path)
    return path


def result_line(tasks: tuple[str, ...], trained: dict, untrained: dict) -> str:
    """The final line: trained metrics of every task, then the untrained baselines."""
    parts, baselines = [], []
    if "detection" in tasks:
        parts += [f"NDS={trained['nuscenes/NDS']:.4f}", f"mAP={trained['nuscenes/mAP']:.4f}"]
        baselines.append(f"untrained_NDS={untrained['nuscenes/NDS']:.4f}")
    if "occupancy" in tasks:
        parts += [f"mIoU={trained['occupancy/mIoU']:.2f}", f"RayIoU={trained['occupancy/RayIoU']:.2f}"]
        baselines.append(f"untrained_mIoU={untrained['occupancy/mIoU']:.2f}")
    if "lanes" in tasks:
        parts.append(f"OLS={trained['lanes/OLS']:.4f}")
        if tasks == ("lanes",):
            parts.append(f"DET_l={trained['lanes/DET_l']:.4f}")
        baselines.append(f"untrained_OLS={untrained['lanes/OLS']:.4f}")
    return "RESULT " + " ".join(parts + baselines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.tasks == ("detection2d",):  # 2D pretraining: its own data and model (tools/_demo_detection2d.py)
        register_all()
        allow_runner_checkpoints(trusted=args.trust_checkpoint)
        return run_detection2d(args)
    if args.tasks == ("segmentation2d",):  # 2D pretraining: tools/_demo_segmentation2d.py
        register_all()
        allow_runner_checkpoints(trusted=args.trust_checkpoint)
        return run_segmentation2d(args)
    start = time.monotonic()
    out = Path(args.out)
    world = out / "world"
    register_all()
    allow_runner_checkpoints(trusted=args.trust_checkpoint)
    ensure_world(world, args)
    runner = build_runner(args, world, out / "train")
    if next(runner.model.parameters()).device.type == "cpu":
        torch.set_num_threads(cpu_threads(args.threads))
        print(f"[demo] {torch.get_num_threads()} torch threads")
    untrained, trained = evaluate_train_evaluate(runner, args.max_minutes, args.schedule == "budget", start)
    pictures = draw_pictures(runner, out / "pictures", args.pictures, args.tasks)
    if "detection" in args.tasks:
        for key in ("NDS", "mAP", "mATE", "mASE", "mAOE", "mAVE", "mAAE"):
            print(f"[demo] {key:5s} untrained {untrained.get(f'nuscenes/{key}', float('nan')):.4f} "
                  f"trained {trained.get(f'nuscenes/{key}', float('nan')):.4f}")
    if "occupancy" in args.tasks:
        for key in ("mIoU", "RayIoU", "RayIoU@1", "RayIoU@2", "RayIoU@4"):
            print(f"[demo] {key:8s} untrained {untrained.get(f'occupancy/{key}', float('nan')):6.2f} "
                  f"trained {trained.get(f'occupancy/{key}', float('nan')):6.2f}")
    if "lanes" in args.tasks:
        for key in ("OLS", "DET_l", "DET_t", "TOP_ll", "TOP_lt"):
            print(f"[demo] {key:6s} untrained {untrained.get(f'lanes/{key}', float('nan')):.4f} "
                  f"trained {trained.get(f'lanes/{key}', float('nan')):.4f}")
    for path in pictures:
        print(f"[demo] picture: {path}")
    print(f"[demo] total time {(time.monotonic() - start) / 60:.1f} min")
    print(result_line(args.tasks, trained, untrained))
    return 0


if __name__ == "__main__":
    from _cli import run_tool

    run_tool(main, "demo.py")
