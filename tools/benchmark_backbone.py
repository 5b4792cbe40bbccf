#!/usr/bin/env python
"""Inference throughput, batch-1 latency and training-step speed and memory of InternImage classifiers.

With no case named it runs the issue tracker's cases (an H100 is assumed for the official figures
and targets) and prints for each our figure, the official one, the ratio and the target:

    python tools/benchmark_backbone.py                       # every case, on CUDA
    python tools/benchmark_backbone.py --case t_latency --compile none reduce-overhead
    python tools/benchmark_backbone.py --model internimage_s --mode train --batch 32 --amp bfloat16
    python tools/benchmark_backbone.py --device cpu --model internimage_t --batch 2 --size 64 --amp none

Inputs are random 224x224 images and labels, so the figures measure the model rather than data
loading. ``--compile reduce-overhead`` compiles the model and replays it as CUDA graphs (the
launch-bound batch-1 case); ``default`` and ``max-autotune`` are the other torch.compile modes.
Training steps run forward, cross-entropy, backward and a fused AdamW step with a GradScaler for
fp16; peak memory is ``torch.cuda.max_memory_allocated`` over the timed steps.

On CPU an eager inference case is also timed with every DCNv3 layer on the official code's CPU core
(one ``F.grid_sample`` over the padded input, tools/_official_dcnv3.py), in rounds interleaved with
ours, and a line after the case prints both times and our speed-up: what users of the official code
run on CPU. The InternImage-T batch-1 figure of docs/ops.md:

    python tools/benchmark_backbone.py --device cpu --model internimage_t --batch 1 --amp none
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, replace

import torch
from _official_dcnv3 import official_core
from _profile import StepProfile, format_profile, profile_steps
from _timing import median_seconds, median_seconds_interleaved


@dataclass(frozen=True)
class Figures:
    """Throughput (img/s), latency (ms per batch) and peak memory (GiB); None where not given."""

    img_s: float | None = None
    ms: float | None = None
    gib: float | None = None


@dataclass(frozen=True)
class Case:
    model: str
    mode: str  # "infer" or "train"
    batch: int
    amp: str  # "none", "float16" or "bfloat16"
    compile: tuple[str, ...] = ("none",)
    official: Figures | None = None  # the official implementation on an H100
    target: Figures | None = None  # at least this throughput, at most this latency and memory


# Issue tracker figures, measured by us on an H100 for the official implementation (torch 2.11/cu130).
CASES = {
    "t_throughput": Case("internimage_t", "infer", 256, "float16", official=Figures(img_s=2932),
                         target=Figures(img_s=4400)),
    "t_latency": Case("internimage_t", "infer", 1, "float16", ("none", "reduce-overhead"),
                      official=Figures(ms=30.7), target=Figures(ms=5.0)),
    "t_train": Case("internimage_t", "train", 64, "float16", official=Figures(img_s=559, gib=8.4),
                    target=Figures(img_s=840, gib=8.4)),
    "b_train": Case("internimage_b", "train", 64, "float16", official=Figures(img_s=373, gib=18.2),
                    target=Figures(img_s=560, gib=18.2)),
}
COMPILE_MODES = ("none", "default", "reduce-overhead", "max-autotune")


@dataclass
class Result:
    seconds: float
    peak_gib: float | None
    profile: StepProfile | None = None
    official_core_seconds: float | None = None  # CPU: the same step on the official DCNv3 core

    def figures(self, batch: int) -> Figures:
        return Figures(img_s=batch / self.seconds, ms=self.seconds * 1e3, gib=self.peak_gib)


def describe(ours: Figures, official: Figures | None, target: Figures | None) -> str:
    """Our figures, then for each figure the official one has: official, ratio (>1 is better), target."""
    text = f"{ours.ms:8.2f} ms | {ours.img_s:8.1f} img/s"
    if ours.gib is not None:
        text += f" | peak {ours.gib:.2f} GiB"
    official, target = official or Figures(), target or Figures()
    if official.img_s and target.img_s:
        ratio = ours.img_s / official.img_s
        text += f" | official {official.img_s:.0f} img/s, x{ratio:.2f}, target >= {target.img_s:.0f}"
    if official.ms and target.ms:
        text += f" | official {official.ms:.1f} ms, x{official.ms / ours.ms:.2f}, target <= {target.ms:.1f} ms"
    if official.gib and target.gib and ours.gib is not None:
        text += f" | official {official.gib:.1f} GB, target <= {target.gib:.1f} GB"
    return text


def describe_official_core(ours_seconds: float, official_seconds: float) -> str:
    """The CPU comparison line: the same model on the official DCNv3 core, ours, and the ratio."""
    ratio = official_seconds / ours_seconds
    return (f"  on the official DCNv3 CPU core (one grid_sample over the padded input): "
            f"{official_seconds * 1e3:.2f} ms | ours {ours_seconds * 1e3:.2f} ms | x{ratio:.2f}")


def _on_official_core(fn):
    def run() -> None:
        with official_core():
            fn()

    return run


def _model(name: str, device: torch.device, mode: str, dcn_backend: str | None, with_cp: bool) -> torch.nn.Module:
    from backbones import create_model

    overrides = {"dcn_backend": dcn_backend} if dcn_backend else {}
    model = create_model(name, with_cp=with_cp, **overrides).to(device)
    return model.train(mode == "train")


def _infer_fn(model, images: torch.Tensor, amp: str, compile_mode: str):
    forward = model if compile_mode == "none" else torch.compile(model, mode=compile_mode)
    dtype = getattr(torch, amp) if amp != "none" else None

    def run() -> None:
        with torch.inference_mode(), torch.autocast(images.device.type, dtype=dtype, enabled=dtype is not None):
            forward(images)

    return run


def _train_fn(model, images: torch.Tensor, amp: str, compile_mode: str):
    forward = model if compile_mode == "none" else torch.compile(model, mode=compile_mode)
    device = images.device
    labels = torch.randint(0, 1000, (images.shape[0],), device=device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=device.type == "cuda")
    dtype = getattr(torch, amp) if amp != "none" else None
    scaler = torch.amp.GradScaler(device.type, enabled=amp == "float16")

    def run() -> None:
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            loss = torch.nn.functional.cross_entropy(forward(images), labels)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()

    return run


def run_case(case: Case, compile_mode: str, args: argparse.Namespace) -> Result:
    device = torch.device(args.device)
    model = _model(case.model, device, case.mode, args.dcn_backend, args.with_cp)
    images = torch.randn(case.batch, 3, args.size, args.size, device=device)
    make = _infer_fn if case.mode == "infer" else _train_fn
    fn = make(model, images, case.amp, compile_mode)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    official_seconds = None
    if device.type == "cpu" and case.mode == "infer" and compile_mode == "none":
        seconds, official_seconds = median_seconds_interleaved([fn, _on_official_core(fn)], device, args.iters,
                                                               args.warmup)
    else:
        seconds = median_seconds(fn, device, args.iters, args.warmup)
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
    # Profiled after timing (already warm), so the profiler's own overhead never enters the figures.
    step_profile = profile_steps(fn, device, steps=args.profile, warmup=0) if args.profile else None
    del fn, model, images
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return Result(seconds, peak, step_profile, official_seconds)


def _selected_cases(args: argparse.Namespace) -> dict[str, Case]:
    if args.model:
        custom = Case(args.model, args.mode, args.batch or 1, args.amp or "none", tuple(args.compile or ("none",)))
        return {"custom": custom}
    names = args.case or list(CASES)
    cases = {name: CASES[name] for name in names}
    if args.compile:
        cases = {name: replace(case, compile=tuple(args.compile)) for name, case in cases.items()}
    if args.batch or args.amp or args.size != 224 or args.device == "cpu":
        # Not the setting the official figures were measured in: print ours alone.
        cases = {name: replace(case, batch=args.batch or case.batch, amp=args.amp or case.amp, official=None,
                               target=None) for name, case in cases.items()}
    return cases


def _header(device: torch.device) -> str:
    if device.type == "cuda":
        name = f"{torch.cuda.get_device_name(device)} | CUDA {torch.version.cuda}"
    else:
        name = f"CPU ({torch.get_num_threads()} threads)"
    return f"device: {name} | torch {torch.__version__}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--case", nargs="+", choices=sorted(CASES), help="issue cases to run (default: all)")
    parser.add_argument("--model", help="run one custom case with this model instead (internimage_t ... _g)")
    parser.add_argument("--mode", choices=["infer", "train"], default="infer")
    parser.add_argument("--batch", type=int, default=None)
    parser.add_argument("--amp", choices=["none", "float16", "bfloat16"], default=None)
    parser.add_argument("--compile", nargs="+", choices=COMPILE_MODES, default=None,
                        help="torch.compile modes to run, each timed separately ('none' = eager)")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--dcn-backend", choices=["reference", "cpu", "cuda"], default=None,
                        help="force the DCNv3 backend (default: automatic)")
    parser.add_argument("--with-cp", action="store_true", help="gradient checkpointing per block")
    parser.add_argument("--iters", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--profile", type=int, default=0, metavar="STEPS",
                        help="after timing, profile this many steps and print where their time goes")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda but no CUDA GPU is visible")
    if device.type != "cuda" and any(m == "reduce-overhead" for m in args.compile or ()):
        parser.error("--compile reduce-overhead replays CUDA graphs and needs --device cuda")
    cases = _selected_cases(args)
    print(f"{_header(device)} | {args.size}x{args.size} | median of {args.iters} after {args.warmup} warm-up")
    for name, case in cases.items():
        modes = case.compile if device.type == "cuda" else tuple(m for m in case.compile if m != "reduce-overhead")
        for compile_mode in modes:
            result = run_case(case, compile_mode, args)
            ours = result.figures(case.batch)
            print(f"{name:13s} {case.model:14s} {case.mode:5s} batch {case.batch:3d} amp {case.amp:8s} "
                  f"compile {compile_mode:15s} | {describe(ours, case.official, case.target)}", flush=True)
            if result.official_core_seconds is not None:
                print(describe_official_core(result.seconds, result.official_core_seconds), flush=True)
            if result.profile is not None:
                print(format_profile(result.profile, device), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
