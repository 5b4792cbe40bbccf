"""The OpenLane-V2 data layer: data_dict pickles, the converter to our infos (a small fake subset_A tree
written here), the ``lanes`` label type (arc-length resampling, traffic elements under image and BEV
augmentation, meta) and the synthetic world's data_dicts. Truths are computed by hand in the tests."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
import torch
from PIL import Image

from perception.data import BEVDataset, LaneLoadError, bev_collate
from perception.data.infos import load_infos
from perception.data.labels import CameraImageTransform, Lanes, resample_polyline
from perception.data.openlane_v2 import (
    OpenLaneV2Error,
    create_openlane_v2_infos,
    frame_from_json,
    load_data_dict,
    read_frame_json,
    write_data_dict,
)
from perception.data.transforms_bev import apply_bev_transform
from perception.structures.boxes import bev_aug_matrix
from perception.structures.cameras import image_aug_matrix, project_points

# Argoverse 2 ring cameras as OpenLane-V2 lists them; the front one is portrait.
CAMERAS = ("ring_front_left", "ring_front_center", "ring_front_right", "ring_rear_left", "ring_rear_right",
           "ring_side_left", "ring_side_right")
YAW = dict(zip(CAMERAS, (45.0, 0.0, -45.0, 150.0, -150.0, 90.0, -90.0)))
FRONT_SIZE, SIDE_SIZE = (30, 40), (40, 30)  # (w, h), tiny versions of 1550x2048 and 2048x1550
T0 = 315967376899927209  # ns
SEGMENTS = ("00000", "00001")


def size_of(camera):
    return FRONT_SIZE if camera == "ring_front_center" else SIDE_SIZE


def rot_z(yaw):
    c, s = np.cos(yaw), np.sin(yaw)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def camera_rotation(camera):
    """Camera -> ego rotation of OpenCV axes (x right, y down, z forward) looking along the yaw."""
    yaw = np.deg2rad(YAW[camera])
    forward, right = [np.cos(yaw), np.sin(yaw), 0.0], [np.sin(yaw), -np.cos(yaw), 0.0]
    return np.stack([right, [0.0, 0.0, -1.0], forward], 1)


def intrinsic(camera):
    w, h = size_of(camera)
    return np.array([[20.0, 0.0, w / 2], [0.0, 21.0, h / 2], [0.0, 0.0, 1.0]])


def pose(s, k):
    return rot_z(0.3 * s + 0.1 * k), np.array([100.0 * s + 5.0 * k, 2.0 * k, 0.1 * k])


def frame_json(split, segment, s, k):
    stamp = T0 + 100_000_000 * k + s
    sensor = {}
    for c in CAMERAS:
        sensor[c] = dict(
            image_path=f"{split}/{segment}/image/{c}/{stamp}.jpg",
            extrinsic=dict(rotation=camera_rotation(c).tolist(), translation=[1.5, 0.1 * len(c) % 0.7, 1.6]),
            intrinsic=dict(K=intrinsic(c).tolist(), distortion=[0.0, 0.0, 0.0]),
        )
    rotation, translation = pose(s, k)
    x = np.linspace(-10.0, 30.0, 201)
    lanes = [dict(id=10 + i, points=np.stack([x, np.full(201, y), np.zeros(201)], 1).tolist())
             for i, y in enumerate((-1.75, 1.75))]
    elements = [dict(id=100, category=2, attribute=5, points=[[4.0, 6.0], [12.0, 14.0]]),
                dict(id=101, category=1, attribute=1, points=[[20.0, 3.0], [26.0, 9.0]])]
    return stamp, dict(
        version="v2.0", segment_id=segment, meta_data=dict(source="argoverse2", source_id=f"log-{segment}"),
        timestamp=str(stamp), sensor=sensor,
        pose=dict(rotation=rotation.tolist(), translation=translation.tolist()),
        annotation=dict(lane_centerline=lanes, traffic_element=elements,
                        topology_lclc=[[0, 0], [0, 0]], topology_lcte=[[1, 0], [0, 1]]),
    )


@pytest.fixture(scope="module")
def subset_a(tmp_path_factory):
    """A fake subset_A root: 2 segments x 3 frames of train, 7 cameras (portrait front), tiny images."""
    root = tmp_path_factory.mktemp("subset_A")
    frames = {}
    for s, segment in enumerate(SEGMENTS):
        for k in (2, 0, 1):  # written out of order: the converter sorts by segment, then time
            stamp, frame = frame_json("train", segment, s, k)
            path = root / "train" / segment / "info" / f"{stamp}.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(frame))
            for c in CAMERAS:
                img = root / frame["sensor"][c]["image_path"]
                img.parent.mkdir(parents=True, exist_ok=True)
                Image.new("RGB", size_of(c), (40 + 10 * k, 90, 140)).save(img)
            frames[("train", segment, str(stamp))] = frame_from_json(frame, subsample_val=False)
    return root, frames


def test_frame_from_json_does_what_the_preprocessing_does(subset_a):
    root, frames = subset_a
    _, raw = frame_json("val", "00000", 0, 0)
    frame = frame_from_json(raw, subsample_val=True)
    lanes = frame["annotation"]["lane_centerline"]
    assert lanes[0]["points"].dtype == np.float32 and lanes[0]["points"].shape == (11, 3)
    assert np.array_equal(lanes[0]["points"], np.array(raw["annotation"]["lane_centerline"][0]["points"],
                                                       np.float32)[::20])
    assert frame_from_json(raw, subsample_val=False)["annotation"]["lane_centerline"][0]["points"].shape == (201, 3)
    assert frame["annotation"]["topology_lcte"].dtype == np.int8
    assert frame["annotation"]["topology_lclc"].shape == (2, 2)
    assert frame["annotation"]["traffic_element"][0]["points"].dtype == np.float32
    assert frame["pose"]["rotation"].dtype == np.float64
    assert frame["sensor"]["ring_front_center"]["intrinsic"]["K"].shape == (3, 3)
    assert isinstance(raw["pose"]["rotation"], list)  # the input is left alone
    # A written data_dict reads back with its (str, str, str) keys.
    path = write_data_dict(root / "data_dict_copy.pkl", frames)
    back = load_data_dict(path)
    assert sorted(back) == sorted(frames) and all(type(k) is str for key in back for k in key)


def test_converter_builds_the_rig_and_geometry(subset_a, tmp_path):
    root, frames = subset_a
    # No data_dict: the frame jsons are read.
    out_json = create_openlane_v2_infos(root, "A", "train", tmp_path / "from_json.pkl", progress=False)
    write_data_dict(root / "data_dict_subset_A_train.pkl", frames)
    try:
        out = create_openlane_v2_infos(root, "A", "train", tmp_path / "infos.pkl", progress=False)
    finally:
        (root / "data_dict_subset_A_train.pkl").unlink()
    meta, infos = load_infos(out)
    # The rig: 7 cameras, front first, of two sizes (read from the image headers).
    assert meta["cameras"][0] == "ring_front_center" and sorted(meta["cameras"]) == sorted(CAMERAS)
    assert meta["image_sizes"]["ring_front_center"] == (30, 40)
    assert {meta["image_sizes"][c] for c in CAMERAS} == {(30, 40), (40, 30)}
    # Ordered by segment, then time; keys are the data_dict's.
    stamps = [T0 + 100_000_000 * k + s for s in range(2) for k in range(3)]
    assert [i["openlane_key"] for i in infos] == [("train", SEGMENTS[n // 3], str(stamps[n])) for n in range(6)]
    assert all(i["openlane_key"] in frames for i in infos)
    assert [i["frame_index"] for i in infos] == [0, 1, 2, 0, 1, 2]
    assert [i["timestamp"] for i in infos] == [t // 1000 for t in stamps]
    assert infos[1]["prev"] == infos[0]["token"] and infos[1]["next"] == infos[2]["token"]
    assert infos[3]["prev"] == "" and infos[2]["next"] == ""
    assert infos[4]["openlane_path"] == f"train/00001/info/{stamps[4]}.json"
    assert infos[0]["gt_boxes"].shape == (0, 9) and infos[0]["occ_path"] is None
    # ego2img projects a known ego point to the pixel computed from K and the extrinsic.
    p = np.array([12.0, 0.8, 0.5])
    cam = infos[0]["cams"]["ring_front_center"]
    r, t = camera_rotation("ring_front_center"), np.array([1.5, 0.1 * len("ring_front_center") % 0.7, 1.6])
    x, y, z = r.T @ (p - t)
    k = intrinsic("ring_front_center")
    uv, depth = project_points(cam["ego2img"], p[None])
    assert np.allclose(uv[0], [k[0, 0] * x / z + k[0, 2], k[1, 1] * y / z + k[1, 2]]) and np.isclose(depth[0], z)
    assert cam["image_size"] == (30, 40) and cam["data_path"].startswith("train/00000/image/ring_front_center/")
    # prev2curr: a point of the previous ego frame, through the global frame, into the current one.
    r1, t1 = pose(0, 1)
    r0, t0 = pose(0, 0)
    q = np.array([3.0, -2.0, 1.0])
    expected = r1.T @ (r0 @ q + t0 - t1)
    assert np.allclose(infos[1]["prev2curr"][:3, :3] @ q + infos[1]["prev2curr"][:3, 3], expected)
    assert np.allclose(infos[0]["prev2curr"], np.eye(4)) and np.allclose(infos[3]["prev2curr"], np.eye(4))
    # The json route gives the same infos.
    _, from_json = load_infos(out_json)
    assert [i["openlane_key"] for i in from_json] == [i["openlane_key"] for i in infos]
    assert np.allclose(from_json[4]["cams"]["ring_side_left"]["ego2img"], infos[4]["cams"]["ring_side_left"]["ego2img"])


def test_create_data_openlane_v2_command(subset_a, tmp_path):
    from tests.tool_loader import load_tool

    root, _ = subset_a
    tool = load_tool("create_data")
    assert tool.main(["openlane_v2", "--root", str(root), "--subset", "A", "--splits", "train",
                      "--out", str(tmp_path)]) == 0
    meta, infos = load_infos(tmp_path / "openlane_v2_infos_subset_A_train.pkl")
    assert len(infos) == 6 and meta["version"] == "openlane_v2-subset_A"
    with pytest.raises(SystemExit):  # no val split in the tree
        tool.main(["openlane_v2", "--root", str(root), "--subset", "A", "--splits", "val", "--out", str(tmp_path)])


def test_dataset_loads_a_mixed_size_openlane_sample(subset_a, tmp_path):
    root, _ = subset_a
    out = create_openlane_v2_infos(root, "A", "train", tmp_path / "infos.pkl", progress=False)
    pipeline = [dict(type="LoadMultiViewImages"), dict(type="PackBEVInputs")]
    ds = BEVDataset(str(out), str(root), pipeline, labels=("boxes", "lanes"))
    samples = [ds[0], ds[4]]
    s = samples[0]
    assert s["img"].shape == (1, 7, 3, 40, 40)  # portrait 30x40 and landscape 40x30, padded to 40x40
    assert s["cams"]["valid_hw"][0, 0].tolist() == [40, 30] and s["cams"]["valid_hw"][0, 1].tolist() == [30, 40]
    assert s["gt_boxes"].shape == (0, 9)
    assert s["lanes"].shape == (2, 11, 3) and s["traffic_elements"].shape == (2, 4)
    assert s["traffic_element_categories"].tolist() == [2, 1] and s["traffic_element_labels"].tolist() == [5, 1]
    assert s["topology_lane_te"].tolist() == [[1, 0], [0, 1]]
    assert s["meta"]["openlane_key"] == ds.infos[0]["openlane_key"]
    assert s["meta"]["traffic_element_camera"] == "ring_front_center"
    aug = s["meta"]["traffic_element_img_aug"]
    assert isinstance(aug, np.ndarray) and aug.dtype == np.float64 and np.array_equal(aug, np.eye(4))
    batch = bev_collate(samples)
    assert batch["img"].shape == (2, 1, 7, 3, 40, 40)
    assert isinstance(batch["lanes"], list) and len(batch["lanes"]) == 2
    assert [m["openlane_key"] for m in batch["meta"]] == [ds.infos[0]["openlane_key"], ds.infos[4]["openlane_key"]]


def test_dataset_image_flip_reaches_boxes_attributes_and_meta(subset_a, tmp_path):
    root, _ = subset_a
    out = create_openlane_v2_infos(root, "A", "train", tmp_path / "infos.pkl", progress=False)
    sizes = {c: (size_of(c)[0], size_of(c)[1] // 2) for c in CAMERAS}  # half height: a crop
    pipeline = [dict(type="LoadMultiViewImages"),
                dict(type="ResizeCropFlipImage", final_size=sizes, flip_prob=1.0, training=True, seed=0),
                dict(type="PackBEVInputs")]
    s = BEVDataset(str(out), str(root), pipeline, labels=("lanes",))[0]
    aug = s["meta"]["traffic_element_img_aug"]
    assert aug[0, 0] < 0  # the front camera's image was mirrored
    # Front 30x40 cropped to 30x20 keeping the bottom (y0 = 20), mirrored in 30 px: x -> 30 - x, y -> y - 20.
    # Box [4, 6, 12, 14] falls above the crop (dropped with its lcte column), [20, 3, 26, 9] likewise, so
    # only the image's lower half would keep boxes: none here.
    assert s["traffic_elements"].shape == (0, 4) and s["topology_lane_te"].shape == (2, 0)
    pipeline[1]["final_size"] = {c: size_of(c) for c in CAMERAS}  # no crop, flip only
    s = BEVDataset(str(out), str(root), pipeline, labels=("lanes",))[0]
    assert s["traffic_elements"].tolist() == [[18.0, 6.0, 26.0, 14.0], [4.0, 3.0, 10.0, 9.0]]
    assert s["traffic_element_labels"].tolist() == [6, 1]  # turn_left -> turn_right; red stays red
    # The meta matrix maps the native boxes to the augmented ones.
    corners = np.array([[4.0, 6.0, 1.0, 1.0], [12.0, 14.0, 1.0, 1.0]]) @ s["meta"]["traffic_element_img_aug"].T
    assert sorted(corners[:, 0].tolist()) == [18.0, 26.0]


def _flip_transform(scale, crop, out_size):
    return CameraImageTransform(scale, crop, True, out_size, image_aug_matrix(scale, crop, True, out_size[0]))


def test_flip_swaps_left_right_attributes_and_mirrors_boxes():
    lanes = Lanes(camera="front")
    results = dict(
        traffic_elements=np.array([[10.0, 5.0, 20.0, 15.0], [30.0, 2.0, 38.0, 8.0],
                                   [100.0, 10.0, 120.0, 20.0], [12.0, 4.0, 12.0, 9.0]]),
        traffic_element_labels=np.array([5, 12, 1, 7]),
        traffic_element_categories=np.array([2, 2, 1, 2]),
        topology_lane_te=np.array([[1, 0, 1, 1], [0, 1, 0, 0]], np.float32),
    )
    lanes.image_transform(results, {"front": _flip_transform((0.5, 0.5), (2, 1), (40, 20))})
    # Hand: x -> 40 - (0.5 x - 2), y -> 0.5 y - 1, clipped to 40 x 20. The third box lands at x < 0 and the
    # fourth has zero width: both dropped with their topology columns.
    assert results["traffic_elements"].tolist() == [[32.0, 1.5, 37.0, 6.5], [23.0, 0.0, 27.0, 3.0]]
    assert results["traffic_element_labels"].tolist() == [6, 11]  # turn_left -> turn_right, slight_right -> left
    assert results["traffic_element_categories"].tolist() == [2, 2]
    assert results["topology_lane_te"].tolist() == [[1, 0], [0, 1]]
    results["traffic_element_labels"] = np.arange(13)
    results["traffic_elements"] = np.tile([[1.0, 1.0, 2.0, 2.0]], (13, 1))
    results["traffic_element_categories"] = np.ones(13, np.int64)
    results["topology_lane_te"] = np.zeros((2, 13), np.float32)
    lanes.image_transform(results, {"front": _flip_transform((1.0, 1.0), (0, 0), (40, 20))})
    assert results["traffic_element_labels"].tolist() == [0, 1, 2, 3, 4, 6, 5, 8, 7, 9, 10, 12, 11]


def _lane_results(label, points):
    return dict(frames=[], bev_aug=np.eye(4), label_types={"lanes": label}, sample_token="t",
                lanes=np.array(points, dtype=np.float64), traffic_elements=np.zeros((0, 4)),
                traffic_element_labels=np.zeros(0, np.int64), traffic_element_categories=np.zeros(0, np.int64),
                topology_lane_lane=np.zeros((1, 1), np.float32), topology_lane_te=np.zeros((1, 0), np.float32))


def test_bev_rotation_scale_and_mirror_move_lanes():
    label = Lanes()
    results = _lane_results(label, [[[10.0, 2.0, 0.5], [20.0, 2.0, 0.5], [30.0, 5.0, 0.5]]])
    apply_bev_transform(results, bev_aug_matrix(np.pi / 2, 2.0))
    # Hand: a quarter turn maps (x, y) to (-y, x); scale 2 doubles every coordinate (z too).
    assert np.allclose(results["lanes"][0], [[-4.0, 20.0, 1.0], [-4.0, 40.0, 1.0], [-10.0, 60.0, 1.0]])
    results = _lane_results(label, [[[10.0, 2.0, 0.5], [20.0, 2.0, 0.5], [30.0, 5.0, 0.5]]])
    apply_bev_transform(results, bev_aug_matrix(flip_y=True))
    # A y-mirror negates y and keeps the order: the start stays the start.
    assert np.allclose(results["lanes"][0], [[10.0, -2.0, 0.5], [20.0, -2.0, 0.5], [30.0, -5.0, 0.5]])
    apply_bev_transform(results, bev_aug_matrix(flip_x=True))
    assert np.allclose(results["lanes"][0, 0], [-10.0, -2.0, 0.5]) and np.allclose(results["lanes"][0, -1],
                                                                                   [-30.0, -5.0, 0.5])


def test_bev_mirror_keeps_attributes_or_refuses_left_right_ones():
    flip = {"front": _flip_transform((1.0, 1.0), (0, 0), (40, 20))}

    def results(label, attribute):
        out = _lane_results(label, [[[1.0, 0.0, 0.0], [2.0, 0.0, 0.0]]])
        out.update(traffic_elements=np.array([[1.0, 1.0, 5.0, 5.0]]), traffic_element_labels=np.array([attribute]),
                   traffic_element_categories=np.array([2]), topology_lane_te=np.ones((1, 1), np.float32),
                   lanes_bev_mirrors=0)
        return out

    label = Lanes(camera="front", bev_mirror="refuse")
    for mat in (bev_aug_matrix(0.2, 1.0, flip_y=True), bev_aug_matrix(flip_x=True)):
        mirrored = results(label, 5)
        apply_bev_transform(mirrored, mat)
        with pytest.raises(ValueError, match=r"mirrors the lanes but not the front image.*turn_left"):
            label.pack(mirrored, {"meta": {}})
    # An image flip cannot repair it (the spine flips the features back): still refused.
    both = results(label, 5)
    label.image_transform(both, flip)
    apply_bev_transform(both, bev_aug_matrix(flip_y=True))
    with pytest.raises(ValueError, match="turn_right"):
        label.pack(both, {"meta": {}})
    # Accepted: two mirrors (a half turn), an image flip alone, attributes without a side, or the default "keep".
    twice = results(label, 5)
    apply_bev_transform(twice, bev_aug_matrix(flip_x=True, flip_y=True))
    label.pack(twice, {"meta": {}})
    flipped = results(label, 5)
    label.image_transform(flipped, flip)
    sample = {"meta": {}}
    label.pack(flipped, sample)
    assert sample["traffic_element_labels"].tolist() == [6]
    light = results(label, 1)
    apply_bev_transform(light, bev_aug_matrix(flip_y=True))
    label.pack(light, {"meta": {}})
    keep = Lanes(camera="front")
    kept = results(keep, 5)
    apply_bev_transform(kept, bev_aug_matrix(flip_y=True))
    sample = {"meta": {}}
    keep.pack(kept, sample)
    assert sample["traffic_element_labels"].tolist() == [5]  # as the (unflipped) image shows it


def test_resampling_a_known_arc_by_arc_length(tmp_path):
    # A helix arc: radius 20 m, a quarter turn, rising 1 m, sampled at 201 unevenly spaced angles.
    radius, span = 20.0, np.pi / 2
    theta = span * np.linspace(0.0, 1.0, 201) ** 1.5
    arc = np.stack([radius * np.sin(theta), radius * (1 - np.cos(theta)), theta / span], 1)
    out = resample_polyline(arc, 11)
    # Hand truth: equal arc length on a helix is equal angle, theta_k = k * span / 10.
    tk = span * np.arange(11) / 10
    truth = np.stack([radius * np.sin(tk), radius * (1 - np.cos(tk)), tk / span], 1)
    assert np.abs(out - truth).max() < 2e-3
    assert np.array_equal(out[0], arc[0]) and np.array_equal(out[-1], arc[-1])
    # A straight lane with uneven points (and a repeated one) comes out exactly evenly spaced.
    x = np.array([0.0, 1.0, 1.0, 7.0, 10.0])
    line = resample_polyline(np.stack([x, 2 * x, np.zeros(5)], 1), 6)
    assert np.allclose(line, np.stack([np.arange(6) * 2.0, np.arange(6) * 4.0, np.zeros(6)], 1), atol=1e-12)
    # Through the label type, reversed direction kept.
    path = tmp_path / "val" / "seg" / "info" / "123.json"
    path.parent.mkdir(parents=True)
    ann = dict(lane_centerline=[dict(id=7, points=arc[::-1].tolist())], traffic_element=[],
               topology_lclc=[[0]], topology_lcte=[[]])
    path.write_text(json.dumps(dict(annotation=ann)))
    results = dict(sample_token="tok")
    Lanes(num_points=11).load_file(results, str(path))
    assert np.abs(results["lanes"][0] - truth[::-1]).max() < 2e-3
    assert results["openlane_key"] == ("val", "seg", "123")  # from the path when the info has none
    assert results["traffic_element_categories"].shape == (0,)


@pytest.mark.parametrize(
    "points, what", [([[1.0, 2.0, 0.0]], "shape"), ([[0, 0, 0], [1, float("nan"), 0]], "non-finite")]
)
def test_unusable_lanes_name_the_file_and_lane(tmp_path, points, what):
    path = tmp_path / "f.json"
    ann = dict(lane_centerline=[dict(id=42, points=points)], traffic_element=[], topology_lclc=[[0]],
               topology_lcte=[[]])
    path.write_text(json.dumps(dict(annotation=ann)))
    with pytest.raises(LaneLoadError, match=rf"{path}.*lane 42 .*{what}"):
        Lanes().load_file(dict(sample_token="tok"), str(path))


def test_corrupt_and_truncated_files_give_clear_errors(subset_a, tmp_path):
    root, frames = subset_a
    good = write_data_dict(tmp_path / "good.pkl", frames)
    data = good.read_bytes()
    truncated = tmp_path / "truncated.pkl"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(OpenLaneV2Error, match=f"{truncated} is truncated"):
        load_data_dict(truncated)
    with pytest.raises(OpenLaneV2Error, match="does not exist"):
        load_data_dict(tmp_path / "missing.pkl")
    wrong = tmp_path / "list.pkl"
    wrong.write_bytes(pickle.dumps([1, 2]))
    with pytest.raises(OpenLaneV2Error, match=f"{wrong} holds a list"):
        load_data_dict(wrong)
    ints = tmp_path / "ints.pkl"
    ints.write_bytes(pickle.dumps({("train", "00000", 315): {"sensor": {}, "pose": {}}}))
    with pytest.raises(OpenLaneV2Error, match="tuples of str"):
        load_data_dict(ints)
    bare = tmp_path / "bare.pkl"
    bare.write_bytes(pickle.dumps({("train", "00000", "315"): {"annotation": {}}}))
    with pytest.raises(OpenLaneV2Error, match="lacks 'sensor'/'pose'"):
        load_data_dict(bare)
    broken = tmp_path / "broken.json"
    broken.write_text('{"sensor": {')
    with pytest.raises(OpenLaneV2Error, match=f"{broken} is truncated or not JSON"):
        read_frame_json(broken)
    with pytest.raises(LaneLoadError, match=f"lane file {broken} of sample tok is corrupt"):
        Lanes().load_file(dict(sample_token="tok"), str(broken))
    # A corrupt json inside a tree stops the converter with its name.
    bad_root = tmp_path / "tree"
    (bad_root / "val" / "s" / "info").mkdir(parents=True)
    (bad_root / "val" / "s" / "info" / "1.json").write_text("[1, 2]")
    with pytest.raises(OpenLaneV2Error, match="1.json lacks 'sensor'/'pose'"):
        create_openlane_v2_infos(bad_root, "A", "val", progress=False)


def test_synthetic_world_data_dicts(synthetic_world):
    root = synthetic_world.root
    splits = (("val", synthetic_world.val_infos, 11), ("train", synthetic_world.train_infos, 201))
    for split, infos_path, points in splits:
        data = load_data_dict(root / "openlane_v2" / f"data_dict_synthetic_{split}.pkl")
        _, infos = load_infos(infos_path)
        assert sorted(data) == sorted(i["openlane_key"] for i in infos)
        info = infos[1]
        frame = data[info["openlane_key"]]
        raw = json.loads((root / info["openlane_path"]).read_text())["annotation"]["lane_centerline"]
        lanes = frame["annotation"]["lane_centerline"]
        assert len(lanes) == len(raw) >= 8
        assert all(lane["points"].shape == (points, 3) and lane["points"].dtype == np.float32 for lane in lanes)
        assert all(len(lane["points"]) == 201 for lane in raw)
        # The 11 val points are every 20th json point: the ends are kept.
        assert np.allclose(lanes[0]["points"][-1], raw[0]["points"][-1], atol=1e-6)
        assert frame["annotation"]["topology_lclc"].dtype == np.int8
    ds = BEVDataset(str(synthetic_world.val_infos), str(root), [dict(type="LoadMultiViewImages"),
                                                              dict(type="PackBEVInputs")], labels=("lanes",))
    s = ds[0]
    assert s["lanes"].shape[1:] == (11, 3) and s["meta"]["openlane_key"] == ds.infos[0]["openlane_key"]
    assert s["meta"]["traffic_element_camera"] == "CAM_FRONT"
    assert torch.is_tensor(s["traffic_element_categories"])
