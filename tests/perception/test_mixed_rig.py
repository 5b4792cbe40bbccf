"""A camera rig of 5 cameras in two image sizes (Waymo-like), end to end through the BEV data layer:
info file -> dataset -> per-camera resize/crop/flip -> BEV augmentation -> padding -> collation, with
each camera's projection of a known 3D point landing on a marker drawn at that point's native pixel.
Also: label types open for extension, and label errors that say what is missing."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from PIL import Image

from perception.data import (
    LABEL_TYPES,
    BEVDataset,
    ImageLoadError,
    LabelLoadError,
    LabelType,
    LaneLoadError,
    OccupancyLoadError,
    bev_collate,
)
from perception.data.infos import load_infos, save_infos
from perception.data.labels import CameraImageTransform
from perception.structures.cameras import compose_ego2img, project_points
from perception.structures.transforms import make_transform

NAMES = ("FRONT", "FRONT_LEFT", "FRONT_RIGHT", "SIDE_LEFT", "SIDE_RIGHT")
YAWS = (0.0, 45.0, -45.0, 90.0, -90.0)
BIG, SMALL = ("FRONT", "FRONT_LEFT"), ("FRONT_RIGHT", "SIDE_LEFT", "SIDE_RIGHT")
# Native (w, h) per camera: rig A as in the issue; rig B another resolution of the same cameras.
RIG_A = {n: (192, 128) if n in BIG else (192, 88) for n in NAMES}
RIG_B = {n: (256, 160) if n in BIG else (256, 112) for n in NAMES}
# Output sizes per camera group; the groups differ in output width, so their resize factors differ.
FINAL_A = {n: (176, 112) if n in BIG else (144, 64) for n in NAMES}
FINAL_B = {n: (224, 144) if n in BIG else (192, 80) for n in NAMES}
DEPTH = 12.0
DARK, BRIGHT = 30, 255


def camera_to_ego(yaw_deg: float) -> np.ndarray:
    """OpenCV camera axes (x right, y down, z forward) looking along ``yaw`` (ego frame), 2 m up."""
    yaw = np.deg2rad(yaw_deg)
    forward = np.array([np.cos(yaw), np.sin(yaw), 0.0])
    right = np.array([np.sin(yaw), -np.cos(yaw), 0.0])
    return make_transform(np.stack([right, [0.0, 0.0, -1.0], forward], 1), (1.5, 0.0, 2.0))


def write_rig(root, sizes: dict, num_samples: int = 2) -> tuple:
    """PNG images with a bright marker per camera and an info file (rig in the metadata). Returns the
    info path and, per camera, the ego-frame point whose projection the marker is drawn at."""
    root.mkdir(parents=True, exist_ok=True)
    points, cams = {}, {}
    for c, name in enumerate(NAMES):
        w, h = sizes[name]
        intrinsics = np.array([[0.55 * w, 0, w / 2], [0, 0.55 * w, h / 2], [0, 0, 1.0]])
        cam2ego = camera_to_ego(YAWS[c])
        u0, v0 = w * (0.35 + 0.07 * c) + 0.3, h * 0.62 + 0.4  # different per camera: order matters
        p_cam = DEPTH * np.linalg.inv(intrinsics) @ np.array([u0, v0, 1.0])
        points[name] = cam2ego[:3, :3] @ p_cam + cam2ego[:3, 3]
        uv, _ = project_points(compose_ego2img(intrinsics, cam2ego), points[name][None])
        assert np.allclose(uv[0], [u0, v0])
        img = np.full((h, w, 3), DARK, np.uint8)
        iu, iv = int(u0), int(v0)
        img[iv - 4 : iv + 5, iu - 4 : iu + 5] = BRIGHT
        rel = f"samples/{name}/marker_{w}x{h}.png"
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(root / rel)
        cams[name] = dict(
            data_path=rel,
            sample_data_token=f"sd-{name}",
            timestamp=0,
            image_size=(w, h),
            intrinsics=intrinsics,
            cam2ego=cam2ego,
            sensor2ego=cam2ego,
            cam_ego2global=np.eye(4),
            ego2img=compose_ego2img(intrinsics, cam2ego),
            lidar2img=compose_ego2img(intrinsics, cam2ego),
        )
    infos = []
    tokens = [f"{root.name}-s{k}" for k in range(num_samples)]
    for k, token in enumerate(tokens):
        ego2global = make_transform(np.eye(3), (2.0 * k, 0.0, 0.0))
        prev2curr = np.eye(4) if k == 0 else np.linalg.inv(ego2global) @ infos[-1]["ego2global"]
        infos.append(
            dict(
                token=token,
                scene_token="scene",
                scene_name="scene",
                frame_index=k,
                timestamp=1_000_000 * k,
                prev=tokens[k - 1] if k else "",
                next=tokens[k + 1] if k + 1 < num_samples else "",
                ego2global=ego2global,
                prev2curr=prev2curr,
                lidar_path="",
                lidar2ego=np.eye(4),
                cams={n: dict(cams[n]) for n in NAMES},
                gt_boxes=np.array([[10.0, 1.0, 0.8, 1.9, 4.5, 1.6, 0.3, 1.0, 0.0]]),
                gt_names=np.array(["car"], dtype=object),
                gt_labels=np.array([0]),
                valid_flag=np.array([True]),
                occ_path=f"gts/scene/{token}/labels.npz",
                openlane_path=None,
                rig_points=np.array([[8.0, 2.0, 0.5], [15.0, -3.0, 1.0], [20.0, 0.5, 1.5]]),
            )
        )
    path = save_infos(infos, root / "infos.pkl", "rig-test", "val")
    return path, points


@pytest.fixture(scope="module")
def rigs(tmp_path_factory):
    base = tmp_path_factory.mktemp("mixed_rig")
    return {name: write_rig(base / name, sizes) for name, sizes in (("a", RIG_A), ("b", RIG_B))}


def pipeline(final_size, flip_prob: float, seed: int, resize: bool = True) -> list[dict]:
    steps = [dict(type="LoadMultiViewImages", num_workers=2)]
    if resize:
        steps.append(
            dict(type="ResizeCropFlipImage", final_size=final_size, scale_range=(0.9, 1.1), flip_prob=flip_prob,
                 seed=seed)
        )
    return steps + [
        dict(type="BEVAugmentation", rotation_range=(-0.4, 0.4), scale_range=(0.95, 1.05), seed=seed + 100),
        dict(type="NormalizeMultiViewImages"),
        dict(type="PadMultiViewImages", size_divisor=32),
        dict(type="PackBEVInputs"),
    ]


def test_info_file_describes_the_rig(rigs):
    meta, infos = load_infos(rigs["a"][0])
    assert meta["format_version"] == 2 and meta["cameras"] == list(NAMES)
    assert meta["image_sizes"] == RIG_A
    ds = BEVDataset(str(rigs["a"][0]), str(rigs["a"][0].parent))
    assert ds.cameras == NAMES and ds.metainfo["image_sizes"] == RIG_A
    from perception.engine.registry import DATASETS

    assert DATASETS.get("BEVDataset") is BEVDataset and DATASETS.get("NuScenesBEVDataset") is BEVDataset


def check_markers(batch: dict, points_per_sample: list[dict]) -> int:
    """Every camera of every frame: the BEV-augmented point, projected with the collated ego2img, lies
    inside the camera's valid region on a bright pixel; the padding around the valid region is zero."""
    checked = 0
    B, T, N = batch["img"].shape[:3]
    for b in range(B):
        bev = batch["ego"]["bev_aug"][b].double()
        for t in range(T):
            for c, name in enumerate(NAMES):
                p = torch.as_tensor(points_per_sample[b][name])
                p_aug = bev[:3, :3] @ p + bev[:3, 3]
                uv, depth = project_points(batch["cams"]["ego2img"][b, t, c].double(), p_aug[None])
                u, v = uv[0].tolist()
                rows, cols = batch["cams"]["valid_hw"][b, t, c].tolist()
                assert depth[0] > 0 and 0 <= u < cols and 0 <= v < rows, (b, t, name, u, v, rows, cols)
                img = batch["img"][b, t, c]
                assert float(img[:, int(v), int(u)].min()) > 1.5, (b, t, name, img[:, int(v), int(u)])
                assert float(img[:, :rows, :cols].mean()) < 0  # dark apart from the marker
                assert not img[:, rows:].any() and not img[:, :, cols:].any()
                checked += 1
    return checked


