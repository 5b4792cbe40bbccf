"""Benchmark the deformable ops on every available backend.

For each shape and dtype it prints forward and forward+backward times (median of repeats), the
speed-up over the PyTorch reference measured in the same run and over fp32 for half types, on CUDA
the achieved bandwidth (minimum traffic: every tensor read or written once) as GB/s and as a share
of a device-to-device copy measured in the same run, and where we have them the official DCNv3
CUDA figure measured on an H100 and the speed target (fwd/fwd+bwd ms) from the issue tracker.

On CPU the official code has no kernel: it runs its pure-PyTorch core, one ``F.grid_sample`` over
the zero-padded input (tools/_official_dcnv3.py). The DCNv3 rows then include that formulation as
backend ``official``, timed in the same rounds as ours, the ``cpu`` row shows its times and our
speed-up over it in the official columns, and a line after the rows states the comparison.

    python tools/benchmark_ops.py                       # CUDA if present, else CPU
    python tools/benchmark_ops.py --device cpu --dcnv3 2,56,56,4,16
    python tools/benchmark_ops.py --device cuda --dtypes float32 bfloat16 --msda-preset bevformer_base
    python tools/benchmark_ops.py --host-overhead       # host time per call, dispatcher vs eager path

``--host-overhead`` times forward+backward calls on a 1x1 map, where the kernels' own work is
negligible, through the registered ``torch.library`` op (what torch.compile traces) and through the
public function (what eager code calls; argument validation included), and prints the ratio.
"""

from __future__ import annotations

import argparse
import functools
import sys
from collections.abc import Callable
from dataclasses import dataclass

import torch
from _official_dcnv3 import grid_sample_dcnv3
from _timing import median_seconds, median_seconds_interleaved

import ops


# Default DCNv3 shapes (N, H, W, groups, channels per group) with the official kernel's fp32 median
# ms (fwd, fwd+bwd) measured on an H100 with torch 2.11/cu130, and our fp32 targets on an H100
# (issue tracker figures; None where there is none).
@dataclass(frozen=True)
class Reference:
    official: tuple[float, float] | None
    target: tuple[float | None, float | None] | None


DCNV3_SHAPES = {
    (64, 56, 56, 4, 16): Reference((0.56, 2.95), (0.19, 1.0)),  # InternImage-T stage 1
    (64, 14, 14, 16, 16): Reference((0.17, 0.83), None),  # InternImage-T stage 3
    (6, 160, 400, 7, 16): Reference((1.69, 9.8), (0.56, None)),  # InternImage-B stage 1, 6 cams at 640x1600
    (6, 160, 400, 12, 16): Reference((2.87, 16.7), (0.95, 5.5)),  # InternImage-XL stage 1, 6 cameras
    (8, 64, 64, 10, 32): Reference(None, None),  # 32 channels per group (H/G); target: >= 50% of bandwidth
}
CPU_DCNV3_SHAPES = {(2, 56, 56, 4, 16): Reference(None, None)}

# MSDA presets: (batch, queries, heads, dim, levels as (H, W), points).
MSDA_PRESETS = {
    # BEVFormer-base-like encoder call: 200x200 BEV queries, 6 cameras as the batch, 4 FPN levels of
    # a 640x1600 input (strides 8..64), 8 heads of 32 channels, 8 points (4 heights x 2).
    "bevformer_base": (6, 40000, 8, 32, ((80, 200), (40, 100), (20, 50), (10, 25)), 8),
    # A DETR decoder call: 900 queries over one BEV level.
    "detr_decoder": (1, 900, 8, 32, ((200, 200),), 4),
    # Small enough for a 2-core CPU.
    "cpu_small": (1, 2500, 8, 32, ((32, 88), (16, 44), (8, 22), (4, 11)), 4),
}


@dataclass
class Timing:
    forward_ms: float
    train_ms: float


def _median_ms(fn: Callable[[], object], device: torch.device, repeats: int, warmup: int) -> float:
    return 1e3 * median_seconds(fn, device, repeats, warmup)


