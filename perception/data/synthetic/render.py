"""A small numpy ray caster: camera images with a z-buffer over cuboids and a textured ground plane,
and a spinning-LiDAR point cloud from the same geometry.

Each cuboid is only tested against the rays inside its projected bounding rectangle, so the cost is
proportional to the pixels it covers; the nearest hit wins per ray (a z-buffer), so occlusion between
objects, scenery and the ground is exact.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from perception.structures.boxes import box_corners

from .world import LANE_WIDTH, ROAD_HALF_WIDTH, SEGMENT_LENGTH, SIDEWALK_OUTER, SceneWorld

_LIGHT = np.array([0.35, 0.25, 0.9]) / np.linalg.norm([0.35, 0.25, 0.9])
SKY_ID, GROUND_ID = -2, -1
MAX_RANGE = 200.0


@dataclass
class Solids:
    """All cuboids of one instant: boxes (B, >=7) global, colours (B, 3) and a per-box kind
    (0 plain, 1 vehicle with windows)."""

    boxes: np.ndarray
    colors: np.ndarray
    kinds: np.ndarray


def _intersect(origin: np.ndarray, dirs: np.ndarray, box: np.ndarray):
    """Ray/oriented-box slab test. dirs (..., 3). Returns t (inf on miss), hit axis and local hit point."""
    c, s = np.cos(box[6]), np.sin(box[6])
    rel = origin - box[:3]
    lo = np.array([rel[0] * c + rel[1] * s, -rel[0] * s + rel[1] * c, rel[2]])
    ld = np.stack(
        [dirs[..., 0] * c + dirs[..., 1] * s, -dirs[..., 0] * s + dirs[..., 1] * c, dirs[..., 2]], -1
    )
    half = np.array([box[4], box[3], box[5]]) / 2
    with np.errstate(divide="ignore", invalid="ignore"):
        inv = 1.0 / ld
        t1 = (-half - lo) * inv
        t2 = (half - lo) * inv
    t_near_axes = np.fmin(t1, t2)
    t_near = np.nanmax(t_near_axes, -1)
    t_far = np.nanmin(np.fmax(t1, t2), -1)
    hit = (t_far >= t_near) & (t_near > 0.05)
    t = np.where(hit, t_near, np.inf)
    axis = np.argmax(np.nan_to_num(t_near_axes, nan=-np.inf), -1)
    local = lo + ld * np.where(hit, t_near, 0.0)[..., None]
    return t, axis, local, ld


def _shade(
    box: np.ndarray, color: np.ndarray, kind: int, axis: np.ndarray, local: np.ndarray, ld: np.ndarray
) -> np.ndarray:
    """Lambert shading per face, darker edges (so cuboids read as solids) and windows on vehicles."""
    sign = -np.sign(np.take_along_axis(ld, axis[..., None], -1)[..., 0])
    normal_local = np.zeros(axis.shape + (3,))
    np.put_along_axis(normal_local, axis[..., None], sign[..., None], -1)
    c, s = np.cos(box[6]), np.sin(box[6])
    normal = np.stack(
        [
            normal_local[..., 0] * c - normal_local[..., 1] * s,
            normal_local[..., 0] * s + normal_local[..., 1] * c,
            normal_local[..., 2],
        ],
        -1,
    )
    shade = 0.55 + 0.45 * np.clip(normal @ _LIGHT, 0, None)
    half = np.array([box[4], box[3], box[5]]) / 2
    frac = np.abs(local) / half  # 1 on the face boundaries
    frac_masked = np.where(np.arange(3) == axis[..., None], 0.0, frac)
    edge = frac_masked.max(-1) > 1.0 - np.minimum(0.08, 0.12 / half.min())
    shade = np.where(edge, shade * 0.55, shade)
    if kind == 1:
        z_rel = local[..., 2] / half[2]
        window = (axis != 2) & (z_rel > 0.25) & (z_rel < 0.8) & ~edge
        shade = np.where(window, shade * 0.4, shade)
    return shade[..., None] * color.astype(np.float64)


def _hash_noise(ix: np.ndarray, iy: np.ndarray) -> np.ndarray:
    """Deterministic value noise in [-1, 1] from integer cell coordinates."""
    v = np.sin(ix * 12.9898 + iy * 78.233) * 43758.5453
    return (v - np.floor(v)) * 2 - 1


# Ground surface codes of :func:`ground_surfaces`: what the ground texture shows at a point.
SURFACE_ROAD, SURFACE_SIDEWALK, SURFACE_TERRAIN, SURFACE_LANE_PAINT = 0, 1, 2, 3


def _ground_layout(world: SceneWorld, xy: np.ndarray) -> dict[str, np.ndarray]:
    """Road coordinates and the boolean masks of the ground texture at global points (N, 2): the one
    definition of where road, sidewalk, grass and paint lie, shared by the colours and the labels."""
    a, b = world.global_to_road(xy)
    ab = np.abs(b)
    road, walk = ab <= ROAD_HALF_WIDTH, (ab > ROAD_HALF_WIDTH) & (ab <= SIDEWALK_OUTER)
    dashes = (np.abs(ab - LANE_WIDTH) < 0.08) & (np.mod(a, 9.0) < 3.0)
    edges = np.abs(ab - (ROAD_HALF_WIDTH - 0.2)) < 0.1
    stop = (b < 0) & road & (np.abs(np.mod(a - 2 * SEGMENT_LENGTH, 3 * SEGMENT_LENGTH)) < 0.3)
    yellow = (ab > 0.08) & (ab < 0.22)  # double yellow centre line
    return dict(a=a, road=road, walk=walk, grass=ab > SIDEWALK_OUTER, white=dashes | edges | stop, yellow=yellow)


def ground_surfaces(world: SceneWorld, xy: np.ndarray) -> np.ndarray:
    """Surface code (N,) int64 of the ground at global points (N, 2): ``SURFACE_*``; paint wins over the
    surface it is painted on, as in :func:`ground_colors`."""
    layout = _ground_layout(world, xy)
    out = np.full(len(xy), SURFACE_TERRAIN, dtype=np.int64)
    out[layout["road"]] = SURFACE_ROAD
    out[layout["walk"]] = SURFACE_SIDEWALK
    out[layout["white"] | layout["yellow"]] = SURFACE_LANE_PAINT
    return out


def ground_colors(world: SceneWorld, xy: np.ndarray) -> np.ndarray:
    """Texture of the ground at global points (N, 2): asphalt with painted lines, sidewalk, grass."""
    layout = _ground_layout(world, xy)
    road, walk, grass = layout["road"], layout["walk"], layout["grass"]
    noise = _hash_noise(np.floor(xy[:, 0] * 3), np.floor(xy[:, 1] * 3))
    out = np.empty((len(xy), 3))
    out[road] = np.array([88, 88, 94]) + 6 * noise[road, None]
    joints = np.abs(np.mod(layout["a"], 2.0) - 1.0) > 0.95
    out[walk] = np.where(joints[walk, None], [135, 130, 125], [170, 165, 158]) + 5 * noise[walk, None]
    out[grass] = np.array([78, 128, 52]) + 18 * noise[grass, None]
    out[layout["white"]] = np.array([235, 235, 230])
    out[layout["yellow"]] = [230, 195, 40]
    return out


def _sky(dirs: np.ndarray) -> np.ndarray:
    elevation = np.clip(dirs[..., 2] / np.linalg.norm(dirs, axis=-1), 0, 1)[..., None]
    return (1 - elevation) * np.array([200, 222, 240]) + elevation * np.array([110, 160, 225])


def _trace(
    world: SceneWorld, solids: Solids, origin: np.ndarray, dirs: np.ndarray, regions, colorize: bool = True
) -> tuple:
    """Nearest hits of rays ``dirs`` (H, W, 3) from ``origin``. ``regions`` yields (box index, row slice,
    column index array) of candidate rays per box. Returns colour (H, W, 3), t (H, W), id (H, W) and the
    per-box count of rays that hit it (visible or not)."""
    h, w = dirs.shape[:2]
    t_best = np.full((h, w), np.inf)
    ids = np.full((h, w), SKY_ID, dtype=np.int64)
    color = np.zeros((h, w, 3))
    with np.errstate(divide="ignore"):
        t_ground = np.where(dirs[..., 2] < -1e-9, -origin[2] / dirs[..., 2], np.inf)
    ground = t_ground < MAX_RANGE
    t_best[ground] = t_ground[ground]
    ids[ground] = GROUND_ID
    hit_counts = np.zeros(len(solids.boxes), dtype=np.int64)
    for k, rows, cols in regions:
        sub = dirs[rows][:, cols]
        t, axis, local, ld = _intersect(origin, sub, solids.boxes[k])
        hit_counts[k] = int(np.isfinite(t).sum())
        current = t_best[rows][:, cols]
        closer = t < current
        if not closer.any():
            continue
        rr, cc = np.ix_(np.arange(h)[rows], cols)
        t_best[rr, cc] = np.where(closer, t, current)
        block_ids = ids[rr, cc]
        block_ids[closer] = k
        ids[rr, cc] = block_ids
        if not colorize:
            continue
        shaded = _shade(solids.boxes[k], solids.colors[k], int(solids.kinds[k]), axis, local, ld)
        block_c = color[rows][:, cols]
        block_c[closer] = shaded[closer]
        color[rr, cc] = block_c
    if not colorize:
        return color, t_best, ids, hit_counts
    g = ids == GROUND_ID
    points = origin[:2] + dirs[g][:, :2] * t_best[g][:, None]
    color[g] = ground_colors(world, points)
    sky = ids == SKY_ID
    color[sky] = _sky(dirs[sky])
    return color, t_best, ids, hit_counts


def camera_rays(intrinsics: np.ndarray, cam2global: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Origin (3,) and global directions (H, W, 3) of the rays through the pixel centres of a pinhole camera
    of ``size`` = (width, height); each direction has camera z = 1, so the hit distance t is the depth."""
    width, height = size
    u, v = np.meshgrid(np.arange(width) + 0.5, np.arange(height) + 0.5)
    pix = np.stack([u, v, np.ones_like(u)], -1)
    return cam2global[:3, 3], pix @ np.linalg.inv(intrinsics).T @ cam2global[:3, :3].T


