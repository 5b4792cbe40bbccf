"""Multi-camera, multi-frame transforms for BEV tasks (registered in TRANSFORMS).

A transform takes and returns the ``results`` dict built by :class:`NuScenesBEVDataset`:

* ``frames``: T dicts (oldest first, current last), each with ``token``, ``valid``, ``img_paths`` (Ncam),
  ``imgs`` (Ncam arrays H x W x 3, uint8 until normalised), ``intrinsics`` (Ncam, 3, 3), ``cam2ego``
  (Ncam, 4, 4), ``ego2img`` (Ncam, 4, 4), ``img_aug`` (Ncam, 4, 4), ``ego2global`` (4, 4), ``prev2curr``
  (4, 4: this frame's ego -> the current ego);
* ``bev_aug`` (4, 4) and the current frame's ground truth (``gt_boxes`` (N, 9), ``gt_labels``, optional
  occupancy and lane labels).

Geometry is never changed on its own: an image transform updates the pixels *and* folds its matrix into
``ego2img``/``intrinsics``/``img_aug``; a BEV transform moves boxes, lanes, occupancy and every frame's
ego-side matrices together.
"""

from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageEnhance

from perception.engine.registry import TRANSFORMS
from perception.structures.bev_grid import OCC3D_GRID, BEVGrid
from perception.structures.boxes import affine_transform_boxes, bev_aug_matrix, box_corners
from perception.structures.cameras import image_aug_matrix, project_points
from perception.structures.classes import OCC_FREE

IMAGENET_MEAN = (123.675, 116.28, 103.53)
IMAGENET_STD = (58.395, 57.12, 57.375)


class RandomTransform:
    """Random state per process: DataLoader workers are forked copies, so each draws its own stream
    (``seed`` + worker id when a seed is given, fresh entropy otherwise) instead of repeating the parent's."""

    seed: int | None = None
    _rng: np.random.Generator | None = None
    _rng_pid: int | None = None

    @property
    def rng(self) -> np.random.Generator:
        if self._rng is None or self._rng_pid != os.getpid():
            info = torch.utils.data.get_worker_info()
            worker = info.id if info is not None else 0
            self._rng = np.random.default_rng(None if self.seed is None else [self.seed, worker])
            self._rng_pid = os.getpid()
        return self._rng


class ImageLoadError(RuntimeError):
    """An input image is missing or unreadable (the message names the file and the sample token)."""


def _read_image(path: str, token: str) -> np.ndarray:
    if not Path(path).exists():
        raise ImageLoadError(f"image {path} of sample {token} does not exist")
    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"))
    except Exception as err:  # PIL raises several types for corrupt files
        raise ImageLoadError(f"image {path} of sample {token} is corrupt or unreadable: {err}") from err


@TRANSFORMS.register_module()
class LoadMultiViewImages:
    """Read every camera image of every frame (RGB uint8) with a thread pool."""

    def __init__(self, num_workers: int = 6) -> None:
        self.num_workers = num_workers
        self._pool: ThreadPoolExecutor | None = None

    def __call__(self, results: dict) -> dict:
        if self._pool is None:  # created lazily so the transform pickles into DataLoader workers
            self._pool = ThreadPoolExecutor(self.num_workers, thread_name_prefix="load_images")
        jobs = [
            (f, path, frame["token"])
            for f, frame in enumerate(results["frames"])
            for path in frame["img_paths"]
        ]
        images = list(self._pool.map(lambda job: _read_image(job[1], job[2]), jobs))
        k = 0
        for frame in results["frames"]:
            n = len(frame["img_paths"])
            frame["imgs"] = images[k : k + n]
            k += n
        return results

    def __getstate__(self):
        return dict(self.__dict__, _pool=None)


@TRANSFORMS.register_module()
class LoadOccupancy:
    """Occ3D ``labels.npz`` -> ``occ_semantics`` / ``occ_mask_camera`` / ``occ_mask_lidar`` (200, 200, 16)."""

    def __call__(self, results: dict) -> dict:
        path = results.get("occ_path")
        if path is None:
            raise ImageLoadError(
                f"sample {results['sample_token']} has no occupancy labels (occ_path is None)"
            )
        try:
            with np.load(path) as data:
                results["occ_semantics"] = data["semantics"].astype(np.uint8)
                results["occ_mask_camera"] = data["mask_camera"].astype(bool)
                results["occ_mask_lidar"] = data["mask_lidar"].astype(bool)
        except Exception as err:
            raise ImageLoadError(
                f"occupancy file {path} of sample {results['sample_token']} is unreadable: {err}"
            ) from err
        return results