def _time_ops(ops_by_backend: dict[str, Callable[..., torch.Tensor]], tensors: list[torch.Tensor],
              device: torch.device, repeats: int, warmup: int) -> dict[str, Timing]:
    """Forward and forward+backward medians of each backend, timed in interleaved rounds."""
    leaves = [t.detach().requires_grad_(True) for t in tensors]
    grads: dict[str, torch.Tensor] = {}

    def forward(op: Callable[..., torch.Tensor]) -> Callable[[], torch.Tensor]:
        def run() -> torch.Tensor:
            with torch.no_grad():
                return op(*tensors)
        return run

    def train(name: str, op: Callable[..., torch.Tensor]) -> Callable[[], None]:
        def run() -> None:
            out = op(*leaves)
            out.backward(grads.setdefault(name, torch.ones_like(out)))
            for t in leaves:
                t.grad = None
        return run

    names = list(ops_by_backend)
    fwd = median_seconds_interleaved([forward(ops_by_backend[n]) for n in names], device, repeats, warmup)
    fwd_bwd = median_seconds_interleaved([train(n, ops_by_backend[n]) for n in names], device, repeats, warmup)
    return {n: Timing(1e3 * f, 1e3 * t) for n, f, t in zip(names, fwd, fwd_bwd)}


def _dcnv3_inputs(shape: tuple[int, ...], dtype: torch.dtype, device: torch.device) -> list[torch.Tensor]:
    n, h, w, group, group_channels = shape
    gen = torch.Generator(device=device).manual_seed(0)
    x = torch.randn(n, h, w, group * group_channels, device=device, dtype=dtype, generator=gen)
    offset = torch.randn(n, h, w, group * 18, device=device, dtype=dtype, generator=gen) * 2
    mask = torch.rand(n, h, w, group, 9, device=device, dtype=dtype, generator=gen).softmax(-1).flatten(-2)
    return [x, offset, mask]


def _msda_inputs(preset: tuple, dtype: torch.dtype, device: torch.device) -> tuple[list[torch.Tensor], tuple]:
    batch, queries, heads, dim, levels, points = preset
    shapes = torch.tensor(levels, dtype=torch.long, device=device)
    areas = shapes.prod(1)
    starts = torch.cat([areas.new_zeros(1), areas.cumsum(0)[:-1]])
    gen = torch.Generator(device=device).manual_seed(0)
    value = torch.randn(batch, int(areas.sum()), heads, dim, device=device, dtype=dtype, generator=gen)
    loc = torch.rand(batch, queries, heads, len(levels), points, 2, device=device, dtype=dtype, generator=gen)
    weights = torch.rand(batch, queries, heads, len(levels), points, device=device, dtype=dtype, generator=gen)
    return [value, loc, weights], (shapes, starts)


def _dcnv3_3x3(x, offset, mask, *, group, group_channels, backend):
    if backend == OFFICIAL:
        return grid_sample_dcnv3(x, offset, mask, 3, 3, 1, 1, 1, 1, 1, 1, group, group_channels, 1.0, False)
    return ops.dcnv3(x, offset, mask, 3, 3, 1, 1, 1, 1, 1, 1, group, group_channels, 1.0, False, backend=backend)


def _msda(value, locations, weights, *, spatial_shapes, level_start_index, backend):
    return ops.ms_deform_attn(value, spatial_shapes, level_start_index, locations, weights, backend=backend)


# The backend name of the official CPU formulation in the DCNv3 rows.
OFFICIAL = "official"


def _backends(device: torch.device) -> list[str]:
    names = ["reference"]
    if ops.select_backend(None, device) == device.type:
        names.append(device.type)
    return names


def _dcnv3_backends(device: torch.device, dtype: torch.dtype) -> list[str]:
    """The DCNv3 rows: on CPU (float32/float64) also the official grid_sample formulation."""
    names = _backends(device)
    if device.type == "cpu" and dtype in (torch.float32, torch.float64):
        names.insert(1, OFFICIAL)
    return names


def _dcnv3_bytes(shape: tuple[int, ...], dtype: torch.dtype) -> tuple[int, int]:
    """Minimum traffic (fwd, fwd+bwd) in bytes: each tensor read or written once."""
    n, h, w, group, group_channels = shape
    size = torch.empty(0, dtype=dtype).element_size()
    feature = n * h * w * group * group_channels
    sampling = n * h * w * group * 27  # 18 offsets + 9 mask values per pixel and group
    forward = (2 * feature + sampling) * size
    backward = (3 * feature + 2 * sampling) * size + sampling * size  # read x, grad_out, offsets/mask; write grads
    return forward, forward + backward


def _msda_bytes(tensors: list[torch.Tensor], queries_dim: int) -> int:
    """Minimum forward traffic: value, locations and weights read once, output written once."""
    value, loc, weights = tensors
    return (value.numel() + loc.numel() + weights.numel() + queries_dim) * value.element_size()


def _copy_gbps(device: torch.device) -> float | None:
    """Device-to-device copy bandwidth (read + write) of a 1 GiB buffer: the achievable HBM ceiling."""
    if device.type != "cuda":
        return None
    src = torch.empty(1 << 28, dtype=torch.float32, device=device)
    dst = torch.empty_like(src)
    ms = _median_ms(lambda: dst.copy_(src), device, repeats=20, warmup=3)
    return 2 * src.numel() * src.element_size() / ms / 1e6


