"""Boxes, frames, cameras and the BEV grid against the devkit's Box, shapely and hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from nuscenes.utils.data_classes import Box
from pyquaternion import Quaternion
from shapely.geometry import Polygon

from perception.structures import (
    BEVGrid,
    box_corners,
    boxes_bev_iou,
    ego_boxes_to_global,
    global_boxes_to_ego,
    image_aug_matrix,
    make_transform,
    points_in_boxes,
    project_points,
    transform_boxes,
    transform_points,
)
from perception.structures.bev_grid import OCC3D_GRID
from perception.structures.transforms import matrix_to_quaternion, quaternion_to_matrix


def random_boxes(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    boxes = np.zeros((n, 9))
    boxes[:, :3] = rng.uniform(-30, 30, (n, 3))
    boxes[:, 3:6] = rng.uniform(0.5, 5, (n, 3))
    boxes[:, 6] = rng.uniform(-np.pi, np.pi, n)
    boxes[:, 7:9] = rng.uniform(-10, 10, (n, 2))
    return boxes


def devkit_box(b: np.ndarray) -> Box:
    return Box(b[:3], b[3:6], Quaternion(axis=[0, 0, 1], angle=b[6]), velocity=(b[7], b[8], 0.0))


def test_corners_match_devkit_box_corners():
    boxes = random_boxes(20)
    ours = box_corners(boxes)
    for b, c in zip(boxes, ours):
        np.testing.assert_allclose(c, devkit_box(b).corners().T, atol=1e-9)
    torch_corners = box_corners(torch.as_tensor(boxes))
    np.testing.assert_allclose(torch_corners.numpy(), ours, atol=1e-9)


def test_heading_is_the_length_axis():
    # yaw 0: l along +x, w along +y (nuScenes wlh order).
    c = box_corners(np.array([[0, 0, 0, 2.0, 4.0, 1.0, 0.0]]))[0]
    assert np.ptp(c[:, 0]) == pytest.approx(4.0) and np.ptp(c[:, 1]) == pytest.approx(2.0)


def test_bev_iou_hand_computed_and_against_shapely():
    a = np.array([[0, 0, 0, 2.0, 4.0, 1.0, 0.0]])
    b = np.array([[2.0, 0, 0, 2.0, 4.0, 1.0, 0.0]])  # overlap 2 x 2 = 4, union 12
    assert boxes_bev_iou(a, b)[0, 0] == pytest.approx(1 / 3)
    square = np.array([[0, 0, 0, 2.0, 2.0, 1.0, 0.0]])
    turned = np.array([[0, 0, 0, 2.0, 2.0, 1.0, np.pi / 4]])  # octagon overlap: 8(sqrt2 - 1)
    inter = 8 * (np.sqrt(2) - 1)
    assert boxes_bev_iou(square, turned)[0, 0] == pytest.approx(inter / (8 - inter))
    boxes = random_boxes(15, seed=3)
    boxes[:, :2] *= 0.1  # make them overlap
    iou = boxes_bev_iou(boxes, boxes)
    for i in range(len(boxes)):
        for j in range(len(boxes)):
            pi = Polygon(devkit_box(boxes[i]).bottom_corners()[:2].T)
            pj = Polygon(devkit_box(boxes[j]).bottom_corners()[:2].T)
            truth = pi.intersection(pj).area / pi.union(pj).area
            assert iou[i, j] == pytest.approx(truth, abs=1e-7)
    assert torch.allclose(boxes_bev_iou(torch.as_tensor(boxes), torch.as_tensor(boxes)), torch.as_tensor(iou))


def test_global_ego_lidar_camera_round_trip_matches_devkit():
    ego2global = make_transform(Quaternion(axis=[0, 0, 1], angle=1.1).elements, [400.0, 1200.0, 0.3])
    lidar2ego = make_transform(Quaternion(axis=[0, 0, 1], angle=-np.pi / 2).elements, [0.94, 0.0, 1.84])
    cam_rot = np.array([[0, 0, 1], [-1, 0, 0], [0, -1, 0]], dtype=float)  # OpenCV axes in ego
    cam2ego = make_transform(cam_rot, [1.7, 0.0, 1.5])
    boxes = random_boxes(10, seed=2)
    records = ego_boxes_to_global(boxes, ego2global)
    for b, rec in zip(boxes, records):
        # Devkit: carry the ego box to global with Box.rotate / Box.translate.
        box = devkit_box(b)
        box.rotate(Quaternion(matrix=ego2global[:3, :3]))
        box.translate(ego2global[:3, 3])
        np.testing.assert_allclose(rec["translation"], box.center, atol=1e-9)
        np.testing.assert_allclose(np.abs(rec["rotation"]), np.abs(box.orientation.elements), atol=1e-9)
        np.testing.assert_allclose(rec["velocity"], box.velocity[:2], atol=1e-9)
    back = global_boxes_to_ego(
        np.array([r["translation"] for r in records]),
        np.array([r["size"] for r in records]),
        np.array([r["rotation"] for r in records]),
        np.array([r["velocity"] for r in records]),
        ego2global,
    )
    np.testing.assert_allclose(back[:, :6], boxes[:, :6], atol=1e-9)
    np.testing.assert_allclose(np.angle(np.exp(1j * (back[:, 6] - boxes[:, 6]))), 0, atol=1e-9)
    np.testing.assert_allclose(back[:, 7:], boxes[:, 7:], atol=1e-9)
    # global -> ego -> lidar (upright boxes) -> camera (corner points: not upright there) and back.
    in_ego = global_boxes_to_ego(
        np.array([r["translation"] for r in records]),
        np.array([r["size"] for r in records]),
        np.array([r["rotation"] for r in records]),
        None,
        ego2global,
    )
    in_lidar = transform_boxes(in_ego, np.linalg.inv(lidar2ego))
    corners_cam = transform_points(np.linalg.inv(cam2ego) @ lidar2ego, box_corners(in_lidar))
    for b, c in zip(boxes, corners_cam):
        box = devkit_box(b)  # the devkit carries the same box ego -> camera
        box.translate(-cam2ego[:3, 3])
        box.rotate(Quaternion(matrix=cam2ego[:3, :3]).inverse)
        np.testing.assert_allclose(c, box.corners().T, atol=1e-9)
    back = transform_boxes(transform_boxes(in_lidar, lidar2ego), ego2global)
    back = global_boxes_to_ego(
        back[:, :3],
        back[:, 3:6],
        np.array([[np.cos(y / 2), 0, 0, np.sin(y / 2)] for y in back[:, 6]]),
        None,
        ego2global,
    )
    np.testing.assert_allclose(box_corners(back), box_corners(boxes), atol=1e-9)
    with pytest.raises(ValueError, match="upright"):
        transform_boxes(boxes, cam2ego)


def test_quaternion_matrix_round_trip():
    for q in [Quaternion(axis=[0.2, 0.3, 1], angle=a) for a in np.linspace(-3, 3, 7)]:
        np.testing.assert_allclose(quaternion_to_matrix(q.elements), q.rotation_matrix, atol=1e-12)
        back = matrix_to_quaternion(q.rotation_matrix)
        assert abs(abs(np.dot(back, q.elements)) - 1) < 1e-12


def test_points_in_boxes_hand_made():
    box = np.array([[10.0, 0, 1, 2.0, 4.0, 2.0, np.pi / 2]])  # l=4 along +y after the turn
    pts = np.array([[10, 1.9, 1], [10, 2.1, 1], [10.9, 0, 1], [11.1, 0, 1], [10, 0, 2.1]])
    assert points_in_boxes(pts, box)[:, 0].tolist() == [True, False, True, False, False]


def test_image_aug_matrix_resize_crop_flip():
    m = image_aug_matrix(scale=0.5, crop=(10, 4), flip=True, out_width=100)
    depth = 2.0
    projected = np.array([40.0 * depth, 30.0 * depth, depth, 1.0])  # pixel (40, 30) at depth 2
    u, v = 40 * 0.5 - 10, 30 * 0.5 - 4
    np.testing.assert_allclose(m @ projected, [(100 - u) * depth, v * depth, depth, 1])


def test_project_points_numpy_and_torch():
    k = np.array([[100.0, 0, 50], [0, 100, 40], [0, 0, 1]])
    cam2ego = make_transform(np.array([[0, 0, 1], [-1, 0, 0], [0, -1, 0]], dtype=float), [0, 0, 1.5])
    from perception.structures import compose_ego2img

    ego2img = compose_ego2img(k, cam2ego)
    pts = np.array([[10.0, 1.0, 1.5]])  # 10 m ahead, 1 m left, camera height
    uv, depth = project_points(ego2img, pts)
    np.testing.assert_allclose(uv[0], [50 - 100 * 0.1, 40])
    assert depth[0] == pytest.approx(10)
    uv_t, _ = project_points(torch.as_tensor(ego2img), torch.as_tensor(pts))
    np.testing.assert_allclose(uv_t.numpy(), uv)


def test_bev_grid_mapping():
    grid = BEVGrid((-40, 40), (-20, 20), (-1, 5.4), 0.4)
    assert grid.shape == (200, 100)
    np.testing.assert_allclose(grid.metres_to_cells(np.array([-40.0, -20.0])), [0, 0])
    np.testing.assert_allclose(grid.cells_to_metres(np.array([100.0, 50.0])), [0, 0])
    centres = grid.cell_centers()
    assert centres.shape == (200, 100, 2)
    assert centres[0, 0].tolist() == pytest.approx([-39.8, -19.8])
    assert OCC3D_GRID.voxel_shape == (200, 200, 16)
    idx, inside = OCC3D_GRID.points_to_voxel_index(np.array([[0.1, -0.1, 0.1], [50, 0, 0]]))
    assert idx[0].tolist() == [100, 99, 2] and inside.tolist() == [True, False]
    with pytest.raises(ValueError, match="x_range"):
        BEVGrid((1, 0), (0, 1), (0, 1), 0.5)
    # normalize/denormalize: (0, 0, -1) is at the x and y centres and the z bottom of the grid.
    np.testing.assert_allclose(grid.normalize(np.array([0.0, 0.0, -1.0])), [0.5, 0.5, 0.0])
    np.testing.assert_allclose(grid.denormalize(np.array([0.25, 1.0, 0.5])), [-20.0, 20.0, 2.2])
    point = torch.tensor([[12.3, -4.5, 3.3]], dtype=torch.float64)
    torch.testing.assert_close(grid.denormalize(grid.normalize(point)), point)


def test_transform_boxes_torch_matches_numpy():
    boxes = random_boxes(6, seed=5)
    pose = make_transform(Quaternion(axis=[0, 0, 1], angle=0.7).elements, [3.0, -2.0, 0.5])
    ours = transform_boxes(boxes, pose)
    torch_out = transform_boxes(torch.as_tensor(boxes), torch.as_tensor(pose))
    np.testing.assert_allclose(torch_out.numpy(), ours, atol=1e-12)
    for b, o in zip(boxes, ours):  # the devkit moves the same box
        box = devkit_box(b)
        box.rotate(Quaternion(matrix=pose[:3, :3]))
        box.translate(pose[:3, 3])
        np.testing.assert_allclose(box_corners(o[None])[0], box.corners().T, atol=1e-9)
        np.testing.assert_allclose(o[7:9], box.velocity[:2], atol=1e-9)


def test_bev_augmentation_of_boxes_matches_transformed_corners():
    from perception.structures import affine_transform_boxes, bev_aug_matrix

    boxes = random_boxes(8, seed=6)
    for flips in [(False, False), (True, False), (False, True), (True, True)]:
        mat = bev_aug_matrix(0.3, 1.1, *flips)
        moved = affine_transform_boxes(boxes, mat)
        # The corner set of the moved box equals the transformed corner set (mirrors reorder corners).
        expected = transform_points(mat, box_corners(boxes))
        got = box_corners(moved)
        for e, g in zip(expected, got):
            dist = np.linalg.norm(e[:, None] - g[None], axis=-1)
            assert dist.min(1).max() < 1e-9
        np.testing.assert_allclose(moved[:, 7:9], boxes[:, 7:9] @ mat[:2, :2].T, atol=1e-12)
