#!/usr/bin/env python
"""Evaluate a checkpoint with the test set/metrics of an mmengine config.

    python tools/test.py CONFIG CHECKPOINT [--work-dir DIR] [--format-only] [--cfg-options key=value ...]
    torchrun --nproc-per-node 8 tools/test.py CONFIG CHECKPOINT --launcher pytorch
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


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    if not Path(args.checkpoint).is_file():
        raise SystemExit(f"checkpoint not found: {args.checkpoint}")
    register_all()
    from mmengine.runner import Runner

    cfg = load_config(args.config, args.cfg_options, args.work_dir, args.launcher)
    cfg.load_from = args.checkpoint
    if args.format_only:
        evaluators = cfg.test_evaluator if isinstance(cfg.test_evaluator, list) else [cfg.test_evaluator]
        for evaluator in evaluators:
            evaluator.format_only = True
    runner = Runner.from_cfg(cfg)
    return runner.test()


if __name__ == "__main__":
    main()