def _row(cells: list[str], widths: list[int]) -> str:
    return "  ".join(c.rjust(w) for c, w in zip(cells, widths))


HEADER = ["op", "shape", "dtype", "backend", "fwd ms", "fwd+bwd ms", "fwd x ref", "f+b x ref", "fwd x fp32",
          "fwd GB/s", "% copy", "official fwd/f+b", "x official", "target fwd/f+b"]
WIDTHS = [6, 24, 9, 9, 9, 10, 9, 9, 10, 8, 6, 16, 10, 14]


def _pair(values: tuple[float | None, float | None] | None) -> str:
    if values is None:
        return "-"
    return "/".join("-" if v is None else f"{v:.2f}" for v in values)


@dataclass
class Context:
    """What every row of one run shares: the device, its copy bandwidth and the fp32 timings so far."""

    device: torch.device
    copy_gbps: float | None
    fp32: dict[tuple[str, str, str], Timing]


def _report(ctx: Context, op_name: str, label: str, dtype: torch.dtype, timings: dict[str, Timing],
            traffic: int | None, reference: Reference | None) -> None:
    ref = timings.get("reference")
    for backend, t in timings.items():
        if dtype == torch.float32:
            ctx.fp32[(op_name, label, backend)] = t
        base = ctx.fp32.get((op_name, label, backend))
        cells = [op_name, label, str(dtype).replace("torch.", ""), backend, f"{t.forward_ms:.3f}", f"{t.train_ms:.3f}",
                 f"{ref.forward_ms / t.forward_ms:.2f}" if ref else "-",
                 f"{ref.train_ms / t.train_ms:.2f}" if ref else "-",
                 f"{base.forward_ms / t.forward_ms:.2f}" if base else "-"]
        gbps = traffic / t.forward_ms / 1e6 if traffic and ctx.device.type == "cuda" else None
        share = f"{100 * gbps / ctx.copy_gbps:.0f}" if gbps and ctx.copy_gbps else "-"
        cells += [f"{gbps:.0f}" if gbps else "-", share]
        fp32_kernel = backend == "cuda" and dtype == torch.float32 and reference is not None
        official = _official_figures(backend, timings) or (reference.official if fp32_kernel else None)
        cells += [_pair(official),
                  f"{official[0] / t.forward_ms:.2f}/{official[1] / t.train_ms:.2f}" if official else "-",
                  _pair(reference.target if fp32_kernel else None)]
        print(_row(cells, WIDTHS), flush=True)
    if "cpu" in timings and OFFICIAL in timings:
        print(_headline(timings["cpu"], timings[OFFICIAL]), flush=True)


def _official_figures(backend: str, timings: dict[str, Timing]) -> tuple[float, float] | None:
    """(fwd, fwd+bwd) ms of the official formulation measured in this run, for the CPU kernel's row."""
    official = timings.get(OFFICIAL)
    return (official.forward_ms, official.train_ms) if backend == "cpu" and official else None


def _headline(ours: Timing, official: Timing) -> str:
    """The CPU comparison line: the official formulation's times, ours and the speed-up."""
    fwd, train = official.forward_ms / ours.forward_ms, official.train_ms / ours.train_ms
    return (f"  CPU kernel vs the official formulation (one grid_sample over the padded input): "
            f"fwd {official.forward_ms:.2f} -> {ours.forward_ms:.2f} ms (x{fwd:.2f}), "
            f"fwd+bwd {official.train_ms:.2f} -> {ours.train_ms:.2f} ms (x{train:.2f})")


def _host_calls(device: torch.device) -> dict[str, tuple[Callable[[], object], Callable[[], object]]]:
    """Per op, (registered-op call, public-function call), each forward + backward on a 1x1 map."""
    x, offset, mask = (t.requires_grad_(True) for t in _dcnv3_inputs((1, 1, 1, 4, 16), torch.float32, device))
    args = (3, 3, 1, 1, 1, 1, 1, 1, 4, 16, 1.0, False)
    (value, loc, weights), (shapes, starts) = _msda_inputs((1, 1, 8, 32, ((1, 1),), 4), torch.float32, device)
    for t in (value, loc, weights):
        t.requires_grad_(True)
    registered = torch.ops.perception_ops
    return {
        "dcnv3": (lambda: registered.dcnv3(x, offset, mask, *args, True).sum().backward(),
                  lambda: ops.dcnv3(x, offset, mask, *args, mask_softmax=True).sum().backward()),
        "msda": (lambda: registered.ms_deform_attn(value, shapes, starts, loc, weights).sum().backward(),
                 lambda: ops.ms_deform_attn(value, shapes, starts, loc, weights).sum().backward()),
    }


