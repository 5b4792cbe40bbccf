"""The dtype rules shared by both ops.

* Without autocast every floating input must have the same dtype (a clear error otherwise).
* Under autocast for the tensors' device, the op computes in the dtype of its feature tensor
  (``input`` / ``value``): the other floating inputs (offsets, masks, locations, weights) are cast
  to it. Gradients flow back to each input in its own dtype.
* The CUDA kernels handle float64, float32, float16 and bfloat16 with float32 accumulation for the
  half types. The CPU kernel handles float64 and float32; half types on CPU are computed in
  float32 and the result cast back.
"""

from __future__ import annotations

import torch
from torch import Tensor

HALF_TYPES = (torch.float16, torch.bfloat16)


def unify_dtypes(op: str, primary_name: str, primary: Tensor, **others: Tensor) -> list[Tensor]:
    """Return ``others`` in the compute dtype (see the module docstring)."""
    dtype = primary.dtype
    if _autocast_enabled(primary.device.type):
        return [t.to(dtype) for t in others.values()]
    for name, t in others.items():
        if t.dtype != dtype:
            raise TypeError(f"{op}: {name} has dtype {t.dtype} but {primary_name} has {dtype}; pass tensors "
                            f"of one dtype (or run under torch.autocast)")
    return list(others.values())


def _autocast_enabled(device_type: str) -> bool:
    try:
        return torch.is_autocast_enabled(device_type)
    except RuntimeError:  # device types without autocast (e.g. "meta", used for shape/FLOP tracing)
        return False


def kernel_dtype(backend: str, dtype: torch.dtype) -> torch.dtype:
    """The dtype a kernel backend computes in for inputs of ``dtype``."""
    return torch.float32 if backend == "cpu" and dtype in HALF_TYPES else dtype