@TRANSFORMS.register_module()
class LoadLanes:
    """OpenLane-V2 frame json -> ``lanes`` (L, P, 3), ``traffic_elements`` (K, 4) front-camera pixels,
    ``traffic_element_labels`` (K,) attribute, ``topology_lane_lane`` (L, L), ``topology_lane_te`` (L, K)."""

    def __call__(self, results: dict) -> dict:
        path = results.get("openlane_path")
        if path is None:
            raise ImageLoadError(
                f"sample {results['sample_token']} has no lane labels (openlane_path is None)"
            )
        ann = json.loads(Path(path).read_text())["annotation"]
        lanes = [np.asarray(lane["points"], dtype=np.float64) for lane in ann["lane_centerline"]]
        results["lanes"] = np.stack(lanes) if lanes else np.zeros((0, 11, 3))
        tes = ann["traffic_element"]
        results["traffic_elements"] = np.array(
            [np.ravel(t["points"]) for t in tes], dtype=np.float64
        ).reshape(-1, 4)
        results["traffic_element_labels"] = np.array([t["attribute"] for t in tes], dtype=np.int64)
        results["topology_lane_lane"] = np.array(ann["topology_lclc"], dtype=np.float32).reshape(
            len(lanes), len(lanes)
        )
        results["topology_lane_te"] = np.array(ann["topology_lcte"], dtype=np.float32).reshape(
            len(lanes), len(tes)
        )
        return results


@TRANSFORMS.register_module()
class ResizeCropFlipImage(RandomTransform):
    """Resize by a scale drawn from ``scale_range``, crop to ``final_size`` (w, h) (bottom-aligned like
    BEVDet, random horizontal offset in training, centred otherwise), optionally flip. The same draw is
    used for all cameras and frames; every matrix is updated with it."""

    def __init__(
        self,
        final_size: tuple[int, int],
        scale_range: tuple[float, float] = (1.0, 1.0),
        flip_prob: float = 0.0,
        training: bool = True,
        seed: int | None = None,
    ) -> None:
        self.final_size = tuple(final_size)
        self.scale_range, self.flip_prob, self.training = scale_range, flip_prob, training
        self.seed = seed

    def draw(self, width: int, height: int) -> tuple[tuple[int, int], tuple[int, int], bool]:
        """Resized size (w, h), crop offset (x0, y0) and flip."""
        lo, hi = self.scale_range
        scale = float(self.rng.uniform(lo, hi)) if self.training else (lo + hi) / 2
        out_w, out_h = self.final_size
        scaled_w, scaled_h = int(round(width * scale)), int(round(height * scale))
        crop_y = max(0, scaled_h - out_h)  # keep the bottom (the road) as BEVDet does
        free_x = scaled_w - out_w
        crop_x = (
            int(self.rng.integers(0, free_x + 1)) if self.training and free_x > 0 else max(free_x, 0) // 2
        )
        flip = bool(self.training and self.rng.random() < self.flip_prob)
        return (scaled_w, scaled_h), (crop_x, crop_y), flip

    def __call__(self, results: dict) -> dict:
        h, w = results["frames"][-1]["imgs"][0].shape[:2]
        size, crop, flip = self.draw(w, h)
        # The exact per-axis factors of the integer resize, so pixels and matrices agree.
        scale = (size[0] / w, size[1] / h)
        aug = image_aug_matrix(scale, crop, flip, out_width=self.final_size[0])
        for frame in results["frames"]:
            frame["imgs"] = [self._apply(img, size, crop, flip) for img in frame["imgs"]]
            frame["img_aug"] = aug @ frame["img_aug"]
            frame["ego2img"] = aug @ frame["ego2img"]
            frame["intrinsics"] = aug[:3, :3] @ frame["intrinsics"]
        if "traffic_elements" in results and len(results["traffic_elements"]):
            te = results["traffic_elements"].reshape(-1, 2, 2) * np.array(scale) - np.array(crop)
            if flip:
                te[..., 0] = self.final_size[0] - te[..., 0]
            te = np.concatenate([te.min(1), te.max(1)], 1)
            results["traffic_elements"] = np.clip(te, 0, [*self.final_size, *self.final_size])
        return results

    def _apply(self, img: np.ndarray, size: tuple[int, int], crop: tuple[int, int], flip: bool) -> np.ndarray:
        pil = Image.fromarray(img)
        if size != pil.size:
            pil = pil.resize(size, Image.BILINEAR)
        out_w, out_h = self.final_size
        pil = pil.crop((crop[0], crop[1], crop[0] + out_w, crop[1] + out_h))  # pads with black if needed
        if flip:
            pil = pil.transpose(Image.FLIP_LEFT_RIGHT)
        return np.asarray(pil)


