"""The BEV dataset and pipeline: sample contract, temporal queue, augmentation consistency, errors."""

from __future__ import annotations

import re
import shutil

import numpy as np
import pytest
import torch
from pyquaternion import Quaternion

from perception.data import ImageLoadError, NuScenesBEVDataset, bev_collate
from perception.data.infos import load_infos
from perception.structures import CAMERA_NAMES, project_points
from perception.structures.classes import DETECTION_CLASSES

from .helpers import colour_matches, unoccluded_boxes

LOAD = [dict(type="LoadMultiViewImages")]
PACK = [dict(type="NormalizeMultiViewImages"), dict(type="PadMultiViewImages"), dict(type="PackBEVInputs")]


def make_dataset(world, pipeline, split="val", **kwargs):
    infos = world.val_infos if split == "val" else world.train_infos
    return NuScenesBEVDataset(str(infos), str(world.root), pipeline, **kwargs)


def test_sample_dict_contract(synthetic_world):
    ds = make_dataset(synthetic_world, LOAD + [dict(type="LoadOccupancy"), dict(type="LoadLanes")] + PACK)
    s = ds[2]
    w, h = synthetic_world.image_size
    assert s["img"].shape == (1, 6, 3, 160, 256)  # 135 x 240 padded to multiples of 32
    assert s["cams"]["img_shape"] == (h, w) and s["cams"]["pad_shape"] == (160, 256)
    for key, shape in (("intrinsics", (1, 6, 3, 3)), ("cam2ego", (1, 6, 4, 4)), ("ego2img", (1, 6, 4, 4))):
        assert s["cams"][key].shape == shape and s["cams"][key].dtype == torch.float32
    assert s["ego"]["ego2global"].shape == (1, 4, 4) and s["ego"]["history_valid"].tolist() == [True]
    assert s["gt_boxes"].shape[1] == 9 and len(s["gt_boxes"]) == len(s["gt_labels"]) > 0
    assert s["gt_labels"].max() < len(DETECTION_CLASSES)
    assert s["occ_semantics"].shape == (200, 200, 16) and s["occ_semantics"].dtype == torch.uint8
    assert s["lanes"].shape[1:] == (11, 3) and s["topology_lane_lane"].shape == (len(s["lanes"]),) * 2
    # 2D boxes are no longer derived from the 3D boxes (the perspective head projects them itself).
    assert "gt_boxes_2d" not in s
    assert s["cams"]["valid_hw"].shape == (1, 6, 2) and s["cams"]["valid_hw"].dtype == torch.int64
    assert s["cams"]["valid_hw"].tolist() == [[[h, w]] * 6]
    # Normalised with ImageNet statistics; the padding is zero.
    assert abs(float(s["img"][0, 0, :, :h, :w].mean())) < 2.5 and float(s["img"][..., h:, :].abs().max()) == 0
    assert s["meta"]["sample_token"] == ds.infos[2]["token"] and s["meta"]["frame_index"] == 2


def test_temporal_queue_resets_at_scene_start(synthetic_world, nusc):
    ds = make_dataset(synthetic_world, LOAD + PACK, num_frames=3)
    first, second, fourth = ds[0], ds[1], ds[3]
    assert first["ego"]["history_valid"].tolist() == [False, False, True]
    assert second["ego"]["history_valid"].tolist() == [False, True, True]
    assert fourth["ego"]["history_valid"].tolist() == [True, True, True]
    tokens = [i["token"] for i in ds.infos]
    assert fourth["meta"]["frame_tokens"] == tokens[1:4]
    assert second["meta"]["frame_tokens"] == [tokens[0], tokens[0], tokens[1]]
    assert torch.equal(first["img"][0], first["img"][2])  # missing slots repeat the nearest frame

    # prev2curr from the devkit's ego poses: inv(E_current) @ E_t.
    def ego_pose(token):
        sd = nusc.get("sample_data", nusc.get("sample", token)["data"]["LIDAR_TOP"])
        pose = nusc.get("ego_pose", sd["ego_pose_token"])
        m = np.eye(4)
        m[:3, :3], m[:3, 3] = Quaternion(pose["rotation"]).rotation_matrix, pose["translation"]
        return m

    for t, token in enumerate(tokens[1:4]):
        truth = np.linalg.inv(ego_pose(tokens[3])) @ ego_pose(token)
        np.testing.assert_allclose(fourth["ego"]["prev2curr"][t].double().numpy(), truth, atol=1e-4)
    # The train infos start a different scene: no history leaks across the boundary.
    other = make_dataset(synthetic_world, LOAD + PACK, split="train", num_frames=2)
    assert other[0]["ego"]["history_valid"].tolist() == [False, True]


