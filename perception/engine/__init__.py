"""mmengine glue: registries, runner set-up, hooks, checkpointing."""

from .registry import DATASETS, HOOKS, METRICS, MODELS, TRANSFORMS, register_lower_layers

__all__ = ["DATASETS", "HOOKS", "METRICS", "MODELS", "TRANSFORMS", "register_lower_layers"]