def _report_host_overhead(device: torch.device, repeats: int) -> None:
    calls_per_run = 200

    def per_call_us(call: Callable[[], object]) -> float:
        def run() -> None:
            for _ in range(calls_per_run):
                call()
        return 1e6 * median_seconds(run, device, repeats, 1) / calls_per_run

    print(f"host overhead: forward+backward on a 1x1 map, median µs per call over {repeats} runs of "
          f"{calls_per_run} calls")
    print(f"  {'op':6s} {'registered op':>14s} {'eager path':>11s} {'ratio':>6s}")
    for name, (registered, eager) in _host_calls(device).items():
        slow, fast = per_call_us(registered), per_call_us(eager)
        print(f"  {name:6s} {slow:14.1f} {fast:11.1f} {slow / fast:6.2f}")


def _parse_shape(text: str) -> tuple[int, ...]:
    values = tuple(int(v) for v in text.split(","))
    if len(values) != 5:
        raise argparse.ArgumentTypeError(f"a DCNv3 shape is N,H,W,groups,channels_per_group; got {text!r}")
    return values


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtypes", nargs="+", default=None, help="float32 float16 bfloat16 float64")
    parser.add_argument("--dcnv3", nargs="*", type=_parse_shape, default=None, help="N,H,W,G,D shapes")
    parser.add_argument("--msda-preset", nargs="*", choices=sorted(MSDA_PRESETS), default=None)
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--warmup", type=int, default=None)
    parser.add_argument("--host-overhead", action="store_true",
                        help="only time the host overhead per call (registered op vs eager path)")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda but no CUDA GPU is visible")
    on_gpu = device.type == "cuda"
    dtypes = [getattr(torch, d) for d in (args.dtypes or (["float32", "float16", "bfloat16"] if on_gpu
                                                           else ["float32"]))]
    dtypes.sort(key=lambda d: d != torch.float32)  # fp32 first: half types print their ratio to it
    shapes = {s: DCNV3_SHAPES.get(s) for s in args.dcnv3} if args.dcnv3 is not None else (
        DCNV3_SHAPES if on_gpu else CPU_DCNV3_SHAPES)
    presets = args.msda_preset if args.msda_preset is not None else (
        ["bevformer_base", "detr_decoder"] if on_gpu else ["cpu_small"])
    repeats = args.repeats or (50 if on_gpu else 5)
    warmup = args.warmup or (10 if on_gpu else 1)
    name = torch.cuda.get_device_name(device) if on_gpu else f"CPU ({torch.get_num_threads()} threads)"
    ctx = Context(device, _copy_gbps(device), {})
    copy = f" | copy {ctx.copy_gbps:.0f} GB/s" if ctx.copy_gbps else ""
    cuda = f" | CUDA {torch.version.cuda}" if on_gpu else ""
    print(f"device: {name} | torch {torch.__version__}{cuda}{copy} | median of {repeats} runs after {warmup} warm-up")
    backends = _backends(device)
    if args.host_overhead:
        if device.type not in backends:
            parser.error(f"--host-overhead needs the {device.type} kernels, which could not be built")
        _report_host_overhead(device, repeats)
        return 0
    print(_row(HEADER, WIDTHS))
    for shape, reference in shapes.items():
        for dtype in dtypes:
            tensors = _dcnv3_inputs(shape, dtype, device)
            n, h, w, group, group_channels = shape
            timings = _time_ops({b: functools.partial(_dcnv3_3x3, group=group, group_channels=group_channels,
                                                      backend=b) for b in _dcnv3_backends(device, dtype)},
                                tensors, device, repeats, warmup)
            _report(ctx, "dcnv3", ",".join(map(str, shape)), dtype, timings, _dcnv3_bytes(shape, dtype)[0],
                    reference)
    for preset in presets:
        for dtype in dtypes:
            tensors, (spatial, starts) = _msda_inputs(MSDA_PRESETS[preset], dtype, device)
            timings = _time_ops({b: functools.partial(_msda, spatial_shapes=spatial, level_start_index=starts,
                                                      backend=b) for b in backends}, tensors, device, repeats, warmup)
            batch, queries, heads, dim = MSDA_PRESETS[preset][:4]
            _report(ctx, "msda", preset, dtype, timings, _msda_bytes(tensors, batch * queries * heads * dim), None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