def _pixel_truth(nusc, info, cam):
    path, found = unoccluded_boxes(nusc, info["cams"][cam]["sample_data_token"])
    return {b.token: (b, uv) for b, uv in found if b.center[2] < 25}  # near enough to cover several pixels


@pytest.mark.parametrize("flip", [False, True])
def test_image_and_bev_augmentation_keep_projection_consistent(synthetic_world, nusc, flip):
    from perception.data.synthetic.world import CLASS_COLORS

    aug = [
        dict(
            type="ResizeCropFlipImage",
            final_size=(216, 104),
            scale_range=(0.9, 0.9),
            flip_prob=float(flip),
            seed=1,
        ),
        dict(
            type="BEVAugmentation",
            rotation_range=(0.4, 0.4),
            scale_range=(1.1, 1.1),
            flip_x_prob=float(flip),
            flip_y_prob=1.0,
            seed=2,
        ),
    ]
    plain = make_dataset(synthetic_world, LOAD + [dict(type="PackBEVInputs")], filter_invalid=False)
    augmented = make_dataset(synthetic_world, LOAD + aug + [dict(type="PackBEVInputs")], filter_invalid=False)
    checked = agree = 0
    for idx in (0, 3):
        info = plain.infos[idx]
        a, b = plain[idx], augmented[idx]
        # Exact: the augmented box, projected by the augmented matrix, lands where the image transform puts
        # the original projection.
        for c in range(6):
            uv0, d0 = project_points(a["cams"]["ego2img"][0, c].double(), a["gt_boxes"][:, :3].double())
            uv1, d1 = project_points(b["cams"]["ego2img"][0, c].double(), b["gt_boxes"][:, :3].double())
            front = d0 > 0.5
            # Resize 240 x 135 -> 216 x 122 (rounded), keep the bottom 104 rows, mirror u -> 216 - u.
            expected = uv0[front] * torch.tensor([216 / 240, 122 / 135], dtype=torch.float64)
            expected[:, 1] -= 122 - 104
            if flip:
                expected[:, 0] = 216 - expected[:, 0]
            np.testing.assert_allclose(uv1[front].numpy(), expected.numpy(), atol=1e-3, rtol=1e-5)
        # Pixels: unoccluded annotated boxes (devkit truth) show their class colour where projected.
        token_index = {t: i for i, t in enumerate(info["ann_tokens"])}
        for c, cam in enumerate(CAMERA_NAMES):
            for ann_token in _pixel_truth(nusc, info, cam):
                i = token_index[ann_token]
                uv, depth = project_points(
                    b["cams"]["ego2img"][0, c].double(), b["gt_boxes"][i : i + 1, :3].double()
                )
                u, v = uv[0].tolist()
                if not (1 <= u < 215 and 1 <= v < 103):
                    continue
                pixel = b["img"][0, c, :, int(v), int(u)].numpy()
                checked += 1
                cls = DETECTION_CLASSES[int(b["gt_labels"][i])]
                agree += colour_matches(pixel, CLASS_COLORS[cls])
    assert checked >= 5 and agree >= 0.85 * checked, (agree, checked)


def test_bev_flip_moves_occupancy_with_boxes(synthetic_world):
    pipe = LOAD + [
        dict(type="LoadOccupancy"),
        dict(
            type="BEVAugmentation",
            rotation_range=(0, 0),
            scale_range=(1, 1),
            flip_x_prob=0.0,
            flip_y_prob=1.0,
            seed=0,
        ),
        dict(type="PackBEVInputs"),
    ]
    plain = make_dataset(synthetic_world, LOAD + [dict(type="LoadOccupancy"), dict(type="PackBEVInputs")])
    flipped = make_dataset(synthetic_world, pipe)
    a, b = plain[2], flipped[2]
    # Mirroring y maps voxel column j to 199 - j (the grid is symmetric about y = 0).
    assert torch.equal(b["occ_semantics"], a["occ_semantics"].flip(1))
    np.testing.assert_allclose(b["gt_boxes"][:, 1], -a["gt_boxes"][:, 1], atol=1e-5)
    np.testing.assert_allclose(np.sin(b["gt_boxes"][:, 6]), -np.sin(a["gt_boxes"][:, 6]), atol=1e-5)
    np.testing.assert_allclose(b["gt_boxes"][:, 8], -a["gt_boxes"][:, 8], atol=1e-5)


