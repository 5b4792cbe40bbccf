"""Just-in-time build of the C++/CUDA kernels.

Nothing is compiled when the package is installed. On first use of a kernel backend we build it
with ``torch.utils.cpp_extension.load`` and ninja into a per-user cache directory keyed by the torch
version, the CUDA version, the Python version and a hash of the sources, the flags and the host CPU
(the C++ code is built for this CPU, ``-march=native`` on x86-64: docs/ops.md, "CPU layout"), so a
rebuild happens only when one of those changes, and a cache shared between different machines
never hands one of them code for another's instruction set. A file lock around the build lets
several processes (DDP ranks) start at once: the first builds, the others wait and then load the
result.

The build command holds no path of the checkout that asked for it: the sources and headers are
copied into the cache folder and compiled from there, and a folder whose build completed is loaded
without running ninja at all (its command names the torch of one virtual environment). So any
number of checkouts of the same sources share one build (docs/ops.md, "Just-in-time build").

If a kernel cannot be built, we emit one warning saying what is missing and fall back to the
pure-PyTorch reference; we never surface a raw compiler traceback unless asked
(``PERCEPTION_OPS_VERBOSE=1``).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
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
# Part of the cache key: bumped when the folder's layout changes, so that checkouts running older
# code keep their own folders instead of rebuilding over ours.
_CACHE_LAYOUT = "staged-sources-1"
_STAGED = "src"  # the copies of the sources and headers inside a build folder
_COMPLETE = "complete.json"  # written once a build has been loaded; names its library

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


def _headers() -> list[Path]:
    return [_CSRC / h for h in _HEADERS if (_CSRC / h).exists()]


def _digest(kind: str) -> str:
    sha = hashlib.sha256()
    sha.update(f"{_CACHE_LAYOUT} {torch.version.git_version}".encode())
    for path in _sources(kind) + _headers():
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


def _stage_sources(kind: str, directory: Path) -> list[Path]:
    """Copy the sources and headers into ``directory``, so the build command names no checkout.

    Called under the build lock. A copy is written only when missing or different (a rewrite would
    give it a new mtime, which ninja takes for a change), and atomically (a temporary file renamed
    into place), so a killed process never leaves half a source behind. The folder is keyed by a
    hash of these very files, so a copy differs only when it was damaged.
    """
    staged = directory / _STAGED
    staged.mkdir(exist_ok=True)
    for path in _sources(kind) + _headers():
        target = staged / path.name
        data = path.read_bytes()
        if target.is_file() and target.read_bytes() == data:
            continue
        partial = staged / f".{path.name}.{os.getpid()}.partial"
        partial.write_bytes(data)
        os.replace(partial, target)
    return [staged / path.name for path in _sources(kind)]


def _library_path(directory: Path, name: str) -> Path:
    from torch.utils import cpp_extension

    return directory / f"{name}{cpp_extension.LIB_EXT}"


def _import_completed(directory: Path, name: str) -> ModuleType | None:
    """The library of a completed build in ``directory``, imported without running ninja; else None.

    ninja would compare its recorded command with a new one, and that command names the torch
    headers of one virtual environment, so a checkout with its own ``.venv`` would rebuild. The
    folder's name already keys everything the library depends on (sources, flags, CPU, torch).
    """
    library = _library_path(directory, name)
    try:
        completed = json.loads((directory / _COMPLETE).read_text())
    except (OSError, ValueError):
        return None
    if completed.get("library") != library.name or not library.is_file():
        return None
    spec = importlib.util.spec_from_file_location(name, library)
    if spec is None or spec.loader is None:
        return None
    try:  # module_from_spec opens an extension library, exec_module runs its init
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    except (ImportError, OSError):  # a damaged library: relink it (ninja sees it missing) rather than give up
        library.unlink(missing_ok=True)
        return None
    return module


def _mark_complete(directory: Path, name: str) -> None:
    partial = directory / f".{_COMPLETE}.{os.getpid()}.partial"
    partial.write_text(json.dumps({"library": _library_path(directory, name).name}))
    os.replace(partial, directory / _COMPLETE)


def _build(kind: str) -> ModuleType:
    from filelock import FileLock
    from torch.utils import cpp_extension

    directory = build_directory(kind)
    directory.mkdir(parents=True, exist_ok=True)
    name = f"perception_ops_{kind}_{directory.name.rsplit('-', 1)[-1]}"
    with FileLock(str(directory / "build.lock")):
        module = _import_completed(directory, name)
        if module is not None:
            return module
        # Only the holder of our lock builds, so torch's own lock file here can only be left over
        # from a process killed mid-build; torch would wait for it forever.
        (directory / "lock").unlink(missing_ok=True)
        sources = _stage_sources(kind, directory)
        module = cpp_extension.load(
            name=name,
            # Includes are quoted and resolve next to the staged sources: no include path needed.
            sources=[str(s) for s in sources],
            extra_cflags=_CFLAGS + _host_cflags() + (["-DWITH_CUDA"] if kind == "cuda" else []),
            extra_cuda_cflags=_cuda_cflags() if kind == "cuda" else [],
            extra_ldflags=["-fopenmp"],
            build_directory=str(directory),
            verbose=os.environ.get(VERBOSE_ENV, "") not in ("", "0"),
        )
        _mark_complete(directory, name)
        return module


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
