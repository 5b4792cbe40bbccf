"""The synthetic world, checked through the nuScenes devkit and hand-computed geometry."""

from __future__ import annotations

import json

import numpy as np
import pytest
from nuscenes.utils.data_classes import LidarPointCloud
from nuscenes.utils.geometry_utils import points_in_box
from nuscenes.utils.splits import create_splits_scenes
from PIL import Image

from perception.structures.classes import DETECTION_CLASSES, NUSCENES_CATEGORY_TO_DETECTION, OCC3D_CLASSES

from .helpers import colour_matches, unoccluded_boxes


def test_devkit_loads_world_with_mini_splits(nusc, synthetic_world):
    splits = create_splits_scenes()
    names = [s["name"] for s in nusc.scene]
    assert len(names) == 2 and names[0] in splits["mini_train"] and names[1] in splits["mini_val"]
    assert len(nusc.sample) == 12
    for sample in nusc.sample:
        assert set(sample["data"]) == {
            "CAM_FRONT",
            "CAM_FRONT_RIGHT",
            "CAM_FRONT_LEFT",
            "CAM_BACK",
            "CAM_BACK_LEFT",
            "CAM_BACK_RIGHT",
            "LIDAR_TOP",
        }
    cats = {
        NUSCENES_CATEGORY_TO_DETECTION[nusc.get("category", i["category_token"])["name"]]
        for i in nusc.instance
    }
    assert cats == set(DETECTION_CLASSES)  # every detection class appears
    # Every file the tables name exists and images have the declared size.
    for sd in nusc.sample_data:
        path = synthetic_world.root / sd["filename"]
        assert path.exists(), path
        if sd["fileformat"] == "jpg":
            assert Image.open(path).size == (sd["width"], sd["height"]) == synthetic_world.image_size


def test_devkit_velocity_is_real_motion(nusc):
    speeds = [np.linalg.norm(nusc.box_velocity(a["token"])[:2]) for a in nusc.sample_annotation]
    moving = [a for a, s in zip(nusc.sample_annotation, speeds) if s > 1.0]
    assert len(moving) > 20
    for ann in moving[:10]:
        attrs = [nusc.get("attribute", t)["name"] for t in ann["attribute_tokens"]]
        assert attrs and attrs[0] in ("vehicle.moving", "pedestrian.moving", "cycle.with_rider")


def test_generation_is_deterministic(tmp_path):
    from perception.data.synthetic import WorldConfig, generate_world

    outs = []
    for name in ("a", "b"):
        generate_world(
            WorldConfig(
                str(tmp_path / name),
                seed=3,
                num_scenes=1,
                samples_per_scene=2,
                image_size=(64, 36),
                workers=1,
            ),
            progress=False,
        )
        outs.append(tmp_path / name)
    for table in ("sample_annotation", "ego_pose", "sample_data"):
        assert (outs[0] / "v1.0-mini" / f"{table}.json").read_bytes() == (
            outs[1] / "v1.0-mini" / f"{table}.json"
        ).read_bytes()
    img = sorted((outs[0] / "samples" / "CAM_FRONT").iterdir())[0].name
    assert (outs[0] / "samples/CAM_FRONT" / img).read_bytes() == (
        outs[1] / "samples/CAM_FRONT" / img
    ).read_bytes()


def test_projected_boxes_land_on_rendered_objects(nusc, synthetic_world):
    """For an unoccluded annotated box of each camera, the devkit's projection of its centre lands on a
    pixel of the object's class colour."""
    from perception.data.synthetic.world import CLASS_COLORS

    checked, agree = 0, 0
    for sample in nusc.sample[::3]:
        for channel in ("CAM_FRONT", "CAM_FRONT_LEFT", "CAM_FRONT_RIGHT", "CAM_BACK", "CAM_BACK_LEFT"):
            path, found = unoccluded_boxes(nusc, sample["data"][channel])
            if not found:
                continue
            box, uv = found[0]
            colour = np.asarray(Image.open(path))[int(uv[1]), int(uv[0])]
            cls = NUSCENES_CATEGORY_TO_DETECTION[box.name]
            checked += 1
            agree += colour_matches(colour, CLASS_COLORS[cls])
    assert checked >= 8
    assert agree >= 0.9 * checked, (agree, checked)


def test_lidar_point_counts_match_devkit_points_in_box(nusc, synthetic_world):
    sample = nusc.sample[4]
    sd = nusc.get("sample_data", sample["data"]["LIDAR_TOP"])
    cloud = LidarPointCloud.from_file(str(synthetic_world.root / sd["filename"]))
    # The devkit's chain: sensor -> ego -> global.
    from pyquaternion import Quaternion

    cs = nusc.get("calibrated_sensor", sd["calibrated_sensor_token"])
    pose = nusc.get("ego_pose", sd["ego_pose_token"])
    cloud.rotate(Quaternion(cs["rotation"]).rotation_matrix)
    cloud.translate(np.array(cs["translation"]))
    cloud.rotate(Quaternion(pose["rotation"]).rotation_matrix)
    cloud.translate(np.array(pose["translation"]))
    assert cloud.points.shape[1] > 5000
    with_points = 0
    for ann_token in sample["anns"]:
        ann = nusc.get("sample_annotation", ann_token)
        count = int(points_in_box(nusc.get_box(ann_token), cloud.points[:3], wlh_factor=1.02).sum())
        assert abs(count - ann["num_lidar_pts"]) <= max(2, 0.05 * count), (ann["num_lidar_pts"], count)
        with_points += count > 0
    assert with_points >= 5