@TRANSFORMS.register_module()
class PhotometricAugmentation(RandomTransform):
    """Brightness, contrast, saturation and hue jitter, each with probability ``prob``, drawn per camera
    (geometry untouched)."""

    def __init__(
        self,
        brightness: float = 0.25,
        contrast: float = 0.5,
        saturation: float = 0.5,
        hue: float = 0.05,
        prob: float = 0.5,
        seed: int | None = None,
    ) -> None:
        self.brightness, self.contrast, self.saturation, self.hue = brightness, contrast, saturation, hue
        self.prob = prob
        self.seed = seed

    def __call__(self, results: dict) -> dict:
        for frame in results["frames"]:
            frame["imgs"] = [self._jitter(img) for img in frame["imgs"]]
        return results

    def _jitter(self, img: np.ndarray) -> np.ndarray:
        pil = Image.fromarray(img)
        for enhancer, amount in (
            (ImageEnhance.Brightness, self.brightness),
            (ImageEnhance.Contrast, self.contrast),
            (ImageEnhance.Color, self.saturation),
        ):
            if self.rng.random() < self.prob:
                pil = enhancer(pil).enhance(float(self.rng.uniform(1 - amount, 1 + amount)))
        if self.rng.random() < self.prob and self.hue > 0:
            hsv = np.asarray(pil.convert("HSV")).copy()
            hsv[..., 0] = (
                hsv[..., 0].astype(np.int32) + int(self.rng.uniform(-self.hue, self.hue) * 255)
            ) % 256
            pil = Image.fromarray(hsv, "HSV").convert("RGB")
        return np.asarray(pil)


@TRANSFORMS.register_module()
class BEVAugmentation(RandomTransform):
    """Random rotation about z, scale and x/y mirrors of the ego frame, applied to the boxes, lanes and
    occupancy and folded into every frame's ego-side matrices (``ego2img``, ``cam2ego``, ``ego2global``,
    ``prev2curr``), so projections stay consistent."""

    def __init__(
        self,
        rotation_range: tuple[float, float] = (-0.3925, 0.3925),
        scale_range: tuple[float, float] = (0.95, 1.05),
        flip_x_prob: float = 0.5,
        flip_y_prob: float = 0.5,
        seed: int | None = None,
    ) -> None:
        self.rotation_range, self.scale_range = rotation_range, scale_range
        self.flip_x_prob, self.flip_y_prob = flip_x_prob, flip_y_prob
        self.seed = seed

    def __call__(self, results: dict) -> dict:
        mat = bev_aug_matrix(
            float(self.rng.uniform(*self.rotation_range)),
            float(self.rng.uniform(*self.scale_range)),
            bool(self.rng.random() < self.flip_x_prob),
            bool(self.rng.random() < self.flip_y_prob),
        )
        return apply_bev_transform(results, mat)


