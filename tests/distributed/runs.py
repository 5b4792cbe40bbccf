"""How the distributed tests run the tools (docs/distributed.md, "What CI proves"): as subprocesses,
under torchrun (2 gloo ranks on CPU) or alone, each process with one thread so that both see the same
float arithmetic, on the three-head tiny config shrunk by --cfg-options."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
TINY_CONFIG = REPO / "configs" / "multitask" / "detection_occupancy_lanes_tiny_synthetic.py"
IMAGE_SIZE = (160, 90)  # (w, h): small images keep the runs short on 2 cores
TIMEOUT_S = 900


@dataclass(frozen=True)
class OddWorld:
    root: Path
    train_infos: Path
    val_infos: Path


@dataclass(frozen=True)
class TrainRun:
    work_dir: Path
    output: str
    audits: list[dict]  # rank_audit/rank<r>.json, by rank
    checkpoint: Path


def run_tool(tool: str, args: list[str], *, ranks: int, cwd: Path) -> str:
    """Run ``tools/<tool>.py`` alone (``ranks=1``) or under torchrun with ``--launcher pytorch``; one thread
    per process and no GPU. Returns stdout + stderr; fails the test on a non-zero exit."""
    script = str(REPO / "tools" / f"{tool}.py")
    if ranks == 1:
        command = [sys.executable, script, *args]
    else:
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(ranks),
                   script, *args, "--launcher", "pytorch"]
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="", PYTHONUNBUFFERED="1")
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=TIMEOUT_S)
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"{' '.join(command)} exited {done.returncode}:\n{output[-6000:]}"
    return output


# The model the runs train and evaluate: the tiny config without hybrid queries (train_options says why).
MODEL_OPTIONS = ["model.heads.detection.hybrid_queries=0"]


def train_options(world: OddWorld, *, iters: int, accumulate: int = 1) -> list[str]:
    """--cfg-options: the world's train split, batch 1, no random augmentation (pipeline steps 1-3 of
    configs/_base_/datasets/synthetic_bev.py set to identity), constant LR, no validation, a checkpoint at
    the end, every voxel in the occupancy loss (its 50k-voxel draw would differ between the runs), and no
    hybrid queries: their top-k over the perspective head's proposals is discontinuous, so a last-bit
    difference between the runs' weights can swap a proposal (with them, FSDP's second-step loss differed
    from DDP's by 3e-4 relative, beyond the tolerance; without them the runs agree)."""
    return [
        "randomness.seed=0", f"train_cfg.max_iters={iters}", f"optim_wrapper.accumulative_counts={accumulate}",
        f"train_dataloader.dataset.data_root={world.root}", f"train_dataloader.dataset.ann_file={world.train_infos}",
        "train_dataloader.batch_size=1", "train_dataloader.num_workers=0", "train_dataloader.persistent_workers=False",
        "train_dataloader.dataset.pipeline.0.num_workers=1",
        "train_dataloader.dataset.pipeline.1.training=False",
        f"train_dataloader.dataset.pipeline.1.final_size=({IMAGE_SIZE[0]},{IMAGE_SIZE[1]})",
        "train_dataloader.dataset.pipeline.2.prob=0.0",
        "train_dataloader.dataset.pipeline.3.rotation_range=(0.0,0.0)",
        "train_dataloader.dataset.pipeline.3.scale_range=(1.0,1.0)",
        "train_dataloader.dataset.pipeline.3.flip_x_prob=0.0", "train_dataloader.dataset.pipeline.3.flip_y_prob=0.0",
        "train_dataloader.dataset.pipeline.3.half_turn_prob=0.0",
        "param_scheduler.0.start_factor=1.0", "model.heads.occupancy.loss_max_voxels=None",
        "val_cfg=None", "val_dataloader=None", "val_evaluator=None",
        "default_hooks.logger.interval=1", f"default_hooks.checkpoint.interval={iters}", *MODEL_OPTIONS,
    ]


def eval_options(world: OddWorld, out_dir: Path) -> list[str]:
    """--cfg-options: the world's val split, batch 1 (each sample alone, so that a prediction does not
    depend on which samples share its batch), the three metrics on that split."""
    options = [
        f"test_dataloader.dataset.data_root={world.root}", f"test_dataloader.dataset.ann_file={world.val_infos}",
        "test_dataloader.batch_size=1", "test_dataloader.num_workers=0", "test_dataloader.persistent_workers=False",
        "test_dataloader.dataset.pipeline.0.num_workers=1", f"test_evaluator.0.out_dir={out_dir / 'nuscenes_eval'}",
        *MODEL_OPTIONS,
    ]
    for metric in range(3):  # detection, occupancy, lanes
        options += [f"test_evaluator.{metric}.data_root={world.root}",
                    f"test_evaluator.{metric}.ann_file={world.val_infos}"]
    return options


def train(world: OddWorld, work_dir: Path, *, ranks: int, iters: int, accumulate: int = 1,
          extra: tuple[str, ...] = ()) -> TrainRun:
    """tools/train.py with --audit-ranks; ``extra`` are further arguments (e.g. --strategy fsdp)."""
    work_dir.mkdir(parents=True)
    output = run_tool("train", [str(TINY_CONFIG), "--work-dir", str(work_dir), "--audit-ranks", *extra,
                                "--cfg-options", *train_options(world, iters=iters, accumulate=accumulate)],
                      ranks=ranks, cwd=work_dir)
    audits = [json.loads((work_dir / "rank_audit" / f"rank{r}.json").read_text()) for r in range(ranks)]
    return TrainRun(work_dir, output, audits, work_dir / f"iter_{iters}.pth")


def load_weights(checkpoint: Path) -> dict:
    """The state dict of an mmengine checkpoint."""
    import torch

    return torch.load(checkpoint, map_location="cpu", weights_only=False)["state_dict"]


def parameter_rms_difference(a: dict, b: dict) -> float:
    """Root mean square of the element differences over the floating tensors of two state dicts except
    the BatchNorm running statistics (rank-local under DDP without SyncBN)."""
    import torch

    assert a.keys() == b.keys()
    names = [k for k in a if a[k].is_floating_point() and ".running_" not in k]
    diff = torch.cat([(a[k].double() - b[k].double()).flatten() for k in names])
    return float(diff.pow(2).mean().sqrt())
