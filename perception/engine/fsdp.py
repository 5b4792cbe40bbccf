"""Fully sharded data parallel training with torch FSDP2 (``torch.distributed.fsdp.fully_shard``) for
the largest backbones (InternImage-H/G), docs/distributed.md "FSDP".

Each InternImage block (``InternImageLayer``) and stage (``InternImageBlock``) becomes its own FSDP
unit, the rest of the model the root unit: a unit's parameters, gradients and optimizer state live
sharded over the ranks, and its parameters are gathered only around its forward and backward. The
backbone's own per-block activation checkpointing (``with_cp``) recomputes each block's activations
in the backward pass. Configs select it with ``strategy = dict(type="fsdp", ...)`` (keys: the
arguments of :func:`shard_model`), ``tools/train.py`` with ``--strategy fsdp``; it then builds
:class:`FSDPRunner` instead of mmengine's Runner.
"""

from __future__ import annotations

import contextlib
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from mmengine.device import get_device
from mmengine.dist import broadcast, is_main_process
from mmengine.model import convert_sync_batchnorm
from mmengine.runner import Runner, load_checkpoint
from torch import nn

__all__ = ["DEFAULT_SHARD_TYPES", "FSDPRunner", "enable_activation_checkpointing", "fsdp_options", "shard_model"]

# Class names (the model's packages sit above this one and are not imported): InternImage's blocks
# and stages; any other module type can be listed in the strategy's ``shard_types``.
DEFAULT_SHARD_TYPES = ("InternImageLayer", "InternImageBlock")
MIXED_PRECISION = {"bfloat16": torch.bfloat16, "float16": torch.float16}


def enable_activation_checkpointing(model: nn.Module) -> int:
    """Switch on every module's own activation checkpointing (``with_cp``, InternImage's per-block
    ``torch.utils.checkpoint``); returns how many modules have one. Raises if none has."""
    switched = 0
    for module in model.modules():
        if hasattr(module, "with_cp"):
            module.with_cp = True
            switched += 1
    if not switched:
        raise ValueError("activation_checkpointing: no module of the model has a with_cp switch")
    return switched


def shard_model(model: nn.Module, shard_types: Sequence[str] = DEFAULT_SHARD_TYPES, *,
                activation_checkpointing: bool = True, reshard_after_forward: bool = True,
                mixed_precision: str | None = None) -> nn.Module:
    """Shard ``model`` in place with FSDP2 over the default process group and return it.

    Every module whose class name is in ``shard_types`` becomes an FSDP unit (innermost first), then
    the model itself (every remaining parameter). ``reshard_after_forward`` frees a unit's gathered
    parameters after its forward (gathered again for the backward: least memory); False keeps them
    to the backward (less communication). ``mixed_precision`` ('bfloat16' or 'float16') computes in
    that dtype and reduces gradients in float32; the sharded parameters stay float32.
    """
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    if not torch.distributed.is_initialized():
        raise RuntimeError("shard_model needs a process group: launch with torchrun and --launcher pytorch")
    if activation_checkpointing:
        enable_activation_checkpointing(model)
    policy = MixedPrecisionPolicy()
    if mixed_precision is not None:
        if mixed_precision not in MIXED_PRECISION:
            raise ValueError(f"mixed_precision must be one of {sorted(MIXED_PRECISION)} or None, "
                             f"got {mixed_precision!r}")
        policy = MixedPrecisionPolicy(param_dtype=MIXED_PRECISION[mixed_precision], reduce_dtype=torch.float32)
    units = [m for m in model.modules() if type(m).__name__ in set(shard_types) and m is not model]
    for unit in reversed(units):  # modules() lists parents first; FSDP2 shards children first
        fully_shard(unit, reshard_after_forward=reshard_after_forward, mp_policy=policy)
    fully_shard(model, reshard_after_forward=reshard_after_forward, mp_policy=policy)
    return model


def _count_units(model: nn.Module) -> int:
    from torch.distributed.fsdp import FSDPModule

    return sum(isinstance(module, FSDPModule) for module in model.modules())