def render_camera(
    world: SceneWorld, solids: Solids, intrinsics: np.ndarray, cam2global: np.ndarray, size: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Image (H, W, 3) uint8, depth along the optical axis (H, W), hit id (H, W; -1 ground, -2 sky) and
    per-box hit counts for a pinhole camera (OpenCV axes) at ``cam2global``."""
    width, height = size
    origin, dirs = camera_rays(intrinsics, cam2global, size)
    rot = cam2global[:3, :3]

    def regions():
        corners = box_corners(solids.boxes)  # (B, 8, 3)
        cam = (corners - origin) @ rot
        near = np.linalg.norm(solids.boxes[:, :2] - origin[:2], axis=1) < MAX_RANGE
        for k in np.nonzero(near)[0]:
            z = cam[k, :, 2]
            if (z <= 0.1).all():
                continue
            if (z <= 0.1).any():
                r0, r1, c0, c1 = 0, height, 0, width
            else:
                uv = cam[k, :, :2] / z[:, None] * [intrinsics[0, 0], intrinsics[1, 1]] + intrinsics[:2, 2]
                c0, r0 = np.floor(uv.min(0)).astype(int) - 1
                c1, r1 = np.ceil(uv.max(0)).astype(int) + 1
                r0, c0 = max(r0, 0), max(c0, 0)
                r1, c1 = min(r1, height), min(c1, width)
            if r1 > r0 and c1 > c0:
                yield k, slice(r0, r1), np.arange(c0, c1)

    color, t, ids, hits = _trace(world, solids, origin, dirs, regions())
    return np.clip(color, 0, 255).astype(np.uint8), t, ids, hits


# nuScenes' LIDAR_TOP is a 32-beam Velodyne HDL-32E: -30.67..+10.67 degrees elevation.
LIDAR_ELEVATIONS = np.deg2rad(np.linspace(-30.67, 10.67, 32))


def render_lidar(
    world: SceneWorld,
    solids: Solids,
    lidar2global: np.ndarray,
    azimuth_steps: int = 720,
    max_range: float = 70.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Points (N, 5) ``x, y, z, intensity, ring`` in the LiDAR frame and the cuboid id hit per point."""
    az = np.arange(azimuth_steps) * (2 * np.pi / azimuth_steps)
    el = LIDAR_ELEVATIONS
    local = np.stack(
        [
            np.cos(el)[:, None] * np.cos(az),
            np.cos(el)[:, None] * np.sin(az),
            np.sin(el)[:, None] * np.ones_like(az),
        ],
        -1,
    )  # (E, A, 3) in the LiDAR frame
    rot, origin = lidar2global[:3, :3], lidar2global[:3, 3]
    dirs = local @ rot.T

    def regions():
        corners = box_corners(solids.boxes)
        rel = (corners - origin) @ rot  # LiDAR frame
        near = np.linalg.norm(solids.boxes[:, :2] - origin[:2], axis=1) < max_range + 15
        step = 2 * np.pi / azimuth_steps
        for k in np.nonzero(near)[0]:
            a = np.arctan2(rel[k, :, 1], rel[k, :, 0])
            a_c = np.arctan2(rel[k, :, 1].mean(), rel[k, :, 0].mean())
            da = (a - a_c + np.pi) % (2 * np.pi) - np.pi
            e = np.arctan2(rel[k, :, 2], np.hypot(rel[k, :, 0], rel[k, :, 1]))
            c0, c1 = int(np.floor((a_c + da.min()) / step)) - 1, int(np.ceil((a_c + da.max()) / step)) + 2
            r0 = max(int(np.searchsorted(el, e.min())) - 1, 0)
            r1 = min(int(np.searchsorted(el, e.max())) + 1, len(el))
            if r1 > r0:
                yield k, slice(r0, r1), np.arange(c0, c1) % azimuth_steps

    _, t, ids, _ = _trace(world, solids, origin, dirs, regions(), colorize=False)
    valid = np.isfinite(t) & (t < max_range) & (ids != SKY_ID)
    pts = local[valid] * t[valid][:, None]
    ring = np.broadcast_to(np.arange(len(el))[:, None], t.shape)[valid]
    intensity = np.where(ids[valid] >= 0, 40.0, 8.0)
    cloud = np.concatenate([pts, intensity[:, None], ring[:, None]], 1).astype(np.float32)
    return cloud, ids[valid]