def apply_bev_transform(results: dict, mat: np.ndarray) -> dict:
    """Apply the ego -> augmented-ego transform ``mat`` to labels and matrices of ``results``."""
    inv = np.linalg.inv(mat)
    results["bev_aug"] = mat @ results["bev_aug"]
    for frame in results["frames"]:
        frame["ego2img"] = frame["ego2img"] @ inv
        frame["cam2ego"] = mat @ frame["cam2ego"]
        frame["ego2global"] = frame["ego2global"] @ inv
        frame["prev2curr"] = mat @ frame["prev2curr"] @ inv
    if "gt_boxes" in results:
        results["gt_boxes"] = affine_transform_boxes(results["gt_boxes"], mat)
    if "lanes" in results and len(results["lanes"]):
        results["lanes"] = results["lanes"] @ mat[:3, :3].T + mat[:3, 3]
    if "occ_semantics" in results:
        _resample_occupancy(results, inv)
    return results


def _resample_occupancy(results: dict, inv: np.ndarray, grid: BEVGrid = OCC3D_GRID) -> None:
    """Nearest-neighbour resampling: each augmented voxel centre looks up its source voxel."""
    centres = grid.voxel_centers().reshape(-1, 3)
    src = centres @ inv[:3, :3].T + inv[:3, 3]
    idx, inside = grid.points_to_voxel_index(src)
    idx = np.where(inside[:, None], idx, 0)
    shape = grid.voxel_shape
    for key, fill in (("occ_semantics", OCC_FREE), ("occ_mask_camera", False), ("occ_mask_lidar", False)):
        values = results[key][idx[:, 0], idx[:, 1], idx[:, 2]]
        results[key] = np.where(inside, values, fill).reshape(shape).astype(results[key].dtype)


@TRANSFORMS.register_module()
class ObjectRangeFilter:
    """Keep boxes whose centre lies inside ``x_range`` x ``y_range`` (ego frame, metres)."""

    def __init__(
        self, x_range: tuple[float, float] = (-51.2, 51.2), y_range: tuple[float, float] = (-51.2, 51.2)
    ):
        self.x_range, self.y_range = x_range, y_range

    def __call__(self, results: dict) -> dict:
        b = results["gt_boxes"]
        keep = (
            (b[:, 0] >= self.x_range[0])
            & (b[:, 0] <= self.x_range[1])
            & (b[:, 1] >= self.y_range[0])
            & (b[:, 1] <= self.y_range[1])
        )
        results["gt_boxes"], results["gt_labels"] = b[keep], results["gt_labels"][keep]
        return results


@TRANSFORMS.register_module()
class NormalizeMultiViewImages:
    """uint8 RGB -> float32 (x - mean) / std (ImageNet statistics by default, RGB order)."""

    def __init__(self, mean=IMAGENET_MEAN, std=IMAGENET_STD) -> None:
        self.mean, self.std = np.array(mean, np.float32), np.array(std, np.float32)

    def __call__(self, results: dict) -> dict:
        for frame in results["frames"]:
            frame["imgs"] = [(img.astype(np.float32) - self.mean) / self.std for img in frame["imgs"]]
        results["img_norm"] = dict(mean=self.mean.tolist(), std=self.std.tolist())
        return results