def test_photometric_augmentation_changes_pixels_not_geometry(synthetic_world):
    plain = make_dataset(synthetic_world, LOAD + [dict(type="PackBEVInputs")])
    jitter = make_dataset(
        synthetic_world,
        LOAD + [dict(type="PhotometricAugmentation", prob=1.0, seed=0), dict(type="PackBEVInputs")],
    )
    a, b = plain[1], jitter[1]
    assert not torch.equal(a["img"], b["img"])
    for key in ("ego2img", "intrinsics", "cam2ego"):
        assert torch.equal(a["cams"][key], b["cams"][key])


def test_collate_batches_variable_box_counts(synthetic_world):
    ds = make_dataset(synthetic_world, LOAD + PACK, num_frames=2)
    batch = bev_collate([ds[0], ds[4]])
    assert batch["img"].shape == (2, 2, 6, 3, 160, 256)
    assert batch["cams"]["ego2img"].shape == (2, 2, 6, 4, 4) and batch["ego"]["history_valid"].shape == (2, 2)
    assert isinstance(batch["gt_boxes"], list) and [len(b) for b in batch["gt_boxes"]] == [
        len(ds[0]["gt_boxes"]),
        len(ds[4]["gt_boxes"]),
    ]
    assert len(batch["meta"]) == 2 and "gt_boxes_2d" not in batch
    assert batch["cams"]["pad_shape"] == batch["img"].shape[-2:] == (160, 256)
    assert batch["cams"]["valid_hw"].shape == (2, 2, 6, 2)
    other = make_dataset(
        synthetic_world, LOAD + [dict(type="ResizeCropFlipImage", final_size=(96, 64))] + PACK, num_frames=2
    )
    # Samples of different sizes are zero-padded bottom/right to the batch's size instead of refused.
    small = other[0]
    mixed = bev_collate([small, ds[0]])
    assert mixed["img"].shape == (2, 2, 6, 3, 160, 256) and mixed["cams"]["pad_shape"] == (160, 256)
    assert torch.equal(mixed["img"][0, ..., :64, :96], small["img"][..., :64, :96])
    assert float(mixed["img"][0, ..., 64:, :].abs().max()) == 0
    assert float(mixed["img"][0, ..., 96:].abs().max()) == 0
    assert (mixed["cams"]["valid_hw"][0] == torch.tensor([64, 96])).all()
    assert (mixed["cams"]["valid_hw"][1] == torch.tensor([135, 240])).all()
    assert mixed["cams"]["img_shape"] == [(64, 96), (135, 240)]
    from mmengine.registry import FUNCTIONS

    loader = torch.utils.data.DataLoader(ds, batch_size=2, collate_fn=FUNCTIONS.get("bev_collate"))
    assert next(iter(loader))["img"].shape[0] == 2


def test_dataset_builds_from_config(synthetic_world):
    from perception.engine.registry import DATASETS

    ds = DATASETS.build(
        dict(
            type="NuScenesBEVDataset",
            ann_file=str(synthetic_world.val_infos),
            data_root=str(synthetic_world.root),
            pipeline=LOAD + PACK,
            num_frames=1,
        )
    )
    assert len(ds) == 6 and ds[0]["img"].shape[:2] == (1, 6)


def test_missing_and_corrupt_images_name_file_and_sample(synthetic_world, tmp_path):
    root = tmp_path / "world"
    shutil.copytree(synthetic_world.root, root, ignore=shutil.ignore_patterns("gts", "shards", "openlane_v2"))
    _, infos = load_infos(synthetic_world.val_infos)
    ds = NuScenesBEVDataset(str(synthetic_world.val_infos), str(root), LOAD)
    missing = root / infos[1]["cams"]["CAM_BACK"]["data_path"]
    missing.unlink()
    with pytest.raises(
        ImageLoadError, match=f"{re.escape(missing.name)}.*sample {infos[1]['token']}.*does not exist"
    ):
        ds[1]
    corrupt = root / infos[2]["cams"]["CAM_FRONT_LEFT"]["data_path"]
    corrupt.write_bytes(b"\xff\xd8 not a jpeg")
    with pytest.raises(
        ImageLoadError, match=f"{re.escape(corrupt.name)}.*sample {infos[2]['token']}.*corrupt"
    ):
        ds[2]


