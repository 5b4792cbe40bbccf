#!/usr/bin/env python
"""Train a model from an mmengine config (single process, or DDP / FSDP under torchrun).

    python tools/train.py CONFIG [--work-dir DIR] [--resume [CKPT]] [--amp [float16|bfloat16]]
                                 [--cfg-options key=value ...]
    torchrun --nproc-per-node 8 tools/train.py CONFIG --launcher pytorch [--strategy fsdp] [--audit-ranks]

On a machine without CUDA a torchrun launch uses gloo (docs/distributed.md). ``--strategy fsdp`` (or
the config's ``strategy = dict(type='fsdp', ...)``) shards the model with torch FSDP2 instead of DDP;
``--audit-ranks`` records each rank's samples, losses and final parameter digest under
``<work dir>/rank_audit/`` and fails if the ranks' parameters differ.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from _runner_common import TRUST_CHECKPOINT_HELP, DictAction, allow_runner_checkpoints, load_config, register_all

if TYPE_CHECKING:
    from mmengine.config import Config


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Train a model (mmengine Runner)")
    parser.add_argument("config", help="config file")
    parser.add_argument("--work-dir", help="where logs and checkpoints go (default: work_dirs/<config name>)")
    parser.add_argument("--resume", nargs="?", const="auto", default=None,
                        help="resume from CKPT, or from the latest checkpoint in the work dir if no CKPT")
    parser.add_argument("--amp", nargs="?", const="float16", default=None, choices=["float16", "bfloat16"],
                        help="automatic mixed precision (AmpOptimWrapper; needs a GPU), default float16")
    parser.add_argument("--cfg-options", nargs="+", action=DictAction, help="override config entries: key=value")
    parser.add_argument("--trust-checkpoint", action="store_true", help=TRUST_CHECKPOINT_HELP)
    parser.add_argument("--strategy", choices=["ddp", "fsdp"], default=None,
                        help="data parallelism under a launcher: DDP (default) or FSDP2 sharding (docs/distributed.md)")
    parser.add_argument("--audit-ranks", action="store_true",
                        help="write each rank's samples, losses and parameter digest to <work dir>/rank_audit/")
    parser.add_argument("--launcher", choices=["none", "pytorch", "slurm", "mpi"], default="none")
    parser.add_argument("--local_rank", "--local-rank", type=int, default=0)
    return parser.parse_args(argv)


def apply_strategy(cfg: Config, strategy: str | None, audit_ranks: bool) -> type:
    """Set ``cfg.strategy`` from ``--strategy`` (keeping the config's FSDP options), add the
    :class:`RankAuditHook` for ``--audit-ranks``, and return the Runner class to build."""
    from mmengine.runner import Runner

    from perception.engine import FSDPRunner, fsdp_options

    if strategy is not None:
        cfg.strategy = {**(cfg.get("strategy") or {}), "type": strategy}
    if audit_ranks:
        cfg.custom_hooks = [*(cfg.get("custom_hooks") or []), dict(type="RankAuditHook")]
    if fsdp_options(cfg) is None:
        return Runner
    if cfg.optim_wrapper.get("type", "OptimWrapper") == "AmpOptimWrapper":
        raise SystemExit("--amp does not combine with --strategy fsdp: set strategy.mixed_precision instead")
    return FSDPRunner


def apply_resume(cfg: Config, requested: str | None, trusted: bool = False) -> None:
    """``--resume [CKPT]`` (or the config's ``resume = True``): continue from the checkpoint that
    :func:`perception.engine.select_resume_checkpoint` takes, the newest intact one for ``auto``
    (docs/robustness.md). A work dir without checkpoints starts from the beginning (the config's
    ``load_from``, if any); a damaged ``CKPT`` or a work dir of damaged checkpoints is an error."""
    import os

    from perception.engine import select_resume_checkpoint

    if requested is None and cfg.get("resume"):
        requested = cfg.get("load_from") or "auto"
    if requested is None:
        return
    report = print if os.environ.get("RANK", "0") == "0" else (lambda line: None)  # once under torchrun
    checkpoint = select_resume_checkpoint(cfg, requested, trusted=trusted, report=report)
    cfg.resume = checkpoint is not None
    if checkpoint is not None:
        cfg.load_from = checkpoint


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    register_all()
    allow_runner_checkpoints(trusted=args.trust_checkpoint)
    from perception.engine import prepare_distributed

    cfg = load_config(args.config, args.cfg_options, args.work_dir, args.launcher)
    if args.amp:
        if cfg.optim_wrapper.get("type", "OptimWrapper") != "AmpOptimWrapper":
            cfg.optim_wrapper.type = "AmpOptimWrapper"
            cfg.optim_wrapper.setdefault("loss_scale", "dynamic")
        cfg.optim_wrapper.dtype = args.amp
    apply_resume(cfg, args.resume, trusted=args.trust_checkpoint)
    runner_class = apply_strategy(cfg, args.strategy, args.audit_ranks)
    prepare_distributed(cfg)
    runner = runner_class.from_cfg(cfg)
    runner.train()


if __name__ == "__main__":
    from _cli import run_tool

    run_tool(main, "train.py")
