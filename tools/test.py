#!/usr/bin/env python
"""Evaluate a checkpoint with the test set/metrics of an mmengine config.

    python tools/test.py CONFIG CHECKPOINT [--work-dir DIR] [--format-only] [--cfg-options key=value ...]
    torchrun --nproc-per-node 8 tools/test.py CONFIG CHECKPOINT --launcher pytorch

``--format-only`` writes each test metric's leaderboard submission instead of scoring: the nuScenes
detection metric its ``results_nusc.json``; an ``OccupancyMetric`` the Occ3D challenge folder
``<work dir>/occupancy_submission/<sample token>.npz`` and ``<work dir>/occupancy_submission.zip``
(unless its config names an ``out_dir``; docs/occupancy.md).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from _runner_common import DictAction, load_config, register_all


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Test a checkpoint (mmengine Runner)")
    parser.add_argument("config", help="config file")
    parser.add_argument("checkpoint", help="checkpoint file")
    parser.add_argument("--work-dir", help="where logs go (default: work_dirs/<config name>)")
    parser.add_argument("--cfg-options", nargs="+", action=DictAction, help="override config entries: key=value")
    parser.add_argument("--format-only", action="store_true",
                        help="write the leaderboard submission (e.g. results_nusc.json) without scoring it")
    parser.add_argument("--launcher", choices=["none", "pytorch", "slurm", "mpi"], default="none")
    parser.add_argument("--local_rank", "--local-rank", type=int, default=0)
    return parser.parse_args(argv)


def _metric_configs(evaluator) -> list:
    """The metric configs of a test evaluator: one dict, a list, or ``dict(type='Evaluator', metrics=...)``."""
    if isinstance(evaluator, (list, tuple)):
        return list(evaluator)
    if _type_name(evaluator) == "Evaluator" and "metrics" in evaluator:
        metrics = evaluator["metrics"]
        return list(metrics) if isinstance(metrics, (list, tuple)) else [metrics]
    return [evaluator]


def _type_name(metric) -> str:
    kind = metric.get("type", "") if hasattr(metric, "get") else ""
    return (kind if isinstance(kind, str) else getattr(kind, "__name__", "")).rsplit(".", 1)[-1]


def set_format_only(cfg) -> list:
    """Switch every test metric to ``format_only``; an ``OccupancyMetric`` without an ``out_dir`` writes its
    submission to ``<work_dir>/occupancy_submission`` (its zip beside it). Returns the metric configs."""
    metrics = _metric_configs(cfg.test_evaluator)
    for metric in metrics:
        metric["format_only"] = True
        if _type_name(metric) == "OccupancyMetric" and not metric.get("out_dir"):
            metric["out_dir"] = str(Path(cfg.work_dir) / "occupancy_submission")
    return metrics


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    if not Path(args.checkpoint).is_file():
        raise SystemExit(f"checkpoint not found: {args.checkpoint}")
    register_all()
    from mmengine.runner import Runner

    cfg = load_config(args.config, args.cfg_options, args.work_dir, args.launcher)
    cfg.load_from = args.checkpoint
    if args.format_only:
        set_format_only(cfg)
    runner = Runner.from_cfg(cfg)
    return runner.test()


if __name__ == "__main__":
    main()
