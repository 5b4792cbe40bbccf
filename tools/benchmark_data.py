#!/usr/bin/env python
"""Samples per second of a config's TRAINING pipeline (decode, augment, collate: the dataset's
``__getitem__`` through a torch DataLoader with ``bev_collate``) against a plain single-threaded PIL
baseline, at nuScenes resolution, and whether one node feeds one H100 training step (docs/data.md,
"Loader speed").

    python tools/benchmark_data.py [CONFIG] --frames 2 --workers 0 1 2
    python tools/benchmark_data.py --frames 2 --final-size 800 448 --scale-range 0.5 0.5 --decode-scale auto

The data is a synthetic nuScenes-format world (``perception.data.synthetic``) of ``--samples`` key frames,
6 cameras at ``--image-size`` (default 1600x900), its JPEGs re-encoded at ``--quality`` (default 90, 4:2:0
chroma); it is generated once and cached under ``--data-dir``. The baseline reads the same files:
``PIL.Image.open(path).convert('RGB')`` per camera and frame, numpy, a PIL resize to the pipeline's final
size, normalisation, one stack, no threads. The pipeline ships uint8 images (the model normalises them on
its device), so the tool also times the baseline without its normalisation ("baseline-uint8", the same
work minus the float step) and prints the ratios against both.

Per core: DataLoader workers count as cores, the in-process run (``--workers 0``) as one. The pipeline's
image loader also decodes with a thread pool, so the tool prints samples per CPU-second as well (the
process's and its workers' CPU time), which is what the node verdict uses: the best run with workers
(training loads there, its main process runs the model), else the in-process one.

Allocator: the pipeline's ``LoadMultiViewImages`` makes glibc keep freed image memory for reuse
(perception/data/memory.py). The baseline runs in this process, so ``--allocator retain`` (default) sets
it for this process up front, baseline and pipeline alike; ``--allocator default`` leaves glibc's settings
to both.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import re
import resource
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CONFIG = "configs/bev/bevformer_v2_internimage_b_nus.py"
WORLD_VERSION = 1  # bump when the cached world's content changes
UINT8_BASELINE = "baseline-uint8"  # the baseline without its float normalisation
ALLOCATOR = {"retain": "freed memory retained (baseline and pipeline)", "default": "C library default"}


@dataclass(frozen=True)
class Timing:
    """One timed run: samples produced, wall seconds, CPU seconds (process, threads and workers), and the
    wall seconds of the untimed warm-up before it (worker start-up and the first batches)."""

    samples: int
    wall_s: float
    cpu_s: float
    warmup_s: float = 0.0

    @property
    def rate(self) -> float:
        return self.samples / self.wall_s

    @property
    def cpu_rate(self) -> float:
        return self.samples / max(self.cpu_s, 1e-9)


@dataclass(frozen=True)
class StepTime:
    """A measured training step: milliseconds, its batch and frames, and where the figure comes from."""

    ms: float
    batch: int
    frames: int
    source: str


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("config", nargs="?", default=DEFAULT_CONFIG, help="config whose train_pipeline is measured")
    p.add_argument("--data-dir", default="work_dirs/benchmark_data", help="cache of generated worlds")
    p.add_argument("--samples", type=int, default=4, help="key frames in the generated world")
    p.add_argument("--image-size", type=int, nargs=2, default=(1600, 900), metavar=("W", "H"))
    p.add_argument("--quality", type=int, default=90, help="JPEG quality of the camera images")
    p.add_argument("--frames", type=int, default=None, help="frames per sample (default: the config's)")
    p.add_argument("--batch-size", type=int, default=1)
    p.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2], help="DataLoader workers, one run each")
    p.add_argument("--iters", type=int, default=6, help="samples per timed run")
    p.add_argument("--warmup", type=int, default=None,
                   help="batches taken before the clock starts (default: one per worker, at least 1): worker "
                        "start-up is paid once per training run, not per sample")
    p.add_argument("--rounds", type=int, default=3, help="alternating baseline/pipeline rounds (median taken)")
    p.add_argument("--final-size", type=int, nargs=2, default=None, metavar=("W", "H"),
                   help="override ResizeCropFlipImage's final_size")
    p.add_argument("--scale-range", type=float, nargs=2, default=None, metavar=("LO", "HI"),
                   help="override ResizeCropFlipImage's scale_range")
    p.add_argument("--decode-scale", default=None,
                   help="LoadMultiViewImages decode_scale: a factor, 'auto' (the pipeline's largest resize), "
                        "'off' (full decode); default: as the config says")
    p.add_argument("--pin-memory", action="store_true", help="DataLoader(pin_memory=True)")
    p.add_argument("--allocator", choices=("retain", "default"), default="retain",
                   help="retain: glibc keeps freed image memory for reuse (LoadMultiViewImages' default, "
                        "perception/data/memory.py), set for the baseline too, since both run in this "
                        "process; default: the C library's settings for both")
    p.add_argument("--step-ms", type=float, default=None,
                   help="H100 training-step time to feed (default: the stored InternImage-B measurement)")
    p.add_argument("--step-config", default=DEFAULT_CONFIG, help="config whose stored step time is used")
    p.add_argument("--node-cores", type=int, default=8)
    args = p.parse_args(argv)
    if args.samples < 1 or args.iters < 1 or args.rounds < 1 or args.batch_size < 1:
        p.error("--samples, --iters, --rounds and --batch-size must be >= 1")
    if args.warmup is not None and args.warmup < 0:
        p.error("--warmup must be >= 0")
    if any(w < 0 for w in args.workers):
        p.error("--workers must be >= 0")
    if not 1 <= args.quality <= 100:
        p.error("--quality must be in 1..100")
    return args


# ---------------------------------------------------------------------------------------------- data


def world_dir(args: argparse.Namespace) -> Path:
    w, h = args.image_size
    return Path(args.data_dir) / f"nuscenes_{w}x{h}_q{args.quality}_n{args.samples}"


def ensure_world(root: Path, size: tuple[int, int], samples: int, quality: int) -> Path:
    """The val info file of a cached world at ``root``, generating it first if it is missing or partial."""
    marker = root / "benchmark_world.json"
    wanted = dict(version=WORLD_VERSION, image_size=list(size), samples=samples, quality=quality)
    infos = root / "nuscenes_infos_val.pkl"
    if marker.exists() and json.loads(marker.read_text()) == wanted and infos.exists():
        return infos
    from perception.data.infos import create_nuscenes_infos
    from perception.data.synthetic import VERSION, WorldConfig, generate_world

    shutil.rmtree(root, ignore_errors=True)
    print(f"generating a {samples}-sample world of {size[0]}x{size[1]} cameras in {root} (once) ...", flush=True)
    generate_world(WorldConfig(str(root), num_scenes=1, samples_per_scene=samples, image_size=size, workers=2))
    reencode_jpegs(root, quality)
    written = create_nuscenes_infos(str(root), VERSION, str(root), workers=1, progress=False)
    if written.get("val") != infos:
        raise RuntimeError(f"expected {infos} from the generated world, got {written}")
    marker.write_text(json.dumps(wanted))
    return infos


def reencode_jpegs(root: Path, quality: int) -> None:
    """Re-save every camera JPEG at ``quality`` with 4:2:0 chroma (the generator writes 4:4:4 at 93)."""
    for path in sorted((root / "samples").glob("CAM_*/*.jpg")):
        with Image.open(path) as im:
            rgb = im.convert("RGB")
        rgb.save(path, quality=quality, subsampling="4:2:0")


def camera_paths(dataset, count: int) -> list[list[str]]:
    """Every frame's camera paths of the first ``count`` samples (cycling), as the pipeline loads them."""
    return [
        [p for frame in dataset.get_data_info(i % len(dataset))["frames"] for p in frame["img_paths"]]
        for i in range(count)
    ]


