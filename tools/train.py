#!/usr/bin/env python
"""Train a model from an mmengine config (single process, or DDP under torchrun).

    python tools/train.py CONFIG [--work-dir DIR] [--resume [CKPT]] [--amp [float16|bfloat16]]
                                 [--cfg-options key=value ...]
    torchrun --nproc-per-node 8 tools/train.py CONFIG --launcher pytorch
"""

from __future__ import annotations

import argparse

from _runner_common import DictAction, load_config, register_all


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Train a model (mmengine Runner)")
    parser.add_argument("config", help="config file")
    parser.add_argument("--work-dir", help="where logs and checkpoints go (default: work_dirs/<config name>)")
    parser.add_argument("--resume", nargs="?", const="auto", default=None,
                        help="resume from CKPT, or from the latest checkpoint in the work dir if no CKPT")
    parser.add_argument("--amp", nargs="?", const="float16", default=None, choices=["float16", "bfloat16"],
                        help="automatic mixed precision (AmpOptimWrapper; needs a GPU), default float16")
    parser.add_argument("--cfg-options", nargs="+", action=DictAction, help="override config entries: key=value")
    parser.add_argument("--launcher", choices=["none", "pytorch", "slurm", "mpi"], default="none")
    parser.add_argument("--local_rank", "--local-rank", type=int, default=0)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    register_all()
    from mmengine.runner import Runner

    cfg = load_config(args.config, args.cfg_options, args.work_dir, args.launcher)
    if args.amp:
        if cfg.optim_wrapper.get("type", "OptimWrapper") != "AmpOptimWrapper":
            cfg.optim_wrapper.type = "AmpOptimWrapper"
            cfg.optim_wrapper.setdefault("loss_scale", "dynamic")
        cfg.optim_wrapper.dtype = args.amp
    if args.resume == "auto":
        cfg.resume, cfg.load_from = True, None
    elif args.resume is not None:
        cfg.resume, cfg.load_from = True, args.resume
    runner = Runner.from_cfg(cfg)
    runner.train()


if __name__ == "__main__":
    main()