def test_random_transforms_differ_between_loader_workers(synthetic_world):
    pipe = LOAD + [dict(type="BEVAugmentation", seed=3), dict(type="PackBEVInputs", with_boxes_2d=False)]
    ds = make_dataset(synthetic_world, pipe)
    loader = torch.utils.data.DataLoader(
        torch.utils.data.Subset(ds, [0, 0]), batch_size=1, num_workers=2, collate_fn=bev_collate
    )
    augs = [b["ego"]["bev_aug"][0] for b in loader]
    assert not torch.allclose(augs[0], augs[1])  # same sample, different workers -> different draws
    again = [b["ego"]["bev_aug"][0] for b in loader]
    assert all(torch.equal(a, b) for a, b in zip(augs, again))  # seeded: reproducible per worker


def test_missing_occupancy_and_lane_labels_name_the_sample(synthetic_world):
    from perception.data import LaneLoadError, OccupancyLoadError
    from perception.data.transforms_bev import LoadLanes, LoadOccupancy

    ds = make_dataset(synthetic_world, [])
    results = ds.get_data_info(0)
    results.update(occ_path=None, openlane_path=None)
    with pytest.raises(OccupancyLoadError, match=f"sample {ds.infos[0]['token']} has no occupancy"):
        LoadOccupancy()(results)
    with pytest.raises(LaneLoadError, match=f"sample {ds.infos[0]['token']} has no lane"):
        LoadLanes()(results)


def _occupancy_results(semantics):
    return dict(frames=[], bev_aug=np.eye(4), occ_semantics=semantics.copy(),
                occ_mask_camera=semantics != 17, occ_mask_lidar=np.ones_like(semantics, dtype=bool))


def test_occupancy_follows_a_quarter_turn_exactly():
    # A 90-degree turn maps the Occ3D voxel centres (symmetric about the ego origin in x and y) onto
    # voxel centres: new (x, y) = (-y, x), i.e. new[i, j] = old[j, 199 - i], which is np.rot90.
    from perception.data.transforms_bev import apply_bev_transform
    from perception.structures.boxes import bev_aug_matrix

    rng = np.random.default_rng(0)
    semantics = rng.integers(0, 18, (200, 200, 16)).astype(np.uint8)
    out = apply_bev_transform(_occupancy_results(semantics), bev_aug_matrix(rotation=np.pi / 2))
    assert np.array_equal(out["occ_semantics"], np.rot90(semantics, k=1, axes=(0, 1)))
    assert np.array_equal(out["occ_mask_camera"], np.rot90(semantics != 17, k=1, axes=(0, 1)))


def test_occupancy_follows_a_scale_about_the_ego():
    # One car voxel, index (110, 105, 7): x in [4.0, 4.4), y in [2.0, 2.4), z in [1.8, 2.2) m. Scaled
    # by 1.37 about the ego it covers x in [5.48, 6.03), y in [2.74, 3.29), z in [2.47, 3.01). With
    # nearest-neighbour resampling a voxel is car when its centre lies there: the only such centre is
    # (5.8, 3.0, 2.8), voxel (114, 107, 9) (x centres are -39.8 + 0.4 i, z centres -0.8 + 0.4 k).
    from perception.data.transforms_bev import apply_bev_transform
    from perception.structures.boxes import bev_aug_matrix

    semantics = np.full((200, 200, 16), 17, np.uint8)
    semantics[110, 105, 7] = 4
    out = apply_bev_transform(_occupancy_results(semantics), bev_aug_matrix(scale=1.37))
    cars = {tuple(int(v) for v in i) for i in np.argwhere(out["occ_semantics"] == 4)}
    assert cars == {(114, 107, 9)}