# ------------------------------------------------------------------------------------------ pipeline


def pipeline_of(args: argparse.Namespace) -> tuple[list[dict], int, int]:
    """The config's train_pipeline with the command line's overrides, the frames per sample measured and
    the config's own frames per sample."""
    from mmengine.config import Config

    config = Path(args.config)
    if not config.is_file():
        raise SystemExit(f"benchmark_data.py: error: config {config} does not exist")
    cfg = Config.fromfile(str(config))
    pipeline = copy.deepcopy(cfg.train_dataloader.dataset.pipeline)
    config_frames = int(cfg.train_dataloader.dataset.get("num_frames", 1))
    resize = _step(pipeline, "ResizeCropFlipImage")
    if resize is not None and args.final_size is not None:
        resize["final_size"] = tuple(args.final_size)
    if resize is not None and args.scale_range is not None:
        resize["scale_range"] = tuple(args.scale_range)
    load = _step(pipeline, "LoadMultiViewImages")
    if args.decode_scale is not None:
        if load is None:
            raise SystemExit("benchmark_data.py: error: the pipeline has no LoadMultiViewImages")
        load["decode_scale"] = _decode_scale(args.decode_scale, resize)
    if load is not None:
        load["retain_freed_memory"] = args.allocator == "retain"
    return pipeline, args.frames or config_frames, config_frames


