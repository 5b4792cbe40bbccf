"""The project's one mmengine registry tree.

Every package registers into these registries, so configs can say ``type='InternImage'`` or
``type='BEVFormerV2'``. Packages below ``perception`` in the layering (``ops``, ``backbones``)
cannot import this module; their classes are registered here, from above (see
:func:`register_lower_layers`).
"""

from __future__ import annotations

from mmengine.registry import DATA_SAMPLERS as MMENGINE_DATA_SAMPLERS
from mmengine.registry import DATASETS as MMENGINE_DATASETS
from mmengine.registry import EVALUATOR as MMENGINE_EVALUATOR
from mmengine.registry import HOOKS as MMENGINE_HOOKS
from mmengine.registry import LOOPS as MMENGINE_LOOPS
from mmengine.registry import METRICS as MMENGINE_METRICS
from mmengine.registry import MODELS as MMENGINE_MODELS
from mmengine.registry import OPTIM_WRAPPER_CONSTRUCTORS as MMENGINE_OPTIM_WRAPPER_CONSTRUCTORS
from mmengine.registry import OPTIM_WRAPPERS as MMENGINE_OPTIM_WRAPPERS
from mmengine.registry import OPTIMIZERS as MMENGINE_OPTIMIZERS
from mmengine.registry import PARAM_SCHEDULERS as MMENGINE_PARAM_SCHEDULERS
from mmengine.registry import TRANSFORMS as MMENGINE_TRANSFORMS
from mmengine.registry import VISBACKENDS as MMENGINE_VISBACKENDS
from mmengine.registry import VISUALIZERS as MMENGINE_VISUALIZERS
from mmengine.registry import Registry

_SCOPE = "perception"

MODELS = Registry("model", parent=MMENGINE_MODELS, scope=_SCOPE)
DATASETS = Registry("dataset", parent=MMENGINE_DATASETS, scope=_SCOPE)
TRANSFORMS = Registry("transform", parent=MMENGINE_TRANSFORMS, scope=_SCOPE)
DATA_SAMPLERS = Registry("data sampler", parent=MMENGINE_DATA_SAMPLERS, scope=_SCOPE)
METRICS = Registry("metric", parent=MMENGINE_METRICS, scope=_SCOPE)
EVALUATOR = Registry("evaluator", parent=MMENGINE_EVALUATOR, scope=_SCOPE)
HOOKS = Registry("hook", parent=MMENGINE_HOOKS, scope=_SCOPE)
LOOPS = Registry("loop", parent=MMENGINE_LOOPS, scope=_SCOPE)
OPTIMIZERS = Registry("optimizer", parent=MMENGINE_OPTIMIZERS, scope=_SCOPE)
OPTIM_WRAPPERS = Registry("optim_wrapper", parent=MMENGINE_OPTIM_WRAPPERS, scope=_SCOPE)
OPTIM_WRAPPER_CONSTRUCTORS = Registry("optimizer wrapper constructor", parent=MMENGINE_OPTIM_WRAPPER_CONSTRUCTORS,
                                      scope=_SCOPE)
PARAM_SCHEDULERS = Registry("parameter scheduler", parent=MMENGINE_PARAM_SCHEDULERS, scope=_SCOPE)
VISUALIZERS = Registry("visualizer", parent=MMENGINE_VISUALIZERS, scope=_SCOPE)
VISBACKENDS = Registry("vis_backend", parent=MMENGINE_VISBACKENDS, scope=_SCOPE)
# Kinds of ground truth a BEV dataset can load (perception/data/labels/); mmengine has no such root.
LABEL_TYPES = Registry("label type", scope=_SCOPE)

_registered_lower = False


def register_lower_layers() -> None:
    """Register the ``ops`` modules and ``backbones`` models (which cannot import this file)."""
    global _registered_lower
    if _registered_lower:
        return
    import ops

    for cls in (ops.DCNv3, ops.MultiScaleDeformableAttention):
        MODELS.register_module(module=cls, force=True)
    try:
        import backbones
    except ImportError:  # backbones not importable in a partial install
        return
    for name, obj in getattr(backbones, "REGISTRABLE", {}).items():
        MODELS.register_module(name=name, module=obj, force=True)
    _registered_lower = True