@pytest.mark.parametrize("seed", [0, 1])
def test_mixed_rig_projection_lands_on_the_marker_after_padding_and_collation(rigs, seed):
    (path_a, points_a), (path_b, points_b) = rigs["a"], rigs["b"]
    a = BEVDataset(str(path_a), str(path_a.parent), pipeline(FINAL_A, 1.0, seed), num_frames=2)
    b = BEVDataset(str(path_b), str(path_b.parent), pipeline(FINAL_B, 0.0, seed), num_frames=2)
    native = BEVDataset(str(path_a), str(path_a.parent), pipeline(None, 0.0, seed, resize=False), num_frames=2)
    sa, sb, sn = a[1], b[1], native[0]
    # One sample: every camera padded to the sample's common size; valid regions per camera group.
    for sample, final in ((sa, FINAL_A), (sb, FINAL_B)):
        expected = torch.tensor([[final[n][1], final[n][0]] for n in NAMES])
        assert sample["cams"]["valid_hw"].dtype == torch.int64
        assert torch.equal(sample["cams"]["valid_hw"], expected.expand(2, -1, -1))
        big_w, big_h = final["FRONT"]
        assert sample["cams"]["img_shape"] == (big_h, big_w)  # the largest valid size
        assert sample["cams"]["pad_shape"] == tuple(sample["img"].shape[-2:])
        assert sample["cams"]["pad_shape"] == (-(-big_h // 32) * 32, -(-big_w // 32) * 32)
    assert sn["cams"]["valid_hw"][0].tolist() == [[h, w] for w, h in RIG_A.values()]
    # Per-camera resize factors: the side group covers its narrower output in the front's proportion.
    front, side = sa["cams"]["img_aug"][-1, 0], sa["cams"]["img_aug"][-1, 3]
    assert float(front[0, 0]) < 0 and float(side[0, 0]) < 0  # rig A: always flipped
    ratio = float(side[1, 1] / front[1, 1])
    assert ratio == pytest.approx((144 / 192) / (176 / 192), abs=0.02)
    # Collation across samples of different native (and padded) sizes.
    batch = bev_collate([sa, sb, sn])
    assert batch["img"].shape == (3, 2, 5, 3, 160, 224)
    assert batch["cams"]["pad_shape"] == batch["img"].shape[-2:]
    assert batch["cams"]["valid_hw"].shape == (3, 2, 5, 2)
    assert batch["cams"]["img_shape"] == [(112, 176), (144, 224), (128, 192)]
    assert check_markers(batch, [points_a, points_b, points_a]) == 3 * 2 * 5
    # Two samples of one rig: as well.
    assert check_markers(bev_collate([a[0], a[1]]), [points_a, points_a]) == 2 * 2 * 5


def test_per_camera_resize_matrices_and_front_camera_labels():
    """Cameras of different native widths: each camera's matrix from its own size; traffic elements follow
    the front camera's transform, per-camera 2D boxes their own camera's."""
    from perception.data.transforms_bev import ResizeCropFlipImage

    def results():
        frame = dict(
            imgs=[np.zeros((128, 192, 3), np.uint8), np.zeros((88, 160, 3), np.uint8)],
            img_aug=np.tile(np.eye(4), (2, 1, 1)),
            ego2img=np.tile(np.eye(4), (2, 1, 1)),
            intrinsics=np.tile(np.eye(3), (2, 1, 1)),
        )
        return dict(
            cameras=["FRONT", "SIDE"],
            frames=[frame],
            traffic_elements=np.array([[10.0, 20.0, 50.0, 60.0]]),
            traffic_element_labels=np.array([1]),
            gt_boxes_2d=[np.array([[0.0, 0.0, 40.0, 30.0]]), np.array([[100.0, 10.0, 150.0, 80.0]])],
            gt_labels_2d=[np.array([2]), np.array([3])],
        )

    final = {"FRONT": (192, 128), "SIDE": (96, 52)}
    out = ResizeCropFlipImage(final, scale_range=(0.8, 0.8), training=False)(results())
    frame = out["frames"][0]
    assert [img.shape[:2] for img in frame["imgs"]] == [(128, 192), (52, 96)]
    # FRONT: 0.8 of 192 x 128 = 154 x 102 (rounded); SIDE: 0.8 * (96 / 160) = 0.48 -> 77 x 42.
    np.testing.assert_array_equal(np.diag(frame["img_aug"][0]), [154 / 192, 102 / 128, 1, 1])
    np.testing.assert_array_equal(np.diag(frame["img_aug"][1]), [77 / 160, 42 / 88, 1, 1])
    np.testing.assert_array_equal(frame["img_aug"][:, :2, 2], 0)  # smaller than the output: no crop
    np.testing.assert_array_equal(frame["ego2img"], frame["img_aug"])
    sx, sy = 154 / 192, 102 / 128
    np.testing.assert_allclose(out["traffic_elements"], [[10 * sx, 20 * sy, 50 * sx, 60 * sy]])
    np.testing.assert_allclose(out["gt_boxes_2d"][0], [[0, 0, 40 * 154 / 192, 30 * 102 / 128]])
    np.testing.assert_allclose(out["gt_boxes_2d"][1], [[100 * 77 / 160, 10 * 42 / 88, 150 * 77 / 160, 80 * 42 / 88]])
    flipped = ResizeCropFlipImage(final, scale_range=(0.8, 0.8), flip_prob=1.0, seed=0)(results())
    assert flipped["frames"][0]["img_aug"][1][0, 0] == pytest.approx(-77 / 160)
    np.testing.assert_allclose(flipped["traffic_elements"][0, [0, 2]], [192 - 50 * 154 / 192, 192 - 10 * 154 / 192])
    with pytest.raises(ValueError, match="no size for camera 'SIDE'"):
        ResizeCropFlipImage({"FRONT": (96, 64)})(results())


def test_missing_occupancy_raises_occupancy_load_error_naming_the_sample(rigs, tmp_path):
    path, _ = rigs["a"]
    ds = BEVDataset(str(path), str(path.parent), labels=("boxes", "occupancy"))
    token = ds.infos[0]["token"]
    with pytest.raises(OccupancyLoadError, match=rf"labels\.npz of sample {token} does not exist") as err:
        ds[0]
    assert isinstance(err.value, LabelLoadError) and not isinstance(err.value, ImageLoadError)
    assert str(path.parent / ds.infos[0]["occ_path"]) in str(err.value)
    # A corrupt file is named too, through the dataset and through the LoadOccupancy transform.
    corrupt = path.parent / ds.infos[0]["occ_path"]
    corrupt.parent.mkdir(parents=True, exist_ok=True)
    corrupt.write_bytes(b"not a zip")
    try:
        with pytest.raises(OccupancyLoadError, match=f"{re.escape(corrupt.name)} of sample {token} is corrupt"):
            ds[0]
        plain = BEVDataset(str(path), str(path.parent), [dict(type="LoadOccupancy")])
        with pytest.raises(OccupancyLoadError, match=f"of sample {token} is corrupt"):
            plain[0]
    finally:
        corrupt.unlink()
    lanes = BEVDataset(str(path), str(path.parent), labels=("lanes",))
    with pytest.raises(LaneLoadError, match=f"sample {token} has no lane labels"):
        lanes[0]
    with pytest.raises(KeyError, match="unknown label type 'nope'"):
        BEVDataset(str(path), str(path.parent), labels=("nope",))


@pytest.fixture
def points_label_type():
    """A label type a new task would add in its own file: ego-frame points plus their front-camera pixels."""
    from perception.data.labels import base

    @LABEL_TYPES.register_module(name="test_rig_points", force=True)
    class RigPoints(LabelType):
        keys = ("gt_rig_points", "gt_rig_pixels")
        stack_keys = keys

        def load(self, results, info, data_root):
            points = np.asarray(info["rig_points"], dtype=np.float64)
            front = info["cams"][results["cameras"][0]]["ego2img"]
            results["gt_rig_points"] = points
            results["gt_rig_pixels"] = project_points(front, points)[0]

        def bev_transform(self, results, mat):
            results["gt_rig_points"] = results["gt_rig_points"] @ mat[:3, :3].T + mat[:3, 3]

        def image_transform(self, results, transforms: dict[str, CameraImageTransform]):
            results["gt_rig_pixels"] = transforms[results["cameras"][0]].points(results["gt_rig_pixels"])

    yield RigPoints
    LABEL_TYPES.module_dict.pop("test_rig_points", None)
    base._DEFAULTS.pop(RigPoints, None)


def test_new_label_type_flows_through_load_transforms_pack_and_collate(rigs, points_label_type):
    path, _ = rigs["a"]
    ds = BEVDataset(str(path), str(path.parent), pipeline(FINAL_A, 0.5, 3), labels=("boxes", "test_rig_points"))
    batch = bev_collate([ds[0], ds[1]])
    assert batch["gt_rig_points"].shape == (2, 3, 3) and batch["gt_rig_points"].dtype == torch.float32
    assert batch["gt_rig_pixels"].shape == (2, 3, 2)
    assert isinstance(batch["gt_boxes"], list) and len(batch["gt_boxes"]) == 2
    raw = torch.as_tensor(ds.infos[0]["rig_points"])
    for b in range(2):
        bev = batch["ego"]["bev_aug"][b].double()
        moved = raw @ bev[:3, :3].T + bev[:3, 3]
        np.testing.assert_allclose(batch["gt_rig_points"][b].double(), moved, atol=1e-5)
        # The pixels followed the front camera's image transform: they match the final projection.
        uv, _ = project_points(batch["cams"]["ego2img"][b, -1, 0].double(), moved)
        np.testing.assert_allclose(batch["gt_rig_pixels"][b].double(), uv, atol=1e-3)
    # Registered types are found by the sample's keys, also when a transform (not the dataset) added them.
    plain = BEVDataset(str(path), str(path.parent))
    results = plain.get_data_info(0)
    results["gt_rig_points"] = np.zeros((3, 3))
    from perception.data.transforms_bev import apply_bev_transform

    mat = np.diag([1.0, -1.0, 1.0, 1.0])
    results["gt_rig_points"][:, 1] = 2.0
    results.update(gt_rig_pixels=np.zeros((3, 2)))
    apply_bev_transform(results, mat)
    np.testing.assert_allclose(results["gt_rig_points"][:, 1], -2.0)
