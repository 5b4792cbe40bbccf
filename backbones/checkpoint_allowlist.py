"""The harmless Python types a checkpoint may pickle and still load with ``weights_only=True``.

Official InternImage, OpenMMLab/mmengine and our own checkpoints carry more than tensors: the
official classification training checkpoints pickle their yacs ``CfgNode`` config, and every
mmengine checkpoint carries its message hub (``HistoryBuffer`` objects holding numpy arrays, and the
buffer's statistics functions, pickled as ``getattr(HistoryBuffer, 'mean')``). torch's restricted
unpickler refuses all of those by default. :func:`harmless_checkpoint_globals` lists what is let
through and nothing more: every entry is a data container or a constructor of one; none can call
arbitrary code (docs/backbones.md, "Loading checkpoints", says why each is there).
"""

from __future__ import annotations

import pickle
from collections import OrderedDict
from typing import Any

__all__ = ["HISTORY_BUFFER_STATISTICS", "PickledYacsConfig", "harmless_checkpoint_globals"]

# The statistics methods mmengine's HistoryBuffer registers itself (and pickles by name).
HISTORY_BUFFER_STATISTICS = ("min", "max", "current", "mean")


class PickledYacsConfig(OrderedDict):
    """Stand-in for ``yacs.config.CfgNode`` (the config of official classification checkpoints).

    torch's restricted unpickler fills only plain dicts, so the class named in the pickle builds an
    ``OrderedDict`` (keys and values as saved, nested configs likewise); yacs is not needed.
    """

    def __new__(cls, *args: Any, **kwargs: Any) -> OrderedDict:  # type: ignore[misc]
        return OrderedDict()


def _history_buffer_statistic(owner: Any, name: str) -> Any:
    """``getattr`` limited to what an mmengine checkpoint pickles: HistoryBuffer's own statistics."""
    from mmengine.logging import HistoryBuffer

    if owner is not HistoryBuffer or name not in HISTORY_BUFFER_STATISTICS:
        raise pickle.UnpicklingError(f"getattr({getattr(owner, '__name__', owner)!r}, {name!r}) is not on the "
                                     "allow-list (only HistoryBuffer's own statistics methods are)")
    return getattr(owner, name)


def _numpy_globals() -> list[Any]:
    """numpy arrays, dtypes and scalars, under the names numpy 1.x (``numpy.core``) and 2.x
    (``numpy._core``) pickle them with.

    ``_reconstruct`` only allocates an array of an allow-listed class (ndarray); ``ndarray``'s
    ``__setstate__`` refuses raw bytes for object arrays; ``scalar`` copies bytes into a scalar.
    """
    try:
        import numpy as np
        import numpy.dtypes
    except ImportError:
        return []
    multiarray = np._core.multiarray if hasattr(np, "_core") else np.core.multiarray
    entries: list[Any] = [np.ndarray, np.dtype]
    for package in ("numpy.core", "numpy._core"):
        entries += [(multiarray._reconstruct, f"{package}.multiarray._reconstruct"),
                    (multiarray.scalar, f"{package}.multiarray.scalar")]
    # a dtype is rebuilt by np.dtype(...) and then given its state, which needs its class allowed
    entries += [dtype_class for name, dtype_class in vars(numpy.dtypes).items()
                if name.endswith("DType") and isinstance(dtype_class, type)]
    return entries


def _mmengine_globals() -> list[Any]:
    try:
        from mmengine.logging import HistoryBuffer
    except ImportError:
        return []
    return [HistoryBuffer, (_history_buffer_statistic, "builtins.getattr")]


def harmless_checkpoint_globals() -> list[Any]:
    """Entries for ``torch.serialization.safe_globals``: classes/functions, or (object, pickled name)."""
    return [(PickledYacsConfig, "yacs.config.CfgNode"), *_numpy_globals(), *_mmengine_globals()]
