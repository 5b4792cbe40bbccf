"""Occ3D-style occupancy and OpenLane-V2-style lane/traffic-element labels of one synthetic frame,
computed from the same world geometry as the images (ego frame of the key frame)."""

from __future__ import annotations

import numba
import numpy as np

from perception.structures.bev_grid import OCC3D_GRID
from perception.structures.boxes import box_corners, points_in_boxes, transform_boxes
from perception.structures.cameras import project_points
from perception.structures.classes import OCC_FREE
from perception.structures.transforms import transform_points

from .world import LANE_CENTRES, ROAD_A_RANGE, ROAD_HALF_WIDTH, SEGMENT_LENGTH, SIDEWALK_OUTER, SceneWorld

GROUND_CLASSES = {"road": 11, "sidewalk": 13, "terrain": 14}
LANE_POINTS = 201  # OpenLane-V2 ground truth: 201 points per centerline (the val data_dict keeps 11)
LANE_RANGE = ((-50.0, 50.0), (-25.0, 25.0))  # OpenLane-V2 ego range (x, y)


def occupancy_labels(
    world: SceneWorld,
    solids_global: np.ndarray,
    solid_classes: np.ndarray,
    ego2global: np.ndarray,
    cameras: list[tuple[np.ndarray, np.ndarray]],
    lidar_points_ego: np.ndarray,
    lidar_origin_ego: np.ndarray,
) -> dict[str, np.ndarray]:
    """``semantics`` / ``mask_lidar`` / ``mask_camera`` (200, 200, 16) uint8 in the ego frame.

    ``cameras``: (ego2img, depth map) per camera; a voxel is camera-visible if its centre projects
    into an image no farther than 0.4 m behind the rendered surface. LiDAR-observed voxels hold a
    return or lie on a beam before its return."""
    grid = OCC3D_GRID
    centres = grid.voxel_centers()
    shape = centres.shape[:3]
    sem = np.full(shape, OCC_FREE, dtype=np.uint8)
    # Ground: the voxel layer holding z = 0, classified by the road layout.
    ground_k = int(np.floor((0.0 - grid.z_range[0]) / grid.z_res))
    layer = centres[:, :, ground_k].reshape(-1, 3)
    _, b = world.global_to_road(transform_points(ego2global, layer)[:, :2])
    ab = np.abs(b)
    ground = np.where(
        ab <= ROAD_HALF_WIDTH,
        GROUND_CLASSES["road"],
        np.where(ab <= SIDEWALK_OUTER, GROUND_CLASSES["sidewalk"], GROUND_CLASSES["terrain"]),
    )
    sem[:, :, ground_k] = ground.reshape(shape[:2])
    # Solids: voxels whose centre lies inside the cuboid.
    boxes_ego = transform_boxes(solids_global[:, :7], np.linalg.inv(ego2global))
    corners = box_corners(boxes_ego)
    lo_idx, _ = grid.points_to_voxel_index(corners.min(1))
    hi_idx, _ = grid.points_to_voxel_index(corners.max(1))
    upper = np.array(shape) - 1
    for k in range(len(boxes_ego)):
        lo, hi = np.clip(lo_idx[k], 0, upper), np.clip(hi_idx[k], 0, upper)
        if (hi_idx[k] < 0).any() or (lo_idx[k] > upper).any():
            continue
        block = centres[lo[0] : hi[0] + 1, lo[1] : hi[1] + 1, lo[2] : hi[2] + 1]
        # A negative margin leaves the ground layer (voxel centres at z = 0, where boxes stand) to the ground.
        inside = points_in_boxes(block.reshape(-1, 3), boxes_ego[k : k + 1], margin=-1e-3)[:, 0].reshape(
            block.shape[:3]
        )
        view = sem[lo[0] : hi[0] + 1, lo[1] : hi[1] + 1, lo[2] : hi[2] + 1]
        view[inside] = solid_classes[k]
    return dict(
        semantics=sem,
        mask_camera=_camera_mask(cameras),
        mask_lidar=_lidar_mask(lidar_points_ego, lidar_origin_ego),
    )


@numba.njit(cache=True)
def _mark_camera_visible(lo, res, shape, ego2img, depth, visible):
    h, w = depth.shape
    for i in range(shape[0]):
        x = lo[0] + (i + 0.5) * res[0]
        for j in range(shape[1]):
            y = lo[1] + (j + 0.5) * res[1]
            for k in range(shape[2]):
                z = lo[2] + (k + 0.5) * res[2]
                d = ego2img[2, 0] * x + ego2img[2, 1] * y + ego2img[2, 2] * z + ego2img[2, 3]
                if d <= 0.1:
                    continue
                u = (ego2img[0, 0] * x + ego2img[0, 1] * y + ego2img[0, 2] * z + ego2img[0, 3]) / d
                v = (ego2img[1, 0] * x + ego2img[1, 1] * y + ego2img[1, 2] * z + ego2img[1, 3]) / d
                if u < 0 or v < 0 or u >= w or v >= h:
                    continue
                if d <= depth[int(v), int(u)] + 0.4:
                    visible[i, j, k] = 1


@numba.njit(cache=True)
def _mark_beams(lo, res, shape, origin, points, step, mask):
    for p in range(points.shape[0]):
        dx, dy, dz = points[p, 0] - origin[0], points[p, 1] - origin[1], points[p, 2] - origin[2]
        dist = np.sqrt(dx * dx + dy * dy + dz * dz)
        n = int(dist / step) + 1
        for s in range(n + 1):
            f = min(s * step / dist, 1.0)
            i = int(np.floor((origin[0] + f * dx - lo[0]) / res[0]))
            j = int(np.floor((origin[1] + f * dy - lo[1]) / res[1]))
            k = int(np.floor((origin[2] + f * dz - lo[2]) / res[2]))
            if 0 <= i < shape[0] and 0 <= j < shape[1] and 0 <= k < shape[2]:
                mask[i, j, k] = 1


