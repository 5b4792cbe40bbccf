"""Occ3D mIoU and RayIoU (perception/evaluation/occupancy.py, ray_casting.py) against hand-computed
truth; the definitions are in docs/occupancy.md."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from perception.evaluation.occupancy import (
    OccupancyMetric,
    OccupancyMIoU,
    OccupancyRayIoU,
    check_semantics,
    confusion_matrix,
    load_occ_gt,
    occupancy_miou,
    occupancy_rayiou,
    ray_counts,
    rayiou_origins,
    scene_origins,
)
from perception.evaluation.ray_casting import cast_rays, lidar_ray_directions, ray_pitch_angles
from perception.structures.bev_grid import OCC3D_GRID, BEVGrid
from perception.structures.classes import OCC3D_CLASSES

FREE = 17
CAR, TRUCK, DRIVEABLE, MANMADE, VEGETATION, OTHERS, BICYCLE, BUS = 4, 10, 11, 15, 16, 0, 2, 3


# -- mIoU ---------------------------------------------------------------------------------------------
def _frames():
    """Two 3 x 2 x 2 frames of (gt, pred, mask_camera) voxels, listed flat."""
    f1 = [  # (gt, pred, mask)
        (CAR, CAR, 1),
        (CAR, CAR, 1),
        (CAR, FREE, 1),  # free predicted where GT is a car: FN car, FP free
        (FREE, CAR, 1),  # FP car, FN free
        (DRIVEABLE, DRIVEABLE, 1),
        (DRIVEABLE, OTHERS, 1),  # FN driveable, FP others
        (FREE, FREE, 1),
        (OTHERS, OTHERS, 1),
        (CAR, DRIVEABLE, 0),  # outside the camera mask: must not count
        (VEGETATION, VEGETATION, 0),  # vegetation only outside the mask: NaN
        (FREE, BUS, 0),
        (FREE, FREE, 1),
    ]
    f2 = [(CAR, CAR, 1), (FREE, BICYCLE, 1)] + [(VEGETATION, TRUCK, 0)] * 9 + [(FREE, FREE, 0)]
    out = []
    for f in (f1, f2):
        a = np.array(f, dtype=np.uint8).reshape(3, 2, 2, 3)
        out.append((a[..., 0], a[..., 1], a[..., 2]))
    return out


def test_confusion_matrix_by_hand():
    gt, pred, mask = _frames()[0]
    hist = confusion_matrix(pred, gt, mask)
    expected = np.zeros((18, 18), np.int64)
    for g, p in [(CAR, CAR), (CAR, CAR), (CAR, FREE), (FREE, CAR), (DRIVEABLE, DRIVEABLE), (DRIVEABLE, OTHERS),
                 (FREE, FREE), (OTHERS, OTHERS), (FREE, FREE)]:
        expected[g, p] += 1  # rows GT, columns prediction
    np.testing.assert_array_equal(hist, expected)
    assert hist.sum() == 9  # three voxels outside the mask dropped


def test_miou_pooled_over_split_by_hand():
    metric = OccupancyMIoU(shape=None)
    for gt, pred, mask in _frames():
        metric.add(pred, gt, mask)
    out = metric.compute()
    iou = out["per_class_IoU"]
    # car: TP 2 + 1, FN 1, FP 1 -> 3/5; driveable: 1/2; others: TP 1, FP 1 -> 1/2; bicycle: FP 1 -> 0.
    assert iou["car"] == pytest.approx(60.0)
    assert iou["driveable_surface"] == pytest.approx(50.0)
    assert iou["others"] == pytest.approx(50.0)
    assert iou["bicycle"] == pytest.approx(0.0)
    # vegetation, truck and bus occur only outside the camera mask; the rest nowhere: NaN, skipped.
    for name in ("vegetation", "truck", "bus", "barrier", "pedestrian", "manmade"):
        assert math.isnan(iou[name])
    assert "free" not in iou and len(iou) == 17
    assert out["mIoU"] == pytest.approx((60 + 50 + 50 + 0) / 4)
    # Free is in the matrix (TP 2, FN 2, FP 1) but not in the mean.
    hist = metric.hist
    assert hist[FREE, FREE] == 2 and hist[FREE].sum() - 2 == 2 and hist[:, FREE].sum() - 2 == 1
    # Pooled, not a per-frame average: frame 2 alone would give car 100 %.
    frames = _frames()
    functional = occupancy_miou([f[1] for f in frames], [f[0] for f in frames], [f[2] for f in frames], shape=None)
    assert functional["mIoU"] == pytest.approx(out["mIoU"])


def test_miou_without_camera_mask_counts_every_voxel():
    frames = _frames()
    out = occupancy_miou([f[1] for f in frames], [f[0] for f in frames], None, shape=None)
    # vegetation: TP 1 (frame 1), FN 9 (frame 2, predicted truck) -> 10 %; truck: 9 FP -> 0 %.
    assert out["per_class_IoU"]["vegetation"] == pytest.approx(10.0)
    assert out["per_class_IoU"]["truck"] == pytest.approx(0.0)


def _realistic_grid(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    sem = np.full(OCC3D_GRID.voxel_shape, FREE, np.uint8)
    sem[:, 80:120, 2] = DRIVEABLE
    sem[:, :80, 2] = 13
    sem[:, 120:, 2] = 14
    for cls, n, size in ((CAR, 20, (11, 5, 4)), (TRUCK, 3, (25, 7, 8)), (MANMADE, 10, (30, 20, 12)),
                         (VEGETATION, 15, (4, 4, 8)), (7, 10, (1, 1, 4))):
        for _ in range(n):
            x, y = rng.integers(0, 200 - size[0]), rng.integers(0, 200 - size[1])
            sem[x : x + size[0], y : y + size[1], 3 : 3 + size[2]] = cls
    return sem


def test_gt_as_prediction_scores_100_on_a_realistic_grid():
    gt = _realistic_grid()
    mask = np.zeros_like(gt)
    mask[60:140, 40:160, :10] = 1
    out = occupancy_miou([gt], [gt], [mask])
    assert out["mIoU"] == pytest.approx(100.0)
    origins = np.array([[0.98, 0.0, 1.84], [-10.0, 2.0, 1.8], [12.0, -1.0, 1.9]])
    ray = occupancy_rayiou([gt], [gt], [origins])
    for key in ("RayIoU", "RayIoU@1", "RayIoU@2", "RayIoU@4"):
        assert ray[key] == pytest.approx(100.0)


# -- ray casting --------------------------------------------------------------------------------------
def test_ray_directions_match_the_definition():
    pitches = ray_pitch_angles()
    assert len(pitches) == 39
    assert pitches[0] == pytest.approx(-math.pi / 4) and pitches[9] == pytest.approx(-(math.pi / 2 - math.atan(10)))
    assert pitches[-2] < 0.21 <= pitches[-1] == pytest.approx(0.219, abs=1e-3)
    dirs = lidar_ray_directions()
    assert dirs.shape == (39 * 360, 3) and dirs.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(dirs, axis=1), 1.0, atol=1e-6)
    np.testing.assert_allclose(dirs[360 + 90], [0.0, math.cos(pitches[1]), math.sin(pitches[1])], atol=1e-6)


def _literal_cast(sem, free, o, e, max_steps=1000):
    """Straight transcription of the reference traversal: record the in-grid path with exit depths,
    then take the first occupied voxel (slow; the independent truth for the fast kernel)."""
    big = 1.7976931348623157e308
    xo, yo, zo = o
    vx, vy, vz = int(xo), int(yo), int(zo)
    r = [e[0] - xo, e[1] - yo, e[2] - zo]
    n = math.sqrt(r[0] * r[0] + r[1] * r[1] + r[2] * r[2])
    dx, dy, dz = r[0] / n, r[1] / n, r[2] / n
    sx, sy, sz = (1 if v >= 0 else -1 for v in (dx, dy, dz))
    tmx = (vx + (0 if sx < 0 else 1) - xo) / dx if dx != 0 else big
    tmy = (vy + (0 if sy < 0 else 1) - yo) / dy if dy != 0 else big
    tmz = (vz + (0 if sz < 0 else 1) - zo) / dz if dz != 0 else big
    tdx = sx / dx if dx != 0 else big
    tdy = sy / dy if dy != 0 else big
    tdz = sz / dz if dz != 0 else big
    path, depth, step, was_inside = [], [], 0, False
    while True:
        inside = 0 <= vx < sem.shape[0] and 0 <= vy < sem.shape[1] and 0 <= vz < sem.shape[2]
        if inside:
            was_inside = True
            path.append((vx, vy, vz))
        elif was_inside:
            break
        if tmx < tmy:
            if tmx < tmz:
                d, vx, tmx = tmx, vx + sx, tmx + tdx
            else:
                d, vz, tmz = tmz, vz + sz, tmz + tdz
        else:
            if tmy < tmz:
                d, vy, tmy = tmy, vy + sy, tmy + tdy
            else:
                d, vz, tmz = tmz, vz + sz, tmz + tdz
        if inside:
            depth.append(d)
        step += 1
        if step > max_steps:
            break
    if not path:
        return int(sem[0, 0, 0]), -1.0, False
    for v, d in zip(path, depth):
        if sem[v] != free:
            return int(sem[v]), d, True
    return int(sem[path[-1]]), depth[-1], False


@pytest.mark.parametrize("max_steps", [1000, 7])
def test_fast_kernel_equals_literal_traversal(max_steps):
    rng = np.random.default_rng(3)
    sem = np.full((12, 10, 6), FREE, np.uint8)
    occupied = rng.random(sem.shape) < 0.04
    sem[occupied] = rng.integers(0, 17, occupied.sum())
    sem[0, 0, 0] = CAR  # the label a ray that never enters the grid reports
    origins = np.concatenate([rng.uniform(-4, 16, (6, 3)), [[3.5, 2.5, 1.5], [0.5, 0.5, 0.5]]])
    dirs = rng.normal(size=(150, 3))
    dirs[:10] = [[1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, 0, -1], [1, 1, 0], [1, -1, 0], [1, 1, 1], [-1, -1, 1],
                 [0, 1, 1], [2, 1, 0]]
    ends = origins[:, None] + dirs[None]
    labels, dists, hits = cast_rays(sem, origins, ends, free=FREE, max_steps=max_steps)
    for t in range(len(origins)):
        for c in range(len(dirs)):
            assert (labels[t, c], dists[t, c], hits[t, c]) == _literal_cast(
                sem, FREE, origins[t], ends[t, c], max_steps
            ), (t, c)
    assert hits.any() and (~hits).any() and (dists == -1).any()  # hits, misses and rays never inside


def test_wall_depth_equals_analytic_distance():
    sem = np.full(OCC3D_GRID.voxel_shape, FREE, np.uint8)
    sem[150] = MANMADE  # x in [20.0, 20.4)
    origin = np.array([0.98, 0.0, 1.84])
    dirs = []
    for yaw, pitch in ((0.0, 0.0), (30.0, 0.0), (-20.0, -0.1), (5.0, 0.05), (45.0, 0.0)):
        a, p = math.radians(yaw), pitch
        dirs.append([math.cos(p) * math.cos(a), math.cos(p) * math.sin(a), math.sin(p)])
    dirs = np.array(dirs)
    metric = OccupancyRayIoU(directions=dirs)
    from perception.evaluation.ray_casting import ray_endpoints_vox, render_rays

    ov, ev = ray_endpoints_vox(origin[None], dirs)
    labels, depth = render_rays(sem, ov, ev)
    assert (labels == MANMADE).all()
    faces = []
    for d, got in zip(dirs.astype(np.float32).astype(np.float64), depth):
        d = d / np.linalg.norm(d)
        t_in = (20.0 - origin[0]) / d[0]
        p = origin + t_in * d
        j, k = math.floor((p[1] + 40) / 0.4), math.floor((p[2] + 1) / 0.4)
        exits = [(20.4 - origin[0]) / d[0]]
        if d[1] != 0:
            exits.append(((j + (d[1] > 0)) * 0.4 - 40 - origin[1]) / d[1])
        if d[2] != 0:
            exits.append(((k + (d[2] > 0)) * 0.4 - 1 - origin[2]) / d[2])
        # Origins and ray end points are float32 in voxel units (as in the reference): ~1e-4 m at 20 m.
        assert got == pytest.approx(min(exits), abs=2e-4)
        faces.append(int(np.argmin(exits)))
        # In float64 voxel units the traversal itself is exact.
        o_vox = (origin - [-40.0, -40.0, -1.0]) / 0.4
        _, d_vox, hit = cast_rays(sem, o_vox[None], (o_vox + d)[None, None])
        assert hit[0, 0] and d_vox[0, 0] * 0.4 == pytest.approx(min(exits), abs=1e-9)
    assert set(faces) == {0, 1, 2}  # rays leave the hit voxel through its x, y and z faces
    assert depth[0] == pytest.approx(20.4 - 0.98, abs=2e-5)
    assert metric.frame_counts(sem, sem, origin[None])["gt"][MANMADE] == len(dirs)


def test_ray_through_a_grid_corner():
    sem = np.full((4, 4, 2), FREE, np.uint8)
    o = np.array([[0.5, 0.5, 0.5]])
    diag = o[:, None] + np.array([[[1.0, 1.0, 0.0]]])
    # The ray meets the corner (1, 1) of voxel (0, 0) exactly; the tie steps y first, so it crosses
    # voxel (0, 1, 0) for zero length (exit depth = entry depth = 0.5 * sqrt(2)) and never (1, 0, 0).
    sem[1, 0, 0] = CAR
    sem[1, 1, 0] = TRUCK
    labels, dists, hits = cast_rays(sem, o, diag)
    assert (labels[0, 0], hits[0, 0]) == (TRUCK, True)
    assert dists[0, 0] == pytest.approx(1.5 * math.sqrt(2), abs=1e-12)
    sem[0, 1, 0] = BUS
    labels, dists, _ = cast_rays(sem, o, diag)
    assert labels[0, 0] == BUS and dists[0, 0] == pytest.approx(0.5 * math.sqrt(2), abs=1e-12)
    # Three-way tie at (1, 1, 1): z is stepped first, then y, then x.
    cube = np.full((3, 3, 3), FREE, np.uint8)
    cube[0, 0, 1] = OTHERS
    labels, dists, _ = cast_rays(cube, o, o[:, None] + np.array([[[1.0, 1.0, 1.0]]]))
    assert labels[0, 0] == OTHERS and dists[0, 0] == pytest.approx(0.5 * math.sqrt(3), abs=1e-12)


def test_ray_that_hits_nothing_is_dropped():
    sem = np.full((4, 4, 2), FREE, np.uint8)
    o = np.array([[0.5, 0.5, 0.5]])
    labels, dists, hits = cast_rays(sem, o, o[:, None] + np.array([[[1.0, 0.0, 0.0]]]))
    # No hit: the last in-grid voxel's exit depth and label (free).
    assert (labels[0, 0], hits[0, 0]) == (FREE, False) and dists[0, 0] == pytest.approx(3.5)
    grid = BEVGrid((0.0, 1.6), (0.0, 1.6), (0.0, 0.8), 0.4)
    pred = sem.copy()
    pred[2, 0, 0] = CAR  # a predicted hit on a ray whose GT is free is not counted anywhere
    counts = OccupancyRayIoU(grid=grid, directions=np.array([[1.0, 0.0, 0.0]])).frame_counts(
        pred, sem, np.array([[0.2, 0.2, 0.2]])
    )
    assert counts["gt"].sum() == counts["pred"].sum() == counts["tp"].sum() == 0


def test_ray_counts_thresholds_by_hand():
    errors = [0.99, 1.0, 1.01, 1.99, 2.01, 3.99, 4.01]
    gt_l = [CAR] * len(errors) + [CAR, CAR, FREE]
    gt_d = [10.0] * len(errors) + [10.0, 10.0, 5.0]
    pr_l = [CAR] * len(errors) + [DRIVEABLE, FREE, CAR]  # wrong class; missed (pred free); GT free: dropped
    pr_d = [10.0 + e for e in errors] + [10.0, 30.0, 5.0]
    c = ray_counts(np.array(pr_l), np.array(pr_d), np.array(gt_l), np.array(gt_d))
    assert c["gt"][CAR] == 9 and c["pred"][CAR] == 7 and c["pred"][DRIVEABLE] == 1 and c["gt"].sum() == 9
    # Strict |d_pred - d_gt| < t: 1.0 is no TP at 1 m.
    np.testing.assert_array_equal(c["tp"][:, CAR], [1, 4, 6])
    assert c["tp"].sum() == 11
    metric = OccupancyRayIoU()
    metric.add_counts(c)
    out = metric.compute()
    ious = {1: 1 / (9 + 7 - 1), 2: 4 / (9 + 7 - 4), 4: 6 / (9 + 7 - 6)}  # car; driveable is 0 at every t
    for t, v in ious.items():
        assert out[f"RayIoU@{t}"] == pytest.approx(100 * (v + 0) / 2)
        assert out["per_class_RayIoU"]["car"][f"@{t}"] == pytest.approx(100 * v)
    assert out["RayIoU"] == pytest.approx(100 * sum(ious.values()) / 6)
    assert math.isnan(out["per_class_RayIoU"]["bus"]["@1"]) and "free" not in out["per_class_RayIoU"]


def test_depth_errors_around_each_threshold_end_to_end():
    """A wall 4.2 m ahead in GT; the predicted wall k voxels (0.4 k m) farther."""
    grid = BEVGrid((0.0, 16.0), (0.0, 0.8), (0.0, 0.8), 0.4)  # 40 x 2 x 2
    origin = np.array([[0.2, 0.2, 0.2]])
    metric = OccupancyRayIoU(grid=grid, directions=np.array([[1.0, 0.0, 0.0], [-1.0, 0.0, 0.0]]))
    gt = np.full(grid.voxel_shape, FREE, np.uint8)
    gt[10] = MANMADE
    expected_tp = {2: [1, 1, 1], 3: [0, 1, 1], 4: [0, 1, 1], 6: [0, 0, 1], 9: [0, 0, 1], 11: [0, 0, 0]}
    for k, tp in expected_tp.items():  # 0.8 | 1.2, 1.6 | 2.4, 3.6 | 4.4 m against 1, 2, 4 m
        pred = np.full_like(gt, FREE)
        pred[10 + k] = MANMADE
        counts = metric.add(pred, gt, origin)
        assert counts["gt"][MANMADE] == counts["pred"][MANMADE] == 1  # the backward ray ends in free: dropped
        np.testing.assert_array_equal(counts["tp"][:, MANMADE], tp, err_msg=f"shift {k}")
    wrong = np.full_like(gt, FREE)
    wrong[10] = CAR  # right depth, wrong class: an FN of manmade and an FP of car
    metric.add(wrong, gt, origin)
    out = metric.compute()
    iou = {1: 1 / (7 + 6 - 1), 2: 3 / (7 + 6 - 3), 4: 5 / (7 + 6 - 5)}
    for t, v in iou.items():
        assert out["per_class_RayIoU"]["manmade"][f"@{t}"] == pytest.approx(100 * v)
        assert out[f"RayIoU@{t}"] == pytest.approx(100 * v / 2)  # car: 0 / (0 + 1 - 0)
    from perception.evaluation.ray_casting import ray_endpoints_vox, render_rays

    _, depth = render_rays(gt, *ray_endpoints_vox(origin, np.array([[1.0, 0.0, 0.0]]), grid), grid)
    assert depth[0] == pytest.approx(4.2, abs=1e-5)


# -- origins ------------------------------------------------------------------------------------------
def _pose(x, y, yaw_deg=0.0, z=0.0):
    a = math.radians(yaw_deg)
    m = np.eye(4)
    m[:2, :2] = [[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]]
    m[:3, 3] = [x, y, z]
    return m


def test_origin_selection_range_and_count():
    # Ego positions along x; the current frame at x = 0.
    xs = [-45.0, -39.0, -38.5, -30, -20, -10, 0, 10, 20, 30, 35, 38.9, 39.0, 50]
    poses = [_pose(x, 0.0) for x in xs]
    origins = rayiou_origins(poses[6], poses)
    # |x| < 39 strictly keeps -38.5 .. 38.9 (10 origins); 8 of them are taken evenly.
    kept = [-38.5, -30, -20, -10, 0, 10, 20, 30, 35, 38.9]
    assert len(kept) == 10
    select = [0, 1, 3, 4, 5, 6, 8, 9]  # round(linspace(0, 9, 8)) = 0, 1.29, 2.57, 3.86, 5.14, 6.43, 7.71, 9
    np.testing.assert_array_equal(np.round(np.linspace(0, 9, 8)).astype(int), select)
    np.testing.assert_allclose(origins[:, 0], [kept[i] for i in select], atol=1e-5)
    assert origins.shape == (8, 3)
    few = rayiou_origins(poses[6], poses[4:9])  # 5 in range: all kept, in time order
    np.testing.assert_allclose(few[:, 0], [-20, -10, 0, 10, 20], atol=1e-5)
    # The range is a square (|x| < 39 and |y| < 39), not a radius: (35, 35) is 49.5 m away and kept.
    diag = rayiou_origins(_pose(0, 0), [_pose(0, 0), _pose(35, 35), _pose(0, 39.5)])
    np.testing.assert_allclose(diag[:, :2], [[0, 0], [35, 35]], atol=1e-5)


def test_origins_are_lidar_positions_in_the_current_ego_frame():
    lidar2ego = np.eye(4)
    lidar2ego[:3, 3] = [1.0, 0.0, 2.0]
    cur = _pose(100.0, 50.0, 90.0, z=3.0)
    ahead = _pose(100.0, 60.0, 90.0, z=3.5)  # 10 m ahead along the current heading, 0.5 m higher
    behind_rot = _pose(95.0, 50.0, 180.0, z=3.0)  # 5 m to the left, facing the other way
    out = rayiou_origins(cur, [behind_rot, cur, ahead], lidar2ego, [lidar2ego] * 3)
    # behind_rot: its lidar sits 1 m along its own heading (-x global) -> global (94, 50, 5) -> ego (0, 6, 2).
    np.testing.assert_allclose(out, [[0.0, 6.0, 2.0], [1.0, 0.0, 2.0], [11.0, 0.0, 2.5]], atol=1e-5)
    assert rayiou_origins(cur, [cur])[0].tolist() == [0.0, 0.0, 0.0]


# -- validation and the mmengine metric -------------------------------------------------------------
def test_prediction_errors_name_token_and_problem():
    good = np.full(OCC3D_GRID.voxel_shape, FREE, np.uint8)
    with pytest.raises(ValueError, match="sample tok1.*dtype float32"):
        check_semantics(good.astype(np.float32), "tok1")
    with pytest.raises(ValueError, match=r"sample tok2.*shape \(200, 200, 15\)"):
        check_semantics(good[..., :15], "tok2")
    bad = good.copy()
    bad[3, 4, 5] = 18
    with pytest.raises(ValueError, match="sample tok3.*class 18"):
        check_semantics(torch.from_numpy(bad), "tok3")
    with pytest.raises(ValueError, match="sample tok4.*dtype bool"):
        check_semantics(good.astype(bool), "tok4")
    assert check_semantics(torch.from_numpy(good.astype(np.int64)), "ok").dtype == np.uint8


def test_metric_on_synthetic_world_gt_as_prediction(synthetic_world):
    from perception.data.infos import load_infos
    from perception.engine.registry import METRICS

    _, infos = load_infos(synthetic_world.val_infos)
    infos = [i for i in infos if i.get("occ_path")]
    assert infos
    metric = METRICS.build(
        dict(type="OccupancyMetric", ann_file=str(synthetic_world.val_infos), data_root=str(synthetic_world.root))
    )
    assert isinstance(metric, OccupancyMetric)
    preds = []
    for info in infos:
        gt = load_occ_gt(synthetic_world.root / info["occ_path"])
        assert gt["semantics"].shape == (200, 200, 16) and gt["mask_camera"].any()
        preds.append({"sample_token": info["token"], "occupancy": {"semantics": torch.from_numpy(gt["semantics"])}})
    metric.process(None, preds[:2])
    metric.process(None, preds[2:])
    out = metric.compute_metrics(metric.results)
    for key in ("mIoU", "RayIoU", "RayIoU@1", "RayIoU@2", "RayIoU@4"):
        assert out[key] == pytest.approx(100.0), key
    present = [k for k, v in out.items() if k.startswith("IoU/") and not math.isnan(v)]
    assert len(present) >= 3 and all(out[k] == pytest.approx(100.0) for k in present)
    assert set(k[4:] for k in out if k.startswith("IoU/")) == set(OCC3D_CLASSES[:17])

    origins = scene_origins(infos)
    for info in infos:
        assert 1 <= len(origins[info["token"]]) <= 8
        assert (np.abs(origins[info["token"]][:, :2]) < 39).all()

    wrong = dict(preds[0], occupancy={"semantics": torch.zeros(200, 200, 16)})
    with pytest.raises(ValueError, match=f"sample {infos[0]['token']}.*dtype"):
        metric.process(None, [wrong])
    with pytest.raises(ValueError, match="sample nope: not in the info file"):
        metric.process(None, [dict(preds[0], sample_token="nope")])
