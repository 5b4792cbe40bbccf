"""Distributed runs of the tools (docs/distributed.md): the set-up that lets torchrun work on a machine
without CUDA (gloo), a hook that records what each rank trained on and ends with every rank's
parameter digest, and the check that a metric scores each sample once.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from collections.abc import Iterable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from mmengine.config import Config
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from torch import Tensor, nn

from .registry import HOOKS

if TYPE_CHECKING:
    from mmengine.runner import Runner

__all__ = ["DuplicateSampleError", "RankAuditHook", "SYNC_BN_NEEDS_CUDA", "check_each_sample_once",
           "prepare_distributed", "state_digests"]

# torch.nn.SyncBatchNorm.forward refuses CPU inputs in training once a process group exists, and its
# kernels (torch.batch_norm_stats, ...) have no CPU implementation (docs/distributed.md, "SyncBN").
SYNC_BN_NEEDS_CUDA = ("sync_bn needs CUDA: torch.nn.SyncBatchNorm raises 'SyncBatchNorm expected input tensor to "
                      "be on GPU' on CPU tensors (docs/distributed.md, SyncBN); drop sync_bn for a CPU run")
DDP_TYPES = ("MMDistributedDataParallel", "DistributedDataParallel")


class DuplicateSampleError(ValueError):
    """A metric was handed more than one result for a sample (docs/distributed.md, evaluation)."""


def check_each_sample_once(tokens: Iterable[str], metric: str) -> list[str]:
    """The sample tokens of a metric's collected results, in order; raises :class:`DuplicateSampleError`
    when one repeats (a rank's results collected twice, or padding the sampler added left in)."""
    tokens = list(tokens)
    counts = Counter(tokens)
    repeated = [token for token, count in counts.items() if count > 1]
    if repeated:
        raise DuplicateSampleError(
            f"{metric}: {len(repeated)} of {len(counts)} samples were handed to the metric more than once "
            f"(e.g. {repeated[0]}, {counts[repeated[0]]} times); a metric must keep exactly one result per "
            "processed sample so that collect_results can drop the sampler's padding (docs/distributed.md)")
    return tokens


def prepare_distributed(cfg: Config, launcher: str | None = None) -> None:
    """Adapt ``cfg`` of a distributed launch to a machine without CUDA, before the Runner is built.

    mmengine 0.10.7 assumes a GPU there: ``init_dist`` calls ``torch.cuda.set_device`` (missing from a
    CPU build of torch), the config's backend is NCCL and the DDP wrapper gets ``device_ids``, which
    torch refuses for a CPU module. So, without CUDA, this sets the gloo backend, a DDP wrapper
    without ``device_ids`` and initialises the process group from torchrun's environment; with
    CUDA, or without a launcher, it changes nothing. ``sync_bn`` is refused on CPU (see
    :data:`SYNC_BN_NEEDS_CUDA`) before anything is built.
    """
    launcher = launcher or cfg.get("launcher", "none")
    if launcher == "none" or torch.cuda.is_available():
        return
    if cfg.get("sync_bn"):
        raise ValueError(SYNC_BN_NEEDS_CUDA)
    if launcher != "pytorch":
        raise ValueError(f"--launcher {launcher} needs CUDA (mmengine's set-up calls torch.cuda.set_device); "
                         "on CPU launch with torchrun and --launcher pytorch")
    env_cfg = dict(cfg.get("env_cfg") or {})
    env_cfg["dist_cfg"] = {**(env_cfg.get("dist_cfg") or {}), "backend": "gloo"}
    cfg.env_cfg = env_cfg
    cfg.model_wrapper_cfg = _cpu_model_wrapper(cfg)
    if not torch.distributed.is_initialized():
        _init_gloo(env_cfg["dist_cfg"].get("timeout"))


def _init_gloo(timeout_s: float | None) -> None:
    """The gloo process group of torchrun's environment (RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT)."""
    kwargs = {"timeout": timedelta(seconds=timeout_s)} if timeout_s is not None else {}
    torch.distributed.init_process_group(backend="gloo", **kwargs)


def _cpu_model_wrapper(cfg: Config) -> dict:
    """The config's model wrapper (default: mmengine's DDP as its Runner builds it), without device ids."""
    wrapper = dict(cfg.get("model_wrapper_cfg") or dict(
        type="MMDistributedDataParallel", broadcast_buffers=False,
        find_unused_parameters=cfg.get("find_unused_parameters", False)))
    if str(wrapper.get("type", "MMDistributedDataParallel")).rsplit(".", 1)[-1] in DDP_TYPES:
        wrapper.setdefault("device_ids", None)
    return wrapper


def _full(tensor: Tensor) -> Tensor:
    """The whole tensor of a DTensor (FSDP2's sharded parameter; a collective), else the tensor."""
    full_tensor = getattr(tensor, "full_tensor", None)
    return (full_tensor() if callable(full_tensor) else tensor).detach().cpu().contiguous()


def _digest(named: Iterator[tuple[str, Tensor]]) -> str:
    """sha256 over the names, dtypes, shapes and bytes of the tensors, in the given order."""
    sha = hashlib.sha256()
    for name, tensor in named:
        full = _full(tensor)
        sha.update(f"{name}:{full.dtype}:{tuple(full.shape)};".encode())
        sha.update(full.view(-1).view(torch.uint8).numpy().tobytes() if full.numel() else b"")
    return sha.hexdigest()


def _batchnorm_buffers(model: nn.Module) -> Iterator[tuple[str, Tensor]]:
    for name, module in model.named_modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and module.running_mean is not None:
            yield f"{name}.running_mean", module.running_mean
            yield f"{name}.running_var", module.running_var


def state_digests(model: nn.Module) -> dict[str, str]:
    """sha256 digests (in name order, of the whole tensors also when FSDP shards them: then every rank
    must call this) of the ``parameters``, all ``buffers`` and the ``batchnorm`` running statistics."""
    return {"parameters": _digest(model.named_parameters()), "buffers": _digest(model.named_buffers()),
            "batchnorm": _digest(_batchnorm_buffers(model))}


@HOOKS.register_module()
class RankAuditHook(Hook):
    """Writes ``<out_dir>/rank<r>.json`` per rank: the sample tokens and losses of every training
    iteration and, after training, the :func:`state_digests` of the model (``tools/train.py
    --audit-ranks``). With ``check``, training fails when the ranks' parameters differ.

    Args:
        out_dir: where the files go (default ``<work_dir>/rank_audit``).
        check: compare the parameter digests of all ranks after training and raise if they differ.
    """

    priority = "VERY_LOW"

    def __init__(self, out_dir: str | None = None, check: bool = True) -> None:
        self.out_dir, self.check = out_dir, check
        self.iterations: list[dict[str, Any]] = []
        self._samples: list[str] = []

    def before_train_iter(self, runner: Runner, batch_idx: int, data_batch: dict | None = None) -> None:
        meta = (data_batch or {}).get("meta") or []
        self._samples = [str(m.get("sample_token", m.get("token", "?"))) for m in meta]

    def after_train_iter(self, runner: Runner, batch_idx: int, data_batch: dict | None = None,
                         outputs: dict | None = None) -> None:
        losses = {k: float(v) for k, v in (outputs or {}).items() if "loss" in k}
        self.iterations.append({"iter": runner.iter, "samples": self._samples, "losses": losses})

    def after_train(self, runner: Runner) -> None:
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        digests = state_digests(model)
        rank, world_size = _rank_and_world_size()
        record = {"rank": rank, "world_size": world_size, "model": type(model).__name__,
                  "sharded_modules": _sharded_modules(model), "iterations": self.iterations, "digests": digests}
        out_dir = Path(self.out_dir or Path(runner.work_dir) / "rank_audit")
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / f"rank{rank}.json").write_text(json.dumps(record, indent=1))
        if self.check and world_size > 1:
            self._check_ranks_agree(digests["parameters"], world_size, runner)

    @staticmethod
    def _check_ranks_agree(digest: str, world_size: int, runner: Runner) -> None:
        gathered: list[str | None] = [None] * world_size
        torch.distributed.all_gather_object(gathered, digest)
        if len(set(gathered)) != 1:
            raise RuntimeError(f"the ranks' parameters differ after training (digests {gathered}): gradients were "
                               "not synchronised (docs/distributed.md)")
        runner.logger.info(f"rank audit: the parameters of all {world_size} ranks agree (sha256 {digest[:12]})")


def _sharded_modules(model: nn.Module) -> list[str]:
    """Names of the FSDP2 units of ``model`` ('' is the model itself); empty when it is not sharded."""
    from torch.distributed.fsdp import FSDPModule

    return [name for name, module in model.named_modules() if isinstance(module, FSDPModule)]


def _rank_and_world_size() -> tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return int(os.environ.get("RANK", 0)), 1
