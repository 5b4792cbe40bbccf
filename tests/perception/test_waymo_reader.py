"""The Waymo v2 parquet reader and info converter on the Waymo-format fixture of the synthetic world, and
the conversion of Waymo's conventions against hand-computed cases."""

from __future__ import annotations

import io
import os
import shutil

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from perception.data.infos import load_infos
from perception.data.synthetic.generator import _solids
from perception.data.synthetic.render import render_camera
from perception.data.waymo import conventions as C
from perception.data.waymo import fixture as F
from perception.data.waymo import reader as R
from perception.data.waymo import schema as S
from perception.data.waymo.infos import create_waymo_infos
from perception.structures.cameras import compose_ego2img, project_points
from tests.perception.waymo_data import waymo_data


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return waymo_data(tmp_path_factory)


# -- conventions, by hand --------------------------------------------------------------------------------
def test_waymo_camera_axes_project_as_waymo_defines_them():
    # A camera at the vehicle origin with the identity extrinsic looks along +x (Waymo camera axes: x forward,
    # y left, z up): a point ahead lands on the principal point, one to the left left of it, one above above it.
    k = C.intrinsics_matrix(100.0, 100.0, 50.0, 40.0)
    ego2img = compose_ego2img(k, C.cam2ego_from_extrinsic(np.eye(4)))
    uv, depth = project_points(ego2img, np.array([[10.0, 0, 0], [10.0, 1.0, 0], [10.0, 0, 1.0]]))
    np.testing.assert_allclose(depth, [10.0, 10.0, 10.0])
    np.testing.assert_allclose(uv, [[50.0, 40.0], [40.0, 40.0], [50.0, 30.0]])


def test_extrinsic_conversion_round_trips():
    extrinsic = np.eye(4)
    extrinsic[:3, :3] = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])  # looking left (+y)
    extrinsic[:3, 3] = (1.5, 0.1, 2.0)
    cam2ego = C.cam2ego_from_extrinsic(extrinsic)
    np.testing.assert_allclose(cam2ego[:3, 2], [0.0, 1.0, 0.0], atol=1e-12)  # OpenCV z (optical axis) = +y
    np.testing.assert_allclose(cam2ego[:3, 1], [0.0, 0.0, -1.0], atol=1e-12)  # OpenCV y (down) = -z
    np.testing.assert_allclose(C.extrinsic_from_cam2ego(cam2ego), extrinsic, atol=1e-12)


def test_box_size_order_and_speed():
    ours = C.boxes_from_waymo([[1.0, 2.0, 3.0]], [[4.0, 2.0, 1.5]], [0.3], [[1.0, -0.5]])
    np.testing.assert_allclose(ours, [[1.0, 2.0, 3.0, 2.0, 4.0, 1.5, 0.3, 1.0, -0.5]])
    back = C.boxes_to_waymo(ours)
    np.testing.assert_allclose(back["size"], [[4.0, 2.0, 1.5]])
    np.testing.assert_allclose(back["heading"], [0.3])
    assert C.boxes_to_waymo(np.array([[0, 0, 0, 1, 1, 1, 3.5, 0, 0]]))["heading"][0] == pytest.approx(3.5 - 2 * np.pi)
    assert [C.class_name_of_type(t) for t in (1, 2, 3, 4, 0)] == ["vehicle", "pedestrian", "ignore", "cyclist",
                                                                  "ignore"]


# -- the fixture through the reader ------------------------------------------------------------------------
def test_fixture_has_official_columns_and_types(data):
    split_dir = data.root / "validation"
    segment = R.list_segments(split_dir)[0]
    for component in S.COMPONENTS:
        schema = pq.read_schema(R.component_path(split_dir, component, segment))
        for name, kind in S.COLUMNS[component]:
            assert schema.field(name).type == kind, (component, name)
    images = pq.ParquetFile(R.component_path(split_dir, S.CAMERA_IMAGE, segment))
    assert images.num_row_groups == data.config.frames_per_segment  # one row group per frame: streamable


def test_every_camera_image_decodes_with_two_sizes(data):
    for split in ("training", "validation"):
        split_dir = data.root / split
        for segment in R.list_segments(split_dir):
            calib = R.read_calibrations(split_dir, segment)
            count = 0
            for image in R.iter_camera_images(split_dir, segment, batch_rows=3):
                with Image.open(io.BytesIO(image.jpeg)) as im:
                    assert im.format == "JPEG"
                    im.load()
                    assert im.size == calib[image.camera].image_size
                count += 1
            assert count == 5 * data.config.frames_per_segment
    sizes = {c.image_size for c in calib.values()}
    assert sizes == {(192, 128), (192, 89)}


def test_calibrations_and_poses_round_trip(data):
    split_dir = data.root / "validation"
    (split, segment, index), = [s for s in F.fixture_segments(data.config) if s[0] == "validation"]
    calib = R.read_calibrations(split_dir, segment)
    assert list(calib) == list(C.RIG)
    for camera, entry in calib.items():
        np.testing.assert_allclose(entry.cam2ego, F.camera_cam2ego(camera), atol=1e-12)
        np.testing.assert_allclose(entry.intrinsics, F.camera_intrinsics(data.config, camera))
    world = F.segment_world(data.config, index)
    poses = R.read_vehicle_poses(split_dir, segment)
    assert list(poses) == [F.frame_time_us(data.config, index, f) for f in range(data.config.frames_per_segment)]
    for frame, pose in enumerate(poses.values()):
        np.testing.assert_allclose(pose, world.ego2global(frame * 0.1), atol=1e-9)