def _step(pipeline: list[dict], name: str) -> dict | None:
    return next((t for t in pipeline if t.get("type") == name), None)


def _decode_scale(value: str, resize: dict | None) -> float | None:
    """'off' -> None; 'auto' -> the largest resize factor of the (one-size rig's) ResizeCropFlipImage,
    None when it never shrinks; else the number given."""
    if value == "off":
        return None
    if value == "auto":
        if resize is None:
            return None
        largest = float(resize.get("scale_range", (1.0, 1.0))[1])
        return largest if largest < 1 else None
    try:
        return float(value)
    except ValueError:
        message = f"benchmark_data.py: error: --decode-scale must be a number, 'auto' or 'off', got {value}"
        raise SystemExit(message) from None


def final_size(pipeline: list[dict], native: tuple[int, int]) -> tuple[int, int]:
    resize = _step(pipeline, "ResizeCropFlipImage")
    if resize is None or isinstance(resize["final_size"], dict):
        return native
    return tuple(int(v) for v in resize["final_size"])


def describe(pipeline: list[dict]) -> str:
    def one(t: dict) -> str:
        keys = [k for k in ("decode_scale", "final_size", "scale_range", "prob") if k in t]
        return t["type"] + (f"({', '.join(f'{k}={t[k]}' for k in keys)})" if keys else "")

    return " -> ".join(one(t) for t in pipeline)


# -------------------------------------------------------------------------------------------- timing