@TRANSFORMS.register_module()
class PadMultiViewImages:
    """Zero-pad bottom/right to a multiple of ``size_divisor`` (pixel coordinates are unchanged)."""

    def __init__(self, size_divisor: int = 32) -> None:
        self.size_divisor = size_divisor

    def __call__(self, results: dict) -> dict:
        h, w = results["frames"][-1]["imgs"][0].shape[:2]
        results["img_shape"] = (h, w)
        ph, pw = (
            -(-h // self.size_divisor) * self.size_divisor,
            -(-w // self.size_divisor) * self.size_divisor,
        )
        for frame in results["frames"]:
            padded = []
            for img in frame["imgs"]:
                out = np.zeros((ph, pw, 3), dtype=img.dtype)
                out[: img.shape[0], : img.shape[1]] = img
                padded.append(out)
            frame["imgs"] = padded
        results["pad_shape"] = (ph, pw)
        return results


def boxes_2d_per_camera(
    boxes: np.ndarray,
    labels: np.ndarray,
    ego2img: np.ndarray,
    image_shape: tuple[int, int],
    min_depth: float = 0.5,
) -> list[dict]:
    """Per camera: image-clipped 2-D boxes (x1, y1, x2, y2) of the 3-D boxes whose corners all lie in front
    of it, their labels, centre depths and indices into ``boxes`` (for the perspective head)."""
    h, w = image_shape
    corners = box_corners(boxes) if len(boxes) else np.zeros((0, 8, 3))
    out = []
    for cam in range(len(ego2img)):
        uv, depth = project_points(ego2img[cam], corners.reshape(-1, 3))
        uv, depth = uv.reshape(-1, 8, 2), depth.reshape(-1, 8)
        _, centre_depth = project_points(ego2img[cam], boxes[:, :3]) if len(boxes) else (None, np.zeros(0))
        lo = np.clip(uv.min(1), 0, [w, h]) if len(boxes) else np.zeros((0, 2))
        hi = np.clip(uv.max(1), 0, [w, h]) if len(boxes) else np.zeros((0, 2))
        keep = (depth > min_depth).all(1) & (hi[:, 0] - lo[:, 0] > 1) & (hi[:, 1] - lo[:, 1] > 1)
        out.append(
            dict(
                boxes=np.concatenate([lo, hi], 1)[keep],
                labels=labels[keep],
                depths=centre_depth[keep],
                indices=np.nonzero(keep)[0],
            )
        )
    return out


@TRANSFORMS.register_module()
class PackBEVInputs:
    """Final step: the sample dict of docs/architecture.md, as torch tensors."""

    def __init__(self, with_boxes_2d: bool = True) -> None:
        self.with_boxes_2d = with_boxes_2d

    def __call__(self, results: dict) -> dict:
        frames = results["frames"]
        img = np.stack([np.stack(f["imgs"]) for f in frames])  # (T, Ncam, H, W, 3)
        if img.dtype == np.uint8:
            img = img.astype(np.float32)
        stack = lambda key: torch.as_tensor(np.stack([f[key] for f in frames]), dtype=torch.float32)  # noqa: E731
        shape = results.get("img_shape", img.shape[2:4])
        sample = dict(
            img=torch.from_numpy(np.ascontiguousarray(img.transpose(0, 1, 4, 2, 3))),
            cams=dict(
                intrinsics=stack("intrinsics"),
                cam2ego=stack("cam2ego"),
                ego2img=stack("ego2img"),
                img_aug=stack("img_aug"),
                img_shape=tuple(shape),
                pad_shape=tuple(img.shape[2:4]),
            ),
            ego=dict(
                ego2global=stack("ego2global"),
                prev2curr=stack("prev2curr"),
                history_valid=torch.tensor([bool(f["valid"]) for f in frames]),
                bev_aug=torch.as_tensor(results["bev_aug"], dtype=torch.float32),
            ),
            meta=dict(
                sample_token=results["sample_token"],
                scene_token=results["scene_token"],
                timestamp=results["timestamp"],
                frame_index=results["frame_index"],
                frame_tokens=[f["token"] for f in frames],
                img_paths=list(frames[-1]["img_paths"]),
            ),
        )
        if "gt_boxes" in results:
            sample["gt_boxes"] = torch.as_tensor(results["gt_boxes"], dtype=torch.float32).reshape(-1, 9)
            sample["gt_labels"] = torch.as_tensor(results["gt_labels"], dtype=torch.int64)
            if self.with_boxes_2d:
                per_cam = boxes_2d_per_camera(
                    results["gt_boxes"], results["gt_labels"], frames[-1]["ego2img"], shape
                )
                sample["gt_boxes_2d"] = [torch.as_tensor(c["boxes"], dtype=torch.float32) for c in per_cam]
                sample["gt_labels_2d"] = [torch.as_tensor(c["labels"], dtype=torch.int64) for c in per_cam]
                sample["gt_depths_2d"] = [torch.as_tensor(c["depths"], dtype=torch.float32) for c in per_cam]
        for key in (
            "occ_semantics",
            "occ_mask_camera",
            "occ_mask_lidar",
            "lanes",
            "traffic_elements",
            "traffic_element_labels",
            "topology_lane_lane",
            "topology_lane_te",
        ):
            if key in results:
                value = results[key]
                sample[key] = torch.as_tensor(
                    value, dtype=torch.float32 if value.dtype == np.float64 else None
                )
        return sample