def _grid_arrays():
    g = OCC3D_GRID
    lo = np.array([g.x_range[0], g.y_range[0], g.z_range[0]])
    res = np.array([g.resolution, g.resolution, g.z_res])
    return lo, res, np.array(g.voxel_shape)


def _camera_mask(cameras: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """Voxels whose centre projects into a camera no farther than 0.4 m behind the rendered surface."""
    lo, res, shape = _grid_arrays()
    visible = np.zeros(tuple(shape), dtype=np.uint8)
    for ego2img, depth in cameras:
        _mark_camera_visible(
            lo, res, shape, np.asarray(ego2img, np.float64), np.asarray(depth, np.float64), visible
        )
    return visible


def _lidar_mask(points: np.ndarray, origin: np.ndarray, step: float = 0.2) -> np.ndarray:
    """Voxels holding a LiDAR return or crossed by a beam before its return."""
    lo, res, shape = _grid_arrays()
    mask = np.zeros(tuple(shape), dtype=np.uint8)
    _mark_beams(
        lo, res, shape, np.asarray(origin, np.float64), np.asarray(points[:, :3], np.float64), step, mask
    )
    return mask


def lane_segments(world: SceneWorld) -> list[dict]:
    """Directed centerline segments of every lane (road frame), SEGMENT_LENGTH long, in travel order, each
    sampled at LANE_POINTS points equally spaced along it (the road is straight)."""
    segments = []
    starts = np.arange(ROAD_A_RANGE[0], ROAD_A_RANGE[1], SEGMENT_LENGTH)
    for lane, b in enumerate(LANE_CENTRES):
        direction = 1.0 if b < 0 else -1.0
        for k, a0 in enumerate(starts):
            a = np.linspace(a0, a0 + SEGMENT_LENGTH, LANE_POINTS)
            if direction < 0:
                a = a[::-1]
            segments.append(dict(id=lane * 1000 + k, lane=lane, b=b, a=a, start=a[0], end=a[-1]))
    return segments


def openlane_annotation(
    world: SceneWorld,
    ego2global: np.ndarray,
    front_ego2img: np.ndarray,
    front_ids: np.ndarray,
    te_solid_index: list[int],
) -> dict:
    """OpenLane-V2 ``annotation`` of one frame: lane centerlines (ego frame), traffic elements (front
    camera pixels, only if rendered visible), lane-lane and lane-traffic-element topology."""
    global2ego = np.linalg.inv(ego2global)
    lanes, kept = [], []
    for seg in lane_segments(world):
        xy = world.road_to_global(seg["a"], np.full_like(seg["a"], seg["b"]))
        pts = transform_points(global2ego, np.concatenate([xy, np.zeros((len(xy), 1))], 1))
        inside = (
            (pts[:, 0] >= LANE_RANGE[0][0])
            & (pts[:, 0] <= LANE_RANGE[0][1])
            & (pts[:, 1] >= LANE_RANGE[1][0])
            & (pts[:, 1] <= LANE_RANGE[1][1])
        )
        if inside.all():  # lanes lie within the ego range, as OpenLane-V2's do (docs/data.md)
            # 0.1 mm is far below any lane tolerance and keeps the 201-point jsons small and fast to write.
            lanes.append(dict(id=int(seg["id"]), points=np.round(pts, 4).tolist()))
            kept.append(seg)
    h, w = front_ids.shape
    elements, te_meta = [], []
    for j, te in enumerate(world.traffic_elements):
        visible = int((front_ids == te_solid_index[j]).sum())
        if visible < 2:
            continue
        corners = box_corners(transform_boxes(te["box"][None, :7], global2ego))[0]
        uv, z = project_points(front_ego2img, corners)
        if (z <= 0.1).any():
            continue
        x1, y1 = np.clip(uv.min(0), 0, [w, h])
        x2, y2 = np.clip(uv.max(0), 0, [w, h])
        elements.append(
            dict(
                id=100000 + j,
                category=te["category"],
                attribute=te["attribute"],
                points=[[float(x1), float(y1)], [float(x2), float(y2)]],
            )
        )
        te_meta.append(te)
    lclc = np.zeros((len(kept), len(kept)), dtype=np.int8)
    for i, si in enumerate(kept):
        for k, sk in enumerate(kept):
            lclc[i, k] = si["lane"] == sk["lane"] and abs(si["end"] - sk["start"]) < 1e-6
    lcte = np.zeros((len(kept), len(te_meta)), dtype=np.int8)
    for i, seg in enumerate(kept):
        for j, te in enumerate(te_meta):
            if seg["b"] not in te["lane_bs"]:
                continue
            if te["category"] == 1:  # a light controls the lane segments ending at its stop line
                lcte[i, j] = abs(seg["end"] - te["a"]) < 1e-6
            else:  # a sign applies to the segments it stands beside
                lcte[i, j] = min(seg["start"], seg["end"]) <= te["a"] < max(seg["start"], seg["end"])
    return dict(
        lane_centerline=lanes,
        traffic_element=elements,
        topology_lclc=lclc.tolist(),
        topology_lcte=lcte.tolist(),
    )
