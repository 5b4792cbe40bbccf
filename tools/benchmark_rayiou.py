"""Benchmark the CPU RayIoU ray caster: seconds per frame on one core against the 0.2 s target.

One frame = what ``OccupancyRayIoU.add`` does: 8 origins x 14,040 rays cast through the GT and the
prediction (200 x 200 x 16) plus the per-class counting. Grids are random but realistic: a ground
layer (road / sidewalk / terrain bands) with cars, trucks, pedestrians, buildings and trees standing
on it; the prediction is the GT with boxes moved by up to a voxel or two and a few dropped.

    python tools/benchmark_rayiou.py                  # 20 frames, one thread
    python tools/benchmark_rayiou.py --frames 50 --origins 8 --seed 1
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

TARGET_S = 0.2


def _boxes(rng, n: int, cls: int, size_lo, size_hi, y_band) -> list[tuple]:
    out = []
    for _ in range(n):
        sx, sy, sz = (int(rng.integers(lo, hi + 1)) for lo, hi in zip(size_lo, size_hi))
        x = int(rng.integers(0, 200 - sx))
        y = int(rng.integers(*y_band))
        out.append((x, min(max(y, 0), 200 - sy), 3, sx, sy, sz, cls))
    return out


def make_scene(rng):
    """(GT, prediction) uint8 (200, 200, 16) and 8 metric origins along the road."""
    import numpy as np

    from perception.structures.classes import OCC_FREE

    gt = np.full((200, 200, 16), OCC_FREE, np.uint8)
    y = np.arange(200)
    ground = np.where(np.abs(y - 100) < 18, 11, np.where(np.abs(y - 100) < 25, 13, 14)).astype(np.uint8)
    gt[:, :, 2] = ground[None, :]  # z index 2 holds z = 0 m
    boxes = (
        _boxes(rng, 25, 4, (10, 5, 4), (12, 5, 4), (82, 113))  # cars on the road
        + _boxes(rng, 4, 10, (20, 7, 8), (30, 7, 9), (82, 110))  # trucks
        + _boxes(rng, 15, 7, (1, 1, 4), (2, 2, 5), (75, 125))  # pedestrians on the sidewalks
        + _boxes(rng, 12, 15, (15, 10, 10), (40, 25, 13), (0, 50))  # buildings, left
        + _boxes(rng, 12, 15, (15, 10, 10), (40, 25, 13), (150, 190))  # buildings, right
        + _boxes(rng, 20, 16, (3, 3, 6), (6, 6, 10), (50, 75))  # trees
        + _boxes(rng, 20, 16, (3, 3, 6), (6, 6, 10), (125, 150))
    )
    pred = gt.copy()
    for x, yy, z, sx, sy, sz, cls in boxes:
        gt[x : x + sx, yy : yy + sy, z : z + sz] = cls
        if rng.random() < 0.1:
            continue  # missed object
        dx, dy = (int(v) for v in rng.integers(-2, 3, 2))
        x2, y2 = min(max(x + dx, 0), 200 - sx), min(max(yy + dy, 0), 200 - sy)
        pred[x2 : x2 + sx, y2 : y2 + sy, z : z + sz] = cls
    origins = np.zeros((8, 3))
    origins[:, 0] = np.linspace(-30.0, 30.0, 8) + rng.uniform(-2, 2, 8)
    origins[:, 1] = rng.uniform(-1.0, 1.0, 8)
    origins[:, 2] = 1.84
    return gt, pred, origins


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=20, help="timed frames (after one warm-up frame)")
    parser.add_argument("--origins", type=int, default=8, help="ray origins per frame (RayIoU uses up to 8)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="numba threads (the target is for one)")
    args = parser.parse_args(argv)
    os.environ.setdefault("NUMBA_NUM_THREADS", str(args.threads))

    import numba
    import numpy as np

    from perception.evaluation.occupancy import OccupancyRayIoU

    numba.set_num_threads(args.threads)
    rng = np.random.default_rng(args.seed)
    scenes = [make_scene(rng) for _ in range(args.frames + 1)]
    metric = OccupancyRayIoU()
    start = time.perf_counter()
    gt, pred, origins = scenes[0]
    metric.add(pred, gt, origins[: args.origins])  # compiles or loads the cached kernel
    first = time.perf_counter() - start
    samples = []
    for gt, pred, origins in scenes[1:]:
        start = time.perf_counter()
        metric.add(pred, gt, origins[: args.origins])
        samples.append(time.perf_counter() - start)
    per_frame = statistics.median(samples)
    result = metric.compute()
    rays = args.origins * 14040 * 2
    print(f"numba threads: {numba.get_num_threads()}, origins per frame: {args.origins}, rays cast per frame: {rays}")
    print(f"first frame (JIT compile or cache load): {first:.2f} s")
    print(
        f"seconds per frame: median {per_frame:.4f}, mean {statistics.mean(samples):.4f}, "
        f"min {min(samples):.4f}, max {max(samples):.4f} over {len(samples)} frames"
    )
    verdict = "meets" if per_frame <= TARGET_S else "misses"
    print(f"ratio to the {TARGET_S} s target: {per_frame / TARGET_S:.2f} ({verdict} it)")
    print(
        f"(sanity) RayIoU of the perturbed predictions: {result['RayIoU']:.2f} "
        f"(@1 {result['RayIoU@1']:.2f}, @2 {result['RayIoU@2']:.2f}, @4 {result['RayIoU@4']:.2f})"
    )
    return 0 if per_frame <= TARGET_S else 1


if __name__ == "__main__":
    sys.exit(main())
