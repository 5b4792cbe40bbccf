"""Just-in-time build of the C++/CUDA kernels.

Nothing is compiled when the package is installed. On first use of a kernel backend we build it
with ``torch.utils.cpp_extension.load`` and ninja into a per-user cache directory keyed by the torch
version, the CUDA version, the Python version and a hash of the sources, the flags and the host CPU
(the C++ code is built for this CPU, ``-march=native`` on x86-64: docs/ops.md, "CPU layout"), so a
rebuild happens only when one of those changes, and a cache shared between different machines
never hands one of them code for another's instruction set. A file lock around the build lets
several processes (DDP ranks) start at once: the first builds, the others wait and then load the
result.

If a kernel cannot be built, we emit one warning saying what is missing and fall back to the
pure-PyTorch reference; we never surface a raw compiler traceback unless asked
(``PERCEPTION_OPS_VERBOSE=1``).
"""

from __future__ import annotations

import hashlib
import os
import platform
import re
import shutil
import subprocess
import sys
import warnings
from pathlib import Path
from types import ModuleType

import torch

__all__ = ["CACHE_ENV", "VERBOSE_ENV", "KernelBuildWarning", "build_directory", "load_kernels",
           "loaded_kernels"]

CACHE_ENV = "PERCEPTION_OPS_CACHE"
VERBOSE_ENV = "PERCEPTION_OPS_VERBOSE"
_CSRC = Path(__file__).resolve().parent / "csrc"
_CPU_SOURCES = ("bindings.cpp", "dcnv3_cpu.cpp", "ms_deform_attn_cpu.cpp")
_CUDA_SOURCES = _CPU_SOURCES + ("dcnv3_cuda.cu", "ms_deform_attn_cuda.cu")
_HEADERS = ("sampling.h", "chunks.h", "cpu_rows.h", "kernels.h", "cuda_utils.cuh")
# -fno-trapping-math lets the compiler vectorise the CPU kernels' branch-free selects (cpu_rows.h);
# nothing here reads floating-point exception flags.
_CFLAGS = ["-O3", "-fopenmp", "-std=c++17", "-fno-trapping-math"]
_CUDA_FLAGS = ["-O3", "--use_fast_math", "-std=c++17"]

# kind ("cpu"/"cuda") -> loaded module, or None when the build failed. Read directly by the
# backend selection so that torch.compile can trace it as a plain dict lookup.
loaded_kernels: dict[str, ModuleType | None] = {}


class KernelBuildWarning(UserWarning):
    """A compiled kernel could not be built; the reference implementation is used instead."""


def _cache_root() -> Path:
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return base / "perception_stack" / "ops"


def _host_cflags() -> list[str]:
    """Instruction-set flags for the C++ code: this CPU's (AVX2 and FMA where it has them) on x86-64."""
    return ["-march=native"] if platform.machine().lower() in ("x86_64", "amd64") else []


def _cpu_identity() -> str:
    """What -march=native compiles for: the CPU model and its feature flags (Linux), else the platform."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        lines = []
    wanted = ("model name", "flags", "features", "cpu part")
    found = {}
    for line in lines:
        key = line.split(":", 1)[0].strip().lower()
        if key in wanted and key not in found:
            found[key] = line
    return "\n".join(found.values()) or f"{platform.machine()} {platform.processor()}"


def _sources(kind: str) -> list[Path]:
    return [_CSRC / name for name in (_CUDA_SOURCES if kind == "cuda" else _CPU_SOURCES)]


def _digest(kind: str) -> str:
    sha = hashlib.sha256()
    for path in _sources(kind) + [_CSRC / h for h in _HEADERS if (_CSRC / h).exists()]:
        sha.update(path.name.encode())
        sha.update(path.read_bytes())
    sha.update(" ".join(_CFLAGS + _host_cflags() + _CUDA_FLAGS).encode())
    if _host_cflags():
        sha.update(_cpu_identity().encode())
    return sha.hexdigest()[:12]


def build_directory(kind: str) -> Path:
    """Where the ``kind`` kernels are (or would be) built for this torch/CUDA/Python."""
    cuda = torch.version.cuda or "none"
    tag = f"{kind}-torch{torch.__version__}-cuda{cuda}-py{sys.version_info[0]}{sys.version_info[1]}"
    return _cache_root() / f"{tag}-{_digest(kind)}"


def _nvcc_version(cuda_home: str) -> str | None:
    try:
        text = subprocess.run([os.path.join(cuda_home, "bin", "nvcc"), "--version"], capture_output=True,
                              text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    match = re.search(r"release (\d+\.\d+)", text)
    return match.group(1) if match else None


def _missing_for(kind: str) -> str | None:
    """A sentence naming what prevents building ``kind`` kernels, or None when all is there."""
    from torch.utils import cpp_extension

    if not cpp_extension.is_ninja_available():
        return "ninja is not installed (pip install ninja)"
    compiler = os.environ.get("CXX", "c++")
    if shutil.which(compiler) is None:
        return f"no C++ compiler found (looked for '{compiler}'; install g++ or set CXX)"
    if kind != "cuda":
        return None
    if torch.version.cuda is None:
        return f"this torch build ({torch.__version__}) has no CUDA support"
    if not torch.cuda.is_available():
        return "no CUDA GPU is visible"
    if cpp_extension.CUDA_HOME is None:
        return "the CUDA toolkit (nvcc) was not found; set CUDA_HOME"
    nvcc = _nvcc_version(cpp_extension.CUDA_HOME)
    if nvcc is None:
        return f"nvcc in {cpp_extension.CUDA_HOME} did not report a version"
    if nvcc.split(".")[0] != torch.version.cuda.split(".")[0]:
        return f"CUDA toolkit mismatch: nvcc {nvcc} but torch was built with CUDA {torch.version.cuda}"
    arch = _unsupported_arch(cpp_extension.CUDA_HOME)
    if arch is not None:
        return f"nvcc {nvcc} cannot build for this GPU's architecture ({arch})"
    return None


def _unsupported_arch(cuda_home: str) -> str | None:
    """The GPU's sm_XY when nvcc lists its architectures and this one is not among them."""
    major, minor = torch.cuda.get_device_capability()
    wanted = f"sm_{major}{minor}"
    try:
        listed = subprocess.run([os.path.join(cuda_home, "bin", "nvcc"), "--list-gpu-arch"], capture_output=True,
                                text=True, timeout=30).stdout.split()
    except (OSError, subprocess.SubprocessError):
        return None
    supported = {a.replace("compute_", "sm_") for a in listed}
    return wanted if supported and wanted not in supported else None


