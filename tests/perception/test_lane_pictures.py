"""Lane pictures (docs/lanes.md, "Lane pictures"): pixels of hand-made OpenLane-V2 frames sit where the
metric layout and a hand-made pinhole camera say, in the right colours; thresholds hide what they should;
the comparison, GIF and CLI write what they promise."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from PIL import Image

from perception.visualization import (
    draw_lane_bev,
    draw_lanes_on_image,
    lane_scene_gif,
    project_lane,
    render_lane_comparison,
    select_confident,
)
from perception.visualization.style import GT_COLOR, LINK_COLOR, PRED_COLOR, TE_ATTRIBUTE_COLORS
from tests.tool_loader import load_tool

# Written out, not read from the module: the colours the docs promise.
RED_LIGHT, GREEN_LIGHT, TURN_LEFT = (255, 40, 40), (60, 255, 110), (0, 225, 225)
PPM = 8  # BEV pixels per metre: the panel is 400 x 800, the ego origin at column 200, row 400
W, H, F = 320, 240, 100.0  # pinhole camera: image size, focal length (pixels)


def _lane(x0, x1, y0=0.0, y1=None, n=11, **extra) -> dict:
    y1 = y0 if y1 is None else y1
    points = np.stack([np.linspace(x0, x1, n), np.linspace(y0, y1, n), np.zeros(n)], 1)
    return dict(id=len(extra), points=points, **extra)


def _frame(lanes, elements=(), lclc=None, lcte=None) -> dict:
    n, k = len(lanes), len(elements)
    return dict(
        lane_centerline=list(lanes),
        traffic_element=list(elements),
        topology_lclc=np.zeros((n, n)) if lclc is None else np.asarray(lclc, float),
        topology_lcte=np.zeros((n, k)) if lcte is None else np.asarray(lcte, float),
    )


def _element(attribute, box, **extra) -> dict:
    x1, y1, x2, y2 = box
    return dict(id=100 + attribute, attribute=attribute, category=1 if attribute <= 3 else 2,
                points=np.array([[x1, y1], [x2, y2]], float), **extra)


def _ego2img() -> np.ndarray:
    """A forward-looking pinhole 1.5 m above the ego origin: camera x = -ego y, y = -ego z, z = ego x."""
    ego2cam = np.eye(4)
    ego2cam[:3, :3] = [[0, -1, 0], [0, 0, -1], [1, 0, 0]]
    ego2cam[:3, 3] = [0.0, 1.5, 0.0]
    k = np.eye(4)
    k[:3, :3] = [[F, 0, W / 2], [0, F, H / 2], [0, 0, 1]]
    return k @ ego2cam


def _is(image, colour) -> np.ndarray:
    return (np.asarray(image.convert("RGB")).astype(int) == colour).all(-1)


def test_style_colours_are_the_documented_ones():
    assert TE_ATTRIBUTE_COLORS[1] == RED_LIGHT and TE_ATTRIBUTE_COLORS[2] == GREEN_LIGHT
    assert TE_ATTRIBUTE_COLORS[5] == TURN_LEFT and len(set(TE_ATTRIBUTE_COLORS)) == 13
    assert not {GT_COLOR, PRED_COLOR, LINK_COLOR} & set(TE_ATTRIBUTE_COLORS)


def test_straight_lane_runs_up_the_centre_with_its_arrow_head_at_the_end():
    image, canvas = draw_lane_bev(_frame([_lane(0.0, 20.0)]))
    assert image.size == (400, 800) and (canvas.width, canvas.height) == (400, 800)
    assert tuple(canvas.to_pixels([0.0, 0.0])) == (200, 400)
    lane = _is(image, GT_COLOR)
    # x from 3 m to 17 m (rows 376 .. 264): every row has lane pixels at the centre column.
    assert lane[264:377, 198:203].any(1).all()
    # Nothing left or right of it, nothing behind the ego, nothing beyond the end (20 m = row 240).
    assert not lane[:, :192].any() and not lane[:, 209:].any()
    assert not lane[410:].any() and not lane[:230].any()
    # The arrow head and end square at the end (row 240) hold more lane pixels than the start circle.
    near_end, near_start = lane[228:253, 188:213].sum(), lane[388:413, 188:213].sum()
    assert near_end > 1.3 * near_start
    reverse = _is(draw_lane_bev(_frame([_lane(20.0, 0.0)]))[0], GT_COLOR)
    assert reverse[388:413, 188:213].sum() > 1.3 * reverse[228:253, 188:213].sum()


def test_lane_lateral_position_and_prediction_threshold():
    pred = _frame([_lane(0.0, 30.0, 10.0, confidence=0.9), _lane(0.0, 30.0, -10.0, confidence=0.2)],
                  lclc=[[0, 0.9], [0.9, 0]])
    lane = _is(draw_lane_bev(pred, PRED_COLOR, score_threshold=0.3)[0], PRED_COLOR)
    # y = +10 m (left) is column 120; y = -10 m (right), below the threshold, would be column 280.
    assert lane[200:380, 118:123].any(1).all()
    assert not lane[:, 250:].any()
    kept = select_confident(pred, 0.3)
    assert len(kept["lane_centerline"]) == 1 and kept["topology_lclc"].shape == (1, 1)
    # Without a threshold both are drawn.
    assert _is(draw_lane_bev(pred, PRED_COLOR)[0], PRED_COLOR)[200:380, 278:283].any(1).all()


def test_lane_links_follow_the_link_threshold():
    lanes = [_lane(0.0, 10.0), _lane(14.0, 30.0, 5.0)]
    linked = _is(draw_lane_bev(_frame(lanes, lclc=[[0, 0.8], [0, 0]]))[0], LINK_COLOR)
    # The connector runs from (10, 0) m (column 200, row 320) to (14, 5) m (column 160, row 288).
    assert linked[286:322, 158:203].sum() > 20 and linked.sum() == linked[280:330, 150:210].sum()
    assert not _is(draw_lane_bev(_frame(lanes, lclc=[[0, 0.4], [0, 0]]))[0], LINK_COLOR).any()
    # End on start (the usual GT junction): a ring around the shared point.
    ring = _is(draw_lane_bev(_frame([_lane(0.0, 10.0), _lane(10.0, 20.0)], lclc=[[0, 1], [0, 0]]))[0], LINK_COLOR)
    rows, cols = np.nonzero(ring)
    assert len(rows) and abs(rows.mean() - 320) < 1.5 and abs(cols.mean() - 200) < 1.5


def test_traffic_element_boxes_have_their_attribute_colour_on_the_outline():
    image = np.zeros((H, W, 3), np.uint8)
    frame = _frame([], [_element(1, (50, 40, 90, 70)), _element(5, (200, 100, 260, 140))])
    drawn = draw_lanes_on_image(image, frame)
    red, cyan = _is(drawn, RED_LIGHT), _is(drawn, TURN_LEFT)
    assert red[40, 70] and red[70, 70] and red[55, 50] and red[55, 90]  # top, bottom, left, right edges
    assert not red[55, 70] and not red[45:66, 55:86].any()  # not filled
    assert cyan[100, 230] and cyan[140, 230] and cyan[120, 200] and cyan[120, 260]
    assert not red[80:, 150:].any() and not cyan[:80].any()  # labels sit just above the boxes
    assert (np.asarray(image) == 0).all()  # drawn on a copy
    # Halved: the outline moves with the picture.
    small = _is(draw_lanes_on_image(image, frame, width=W // 2), RED_LIGHT)
    assert small.shape == (H // 2, W // 2) and small[20, 35] and small[35, 25]


def test_lanes_project_through_a_pinhole_camera():
    e2i = _ego2img()
    # A lane straight ahead: column 160; x = 10 m is row 120 + 100 * 1.5 / 10 = 135.
    runs, end_visible = project_lane(_lane(5.0, 40.0)["points"], e2i, (W, H))
    assert end_visible and len(runs) == 1
    np.testing.assert_allclose(runs[0][0], [160.0, 150.0])
    np.testing.assert_allclose(runs[0][-1], [160.0, 120.0 + 150.0 / 40.0])
    lane = _is(draw_lanes_on_image(np.zeros((H, W, 3), np.uint8), _frame([_lane(5.0, 40.0)]), e2i), GT_COLOR)
    assert lane[135, 159:162].any() and lane[140:150, 158:163].any(1).all()
    assert not lane[:, :150].any() and not lane[:, 171:].any() and not lane[152:].any()
    # 3 m to the left at x = 10 m: column 160 - 100 * 3 / 10 = 130, row 135.
    left = _is(draw_lanes_on_image(np.zeros((H, W, 3), np.uint8), _frame([_lane(10.0, 30.0, 3.0)]), e2i), GT_COLOR)
    assert left[134:137, 129:132].any() and not left[:, 157:].any()  # the end (30 m) is column 150


def test_lanes_behind_the_camera_are_clipped():
    e2i = _ego2img()
    # From 10 m behind to 10 m ahead: the visible part enters at the bottom edge (x = 1.25 m) and ends at the
    # end vertex (x = 10 m, row 135); nothing is drawn from behind the camera.
    runs, end_visible = project_lane(_lane(-10.0, 10.0, n=21)["points"], e2i, (W, H))
    assert end_visible and len(runs) == 1
    np.testing.assert_allclose(runs[0][0], [160.0, 240.0], atol=1e-6)
    np.testing.assert_allclose(runs[0][-1], [160.0, 135.0])
    runs, end_visible = project_lane(_lane(10.0, -10.0, n=21)["points"], e2i, (W, H))
    assert not end_visible and np.allclose(runs[-1][-1], [160.0, 240.0])
    assert project_lane(_lane(-20.0, -5.0)["points"], e2i, (W, H)) == ([], False)
    for runs, _ in [project_lane(_lane(-10.0, 40.0, -30.0, 30.0)["points"], e2i, (W, H))]:
        pts = np.concatenate(runs)
        assert (pts >= -1e-6).all() and (pts[:, 0] <= W + 1e-6).all() and (pts[:, 1] <= H + 1e-6).all()


def test_low_confidence_elements_are_not_drawn_in_the_camera():
    frame = _frame([], [_element(1, (50, 40, 90, 70), confidence=0.9), _element(5, (200, 100, 260, 140),
                                                                                 confidence=0.1)])
    drawn = draw_lanes_on_image(np.zeros((H, W, 3), np.uint8), frame, score_threshold=0.3)
    assert _is(drawn, RED_LIGHT)[40, 70] and not _is(drawn, TURN_LEFT).any()


def _scene():
    gt = _frame([_lane(0.0, 20.0), _lane(20.0, 40.0, 0.0, -5.0)], [_element(1, (50, 40, 90, 70))],
                lclc=[[0, 1], [0, 0]], lcte=[[1], [0]])
    pred = _frame([_lane(0.5, 19.0, confidence=0.8), _lane(21.0, 40.0, 0.0, -6.0, confidence=0.6)],
                  [_element(2, (52, 42, 88, 71), confidence=0.7)], lclc=[[0, 0.7], [0, 0]], lcte=[[0.9], [0]])
    return gt, pred


def test_comparison_has_both_sides_cameras_and_a_legend_of_present_attributes(tmp_path):
    gt, pred = _scene()
    image = np.full((H, W, 3), 40, np.uint8)
    both = render_lane_comparison(gt, pred, image, _ego2img(), title="val/seg/1", path=tmp_path / "c.png")
    assert Image.open(tmp_path / "c.png").size == both.size
    gt_only = render_lane_comparison(gt)
    with_pred = render_lane_comparison(gt, pred)
    assert with_pred.width >= gt_only.width + 400 and both.width > with_pred.width + 300
    rgb = np.asarray(both).astype(int)
    legend = rgb[:, both.width - 190:]
    # Swatches of the attributes present (red in GT, green in the prediction), none of an absent one.
    assert (legend == RED_LIGHT).all(-1).sum() >= 100 and (legend == GREEN_LIGHT).all(-1).sum() >= 100
    assert not (legend == TURN_LEFT).all(-1).any()
    # GT lanes in the GT half, predicted ones to its right.
    gt_cols = np.nonzero((rgb[:, :both.width - 190] == GT_COLOR).all(-1).any(0))[0]
    pred_cols = np.nonzero((rgb[:, :both.width - 190] == PRED_COLOR).all(-1).any(0))[0]
    assert gt_cols.min() < 420 < pred_cols.min()


def test_gif_has_one_frame_per_input_frame(tmp_path):
    gt, pred = _scene()
    image = np.zeros((H, W, 3), np.uint8)
    frames = [(gt, pred, image, _ego2img()), (gt, pred), (gt, None, image, _ego2img())]
    path = lane_scene_gif(frames, tmp_path / "seg.gif", titles=["a", "b", "c"])
    with Image.open(path) as im:
        assert im.n_frames == 3 and im.info["duration"] == 500


def _sensor(path: str) -> dict:
    """OpenLane-V2 sensor entry of the pinhole of _ego2img: extrinsic camera -> ego, intrinsic K."""
    cam2ego = np.linalg.inv(np.array([[0, -1, 0, 0], [0, 0, -1, 1.5], [1, 0, 0, 0], [0, 0, 0, 1.0]]))
    k = [[F, 0, W / 2], [0, F, H / 2], [0, 0, 1]]
    return {"ring_front_center": dict(image_path=path, extrinsic=dict(rotation=cam2ego[:3, :3].tolist(),
                                                                      translation=cam2ego[:3, 3].tolist()),
                                      intrinsic=dict(K=k, distortion=[0.0] * 5))}


@pytest.fixture
def lane_files(tmp_path):
    gt, pred = _scene()
    keys = [("val", "seg1", "315001"), ("val", "seg1", "315002"), ("val", "seg2", "316001")]
    root = tmp_path / "root"
    (root / "img").mkdir(parents=True)
    for k in keys[:2]:  # the third frame's image is missing
        Image.fromarray(np.full((H, W, 3), 60, np.uint8)).save(root / "img" / f"{k[2]}.jpg")
    data = {k: dict(segment_id=k[1], timestamp=k[2], sensor=_sensor(f"img/{k[2]}.jpg"), pose=dict(
        rotation=np.eye(3), translation=np.zeros(3)), annotation=gt) for k in keys}
    with open(tmp_path / "gt.pkl", "wb") as f:
        pickle.dump(data, f)
    with open(tmp_path / "sub.pkl", "wb") as f:
        pickle.dump({"method": "m", "results": {k: {"predictions": pred} for k in keys}}, f)
    return tmp_path, root, keys


def test_cli_writes_a_picture_per_frame_and_a_gif_per_segment(lane_files, capsys):
    tmp_path, root, keys = lane_files
    tool = load_tool("visualize")
    out = tmp_path / "vis"
    assert tool.main(["lanes", "--ground-truth", str(tmp_path / "gt.pkl"), "--predictions", str(tmp_path / "sub.pkl"),
                      "--data-root", str(root), "--out", str(out), "--gif"]) == 0
    captured = capsys.readouterr()
    assert captured.err.count("warning") == 1 and "316001.jpg" in captured.err
    pngs = sorted(out.glob("*.png"))
    assert [p.name for p in pngs] == ["val_seg1_315001.png", "val_seg1_315002.png", "val_seg2_316001.png"]
    assert all(str(p) in captured.out for p in pngs)
    with_camera, without = Image.open(pngs[0]), Image.open(pngs[2])
    assert with_camera.width > without.width + 300  # the third frame: BEV only
    rgb = np.asarray(with_camera.convert("RGB")).astype(int)
    assert (rgb == PRED_COLOR).all(-1).sum() > 100 and (rgb == GT_COLOR).all(-1).sum() > 100
    # The projected GT lane in the GT camera panel: two 4:3 views one over the other fit the 800-pixel BEV
    # height at 520 x 390 (1.625 times the image), the lane straight ahead (x 1.25 .. 20 m: rows 390 .. 207)
    # at column 1.625 * 160 = 260.
    cam_x0 = 12 + 2 * (400 + 28)
    assert (rgb[62 + 215 : 62 + 385, cam_x0 + 256 : cam_x0 + 265] == GT_COLOR).all(-1).any(1).all()
    assert not (rgb[62 + 215 : 62 + 385, cam_x0 + 200 : cam_x0 + 250] == GT_COLOR).all(-1).any()
    with Image.open(out / "val_seg1.gif") as im:
        assert im.n_frames == 2
    with Image.open(out / "val_seg2.gif") as im:
        assert im.n_frames == 1
    # GT only, the first frame.
    assert tool.main(["lanes", "--ground-truth", str(tmp_path / "gt.pkl"), "--out", str(tmp_path / "gt"),
                      "--frames", "1"]) == 0
    (png,) = (tmp_path / "gt").glob("*.png")
    assert png.name == "val_seg1_315001.png" and Image.open(png).width < without.width


def test_cli_frame_key_mismatch_is_one_clear_line(lane_files, capsys):
    tmp_path, _, keys = lane_files
    tool = load_tool("visualize")
    gt, pred = _scene()
    every = {k: {"predictions": pred} for k in keys}
    for name, results in (("extra", {**every, ("val", "x", "1"): {"predictions": pred}}),
                          ("missing", {k: every[k] for k in keys[:2]})):
        with open(tmp_path / f"{name}.pkl", "wb") as f:
            pickle.dump({"results": results}, f)
        assert tool.main(["lanes", "--ground-truth", str(tmp_path / "gt.pkl"), "--predictions",
                          str(tmp_path / f"{name}.pkl"), "--out", str(tmp_path / "o")]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1
        assert ("val/x/1" in err and "not in --ground-truth" in err) if name == "extra" else (
            "val/seg2/316001" in err and "no prediction" in err)
