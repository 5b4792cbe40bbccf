"""CPU ray casting for RayIoU: virtual LiDAR rays through an Occ3D semantic grid (numba).

The semantics follow SparseOcc's RayIoU protocol (docs/occupancy.md, "RayIoU"):

* rays: 39 pitch angles x 360 azimuths (1 degree steps) per origin, unit vectors stored as float32;
* the grid is walked in voxel units with an Amanatides-Woo traversal that steps one axis at a time
  (ties go to y over x and to z over x / y), starting in the voxel ``int()`` of the origin, for at
  most 1001 steps;
* a voxel is occupied when its label differs from ``free``; the first occupied voxel ends the ray, its
  depth is the ray parameter at which the ray *leaves* that voxel and its label is the voxel's label;
* a ray that hits nothing gets the exit depth and the label of the last voxel it crossed inside the
  grid (free), and a ray that never enters the grid gets depth -1 voxel and the label of voxel (0, 0, 0).

Origins and ray end points are rounded to float32 in voxel units before the traversal and depths are
returned as float32 metres, as the reference pipeline does, so that threshold decisions
(``|d_pred - d_gt| < t``) agree with it.
"""

from __future__ import annotations

import functools
import math

import numba
import numpy as np

from perception.structures.bev_grid import OCC3D_GRID, BEVGrid
from perception.structures.classes import OCC_FREE

MAX_STEPS = 1000
_BIG = 1.7976931348623157e308  # DBL_MAX: the ray never crosses a boundary on this axis


def ray_pitch_angles() -> list[float]:
    """The 39 pitch angles (rad): -(pi/2 - atan(k + 1)) for k = 0..9, then continued with the last
    step until the angle reaches 0.21 rad (the top of the nuScenes LiDAR's field of view)."""
    pitches = [-(math.pi / 2 - math.atan(k + 1)) for k in range(10)]
    while pitches[-1] < 0.21:
        pitches.append(pitches[-1] + (pitches[-1] - pitches[-2]))
    return pitches


def lidar_ray_directions() -> np.ndarray:
    """(39 * 360, 3) float32 unit directions, pitch-major (all azimuths 0..359 deg of one pitch, then
    the next pitch)."""
    pitch = np.asarray(ray_pitch_angles(), dtype=np.float64)[:, None]
    azimuth = np.deg2rad(np.arange(0, 360, 1))[None, :]
    dirs = np.stack(
        [
            np.cos(pitch) * np.cos(azimuth),
            np.cos(pitch) * np.sin(azimuth),
            np.broadcast_to(np.sin(pitch), (pitch.shape[0], azimuth.shape[1])),
        ],
        axis=-1,
    )
    return dirs.reshape(-1, 3).astype(np.float32)


@functools.lru_cache(maxsize=1)
def _default_directions() -> np.ndarray:
    dirs = lidar_ray_directions()
    dirs.setflags(write=False)
    return dirs


@numba.njit(cache=True)
def _cast_kernel(semantics, free, origins, ends, max_steps, labels, dists, hits):
    """First-hit traversal of every ray ``origins[t] -> ends[t, c]`` (voxel units, float64).

    Same walk as a textbook Amanatides-Woo loop that tests "inside the grid" at every step; once the
    ray is inside, only the axis just stepped can take it out, so only that bound is tested."""
    nx, ny, nz = semantics.shape
    flat = semantics.reshape(-1)
    sx = ny * nz
    sy = nz
    num_t, num_rays = ends.shape[0], ends.shape[1]
    for t in range(num_t):
        xo = origins[t, 0]
        yo = origins[t, 1]
        zo = origins[t, 2]
        vxo = int(xo)  # truncation toward zero, as C's int()
        vyo = int(yo)
        vzo = int(zo)
        for c in range(num_rays):
            rx = ends[t, c, 0] - xo
            ry = ends[t, c, 1] - yo
            rz = ends[t, c, 2] - zo
            norm = math.sqrt(rx * rx + ry * ry + rz * rz)
            dx = rx / norm
            dy = ry / norm
            dz = rz / norm
            step_x = 1 if dx >= 0 else -1
            step_y = 1 if dy >= 0 else -1
            step_z = 1 if dz >= 0 else -1
            vx = vxo
            vy = vyo
            vz = vzo
            t_max_x = (vx + (0 if step_x < 0 else 1) - xo) / dx if dx != 0 else _BIG
            t_max_y = (vy + (0 if step_y < 0 else 1) - yo) / dy if dy != 0 else _BIG
            t_max_z = (vz + (0 if step_z < 0 else 1) - zo) / dz if dz != 0 else _BIG
            t_delta_x = step_x / dx if dx != 0 else _BIG
            t_delta_y = step_y / dy if dy != 0 else _BIG
            t_delta_z = step_z / dz if dz != 0 else _BIG

            # Outside the grid: walk (counting steps) until the ray enters it or runs out of steps.
            steps = 0
            inside = 0 <= vx < nx and 0 <= vy < ny and 0 <= vz < nz
            while not inside and steps <= max_steps:
                if t_max_x < t_max_y:
                    if t_max_x < t_max_z:
                        vx += step_x
                        t_max_x += t_delta_x
                    else:
                        vz += step_z
                        t_max_z += t_delta_z
                else:
                    if t_max_y < t_max_z:
                        vy += step_y
                        t_max_y += t_delta_y
                    else:
                        vz += step_z
                        t_max_z += t_delta_z
                steps += 1
                inside = 0 <= vx < nx and 0 <= vy < ny and 0 <= vz < nz
            if not inside or steps > max_steps:  # never entered: depth -1 voxel, label of voxel (0, 0, 0)
                labels[t, c] = flat[0]
                dists[t, c] = -1.0
                hits[t, c] = False
                continue

            # Inside: test the voxel, leave it along one axis, stop on a hit, the grid edge or the cap.
            idx = vx * sx + vy * sy + vz
            hit = False
            d = -1.0
            label = flat[idx]
            while steps <= max_steps:
                label = flat[idx]
                if t_max_x < t_max_y:
                    if t_max_x < t_max_z:
                        d = t_max_x
                        t_max_x += t_delta_x
                        vx += step_x
                        idx += step_x * sx
                        out = vx < 0 or vx >= nx
                    else:
                        d = t_max_z
                        t_max_z += t_delta_z
                        vz += step_z
                        idx += step_z
                        out = vz < 0 or vz >= nz
                else:
                    if t_max_y < t_max_z:
                        d = t_max_y
                        t_max_y += t_delta_y
                        vy += step_y
                        idx += step_y * sy
                        out = vy < 0 or vy >= ny
                    else:
                        d = t_max_z
                        t_max_z += t_delta_z
                        vz += step_z
                        idx += step_z
                        out = vz < 0 or vz >= nz
                steps += 1
                if label != free:
                    hit = True
                    break
                if out:
                    break
            labels[t, c] = label
            dists[t, c] = d
            hits[t, c] = hit