def _warn(kind: str, reason: str) -> None:
    warnings.warn(
        f"perception ops: the {kind.upper()} kernels are unavailable because {reason}. "
        f"Using the pure-PyTorch reference path instead (correct, but slower). "
        f"Set {VERBOSE_ENV}=1 to see the build log.",
        KernelBuildWarning,
        stacklevel=3,
    )


def _visible_capabilities() -> list[tuple[int, int]]:
    """The compute capabilities of the visible GPUs, each once, lowest first."""
    return sorted({torch.cuda.get_device_capability(i) for i in range(torch.cuda.device_count())})


def _cuda_arch_flags(capabilities: list[tuple[int, int]]) -> list[str]:
    """nvcc flags generating machine code (SASS) for each ``(major, minor)`` capability, no PTX.

    Written as torch writes them for ``TORCH_CUDA_ARCH_LIST="8.0;9.0"``. Their presence in
    ``extra_cuda_cflags`` makes torch add none of its own: ``_get_cuda_arch_flags`` returns nothing
    when any of those flags mentions ``arch``.
    """
    return [f"-gencode=arch=compute_{major}{minor},code=sm_{major}{minor}"
            for major, minor in sorted(set(capabilities))]


def _cuda_cflags() -> list[str]:
    """nvcc flags of the CUDA build.

    ``TORCH_CUDA_ARCH_LIST``, when set, is the user's choice and torch reads it itself. Otherwise we
    build for the visible GPUs rather than for torch's long default list (faster, and no "no kernel
    image is available" surprises from a missing arch), by passing the ``-gencode`` flags ourselves:
    the process environment is read, never written.
    """
    flags = _CUDA_FLAGS + ["-DWITH_CUDA"]
    if os.environ.get("TORCH_CUDA_ARCH_LIST"):
        return flags
    return flags + _cuda_arch_flags(_visible_capabilities())


def _build(kind: str) -> ModuleType:
    from filelock import FileLock
    from torch.utils import cpp_extension

    directory = build_directory(kind)
    directory.mkdir(parents=True, exist_ok=True)
    with FileLock(str(directory / "build.lock")):
        return cpp_extension.load(
            name=f"perception_ops_{kind}_{directory.name.rsplit('-', 1)[-1]}",
            sources=[str(s) for s in _sources(kind)],
            extra_cflags=_CFLAGS + _host_cflags() + (["-DWITH_CUDA"] if kind == "cuda" else []),
            extra_cuda_cflags=_cuda_cflags() if kind == "cuda" else [],
            extra_ldflags=["-fopenmp"],
            extra_include_paths=[str(_CSRC)],
            build_directory=str(directory),
            verbose=os.environ.get(VERBOSE_ENV, "") not in ("", "0"),
        )


def _summarise_failure(exc: BaseException) -> str:
    text = str(exc)
    errors = [line.strip() for line in text.splitlines() if "error" in line.lower()]
    detail = errors[0] if errors else (text.strip().splitlines() or [type(exc).__name__])[-1]
    return f"the build failed ({detail[:300]})"


def load_kernels(kind: str) -> ModuleType | None:
    """Build (once per process, cached on disk) and return the ``kind`` kernel module, or None."""
    if kind in loaded_kernels:
        return loaded_kernels[kind]
    module = None
    reason = _missing_for(kind)
    if reason is None:
        try:
            module = _build(kind)
        except Exception as exc:  # any failure becomes one warning and the reference path
            if os.environ.get(VERBOSE_ENV, "") not in ("", "0"):
                raise
            reason = _summarise_failure(exc)
    if module is None:
        _warn(kind, reason)
    loaded_kernels[kind] = module
    return module
