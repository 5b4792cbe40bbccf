"""Projection and visibility of BEV reference points, and the v2 history projection."""

from __future__ import annotations

import math

import torch

from bev.encoder import pillar_points, project_to_cameras
from tests.bev.rig import CAMERA_YAWS_DEG, FOCAL, IMAGE_H, IMAGE_W, rig_ego2img, small_grid


def test_reference_point_lands_on_the_pixel_of_a_known_3d_point():
    # Front camera at (1, 0, 1.5) looking along +x. Point (11, 2, 0.5) is 10 m ahead, 2 m left and
    # 1 m below the camera: camera coords (x=-2, y=1, z=10) -> u = 50*(-0.2)+48 = 38, v = 50*0.1+32 = 37.
    uv, visible = project_to_cameras(torch.tensor([[11.0, 2.0, 0.5]]), rig_ego2img()[:, 0], (IMAGE_H, IMAGE_W))
    pixel = uv[0, 0, 0] * torch.tensor([IMAGE_W, IMAGE_H])
    torch.testing.assert_close(pixel, torch.tensor([38.0, 37.0]))
    assert visible[0, 0, 0] and not visible[0, 3, 0]  # seen by FRONT, not by BACK


def _expected_visibility(point: torch.Tensor) -> list[bool]:
    """Frustum test by angles: horizontal and vertical angle from each camera's axis within half FOV."""
    half_h = math.atan((IMAGE_W / 2) / FOCAL)
    half_v = math.atan((IMAGE_H / 2) / FOCAL)
    seen = []
    for yaw in CAMERA_YAWS_DEG:
        dx, dy, dz = point[0].item() - 1.0, point[1].item(), point[2].item() - 1.5
        forward = dx * math.cos(math.radians(yaw)) + dy * math.sin(math.radians(yaw))
        lateral = -dx * math.sin(math.radians(yaw)) + dy * math.cos(math.radians(yaw))
        seen.append(forward > 0 and abs(math.atan2(lateral, forward)) < half_h
                    and abs(math.atan2(dz, forward)) < half_v)
    return seen


def test_bev_queries_see_exactly_the_cameras_whose_frustum_contains_them():
    grid = small_grid()
    pillars = pillar_points(grid, heights=4)  # (Nx*Ny, 4, 3)
    _, visible = project_to_cameras(pillars, rig_ego2img()[:, 0], (IMAGE_H, IMAGE_W))
    checked = 0
    for cell in range(0, pillars.shape[0], 7):
        for anchor in range(4):
            point = pillars[cell, anchor]
            expected = _expected_visibility(point)
            actual = visible[0, :, cell, anchor].tolist()
            # Skip points within 1e-4 rad of a frustum edge, where float rounding may decide.
            if any(abs(a - b) < 1e-4 for a in _edge_angles(point) for b in _half_fovs()):
                continue
            assert actual == expected, f"point {point.tolist()}: {actual} vs {expected}"
            checked += 1
    assert checked > 100


def _half_fovs():
    return math.atan((IMAGE_W / 2) / FOCAL), math.atan((IMAGE_H / 2) / FOCAL)


def _edge_angles(point):
    angles = []
    for yaw in CAMERA_YAWS_DEG:
        dx, dy, dz = point[0].item() - 1.0, point[1].item(), point[2].item() - 1.5
        forward = dx * math.cos(math.radians(yaw)) + dy * math.sin(math.radians(yaw))
        lateral = -dx * math.sin(math.radians(yaw)) + dy * math.cos(math.radians(yaw))
        angles += [abs(math.atan2(lateral, forward)), abs(math.atan2(dz, forward))]
    return angles


def _pose(x: float, y: float, yaw_deg: float) -> torch.Tensor:
    yaw = math.radians(yaw_deg)
    pose = torch.eye(4)
    pose[:2, :2] = torch.tensor([[math.cos(yaw), -math.sin(yaw)], [math.sin(yaw), math.cos(yaw)]])
    pose[:2, 3] = torch.tensor([x, y])
    return pose


def test_history_projection_sees_static_world_points_where_the_past_camera_saw_them():
    # Ego moved from pose A (past) to pose B (current) in the global frame. A static world point at a
    # current-frame BEV position must be sampled in the past image exactly where the past camera,
    # placed by its own global pose, sees it.
    past, current = _pose(100.0, 50.0, 30.0), _pose(104.0, 52.5, 38.0)
    prev2curr = torch.linalg.inv(current) @ past
    ego2img = rig_ego2img()[0, 0]
    model_projection = ego2img @ torch.linalg.inv(prev2curr)  # what BEVFormerV2._history_bevs uses
    points_current = pillar_points(small_grid(), heights=2).reshape(-1, 3)
    world = points_current @ current[:3, :3].T + current[:3, 3]
    points_past = (world - past[:3, 3]) @ past[:3, :3]  # global -> past ego frame, independently
    uv_model, vis_model = project_to_cameras(points_current, model_projection[None],
                                             (IMAGE_H, IMAGE_W))
    uv_truth, vis_truth = project_to_cameras(points_past, ego2img[None], (IMAGE_H, IMAGE_W))
    assert torch.equal(vis_model, vis_truth) and vis_truth.sum() > 50
    torch.testing.assert_close(uv_model[vis_model], uv_truth[vis_truth], rtol=1e-4, atol=1e-5)
