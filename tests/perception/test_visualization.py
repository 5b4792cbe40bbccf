"""Pictures: box pixels sit where the devkit's projection says; BEV, animation and CLI outputs."""

from __future__ import annotations

import numpy as np
import pytest
from nuscenes.utils.geometry_utils import view_points
from PIL import Image

from perception.data.infos import load_infos
from perception.structures import CAMERA_NAMES
from perception.visualization import draw_bev_panel, render_sample, save_scene_animation
from perception.visualization.style import GT_COLOR, PRED_COLOR
from tests.tool_loader import load_tool


def _near(image: np.ndarray, x: float, y: float, color, radius: int = 1) -> bool:
    xi, yi = int(round(x)), int(round(y))
    patch = image[max(yi - radius, 0) : yi + radius + 1, max(xi - radius, 0) : xi + radius + 1].reshape(-1, 3)
    return bool((patch == np.array(color)).all(1).any())


def test_sample_png_box_pixels_are_where_the_devkit_projects(synthetic_world, nusc, tmp_path):
    _, infos = load_infos(synthetic_world.val_infos)
    info = infos[2]
    keep = info["valid_flag"] & (info["gt_labels"] >= 0)
    images = [Image.open(synthetic_world.root / info["cams"][c]["data_path"]) for c in CAMERA_NAMES]
    ego2img = np.stack([info["cams"][c]["ego2img"] for c in CAMERA_NAMES])
    picture = render_sample(images, ego2img, info["gt_boxes"][keep], info["gt_labels"][keep], panel_width=480)
    path = picture.save(tmp_path / "sample.png")
    png = np.asarray(Image.open(path).convert("RGB"))
    assert png.shape[1] == 3 * 480 + picture.image.height - 28
    tokens = set(np.asarray(info["ann_tokens"])[keep])
    checked = hit = 0
    for cam in CAMERA_NAMES:
        x0, y0, scale = picture.camera_panels[cam]
        _, boxes, intrinsic = nusc.get_sample_data(info["cams"][cam]["sample_data_token"])
        for box in boxes:
            if box.token not in tokens or (box.corners()[2] < 1).any():
                continue
            for u, v in view_points(box.corners(), intrinsic, normalize=True)[:2].T:
                px, py = x0 + u * scale, y0 + v * scale
                if x0 + 2 <= px < x0 + 478 and y0 + 2 <= py < y0 + 135 * scale - 2:
                    checked += 1
                    hit += _near(png, px, py, GT_COLOR)
    assert checked >= 40
    assert hit >= 0.9 * checked, (hit, checked)  # a few corners may hide under other boxes' labels


def test_predictions_and_gt_use_distinct_colours(synthetic_world, tmp_path):
    _, infos = load_infos(synthetic_world.val_infos)
    info = infos[1]
    images = [np.zeros((135, 240, 3), np.uint8)] * 6
    ego2img = np.stack([info["cams"][c]["ego2img"] for c in CAMERA_NAMES])
    pred = info["gt_boxes"][:5].copy()
    pred[:, 0] += 1.0
    picture = render_sample(
        images,
        ego2img,
        info["gt_boxes"][:5],
        info["gt_labels"][:5],
        pred,
        info["gt_labels"][:5],
        np.full(5, 0.9),
    )
    png = np.asarray(picture.image)
    assert (png == GT_COLOR).all(-1).sum() > 50 and (png == PRED_COLOR).all(-1).sum() > 50


def test_bev_panel_geometry():
    # One car 20 m ahead, 10 m left, heading +y, moving 5 m/s: ahead is up, left is left.
    box = np.array([[20.0, 10.0, 0.8, 2.0, 4.0, 1.6, np.pi / 2, 0.0, 5.0]])
    image, canvas = draw_bev_panel(400, 40.0, [(box, GT_COLOR, None)])
    png = np.asarray(image)
    u, v = canvas.to_pixels(np.array([20.0, 10.0]))
    assert (u, v) == pytest.approx((200 - 10 * 5, 200 - 20 * 5))  # 5 pixels per metre
    # Corner (x + w/2, y + l/2) of the box turned to +y: outline pixel there.
    cu, cv = canvas.to_pixels(np.array([21.0, 12.0]))
    assert _near(png, cu, cv, GT_COLOR)
    # The velocity arrow (yellow) points left (+y) from the centre.
    au, av = canvas.to_pixels(np.array([20.0, 14.5]))
    assert _near(png, au, av, (255, 210, 0))


def test_animation_and_cli(synthetic_world, tmp_path):
    frames = [Image.new("RGB", (1400, 300), (i * 40, 0, 0)) for i in range(3)]
    gif = save_scene_animation(frames, tmp_path / "a.gif")
    with Image.open(gif) as im:
        assert im.n_frames == 3 and im.width == 1280
    tool = load_tool("visualize")
    out = tmp_path / "cli.png"
    assert (
        tool.main(
            [
                "--infos",
                str(synthetic_world.val_infos),
                "--data-root",
                str(synthetic_world.root),
                "--index",
                "0",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    assert Image.open(out).size[0] > 1000
    scene = load_infos(synthetic_world.val_infos)[1][0]["scene_name"]
    assert (
        tool.main(
            [
                "--infos",
                str(synthetic_world.val_infos),
                "--data-root",
                str(synthetic_world.root),
                "--scene",
                scene,
                "--out",
                str(tmp_path / "scene.gif"),
            ]
        )
        == 0
    )
    with Image.open(tmp_path / "scene.gif") as im:
        assert im.n_frames == 6


def test_open3d_render_when_available(synthetic_world, tmp_path):
    pytest.importorskip("open3d")
    from perception.visualization.sample import render_open3d

    _, infos = load_infos(synthetic_world.val_infos)
    info = infos[0]
    points = np.fromfile(synthetic_world.root / info["lidar_path"], dtype=np.float32).reshape(-1, 5)[:, :3]
    out = render_open3d(points.astype(np.float64), info["gt_boxes"], tmp_path / "o3d.png")
    assert Image.open(out).size == (960, 720)


def test_a_five_camera_rig_of_two_sizes_gets_one_panel_each():
    from perception.visualization.sample import render_sample

    names = ["FRONT", "FRONT_LEFT", "FRONT_RIGHT", "SIDE_LEFT", "SIDE_RIGHT"]
    sizes = [(192, 128), (192, 128), (192, 128), (192, 88), (192, 88)]
    images = [np.full((h, w, 3), 90, np.uint8) for w, h in sizes]
    ego2img = np.tile(np.eye(4), (5, 1, 1))
    picture = render_sample(images, ego2img, camera_names=names, panel_width=192)
    assert sorted(picture.camera_panels) == sorted(names)
    # Two rows of three columns of 192 px, each row as tall as the tallest camera, then the BEV panel.
    assert picture.image.size == (3 * 192 + 2 * 128, 28 + 2 * 128)
    assert picture.camera_panels["SIDE_LEFT"][2] == 1.0  # each panel keeps its own aspect ratio