def _load_occ(root, scene_name, token):
    return np.load(root / "gts" / scene_name / token / "labels.npz")


def test_occupancy_agrees_with_objects_and_road(nusc, synthetic_world):
    from perception.data.infos import load_infos

    _, infos = load_infos(synthetic_world.val_infos)
    info = infos[3]
    occ = _load_occ(synthetic_world.root, info["scene_name"], info["token"])
    sem = occ["semantics"]
    assert sem.shape == occ["mask_camera"].shape == occ["mask_lidar"].shape == (200, 200, 16)
    assert sem.dtype == np.uint8

    # Voxel of a point p: floor((p - (-40, -40, -1)) / 0.4) (Occ3D layout, ego frame).
    def voxel(p):
        return tuple(np.floor((np.asarray(p) - [-40, -40, -1]) / 0.4).astype(int))

    # The ego drives on the road: the ground voxel under it is driveable surface, 2 m above is free.
    assert OCC3D_CLASSES[sem[voxel([0.1, 0.1, 0.0])]] == "driveable_surface"
    assert OCC3D_CLASSES[sem[voxel([0.1, 0.1, 2.0])]] == "free"
    # Every GT box centre inside the grid carries the box's class.
    hits = 0
    for box, name in zip(info["gt_boxes"], info["gt_names"]):
        if np.all(np.abs(box[:2]) < 39) and box[5] > 0.8:
            assert OCC3D_CLASSES[sem[voxel(box[:3])]] == name, (name, box)
            hits += 1
    assert hits >= 3
    # Camera mask: the road just ahead is seen; voxels under the ground never are.
    assert occ["mask_camera"][voxel([8.0, 0.0, 0.0])] == 1
    assert occ["mask_camera"][:, :, 0].sum() == 0
    assert occ["mask_lidar"].sum() > occ["mask_camera"].sum() * 0.2


def test_lane_centerlines_follow_the_road(synthetic_world):
    from perception.data.infos import load_infos

    _, infos = load_infos(synthetic_world.val_infos)
    info = infos[2]
    frame = json.loads((synthetic_world.root / info["openlane_path"]).read_text())
    ann = frame["annotation"]
    occ = _load_occ(synthetic_world.root, info["scene_name"], info["token"])["semantics"]
    lanes = [np.array(lane["points"]) for lane in ann["lane_centerline"]]
    assert len(lanes) >= 8
    # Hand truth: the ego drives on the centre of the second lane from the right (lanes 3.5 m wide), on a
    # straight road, so lane centres sit at y = -3.5, 0, 3.5, 7 m and the two right lanes run towards +x.
    for pts in lanes:
        # OpenLane-V2 ground truth: 201 points, here evenly spaced along a 25 m lane segment.
        assert pts.shape == (201, 3)
        assert (np.abs(pts[:, 0]) <= 50).all() and (np.abs(pts[:, 1]) <= 25).all()  # inside the ego range
        assert np.allclose(np.linalg.norm(np.diff(pts, axis=0), axis=1), 25.0 / 200, atol=1e-4)
        y = pts[:, 1]
        assert np.ptp(y) < 1e-3 and min(abs(y[0] - c) for c in (-3.5, 0.0, 3.5, 7.0)) < 1e-3
        direction = np.sign(pts[-1, 0] - pts[0, 0])
        assert direction == (1 if y[0] < 1 else -1)
        inside = np.all(np.abs(pts[:, :2]) < 39.8, axis=1)
        idx = np.floor((pts[inside] - [-40, -40, -1]) / 0.4).astype(int)
        assert all(OCC3D_CLASSES[c] == "driveable_surface" for c in occ[idx[:, 0], idx[:, 1], idx[:, 2]])
    # Lane-lane topology: i -> j exactly when i ends where j starts.
    lclc = np.array(ann["topology_lclc"])
    for i, a in enumerate(lanes):
        for j, b in enumerate(lanes):
            assert lclc[i, j] == (np.linalg.norm(a[-1] - b[0]) < 1e-3)
    assert lclc.sum() >= 4
    lcte = np.array(ann["topology_lcte"]).reshape(len(lanes), len(ann["traffic_element"]))
    w, h = synthetic_world.image_size
    for te in ann["traffic_element"]:
        (x1, y1), (x2, y2) = te["points"]
        assert 0 <= x1 < x2 <= w and 0 <= y1 < y2 <= h
        assert te["category"] in (1, 2)
    assert lcte.shape[1] == len(ann["traffic_element"])


@pytest.mark.parametrize("scenes", [0, 11])
def test_bad_scene_count_is_rejected(scenes):
    from perception.data.synthetic import scene_names

    with pytest.raises(ValueError, match="--scenes"):
        scene_names(scenes)


def test_create_data_synthetic_cli(tmp_path):
    from tests.tool_loader import load_tool

    tool = load_tool("create_data")
    out = tmp_path / "world"
    args = [
        "synthetic",
        "--out",
        str(out),
        "--scenes",
        "3",
        "--samples-per-scene",
        "2",
        "--image-size",
        "64",
        "36",
    ]
    assert tool.main(args) == 0
    from nuscenes.nuscenes import NuScenes

    nusc = NuScenes("v1.0-mini", str(out), verbose=False)
    splits = create_splits_scenes()
    names = [s["name"] for s in nusc.scene]
    assert (
        sum(n in splits["mini_train"] for n in names) == 2
        and sum(n in splits["mini_val"] for n in names) == 1
    )
    assert (out / "nuscenes_infos_train.pkl").exists() and (out / "nuscenes_infos_val.pkl").exists()
