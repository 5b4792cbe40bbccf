#!/usr/bin/env python
"""Evaluate a checkpoint with the test set/metrics of an mmengine config.

    python tools/test.py CONFIG CHECKPOINT [--work-dir DIR] [--format-only] [--cfg-options key=value ...]
    torchrun --nproc-per-node 8 tools/test.py CONFIG CHECKPOINT --launcher pytorch [--out-metrics FILE]

Under torchrun each rank scores a share of the samples and rank 0 computes the metrics over all of them,
each once, in dataset order (docs/distributed.md); without CUDA the ranks talk over gloo.
``--out-metrics FILE`` writes (rank 0) ``{"metrics": {...}, "scored_samples": {prefix: [tokens]}}``, the
sample tokens each metric scored in the order it got them.

``--format-only`` writes each test metric's leaderboard submission instead of scoring: the nuScenes
detection metric its ``results_nusc.json``; an ``OccupancyMetric`` the Occ3D challenge folder
``<work dir>/occupancy_submission/<sample token>.npz`` and ``<work dir>/occupancy_submission.zip``
(unless its config names an ``out_dir``; docs/occupancy.md); an ``OpenLaneV2Metric`` the OpenLane
Topology leaderboard pickle ``<work dir>/lane_submission/submission.pkl`` with the envelope given by
``--method --authors --email --institution --country`` (docs/lanes.md).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING

from _runner_common import TRUST_CHECKPOINT_HELP, DictAction, allow_runner_checkpoints, load_config, register_all

if TYPE_CHECKING:
    from mmengine.evaluator import Evaluator


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Test a checkpoint (mmengine Runner)")
    parser.add_argument("config", help="config file")
    parser.add_argument("checkpoint", help="checkpoint file")
    parser.add_argument("--trust-checkpoint", action="store_true", help=TRUST_CHECKPOINT_HELP)
    parser.add_argument("--work-dir", help="where logs go (default: work_dirs/<config name>)")
    parser.add_argument("--cfg-options", nargs="+", action=DictAction, help="override config entries: key=value")
    parser.add_argument("--format-only", action="store_true",
                        help="write the leaderboard submission (e.g. results_nusc.json) without scoring it")
    envelope = parser.add_argument_group("OpenLane-V2 submission envelope (with --format-only)")
    envelope.add_argument("--method", help="method name")
    envelope.add_argument("--authors", nargs="+", help="up to 10 author names")
    envelope.add_argument("--email", help="contact e-mail")
    envelope.add_argument("--institution", help="institution / company")
    envelope.add_argument("--country", help="country / region (ISO 3166 name or code)")
    parser.add_argument("--out-metrics", help="write the metrics and each metric's scored samples as JSON (rank 0)")
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


ENVELOPE_FIELDS = ("method", "authors", "email", "institution", "country")
DEFAULT_OUT_DIRS = {"OccupancyMetric": "occupancy_submission", "OpenLaneV2Metric": "lane_submission"}


def set_format_only(cfg, envelope: dict | None = None) -> list:
    """Switch every test metric to ``format_only``; an ``OccupancyMetric`` or ``OpenLaneV2Metric`` without an
    ``out_dir`` writes its submission to ``<work_dir>/occupancy_submission`` (its zip beside it) or
    ``<work_dir>/lane_submission``; the given ``envelope`` fields go to every ``OpenLaneV2Metric``.
    Returns the metric configs."""
    metrics = _metric_configs(cfg.test_evaluator)
    for metric in metrics:
        metric["format_only"] = True
        kind = _type_name(metric)
        if kind in DEFAULT_OUT_DIRS and not metric.get("out_dir"):
            metric["out_dir"] = str(Path(cfg.work_dir) / DEFAULT_OUT_DIRS[kind])
        if kind == "OpenLaneV2Metric":
            metric.update({k: v for k, v in (envelope or {}).items() if v is not None})
    return metrics


def _json_value(value):
    """A metric value as JSON takes it: numbers as floats (NaN kept), other values as they are or as text."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return value if isinstance(value, (str, list, dict)) else str(value)


def write_metrics(path: str | Path, metrics: dict, evaluator: Evaluator) -> Path:
    """``{"metrics": ..., "scored_samples": {prefix: [tokens]}}`` as JSON: the metric values and the sample
    tokens each metric of ``evaluator`` scored (its ``scored_tokens``), in the order it got them."""
    scored = {metric.prefix or type(metric).__name__: list(metric.scored_tokens)
              for metric in evaluator.metrics if hasattr(metric, "scored_tokens")}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    values = {key: _json_value(value) for key, value in metrics.items()}
    path.write_text(json.dumps({"metrics": values, "scored_samples": scored}, indent=1))
    return path


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    if not Path(args.checkpoint).is_file():
        raise SystemExit(f"checkpoint not found: {args.checkpoint}")
    register_all()
    allow_runner_checkpoints(trusted=args.trust_checkpoint)
    from mmengine.dist import is_main_process
    from mmengine.runner import Runner

    from perception.engine import prepare_distributed

    cfg = load_config(args.config, args.cfg_options, args.work_dir, args.launcher)
    cfg.load_from = args.checkpoint
    if args.format_only:
        set_format_only(cfg, {field: getattr(args, field) for field in ENVELOPE_FIELDS})
    prepare_distributed(cfg)
    runner = Runner.from_cfg(cfg)
    metrics = runner.test()
    if args.out_metrics and is_main_process():
        write_metrics(args.out_metrics, metrics, runner.test_loop.evaluator)
    return metrics


if __name__ == "__main__":
    from _cli import run_tool

    run_tool(main, "test.py")