def test_occupancy_resampling_matches_a_voxel_by_voxel_lookup():
    # Against a plain loop over the voxels of a small grid: each voxel centre mapped back through the
    # inverse transform, its source voxel's value or free/False outside. The BEV augmentation's
    # transforms (the separable path) and a tilted one that mixes z with x (the general path).
    from perception.data.labels.occupancy import resample_occupancy
    from perception.structures.bev_grid import BEVGrid
    from perception.structures.boxes import bev_aug_matrix

    grid = BEVGrid(x_range=(-2.0, 2.4), y_range=(-1.6, 1.6), z_range=(-0.8, 0.8), resolution=0.4)
    shape = grid.voxel_shape  # (11, 8, 4)
    rng = np.random.default_rng(3)
    semantics = rng.integers(0, 18, shape).astype(np.uint8)
    tilt = np.eye(4)
    tilt[:3, :3] = [[np.cos(0.3), 0.0, np.sin(0.3)], [0.0, 1.0, 0.0], [-np.sin(0.3), 0.0, np.cos(0.3)]]
    tilt[:3, 3] = (0.3, -0.2, 0.1)
    for mat in (bev_aug_matrix(0.37, 1.04), bev_aug_matrix(np.pi - 0.2, 0.95, flip_x=True), tilt):
        inv = np.linalg.inv(mat)
        out = _occupancy_results(semantics)
        resample_occupancy(out, inv, grid)
        expected = np.full(shape, 17, np.uint8)
        for i, j, k in np.ndindex(shape):
            centre = np.array([grid.x_range[0] + (i + 0.5) * 0.4, grid.y_range[0] + (j + 0.5) * 0.4,
                               grid.z_range[0] + (k + 0.5) * 0.4, 1.0])
            src = np.floor(((inv @ centre)[:3] - (grid.x_range[0], grid.y_range[0], grid.z_range[0])) / 0.4)
            if all(0 <= s < n for s, n in zip(src, shape)):
                expected[i, j, k] = semantics[tuple(int(s) for s in src)]
        assert np.array_equal(out["occ_semantics"], expected)
        assert np.array_equal(out["occ_mask_camera"], expected != 17)
        assert out["occ_semantics"].dtype == np.uint8 and out["occ_mask_lidar"].dtype == bool


def test_half_turn_keeps_handedness_and_the_random_stream():
    # A half turn maps (x, y, yaw, vx, vy) to (-x, -y, yaw + pi, -vx, -vy), turns the occupancy grid by
    # 180 degrees (np.rot90 twice) and, unlike a mirror, keeps the frame right-handed (det +1).
    from perception.data.transforms_bev import BEVAugmentation
    from perception.structures.boxes import bev_aug_matrix

    box = np.array([[10.0, 3.0, 0.5, 1.9, 4.5, 1.6, 0.25, 6.0, -1.0]])
    rng = np.random.default_rng(0)
    semantics = rng.integers(0, 18, (200, 200, 16)).astype(np.uint8)
    results = _occupancy_results(semantics)
    results.update(gt_boxes=box.copy(), gt_labels=np.zeros(1, np.int64))
    turn = BEVAugmentation(rotation_range=(0.0, 0.0), scale_range=(1.0, 1.0), flip_x_prob=0.0, flip_y_prob=0.0,
                           half_turn_prob=1.0, seed=0)
    out = turn(results)
    assert np.allclose(out["bev_aug"], np.diag([-1.0, -1.0, 1.0, 1.0]), atol=1e-12)
    assert np.linalg.det(out["bev_aug"][:3, :3]) == pytest.approx(1.0)
    assert np.array_equal(out["occ_semantics"], np.rot90(semantics, k=2, axes=(0, 1)))
    turned = out["gt_boxes"][0]
    assert np.allclose(turned[[0, 1, 2, 3, 4, 5, 7, 8]], [-10.0, -3.0, 0.5, 1.9, 4.5, 1.6, -6.0, 1.0], atol=1e-9)
    assert np.allclose([np.cos(turned[6]), np.sin(turned[6])], [np.cos(0.25 + np.pi), np.sin(0.25 + np.pi)], atol=1e-9)
    with pytest.raises(ValueError, match="half_turn_prob must be in"):
        BEVAugmentation(half_turn_prob=1.5)
    # Without it (the default 0) the draws are those of the transform before the option existed:
    # rotation, scale, flip x, flip y from the same stream.
    plain, stream = BEVAugmentation(seed=7), np.random.default_rng([7, 0])  # seed, worker 0 (main process)
    matrix = plain(_occupancy_results(semantics))["bev_aug"]
    expected = bev_aug_matrix(stream.uniform(-0.3925, 0.3925), stream.uniform(0.95, 1.05), bool(stream.random() < 0.5),
                              bool(stream.random() < 0.5))
    assert np.allclose(matrix, expected, atol=1e-12)
