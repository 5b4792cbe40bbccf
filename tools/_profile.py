"""Where a step's time goes: torch.profiler over a few steps, kernels grouped into categories.

Used by the benchmark tools' ``--profile``. On CUDA it sums the device time of every kernel (one
stream, so the sum is the time the GPU was busy) and compares it with the wall-clock time of the
step: a step whose GPU is busy for much less than its wall time is bound by the host (Python,
dispatch, kernel launches), and faster kernels cannot help it. On CPU it sums the self time of the
ATen ops instead, which leaves out the Python around them.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from _timing import synchronize
from torch.autograd import DeviceType
from torch.profiler import ProfilerActivity, profile

# First match wins, so specific names come before generic ones. CUDA kernel names and ATen op
# names are matched lower-cased.
CATEGORIES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("dcnv3 backward", ("dcnv3_backward", "dcnv3_mask_softmax_backward")),
    ("dcnv3 forward", ("dcnv3",)),
    ("deformable attention", ("msda_", "ms_deform_attn")),
    ("optimizer", ("adam", "sgd", "foreach", "multi_tensor", "_amp_update_scale", "unscale", "lerp_", "addcdiv_",
                   "addcmul_")),
    ("attention", ("scaled_dot_product", "flash", "fmha", "efficient_attention")),
    # cuDNN convolutions run implicit-GEMM kernels, so they are told apart before the matmuls.
    ("convolution", ("conv", "cudnn", "depthwise", "fprop", "dgrad", "wgrad", "implicit", "winograd")),
    ("matmul", ("gemm", "cutlass", "xmma", "cublas", "sm90_", "sm80_", "aten::mm", "aten::addmm", "aten::bmm",
                "aten::linear")),
    ("layer norm", ("layer_norm", "layernorm", "gammabeta")),
    ("batch norm", ("batch_norm", "batchnorm", "bn_fw", "bn_bw")),
    ("indexing", ("index", "nonzero", "gather", "scatter", "masked_select")),
    ("softmax and loss", ("softmax", "cross_entropy", "nll_loss", "log_softmax")),
    ("inductor fused", ("triton_",)),  # torch.compile's generated kernels not named above
    ("reduction", ("reduce", "aten::sum", "aten::mean")),
    ("copy and cast", ("copy", "memcpy", "memset", "aten::to", "aten::contiguous", "fill", "aten::cat")),
    ("elementwise", ("elementwise", "aten::add", "aten::mul", "aten::gelu", "aten::div", "aten::sub")),
)


def categorize(name: str) -> str:
    """The category of a kernel or ATen op name ("other" if none matches)."""
    lowered = name.lower()
    for category, needles in CATEGORIES:
        if any(needle in lowered for needle in needles):
            return category
    return "other"


@dataclass
class StepProfile:
    """Per-step figures: wall ms, busy ms (kernel or op time), launches, and ms per category."""

    wall_ms: float
    busy_ms: float
    launches: float
    category_ms: dict[str, float] = field(default_factory=dict)
    top: list[tuple[str, float, float]] = field(default_factory=list)  # (name, ms per step, calls per step)


def profile_steps(fn: Callable[[], object], device: torch.device, steps: int = 5, warmup: int = 3,
                  top: int = 12) -> StepProfile:
    """Run ``fn`` ``warmup`` times untraced, then ``steps`` times under the profiler."""
    for _ in range(warmup):
        fn()
    synchronize(device)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        start = time.perf_counter()
        for _ in range(steps):
            fn()
        synchronize(device)
        wall = time.perf_counter() - start
    return summarize(_timed_events(prof.key_averages(), device), wall * 1e3, steps, top)


def _timed_events(averages, device: torch.device) -> list[tuple[str, float, int]]:
    """(name, total µs, calls) of the events whose time is the work: kernels on CUDA, ATen ops on CPU."""
    if device.type == "cuda":
        return [(e.key, e.self_device_time_total, e.count) for e in averages
                if e.device_type == DeviceType.CUDA and e.self_device_time_total > 0]
    return [(e.key, e.self_cpu_time_total, e.count) for e in averages
            if e.key.startswith(("aten::", "perception_ops::")) and e.self_cpu_time_total > 0]


def summarize(events: list[tuple[str, float, int]], wall_ms: float, steps: int, top: int = 12) -> StepProfile:
    """Group (name, total µs, calls) events of ``steps`` steps into per-step figures."""
    category_ms: dict[str, float] = {}
    for name, micros, _ in events:
        category = categorize(name)
        category_ms[category] = category_ms.get(category, 0.0) + micros / 1e3 / steps
    ranked = sorted(events, key=lambda e: e[1], reverse=True)[:top]
    return StepProfile(
        wall_ms=wall_ms / steps,
        busy_ms=sum(micros for _, micros, _ in events) / 1e3 / steps,
        launches=sum(calls for _, _, calls in events) / steps,
        category_ms=dict(sorted(category_ms.items(), key=lambda item: item[1], reverse=True)),
        top=[(name, micros / 1e3 / steps, calls / steps) for name, micros, calls in ranked],
    )


def format_profile(result: StepProfile, device: torch.device) -> str:
    """A table of the categories (ms per step and share of the busy time) and the top kernels."""
    unit = "kernels" if device.type == "cuda" else "ATen ops"
    idle = max(result.wall_ms - result.busy_ms, 0.0)
    lines = [f"  profile: wall {result.wall_ms:.2f} ms/step | {unit} busy {result.busy_ms:.2f} ms "
             f"({100 * result.busy_ms / result.wall_ms:.0f}% of wall) | not busy {idle:.2f} ms | "
             f"{result.launches:.0f} {unit} per step"]
    for category, ms in result.category_ms.items():
        lines.append(f"    {category:22s} {ms:8.2f} ms  {100 * ms / result.busy_ms:5.1f}%")
    lines.append(f"  top {unit} (ms per step, calls per step):")
    for name, ms, calls in result.top:
        lines.append(f"    {ms:8.2f} ms {calls:6.0f}x  {name[:110]}")
    return "\n".join(lines)