def _cpu_seconds() -> float:
    """CPU seconds of this process (all threads) plus its reaped children (finished DataLoader workers)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def baseline_sample(paths: list[str], size: tuple[int, int], mean: np.ndarray | None, std: np.ndarray | None
                    ) -> np.ndarray:
    """The plain reference: PIL decode, numpy, PIL resize, normalise (skipped when ``mean`` is None), stack
    (one thread)."""
    images = []
    for path in paths:
        array = np.asarray(Image.open(path).convert("RGB"))
        resized = np.asarray(Image.fromarray(array).resize(size, Image.BILINEAR))
        images.append(resized if mean is None else (resized.astype(np.float32) - mean) / std)
    return np.stack(images)


def time_baseline(samples: list[list[str]], size: tuple[int, int], normalise: bool = True) -> Timing:
    from perception.data.transforms_bev import IMAGENET_MEAN, IMAGENET_STD

    mean, std = np.array(IMAGENET_MEAN, np.float32), np.array(IMAGENET_STD, np.float32)
    if not normalise:
        mean = std = None
    cpu, start = _cpu_seconds(), time.perf_counter()
    for paths in samples:
        baseline_sample(paths, size, mean, std)
    return Timing(len(samples), time.perf_counter() - start, _cpu_seconds() - cpu)


def live_children_cpu_seconds() -> float | None:
    """CPU seconds used so far by this process's live children (DataLoader workers), read from /proc; None
    where there is no /proc. ``getrusage`` counts a child only once it is reaped."""
    if not Path("/proc/self/stat").exists():
        return None
    me, tick, total = os.getpid(), os.sysconf("SC_CLK_TCK"), 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()  # after "pid (comm)": state, ppid, ...
        except (OSError, IndexError):
            continue  # exited meanwhile
        if int(fields[1]) == me:
            total += (int(fields[11]) + int(fields[12])) / tick  # utime, stime (fields 14 and 15)
    return total


def time_loader(dataset, count: int, batch: int, workers: int, pin_memory: bool, warmup: int | None = None
                ) -> Timing:
    """``count`` samples through a DataLoader with ``bev_collate``, timed after ``warmup`` batches (default:
    one per worker, at least 1). The warm-up starts the workers and fills their queues; in training that is
    paid once per run (persistent workers), so the rate is the steady state a training loop sees. The CPU
    time excludes what the workers used during the warm-up (where /proc tells it; otherwise it is counted,
    which only lowers the per-CPU-second rate)."""
    import torch
    from torch.utils.data import DataLoader, Subset

    from perception.data import bev_collate

    warmup = max(1, workers) if warmup is None else warmup
    subset = Subset(dataset, [i % len(dataset) for i in range(count + warmup * batch)])
    loader = DataLoader(subset, batch_size=batch, num_workers=workers, collate_fn=bev_collate, pin_memory=pin_memory)
    started = time.perf_counter()
    batches = iter(loader)
    for _ in range(warmup):
        next(batches)
    warmup_s = time.perf_counter() - started
    # The workers' CPU so far joins the start value: at the end getrusage counts their whole lifetime.
    cpu, start, done = _cpu_seconds() + (live_children_cpu_seconds() or 0.0), time.perf_counter(), 0
    for out in batches:  # the iterator joins its workers when exhausted, so getrusage then counts them
        done += int(out["img"].shape[0])
        assert out["img"].dtype in (torch.uint8, torch.float32)
    return Timing(done, time.perf_counter() - start, _cpu_seconds() - cpu, warmup_s)


def median_timing(runs: list[Timing]) -> Timing:
    """The run of median wall rate (its own CPU time kept with it)."""
    return sorted(runs, key=lambda t: t.rate)[len(runs) // 2]


# ------------------------------------------------------------------------------------------- verdict


def stored_step(config: str) -> StepTime | None:
    """The newest ``tools/benchmark_model.py`` log of ``config`` under docs/measurements/ (step ms, batch,
    frames), or None."""
    head = re.compile(r"^config (\S+) \|.*\| (\d+) x (\d+) frames x")
    step = re.compile(r"^training step: ([\d.]+) ms")
    found = None
    for log in sorted((ROOT / "docs" / "measurements").glob("*/model_*.log")):
        lines = log.read_text().splitlines()
        match = head.match(lines[0]) if lines else None
        ms = next((step.match(line) for line in lines if step.match(line)), None)
        if match and ms and match.group(1) == config:
            found = StepTime(float(ms.group(1)), int(match.group(2)), int(match.group(3)),
                             str(log.relative_to(ROOT)))
    return found


def step_time(args: argparse.Namespace, config_frames: int) -> StepTime | None:
    if args.step_ms is not None:
        return StepTime(args.step_ms, args.batch_size, config_frames, "--step-ms")
    return stored_step(args.step_config)


def verdict(step: StepTime, cpu_rate: float, wall_rate: float, frames: int, cores: int, run: str = "") -> list[str]:
    """Whether ``cores`` cores at the per-core rates measured by ``run`` (samples of ``frames`` frames) feed
    the step."""
    need = step.batch / (step.ms / 1000)
    scale = frames / step.frames  # a sample's work is its images: T frames x cameras
    supply_cpu, supply_wall = cpu_rate * scale * cores, wall_rate * scale * cores
    feeds = "FEEDS" if supply_cpu >= need else "DOES NOT FEED"
    lines = [f"H100 step: {step.ms:.1f} ms for {step.batch} sample(s) x {step.frames} frames ({step.source}) "
             f"-> needs {need:.3f} samples/s"]
    if frames != step.frames:
        lines.append(f"  rates scaled from {frames} to {step.frames} frames per sample by image count (x{scale:.3f})")
    lines.append(f"  {cores} cores x {cpu_rate * scale:.3f} samples per CPU-second{f' ({run})' if run else ''} "
                 f"= {supply_cpu:.3f} samples/s "
                 f"({supply_cpu / need:.1f}x the need; by wall per core: {supply_wall:.3f} samples/s)")
    lines.append(f"verdict: one {cores}-core node {feeds} this H100 training step")
    return lines


# ---------------------------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import perception.data  # noqa: F401  (registers the transforms)
    from perception.data import BEVDataset
    from perception.data.memory import retain_freed_memory

    pipeline, frames, config_frames = pipeline_of(args)
    if args.allocator == "retain" and not retain_freed_memory():
        print("allocator: this C library has no mallopt; its default settings are measured")
    infos = ensure_world(world_dir(args), tuple(args.image_size), args.samples, args.quality)
    dataset = BEVDataset(str(infos), str(infos.parent), pipeline=pipeline, num_frames=frames)
    samples = camera_paths(dataset, args.iters)
    size = final_size(pipeline, tuple(args.image_size))
    print(header(args, infos.parent, pipeline, frames, size))
    runs: dict[str, list[Timing]] = {}
    for r in range(args.rounds):
        runs.setdefault("baseline", []).append(time_baseline(samples, size))
        runs.setdefault(UINT8_BASELINE, []).append(time_baseline(samples, size, normalise=False))
        for w in args.workers:
            runs.setdefault(f"workers={w}", []).append(
                time_loader(dataset, args.iters, args.batch_size, w, args.pin_memory, args.warmup))
        print(f"round {r + 1}/{args.rounds}: " + ", ".join(f"{k} {v[-1].rate:.3f}/s" for k, v in runs.items()),
              flush=True)
    for line in report(runs, args, frames, config_frames):
        print(line)
    return 0


def header(args: argparse.Namespace, root: Path, pipeline: list[dict], frames: int, size: tuple[int, int]) -> str:
    jpegs = list((root / "samples").glob("CAM_*/*.jpg"))
    kb = np.mean([p.stat().st_size for p in jpegs]) / 1024 if jpegs else 0.0
    w, h = args.image_size
    warmup = "one per worker" if args.warmup is None else args.warmup
    return (f"data: {root} | {args.samples} key frames x 6 cameras, {w}x{h} JPEG q{args.quality} 4:2:0 "
            f"(mean {kb:.0f} KiB)\n"
            f"pipeline ({args.config}): {describe(pipeline)}\n"
            f"sample: {frames} frames x 6 cameras -> {size[0]}x{size[1]} | batch {args.batch_size} | "
            f"{args.iters} samples per run after {warmup} warm-up batch(es), median of {args.rounds} rounds | "
            f"pin_memory={args.pin_memory} | allocator: {ALLOCATOR[args.allocator]}")


def report(runs: dict[str, list[Timing]], args: argparse.Namespace, frames: int, config_frames: int) -> list[str]:
    base = median_timing(runs["baseline"])
    base_uint8 = median_timing(runs[UINT8_BASELINE]) if UINT8_BASELINE in runs else None
    lines = [f"{'run':14s} {'samples/s':>10s} {'cores':>5s} {'per core':>9s} {'per CPU-s':>10s} "
             f"{'ratio/core':>10s} {'ratio/CPU-s':>11s} {'warm-up s':>9s}"]
    best = None
    for name, timings in runs.items():
        t = median_timing(timings)
        is_baseline = name.startswith("baseline")
        cores = 1 if is_baseline else max(1, int(name.split("=")[1]))
        ratio, ratio_cpu = (t.rate / cores) / base.rate, t.cpu_rate / base.cpu_rate
        warmup = "" if is_baseline else f"{t.warmup_s:9.2f}"
        lines.append(f"{name:14s} {t.rate:10.3f} {cores:5d} {t.rate / cores:9.3f} {t.cpu_rate:10.3f} "
                     f"{ratio:9.2f}x {ratio_cpu:10.2f}x {warmup}".rstrip())
        if not is_baseline:
            lines.append(f"ratio per core ({name} vs PIL baseline): {ratio:.2f}x (per CPU-second {ratio_cpu:.2f}x)")
            if base_uint8 is not None:
                lines.append(f"  vs the uint8 baseline: {(t.rate / cores) / base_uint8.rate:.2f}x per core "
                             f"(per CPU-second {t.cpu_rate / base_uint8.cpu_rate:.2f}x)")
            # Training loads in workers (the main process runs the model): prefer their best run.
            key = (name != "workers=0", t.cpu_rate)
            if best is None or key > best[2]:
                best = (t, cores, key, name)
    step = step_time(args, config_frames)
    if best is None:
        return lines
    if step is None:
        lines.append("H100 verdict: no stored step time for "
                     f"{args.step_config} under docs/measurements/; pass --step-ms")
        return lines
    t, cores, _, name = best
    return lines + verdict(step, t.cpu_rate, t.rate / cores, frames, args.node_cores, name)


if __name__ == "__main__":
    sys.exit(main())
