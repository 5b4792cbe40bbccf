"""Occupancy pictures (docs/occupancy.md, "Occupancy pictures"): pixels of hand-built Occ3D grids sit where
the metric layout says and carry the colour of the right class; the comparison, isometric view, GIF and
CLI write what they promise."""

from __future__ import annotations

import time

import numpy as np
import pytest
from PIL import Image

from perception.data.infos import load_infos
from perception.visualization import occupancy as occ_vis
from perception.visualization import (
    occupancy_bev_image,
    occupancy_isometric_image,
    occupancy_scene_gif,
    render_occupancy_3d,
    render_occupancy_comparison,
)
from perception.visualization.style import BEV_BACKGROUND
from tests.tool_loader import load_tool

FREE = 17
# The usual Occ3D-nuScenes colours of the classes used here (written out, not read from the module).
CAR, VEGETATION, DRIVEABLE, MANMADE, TRUCK = (0, 150, 245), (0, 175, 0), (255, 0, 255), (230, 230, 250), (160, 32, 240)
CP = 4  # pixels per 0.4 m cell


def _cell(x: float, y: float) -> tuple[int, int]:
    """Occ3D voxel indices of metric ego (x, y): cells of 0.4 m from -40 m."""
    return int(np.floor((x + 40.0) / 0.4)), int(np.floor((y + 40.0) / 0.4))


def _pixel(x: float, y: float) -> tuple[int, int]:
    """(row, column) of metric (x, y) in a BEV panel: x forward = up (row 0 at x = +40 m), y left = left
    (column 0 at y = +40 m)."""
    return int((40.0 - x) / 0.4 * CP), int((40.0 - y) / 0.4 * CP)


def _scene() -> np.ndarray:
    """Ground (driveable, z index 2) everywhere but one free 2 x 2 m patch; at (10.2, -6.2) m a car (z 3..5)
    under a vegetation voxel (z 7, above a free gap); at (-15.0, 20.6) m a car column alone."""
    sem = np.full((200, 200, 16), FREE, np.uint8)
    sem[:, :, 2] = 11
    fx, fy = _cell(-20.2, 15.0)
    sem[fx - 2 : fx + 3, fy - 2 : fy + 3, :] = FREE
    ix, iy = _cell(10.2, -6.2)
    sem[ix, iy, 3:6] = 4
    sem[ix, iy, 7] = 16
    cx, cy = _cell(-15.0, 20.6)
    sem[cx, cy, 3:6] = 4
    return sem


