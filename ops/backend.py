"""Backend selection for the deformable ops.

``backend=None`` picks the compiled kernel for the tensors' device (CUDA kernel for CUDA tensors,
C++ kernel for CPU tensors). ``"reference"``, ``"cpu"`` or ``"cuda"`` force one. The environment
variable ``PERCEPTION_OPS_BACKEND`` (same values, or ``auto``) forces a backend for every call that
does not pass one. A kernel that cannot be built falls back to the reference with one warning.
"""

from __future__ import annotations

import os

import torch

from . import _extension

__all__ = ["BACKEND_ENV", "BACKENDS", "calls_kernels_directly", "select_backend"]

BACKEND_ENV = "PERCEPTION_OPS_BACKEND"
BACKENDS = ("reference", "cpu", "cuda")


def _requested(backend: str | None) -> tuple[str | None, str]:
    if backend is not None:
        return backend, "the backend argument"
    env = os.environ.get(BACKEND_ENV, "").strip().lower()
    if env in ("", "auto"):
        return None, ""
    return env, f"${BACKEND_ENV}"


def select_backend(backend: str | None, device: torch.device) -> str:
    """Resolve ``backend`` for tensors on ``device`` to one of ``BACKENDS``, or ``"meta"`` for meta
    tensors (shape inference, e.g. building and tracing huge models without memory)."""
    requested, source = _requested(backend)
    if requested is not None and requested not in BACKENDS:
        raise ValueError(f"{source} must be one of {BACKENDS} (or None for automatic), got {requested!r}")
    if device.type == "meta":
        return "meta"  # shapes only: the custom ops' fake kernels answer without computing
    if requested == "reference":
        return "reference"
    kind = requested or device.type
    if kind not in ("cpu", "cuda"):
        return "reference"  # no compiled kernel for this device type (e.g. mps, xpu)
    if kind != device.type:
        raise ValueError(f"{source} asks for the {kind} kernel, but the tensors are on {device}")
    return kind if _kernels_usable(kind) else "reference"


@torch._dynamo.assume_constant_result
def _kernels_usable(kind: str) -> bool:
    """Build or load the ``kind`` kernels on first use. torch.compile runs this eagerly and keeps the
    answer as a constant: when a process's first op call is traced (mmengine's ``compile=True``
    compiles train_step before any step), the build must not be traced into the graph."""
    if kind not in _extension.loaded_kernels:
        _extension.load_kernels(kind)
    return _extension.loaded_kernels[kind] is not None


_PLAIN_TENSOR_TYPES = (torch.Tensor, torch.nn.Parameter)


def calls_kernels_directly(*tensors: torch.Tensor) -> bool:
    """Whether an op call may skip the ``torch.library`` dispatcher and call its kernels through a
    plain ``autograd.Function``.

    The custom ops' Python autograd wrapper costs about 100 µs of host time per call (measured by
    ``tools/benchmark_ops.py --host-overhead``), which adds up in eager training of small models
    whose GPU work per call is short. The direct path runs the same kernels, so it is taken only in
    plain eager mode: not while torch.compile, torch.export or torch.jit.trace traces (they need
    the registered op, and the first two its fake kernel), not under functorch transforms, and not
    for meta tensors or tensor subclasses such as fake tensors (they need the fake kernel).
    """
    if torch.compiler.is_compiling() or torch.jit.is_tracing() or torch._C._are_functorch_transforms_active():
        return False
    return not tensors[0].is_meta and all(type(t) in _PLAIN_TENSOR_TYPES for t in tensors)