def fsdp_options(cfg) -> dict[str, Any] | None:
    """The :func:`shard_model` arguments of ``cfg.strategy = dict(type='fsdp', ...)``; None for any
    other strategy (DDP, the default)."""
    strategy = cfg.get("strategy")
    if not strategy or strategy.get("type", "ddp").lower() != "fsdp":
        return None
    return {k: v for k, v in dict(strategy).items() if k != "type"}


def _broadcast_from_rank0(model: nn.Module) -> None:
    """Every rank starts from rank 0's parameters and buffers (what DDP does when it wraps)."""
    for tensor in model.state_dict().values():
        broadcast(tensor)


@contextlib.contextmanager
def _serving_state_dict(model: nn.Module, state: dict) -> Iterator[None]:
    """``model.state_dict()`` returns ``state`` inside the block (so mmengine's save_checkpoint writes it)."""
    model.state_dict = lambda *args, **kwargs: state  # type: ignore[method-assign]
    try:
        yield
    finally:
        del model.state_dict


class FSDPRunner(Runner):
    """mmengine's Runner with the model sharded by :func:`shard_model` instead of wrapped in DDP.

    Weights are initialised, ``load_from`` is loaded and rank 0's state broadcast before sharding.
    Checkpoints hold the full (unsharded) model state dict, so ``tools/test.py`` and DDP runs read
    them as any other; they hold no optimizer state (its sharded form is not saved), so ``resume``
    is refused: continue from a checkpoint with ``load_from`` (weights, fresh optimizer).
    """

    def wrap_model(self, model_wrapper_cfg: dict | None, model: nn.Module) -> nn.Module:
        """Shard ``model`` (``model_wrapper_cfg`` is not used) once it is whole and the same on every rank."""
        if not self.distributed:
            raise RuntimeError("strategy fsdp needs a distributed launch (torchrun ... --launcher pytorch)")
        if self._resume:
            raise ValueError("strategy fsdp cannot resume (its checkpoints hold no optimizer state); "
                             "use load_from=CHECKPOINT to start from its weights")
        options = fsdp_options(self.cfg) or {}
        model = shard_model(self._whole_model(model), **options)
        self.logger.info(f"strategy fsdp (FSDP2): {_count_units(model)} units, activation checkpointing "
                         f"{'on' if options.get('activation_checkpointing', True) else 'off'}, options {options}")
        return model

    def _whole_model(self, model: nn.Module) -> nn.Module:
        """``model`` on the device, SyncBN-converted if configured, initialised, ``load_from`` loaded, and
        rank 0's parameters and buffers on every rank: what DDP's Runner does, before sharding."""
        model = model.to(get_device())
        if self.cfg.get("sync_bn"):
            model = convert_sync_batchnorm(model, self.cfg.sync_bn)
        if hasattr(model, "init_weights"):
            model.init_weights()
        if self._load_from is not None:  # mmengine's loader without the Runner's hooks (not built yet)
            load_checkpoint(model, self._load_from, map_location="cpu", strict=False, logger=self.logger)
            self._has_loaded = True
        _broadcast_from_rank0(model)
        return model

    def _init_model_weights(self) -> None:
        """Done in :meth:`_whole_model` instead: mmengine's version would initialise again and broadcast the
        state dict's tensors, which after sharding are DTensor shards."""

    def save_checkpoint(self, out_dir: str, filename: str, file_client_args: dict | None = None,
                        save_optimizer: bool = True, save_param_scheduler: bool = True, meta: dict | None = None,
                        by_epoch: bool = True, backend_args: dict | None = None) -> None:
        """Every rank gathers the full model state dict (a collective); rank 0 writes it with mmengine's
        checkpoint layout, without optimizer state."""
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        full = get_model_state_dict(self.model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
        if not is_main_process():
            return
        state = OrderedDict(full)  # with the modules' versions, as nn.Module.state_dict() gives them
        state._metadata = getattr(self.model.state_dict(), "_metadata", OrderedDict())  # type: ignore[attr-defined]
        with _serving_state_dict(self.model, state):
            super().save_checkpoint(out_dir, filename, file_client_args, save_optimizer=False,
                                    save_param_scheduler=save_param_scheduler, meta=meta, by_epoch=by_epoch,
                                    backend_args=backend_args)