def _rgb(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB")).astype(int)


def test_bev_columns_show_the_top_most_class_at_the_metric_pixel():
    image = _rgb(occupancy_bev_image(_scene(), cell_pixels=CP))
    assert image.shape == (800, 800, 3)
    r, c = _pixel(10.2, -6.2)  # centre of the car + vegetation column
    assert tuple(image[r, c]) == VEGETATION  # the top-most class, not the car under it
    assert tuple(image[_pixel(-15.0, 20.6)]) == CAR  # above the ground
    # The same column mirrored in x or y is plain ground: the layout is not flipped.
    assert tuple(image[_pixel(-10.2, -6.2)]) == DRIVEABLE
    assert tuple(image[_pixel(10.2, 6.2)]) == DRIVEABLE
    # The vegetation cell is exactly 4 x 4 pixels: rows 296..299 (x in [10.0, 10.4) m), columns 460..463.
    veg = (image == VEGETATION).all(-1)
    rows, cols = np.nonzero(veg)
    assert (rows.min(), rows.max(), cols.min(), cols.max()) == (296, 299, 460, 463)
    # A free column shows the free background, which is neither a class colour nor the ego outline.
    free = tuple(image[_pixel(-20.2, 15.0)])
    assert free == occ_vis.FREE_COLOR
    # The ego outline (white) crosses the front edge x = +2.4 m at y = 0.
    r0, c0 = _pixel(2.4, 0.0)
    assert (image[r0 - 2 : r0 + 3, c0 - 2 : c0 + 3] == 255).all(-1).any()


def test_columns_outside_the_camera_mask_are_dimmed_and_hatched():
    sem = _scene()
    mask = np.ones_like(sem)
    mask[:, :100, :] = 0  # the right half (y < 0) is not seen by any camera
    plain = _rgb(occupancy_bev_image(sem, cell_pixels=CP))
    image = _rgb(occupancy_bev_image(sem, mask, cell_pixels=CP))
    left, right = image[:, :400], image[:, 400:]  # y > 0 | y < 0
    assert (left == plain[:, :400]).all()  # inside: unchanged
    hatch = (right == occ_vis.HATCH_COLOR).all(-1)
    assert 0.05 < hatch.mean() < 0.3  # diagonal lines, not a fill
    ground = right[~hatch & (plain[:, 400:] == DRIVEABLE).all(-1)]
    assert len(ground) > 1000
    assert (ground.sum(-1) < sum(DRIVEABLE) * 0.7).all() and (ground.sum(-1) > 0).all()  # dimmed, not black
    assert (ground[:, 0] > ground[:, 1]).all()  # still magenta-ish (red and blue over green)
    # The vegetation column (y = -6.2 m) is outside now: dimmed too.
    r, c = _pixel(10.2, -6.2)
    assert tuple(image[r, c]) != VEGETATION and image[r, c, 1] > image[r, c, 0]


def test_comparison_has_gt_and_prediction_panels_and_a_legend(tmp_path):
    gt = _scene()
    pred = gt.copy()
    ix, iy = _cell(-15.0, 20.6)
    pred[ix, iy, 3:6] = 10  # the lone car predicted as a truck
    out = tmp_path / "cmp.png"
    image = render_occupancy_comparison(gt, pred, np.ones_like(gt), title="frame 0", iou=51.2, path=out)
    assert out.is_file() and Image.open(out).size == image.size
    rgb = _rgb(image)
    single = render_occupancy_comparison(gt, None, None)
    assert image.width > single.width + 800  # two 800-pixel panels vs one
    assert image.height == single.height
    is_truck = (rgb == TRUCK).all(-1)
    is_car = (rgb == CAR).all(-1)
    legend_x = image.width - 240
    # GT panel (left) has the car at the lone column, the prediction panel (right of it) the truck there.
    car_cols = np.nonzero(is_car[:, :legend_x].any(0))[0]
    truck_cols = np.nonzero(is_truck[:, :legend_x].any(0))[0]
    assert len(car_cols) and len(truck_cols)
    assert car_cols.min() < 900 < truck_cols.min()
    # The legend column holds a swatch of every class present in either grid.
    for colour in (CAR, VEGETATION, DRIVEABLE, TRUCK):
        assert (rgb[:, legend_x:] == colour).all(-1).sum() >= 100, colour
    assert not (rgb[:, legend_x:] == MANMADE).all(-1).any()  # no legend entry for an absent class


def test_isometric_render_colours_and_occlusion():
    sem = np.full((200, 200, 16), FREE, np.uint8)
    sem[80:120, 80:120, 2] = 11  # a ground patch
    ix, iy = _cell(10.2, -6.2)
    sem[ix, iy, 3:6] = 4
    sem[ix, iy, 7] = 16
    image = _rgb(occupancy_isometric_image(sem, voxel_pixels=4, show_ego=False, legend=False))
    drawn = ~(image == BEV_BACKGROUND).all(-1)
    assert drawn.sum() > 1000
    allowed = {
        tuple(int(round(v * s)) for v in colour)
        for colour in (CAR, VEGETATION, DRIVEABLE)
        for s in occ_vis.FACE_SHADES
    }
    colours = {tuple(c) for c in image[drawn].reshape(-1, 3)}
    assert colours <= allowed, colours - allowed
    for colour in (CAR, VEGETATION, DRIVEABLE):  # every class shows its lit top or a side
        assert any(tuple(int(round(v * s)) for v in colour) in colours for s in occ_vis.FACE_SHADES)
    # z up: the vegetation voxel is drawn above (smaller row) the car voxels under it.
    veg_rows = np.nonzero((image == VEGETATION).all(-1))[0]
    car_rows = np.nonzero(np.isin(image.reshape(-1, 3) @ [1, 1000, 10**6], [
        int(round(CAR[0] * s)) + 1000 * int(round(CAR[1] * s)) + 10**6 * int(round(CAR[2] * s))
        for s in occ_vis.FACE_SHADES]).reshape(image.shape[:2]))[0]
    assert veg_rows.max() < car_rows.mean()


def _centroid(image: np.ndarray, colour) -> np.ndarray:
    rows, cols = np.nonzero((image == colour).all(-1))
    return np.array([cols.mean(), rows.mean()])


def test_isometric_axes_and_painter_order():
    # With voxel_pixels=4 a +x step is (+4, -2) pixels, +y (-4, -2), +z (0, -5): the displacement (-5, -5, +4)
    # projects to (0, 0), so a voxel there covers the same pixels and is nearer the camera (behind-right,
    # above the ego): it must hide the voxel behind it.
    def picture(voxels):
        sem = np.full((200, 200, 16), FREE, np.uint8)
        for (i, j, k), c in voxels:
            sem[i, j, k] = c
        return _rgb(occupancy_isometric_image(sem, voxel_pixels=4, show_ego=False, legend=False))

    hidden = picture([((100, 100, 5), 4), ((95, 95, 9), 15)])
    assert not (hidden == CAR).all(-1).any() and (hidden == MANMADE).all(-1).sum() > 10
    behind = picture([((100, 100, 5), 4), ((105, 105, 1), 15)])
    assert (behind == CAR).all(-1).sum() == (hidden == MANMADE).all(-1).sum()  # the car whole, in front
    # x forward runs up-right, y left up-left.
    two = picture([((100, 100, 5), 4), ((120, 100, 5), 16)])
    dx = _centroid(two, VEGETATION) - _centroid(two, CAR)
    assert dx[0] == pytest.approx(20 * 4) and dx[1] == pytest.approx(-20 * 2)
    two = picture([((100, 100, 5), 4), ((100, 120, 5), 16)])
    dy = _centroid(two, VEGETATION) - _centroid(two, CAR)
    assert dy[0] == pytest.approx(-20 * 4) and dy[1] == pytest.approx(-20 * 2)


def test_isometric_render_of_a_full_grid_is_fast(tmp_path):
    rng = np.random.default_rng(0)
    sem = np.full((200, 200, 16), FREE, np.uint8)
    sem[:, :, 2] = rng.choice([11, 13, 14], size=(200, 200))
    for _ in range(300):  # boxes: cars, buildings, trees
        x, y = rng.integers(0, 195, 2)
        sem[x : x + rng.integers(2, 6), y : y + rng.integers(2, 6), 3 : rng.integers(4, 14)] = rng.integers(0, 17)
    assert (sem < FREE).sum() > 40_000
    start = time.perf_counter()
    path = render_occupancy_3d(sem, tmp_path / "iso.png", backend="pillow", title="random")
    assert time.perf_counter() - start < 10.0
    assert Image.open(path).width > 1000


def test_3d_backends_raise_a_clear_error_without_the_extras(monkeypatch, tmp_path):
    monkeypatch.setattr(occ_vis, "_available", lambda name: False)
    for backend in ("pyvista", "open3d"):
        with pytest.raises(RuntimeError, match=r"pip install -e \.\[open3d\].*pyvista"):
            render_occupancy_3d(_scene(), tmp_path / "x.png", backend=backend)
    path = render_occupancy_3d(_scene(), tmp_path / "auto.png")  # auto: the Pillow view
    assert Image.open(path).size == occupancy_isometric_image(_scene()).size


@pytest.mark.parametrize("backend", ["pyvista", "open3d"])
def test_3d_backend_when_installed(backend, tmp_path):
    pytest.importorskip(backend)
    path = render_occupancy_3d(_scene(), tmp_path / f"{backend}.png", backend=backend, size=(320, 240))
    image = _rgb(Image.open(path))
    assert image.shape[:2] == (240, 320)
    assert (np.abs(image - BEV_BACKGROUND).sum(-1) > 30).mean() > 0.05  # something was drawn


def test_gif_has_one_frame_per_sample(tmp_path):
    gt = _scene()
    frames = [(gt, np.roll(gt, k, axis=0), np.ones_like(gt)) for k in range(3)] + [(gt, None, None)]
    path = occupancy_scene_gif(frames, tmp_path / "scene.gif", titles=[f"frame {k}" for k in range(4)])
    with Image.open(path) as im:
        assert im.n_frames == 4
        assert im.info["duration"] == 500  # 2 fps


def test_cli_writes_pictures_for_the_synthetic_world(synthetic_world, tmp_path):
    tool = load_tool("visualize")
    _, infos = load_infos(synthetic_world.val_infos)
    preds = tmp_path / "preds"
    preds.mkdir()
    for info in infos:
        with np.load(synthetic_world.root / info["occ_path"]) as gt:
            np.savez_compressed(preds / f"{info['token']}.npz", np.roll(gt["semantics"], 2, axis=0))
    scene = infos[0]["scene_name"]
    in_scene = [i for i in infos if i["scene_name"] == scene]
    out = tmp_path / "vis"
    base = ["occupancy", "--data-root", str(synthetic_world.root), "--infos", str(synthetic_world.val_infos)]
    assert tool.main([*base, "--predictions", str(preds), "--out", str(out), "--scene", scene, "--gif", "--3d",
                      "--backend", "pillow"]) == 0
    pngs = sorted(p for p in out.glob("*.png") if "_3d_" not in p.name)
    assert len(pngs) == len(in_scene)
    assert len(list(out.glob("*_3d_gt.png"))) == len(in_scene) == len(list(out.glob("*_3d_pred.png")))
    assert Image.open(pngs[0]).width > 1600  # GT | prediction
    with Image.open(out / f"{scene}.gif") as im:
        assert im.n_frames == len(in_scene)
    # GT only, one sample.
    token = in_scene[1]["token"]
    assert tool.main([*base, "--out", str(tmp_path / "gt"), "--sample-token", token]) == 0
    (png,) = (tmp_path / "gt").glob("*.png")
    assert token in png.name and Image.open(png).width < 1400


def test_cli_errors_are_one_line_with_exit_code_2(synthetic_world, tmp_path, capsys):
    tool = load_tool("visualize")
    base = ["occupancy", "--data-root", str(synthetic_world.root), "--infos", str(synthetic_world.val_infos),
            "--out", str(tmp_path / "o")]
    assert tool.main([*base, "--predictions", str(tmp_path / "missing")]) == 2
    assert "is not a folder" in capsys.readouterr().err
    assert tool.main([*base, "--sample-token", "no-such-token"]) == 2
    assert "no-such-token" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert tool.main([*base, "--predictions", str(tmp_path / "empty")]) == 2
    err = capsys.readouterr().err
    assert "no prediction for sample" in err and len(err.strip().splitlines()) == 1
