"""Info files: geometry against the devkit, resumability, clear errors, foreign-format converters."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest
from nuscenes.utils.geometry_utils import view_points
from pyquaternion import Quaternion

from perception.data.infos import (
    INFO_FORMAT_VERSION,
    InfoFileError,
    convert_bevformer_infos,
    convert_mmdet3d_v1_infos,
    create_nuscenes_infos,
    load_infos,
    save_infos,
)
from perception.structures import CAMERA_NAMES, project_points


def test_infos_cover_the_splits_in_time_order(synthetic_world, nusc):
    meta, infos = load_infos(synthetic_world.val_infos)
    assert meta["format_version"] == INFO_FORMAT_VERSION and meta["version"] == "v1.0-mini"
    assert [i["frame_index"] for i in infos] == list(range(6))
    assert [i["timestamp"] for i in infos] == sorted(i["timestamp"] for i in infos)
    assert infos[0]["prev"] == "" and infos[1]["prev"] == infos[0]["token"]
    np.testing.assert_allclose(infos[0]["prev2curr"], np.eye(4))
    assert list(infos[0]["cams"]) == list(CAMERA_NAMES)


def test_ego2img_matches_devkit_projection(synthetic_world, nusc):
    _, infos = load_infos(synthetic_world.train_infos)
    info = infos[2]
    for cam in CAMERA_NAMES:
        _, boxes, intrinsic = nusc.get_sample_data(info["cams"][cam]["sample_data_token"])
        by_token = {b.token: b for b in boxes}
        for box_ego, token in zip(info["gt_boxes"], info["ann_tokens"]):
            if token not in by_token or by_token[token].center[2] < 1:
                continue
            truth = view_points(by_token[token].center[:, None], intrinsic, normalize=True)[:2, 0]
            uv, depth = project_points(info["cams"][cam]["ego2img"], box_ego[None, :3])
            np.testing.assert_allclose(uv[0], truth, atol=1e-6)
            assert depth[0] == pytest.approx(by_token[token].center[2])


def test_prev2curr_carries_static_objects(synthetic_world, nusc):
    _, infos = load_infos(synthetic_world.val_infos)
    prev, curr = infos[2], infos[3]
    static = {
        t: b
        for t, b, n in zip(prev["instance_tokens"], prev["gt_boxes"], prev["gt_names"])
        if np.hypot(*b[7:9]) < 1e-6
    }
    checked = 0
    for token, box in zip(curr["instance_tokens"], curr["gt_boxes"]):
        if token in static:
            moved = curr["prev2curr"]  # previous ego -> current ego
            p = moved[:3, :3] @ static[token][:3] + moved[:3, 3]
            np.testing.assert_allclose(p, box[:3], atol=1e-6)
            checked += 1
    assert checked >= 3


def test_infos_are_resumable(synthetic_world, tmp_path, nusc):
    out = tmp_path / "infos"
    create_nuscenes_infos(
        str(synthetic_world.root), "v1.0-mini", str(out), workers=1, progress=False, nusc=nusc
    )
    shards = sorted((out / "shards" / "v1.0-mini").iterdir())
    assert len(shards) == 2
    os.utime(shards[0], (0, 0))  # mark the first shard as old; it must not be rewritten
    shards[1].unlink()
    create_nuscenes_infos(
        str(synthetic_world.root), "v1.0-mini", str(out), workers=1, progress=False, nusc=nusc
    )
    assert shards[0].stat().st_mtime == 0 and shards[1].exists()
    a, b = load_infos(out / "nuscenes_infos_val.pkl")[1], load_infos(synthetic_world.val_infos)[1]
    assert [i["token"] for i in a] == [i["token"] for i in b]


def test_truncated_missing_and_foreign_files_are_rejected(synthetic_world, tmp_path):
    data = synthetic_world.val_infos.read_bytes()
    truncated = tmp_path / "truncated.pkl"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(InfoFileError, match="truncated.pkl is truncated"):
        load_infos(truncated)
    with pytest.raises(InfoFileError, match="does not exist"):
        load_infos(tmp_path / "nope.pkl")
    _, infos = load_infos(synthetic_world.val_infos)
    old = tmp_path / "old.pkl"
    old.write_bytes(
        pickle.dumps(dict(metadata=dict(format="perception.nuscenes_infos", format_version=0), infos=[]))
    )
    with pytest.raises(InfoFileError, match="version 0"):
        load_infos(old)
    broken = [dict(i) for i in infos]
    broken[1] = dict(broken[1], cams={k: broken[1]["cams"][k] for k in reversed(CAMERA_NAMES)})
    save_infos(broken, tmp_path / "order.pkl", "v1.0-mini", "val")
    with pytest.raises(InfoFileError, match=f"sample {infos[1]['token']} has cameras"):
        load_infos(tmp_path / "order.pkl")
    broken = [dict(i) for i in infos]
    broken[3] = dict(broken[3], gt_boxes=broken[3]["gt_boxes"][:, :7])  # mmdet3d-style 7-column boxes
    save_infos(broken, tmp_path / "boxes.pkl", "v1.0-mini", "val")
    with pytest.raises(InfoFileError, match=f"sample {infos[3]['token']} gt_boxes must be"):
        load_infos(tmp_path / "boxes.pkl")
    broken = [dict(i) for i in infos]
    broken[0] = dict(broken[0], ego2global=np.eye(3))
    save_infos(broken, tmp_path / "pose.pkl", "v1.0-mini", "val")
    with pytest.raises(InfoFileError, match="ego2global must be a finite 4x4"):
        load_infos(tmp_path / "pose.pkl")
    broken = [dict(i) for i in infos]
    broken[2] = dict(broken[2], gt_labels=broken[2]["gt_labels"][:-1])
    save_infos(broken, tmp_path / "labels.pkl", "v1.0-mini", "val")
    with pytest.raises(InfoFileError, match="labels"):
        load_infos(tmp_path / "labels.pkl")


# -- converters: hand-built dicts in the other formats, with hand-computed ego-frame truth -----------------
LIDAR2EGO_T = [0.94, 0.0, 1.84]
LIDAR2EGO_Q = Quaternion(axis=[0, 0, 1], angle=-np.pi / 2)  # LiDAR x right, y forward
# A car 10 m ahead of the ego (ego x = 10 + 0.94 from the LiDAR origin), 2 m left, heading +30 deg
# from ego +x, driving 5 m/s forward along ego +x. In the LiDAR frame (x = -y_ego, y = x_ego):
EGO_TRUTH = np.array([10.94, 2.0, 1.84 - 0.8, 1.9, 4.5, 1.6, np.deg2rad(30), 5.0, 0.0])
LIDAR_CENTRE = [-2.0, 10.0, -0.8]
LIDAR_YAW = np.deg2rad(30) + np.pi / 2  # native yaw in the LiDAR frame
LIDAR_VEL = [0.0, 5.0]


def _camera_block(intrinsic_key: str):
    cams = {}
    for name in CAMERA_NAMES:
        cams[name] = {intrinsic_key: np.diag([500.0, 500.0, 1.0]).tolist()}
    return cams


def test_convert_mmdet3d_v1_infos():
    lidar2ego = np.eye(4)
    lidar2ego[:3, :3] = LIDAR2EGO_Q.rotation_matrix
    lidar2ego[:3, 3] = LIDAR2EGO_T
    images = {}
    for name in CAMERA_NAMES:
        images[name] = dict(
            img_path=f"samples/{name}/x.jpg",
            cam2img=np.diag([500.0, 500.0, 1.0]).tolist(),
            cam2ego=np.eye(4).tolist(),
            sample_data_token=name,
            timestamp=1.5,
        )
    item = dict(
        token="s0",
        timestamp=1.5,
        ego2global=np.eye(4).tolist(),
        images=images,
        lidar_points=dict(lidar_path="x.bin", lidar2ego=lidar2ego.tolist(), num_pts_feats=5),
        instances=[
            dict(
                bbox_3d=[*LIDAR_CENTRE, 4.5, 1.9, 1.6, LIDAR_YAW],
                bbox_label_3d=0,
                velocity=LIDAR_VEL,
                num_lidar_pts=3,
                num_radar_pts=0,
                bbox_3d_isvalid=True,
            )
        ],
    )
    data = dict(
        metainfo=dict(categories={c: i for i, c in enumerate(["car", "truck"])}, version="v1.0-mini"),
        data_list=[item, dict(item, token="s1")],
    )
    _, infos = load_infos_from(convert_mmdet3d_v1_infos(data))
    np.testing.assert_allclose(infos[0]["gt_boxes"][0], EGO_TRUTH, atol=1e-9)
    assert infos[0]["gt_names"][0] == "car" and infos[1]["prev"] == "s0" and infos[1]["frame_index"] == 1
    assert infos[0]["cams"]["CAM_BACK"]["data_path"] == "samples/CAM_BACK/x.jpg"


def test_convert_bevformer_infos():
    cams = {}
    for name in CAMERA_NAMES:
        cams[name] = dict(
            data_path=f"./data/nuscenes/samples/{name}/x.jpg",
            cam_intrinsic=np.diag([500.0, 500, 1]),
            sensor2ego_translation=[1.0, 0, 1.5],
            sensor2ego_rotation=[0.5, -0.5, 0.5, -0.5],
            ego2global_translation=[0, 0, 0],
            ego2global_rotation=[1, 0, 0, 0],
            sample_data_token=name,
            timestamp=0,
        )
    item = dict(
        token="s0",
        prev="",
        next="",
        scene_token="sc",
        frame_idx=0,
        timestamp=0,
        lidar_path="x.bin",
        lidar2ego_translation=LIDAR2EGO_T,
        lidar2ego_rotation=list(LIDAR2EGO_Q.elements),
        ego2global_translation=[0, 0, 0],
        ego2global_rotation=[1, 0, 0, 0],
        cams=cams,
        gt_boxes=np.array([[*LIDAR_CENTRE, 1.9, 4.5, 1.6, -LIDAR_YAW - np.pi / 2]]),
        gt_names=np.array(["car"]),
        gt_velocity=np.array([LIDAR_VEL]),
        num_lidar_pts=np.array([4]),
        num_radar_pts=np.array([0]),
        valid_flag=np.array([True]),
    )
    _, infos = load_infos_from(
        convert_bevformer_infos(dict(infos=[item], metadata=dict(version="v1.0-trainval")))
    )
    box = infos[0]["gt_boxes"][0]
    np.testing.assert_allclose(box[:6], EGO_TRUTH[:6], atol=1e-9)
    assert np.angle(np.exp(1j * (box[6] - EGO_TRUTH[6]))) == pytest.approx(0, abs=1e-9)
    np.testing.assert_allclose(box[7:], EGO_TRUTH[7:], atol=1e-9)
    assert infos[0]["cams"]["CAM_FRONT"]["data_path"] == "samples/CAM_FRONT/x.jpg"
    # The camera (OpenCV axes, looking along ego +x) sees a point 10 m ahead at the image centre.
    uv, _ = project_points(infos[0]["cams"]["CAM_FRONT"]["ego2img"], np.array([[11.0, 0.0, 1.5]]))
    np.testing.assert_allclose(uv[0], [0.0, 0.0], atol=1e-9)


def load_infos_from(data):
    from perception.data.infos import validate_infos

    return validate_infos(data)


def test_create_data_cli_builds_infos(synthetic_world, tmp_path):
    from tests.tool_loader import load_tool

    tool = load_tool("create_data")
    assert (
        tool.main(
            [
                "nuscenes",
                "--root",
                str(synthetic_world.root),
                "--version",
                "v1.0-mini",
                "--out",
                str(tmp_path),
                "--workers",
                "2",
            ]
        )
        == 0
    )
    meta, infos = load_infos(tmp_path / "nuscenes_infos_train.pkl")
    assert meta["split"] == "train" and len(infos) == 6
    with pytest.raises(SystemExit):
        tool.main(["nuscenes", "--root", str(tmp_path), "--version", "v1.0-trainval", "--out", str(tmp_path)])


# -- the rig in the metadata -------------------------------------------------------------------------------
def test_infos_describe_their_rig(synthetic_world):
    meta, _ = load_infos(synthetic_world.val_infos)
    assert meta["cameras"] == list(CAMERA_NAMES)
    assert meta["image_sizes"] == {c: synthetic_world.image_size for c in CAMERA_NAMES}


def test_rig_camera_order_from_the_sensor_table():
    from types import SimpleNamespace

    from perception.data.infos import rig_cameras

    def table(channels):
        return SimpleNamespace(sensor=[dict(channel=c, modality="camera") for c in channels]
                               + [dict(channel="LIDAR_TOP", modality="lidar")])

    assert rig_cameras(table(sorted(CAMERA_NAMES))) == list(CAMERA_NAMES)  # nuScenes order
    waymo = ["FRONT", "FRONT_LEFT", "SIDE_LEFT", "FRONT_RIGHT", "SIDE_RIGHT"]
    assert rig_cameras(table(waymo)) == waymo  # otherwise the table's order


def test_version_1_files_load_with_the_rig_of_their_first_sample(synthetic_world, tmp_path):
    data = pickle.loads(synthetic_world.val_infos.read_bytes())
    for key in ("cameras", "image_sizes"):
        del data["metadata"][key]
    data["metadata"]["format_version"] = 1
    old = tmp_path / "v1.pkl"
    old.write_bytes(pickle.dumps(data))
    meta, infos = load_infos(old)
    assert meta["format_version"] == 1 and meta["cameras"] == list(CAMERA_NAMES)
    assert meta["image_sizes"] == {c: synthetic_world.image_size for c in CAMERA_NAMES}
    from perception.data import BEVDataset

    ds = BEVDataset(str(old), str(synthetic_world.root), [dict(type="LoadMultiViewImages")])
    assert len(ds[0]["frames"][0]["imgs"]) == 6
    data["metadata"]["format_version"] = 2  # version 2 must carry the rig
    (tmp_path / "v2.pkl").write_bytes(pickle.dumps(data))
    with pytest.raises(InfoFileError, match="metadata lacks the rig"):
        load_infos(tmp_path / "v2.pkl")


def test_samples_are_checked_against_the_rig(synthetic_world, tmp_path):
    _, infos = load_infos(synthetic_world.val_infos)
    broken = [dict(i) for i in infos]
    broken[2] = dict(broken[2], cams={k: v for k, v in broken[2]["cams"].items() if k != "CAM_BACK_LEFT"})
    path = save_infos(broken, tmp_path / "missing_cam.pkl", "v1.0-mini", "val")
    token = infos[2]["token"]
    with pytest.raises(InfoFileError, match=rf"missing_cam\.pkl: sample {token} .*lacks camera.*CAM_BACK_LEFT"):
        load_infos(path)
    broken = [dict(i) for i in infos]
    cams = dict(broken[4]["cams"])
    cams["CAM_FRONT"] = dict(cams["CAM_FRONT"], image_size=(120, 68))
    broken[4] = dict(broken[4], cams=cams)
    path = save_infos(broken, tmp_path / "size.pkl", "v1.0-mini", "val")
    with pytest.raises(InfoFileError, match=rf"size\.pkl: sample {infos[4]['token']} camera CAM_FRONT has image_size"):
        load_infos(path)
    # A rig other than nuScenes' is fine when every sample follows it.
    five = [dict(i, cams={k: i["cams"][k] for k in list(CAMERA_NAMES)[:5]}) for i in infos]
    meta, _ = load_infos(save_infos(five, tmp_path / "five.pkl", "v1.0-mini", "val"))
    assert meta["cameras"] == list(CAMERA_NAMES)[:5]


def test_converters_describe_their_rig():
    data = dict(metainfo=dict(version="v1.0-mini"), data_list=[dict(
        token="s0", timestamp=1.0, ego2global=np.eye(4).tolist(), lidar_points=dict(lidar_path="x.bin"),
        images={n: dict(img_path=f"{n}.jpg", cam2img=np.eye(3).tolist(), cam2ego=np.eye(4).tolist(), width=800,
                        height=450) for n in reversed(CAMERA_NAMES)},
        instances=[])])
    meta, infos = load_infos_from(convert_mmdet3d_v1_infos(data))
    assert meta["cameras"] == list(CAMERA_NAMES) and list(infos[0]["cams"]) == list(CAMERA_NAMES)
    assert meta["image_sizes"]["CAM_BACK"] == (800, 450)


def test_parallel_workers_report_a_failing_scene_without_pickling_the_devkit(tmp_path):
    """Workers are fork-started processes whose target closes over the devkit object (never pickled)."""

    class Devkit:
        sensor = [dict(channel=c, modality="camera") for c in CAMERA_NAMES]
        scene = [dict(name="scene-0061", token="t0"), dict(name="scene-0103", token="t1")]

        def __reduce__(self):
            raise AssertionError("the devkit object must not be pickled")

        def get(self, table, token):
            raise ValueError(f"no {table} {token}")

    with pytest.raises(RuntimeError, match=r"(?s)scene-0\d+\.pkl failed.*ValueError: no scene t\d"):
        create_nuscenes_infos("unused", "v1.0-mini", str(tmp_path), workers=2, progress=False, nusc=Devkit())
    assert not list((tmp_path / "shards" / "v1.0-mini").glob("*.pkl"))
