"""mmengine glue: registries, runner set-up, hooks, checkpointing, distributed and sharded training."""

from .checkpointing import (
    CrashSafeCheckpointHook,
    ResumeError,
    checkpoint_damage,
    select_resume_checkpoint,
    use_crash_safe_checkpoints,
    write_bytes_atomically,
)
from .distributed import (
    SYNC_BN_NEEDS_CUDA,
    DuplicateSampleError,
    RankAuditHook,
    check_each_sample_once,
    prepare_distributed,
    state_digests,
)
from .fsdp import DEFAULT_SHARD_TYPES, FSDPRunner, enable_activation_checkpointing, fsdp_options, shard_model
from .optim import LayerDecayOptimWrapperConstructor
from .registry import DATASETS, HOOKS, METRICS, MODELS, TRANSFORMS, register_lower_layers
from .time_budget import TimeBudgetHook

__all__ = ["DATASETS", "DEFAULT_SHARD_TYPES", "HOOKS", "METRICS", "MODELS", "SYNC_BN_NEEDS_CUDA", "TRANSFORMS",
           "CrashSafeCheckpointHook", "DuplicateSampleError", "FSDPRunner", "LayerDecayOptimWrapperConstructor",
           "RankAuditHook", "ResumeError", "TimeBudgetHook", "check_each_sample_once", "checkpoint_damage",
           "enable_activation_checkpointing", "fsdp_options", "prepare_distributed", "register_lower_layers",
           "select_resume_checkpoint", "shard_model", "state_digests", "use_crash_safe_checkpoints",
           "write_bytes_atomically"]