def cast_rays(
    semantics: np.ndarray,
    origins_vox: np.ndarray,
    ends_vox: np.ndarray,
    free: int = OCC_FREE,
    max_steps: int = MAX_STEPS,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cast rays through ``semantics`` (X, Y, Z) in voxel units (voxel i spans [i, i + 1) per axis).

    ``origins_vox`` (T, 3) and ``ends_vox`` (T, N, 3): each ray runs from its origin towards its end
    point (only the direction matters). Returns per ray (T, N): the label of the first occupied voxel
    (uint8), its exit depth in voxel units (float64) and whether anything was hit; see the module
    docstring for rays that hit nothing."""
    sem = np.ascontiguousarray(semantics, dtype=np.uint8)
    if sem.ndim != 3:
        raise ValueError(f"semantics must be (X, Y, Z), got shape {sem.shape}")
    origins = np.ascontiguousarray(origins_vox, dtype=np.float64).reshape(-1, 3)
    ends = np.ascontiguousarray(ends_vox, dtype=np.float64)
    if ends.ndim == 2:
        ends = ends[None]
    if ends.ndim != 3 or ends.shape[0] != origins.shape[0] or ends.shape[2] != 3:
        raise ValueError(f"ends_vox must be (T, N, 3) with T = {origins.shape[0]} origins, got {ends.shape}")
    num_t, num_rays = ends.shape[:2]
    labels = np.empty((num_t, num_rays), np.uint8)
    dists = np.empty((num_t, num_rays), np.float64)
    hits = np.empty((num_t, num_rays), np.bool_)
    _cast_kernel(sem, np.uint8(free), origins, ends, int(max_steps), labels, dists, hits)
    return labels, dists, hits


def ray_endpoints_vox(
    origins: np.ndarray, directions: np.ndarray | None = None, grid: BEVGrid = OCC3D_GRID
) -> tuple[np.ndarray, np.ndarray]:
    """Metric origins (T, 3) in the ego frame and unit directions (N, 3) -> float32-rounded origins
    (T, 3) and ray end points (origin + direction, T x N x 3) in voxel units of ``grid``."""
    if not math.isclose(grid.resolution, grid.z_res):
        raise ValueError(f"ray casting needs cubic voxels, got {grid.resolution} x {grid.z_res}")
    dirs = _default_directions() if directions is None else np.asarray(directions, np.float32).reshape(-1, 3)
    o = np.asarray(origins, dtype=np.float64).reshape(-1, 3)
    offset = np.array([grid.x_range[0], grid.y_range[0], grid.z_range[0]], np.float32).astype(np.float64)
    scale = np.float64(np.float32(grid.resolution))
    origins_vox = ((o - offset) / scale).astype(np.float32)
    ends_vox = (((dirs.astype(np.float64)[None] + o[:, None]) - offset) / scale).astype(np.float32)
    return origins_vox, ends_vox


def render_rays(
    semantics: np.ndarray,
    origins_vox: np.ndarray,
    ends_vox: np.ndarray,
    grid: BEVGrid = OCC3D_GRID,
    free: int = OCC_FREE,
) -> tuple[np.ndarray, np.ndarray]:
    """Rays of :func:`ray_endpoints_vox` cast through ``semantics`` -> (labels (T * N,) uint8, depths
    (T * N,) float32 metres); origins first, then rays."""
    labels, dists, _ = cast_rays(semantics, origins_vox, ends_vox, free=free)
    depth = dists.astype(np.float32) * np.float32(grid.resolution)
    return labels.reshape(-1), depth.reshape(-1)
