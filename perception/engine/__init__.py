"""mmengine glue: registries, runner set-up, hooks, checkpointing."""

from .optim import LayerDecayOptimWrapperConstructor
from .registry import DATASETS, HOOKS, METRICS, MODELS, TRANSFORMS, register_lower_layers
from .time_budget import TimeBudgetHook

__all__ = ["DATASETS", "HOOKS", "METRICS", "MODELS", "TRANSFORMS", "LayerDecayOptimWrapperConstructor",
           "TimeBudgetHook", "register_lower_layers"]