def test_infos_carry_rig_motion_and_boxes_with_velocity(data):
    meta, infos = load_infos(data.validation_infos)
    assert meta["cameras"] == list(C.RIG) and meta["classes"] == ["vehicle", "pedestrian", "cyclist"]
    assert meta["image_sizes"]["FRONT"] == (192, 128) and meta["image_sizes"]["SIDE_LEFT"] == (192, 89)
    (_, segment, index), = [s for s in F.fixture_segments(data.config) if s[0] == "validation"]
    world = F.segment_world(data.config, index)
    for n, info in enumerate(infos):
        t = n * 0.1
        e2g = world.ego2global(t)
        np.testing.assert_allclose(info["ego2global"], e2g, atol=1e-9)
        if n:
            expected = np.linalg.inv(e2g) @ world.ego2global(t - 0.1)
            np.testing.assert_allclose(info["prev2curr"], expected, atol=1e-9)
        assert info["context_name"] == segment and info["timestamp"] == F.frame_time_us(data.config, index, n)
        # Every GT box is the world's object in this vehicle frame, velocity rotated into it.
        c, s = e2g[0, 0], e2g[1, 0]
        for box, object_id in zip(info["gt_boxes"], info["instance_tokens"]):
            obj = world.boxes_at(t)[int(object_id.split("-")[1])]
            centre = np.linalg.inv(e2g) @ np.append(obj[:3], 1.0)
            np.testing.assert_allclose(box[:3], centre[:3], atol=1e-6)
            np.testing.assert_allclose(box[3:6], obj[3:6], atol=1e-9)
            np.testing.assert_allclose(box[7:9], [c * obj[7] + s * obj[8], -s * obj[7] + c * obj[8]], atol=1e-9)


def test_a_box_projected_through_our_matrices_lands_on_its_rendered_object(data):
    _, infos = load_infos(data.validation_infos)
    (_, _, index), = [s for s in F.fixture_segments(data.config) if s[0] == "validation"]
    world = F.segment_world(data.config, index)
    checked = 0
    for n, info in enumerate(infos[:2]):
        solids, _, _ = _solids(world, n * 0.1)
        for camera in ("FRONT", "SIDE_LEFT"):
            entry = info["cams"][camera]
            # The renderer's own id and depth maps, from the fixture's OpenCV camera (independent of the Waymo
            # calibration path that the infos went through).
            _, depth_map, ids, _ = render_camera(world, solids, F.camera_intrinsics(data.config, camera),
                                                 world.ego2global(n * 0.1) @ F.camera_cam2ego(camera),
                                                 entry["image_size"])
            image = np.asarray(Image.open(data.root / entry["data_path"]).convert("RGB"))
            assert image.shape[:2] == ids.shape
            uv, depth = project_points(entry["ego2img"], info["gt_boxes"][:, :3])
            w, h = entry["image_size"]
            for k, object_id in enumerate(info["instance_tokens"]):
                u, v = uv[k]
                if not (depth[k] > 1.0 and 0 <= u < w and 0 <= v < h):
                    continue
                half_diagonal = np.linalg.norm(info["gt_boxes"][k, 3:6]) / 2
                if depth_map[int(v), int(u)] < depth[k] - half_diagonal - 0.5:
                    continue  # hidden behind a nearer object at that pixel
                assert ids[int(v), int(u)] == int(object_id.split("-")[1]), (camera, object_id)
                checked += 1
    assert checked >= 4


def test_interval_and_resume(data, tmp_path):
    out = tmp_path / "every2"
    path = create_waymo_infos(data.root, "validation", out, interval=2, workers=1, progress=False)
    _, infos = load_infos(path)
    assert [i["frame_index"] for i in infos] == [0, 1]
    stamps = [i["timestamp"] for i in infos]
    assert stamps[1] - stamps[0] == 200_000
    assert infos[1]["prev"] == infos[0]["token"] and infos[0]["next"] == infos[1]["token"]
    for info in infos:
        for entry in info["cams"].values():
            assert (out / entry["data_path"]).is_file()
    shard = next((out / "shards").rglob("*.pkl"))
    stamp = shard.stat().st_mtime_ns
    os.remove(path)
    create_waymo_infos(data.root, "validation", out, interval=2, progress=False)
    assert shard.stat().st_mtime_ns == stamp  # the finished segment was kept, not rebuilt
    assert load_infos(path)[1][1]["token"] == infos[1]["token"]


def test_testing_split_has_no_boxes(data, tmp_path):
    shutil.copytree(data.root / "validation", tmp_path / "testing")
    for component in (S.LIDAR_BOX, S.SYNCED_BOX):
        shutil.rmtree(tmp_path / "testing" / component)
    _, infos = load_infos(create_waymo_infos(tmp_path, "testing", progress=False))
    assert all(len(i["gt_boxes"]) == 0 for i in infos)


def test_missing_component_and_column_are_named(data, tmp_path):
    split_dir = tmp_path / "validation"
    shutil.copytree(data.root / "validation", split_dir)
    segment = R.list_segments(split_dir)[0]
    os.remove(R.component_path(split_dir, S.CAMERA_CALIBRATION, segment))
    with pytest.raises(R.WaymoDataError, match=f"camera_calibration/{segment}.parquet does not exist"):
        R.read_calibrations(split_dir, segment)
    table = pq.read_table(R.component_path(split_dir, S.VEHICLE_POSE, segment)).drop_columns([S.WORLD_FROM_VEHICLE])
    pq.write_table(table, R.component_path(split_dir, S.VEHICLE_POSE, segment))
    with pytest.raises(R.WaymoDataError, match="lacks column"):
        R.read_vehicle_poses(split_dir, segment)
    with pytest.raises(R.WaymoDataError, match="no vehicle_pose"):
        R.list_segments(tmp_path)
