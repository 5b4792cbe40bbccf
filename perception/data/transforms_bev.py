"""Multi-camera, multi-frame transforms for BEV tasks (registered in TRANSFORMS).

A transform takes and returns the ``results`` dict built by :class:`~perception.data.BEVDataset`:

* ``cameras``: the rig's camera names, in order (the order of every per-camera list and array);
* ``frames``: T dicts (oldest first, current last), each with ``token``, ``valid``, ``img_paths`` (Ncam),
  ``imgs`` (Ncam arrays H_c x W_c x 3, uint8 until normalised; cameras may differ in size),
  ``intrinsics`` (Ncam, 3, 3), ``cam2ego`` (Ncam, 4, 4), ``ego2img`` (Ncam, 4, 4), ``img_aug``
  (Ncam, 4, 4), ``ego2global`` (4, 4), ``prev2curr`` (4, 4: this frame's ego -> the current ego) and,
  once padded, ``valid_hw`` (Ncam, 2) (rows, cols) of real image;
* ``bev_aug`` (4, 4), ``label_types`` (the label types the dataset loaded, see
  :mod:`perception.data.labels`) and the current frame's ground truth (``gt_boxes`` (N, 9),
  ``gt_labels``, optional occupancy, lanes, ...).

Geometry is never changed on its own: an image transform updates the pixels *and* folds its matrix into
``ego2img``/``intrinsics``/``img_aug`` (per camera); a BEV transform moves every frame's ego-side
matrices and the labels of every label type present together.

Image sizes (mixed rigs, e.g. Waymo's 1920x1280 front and 1920x886 side cameras): padding
(``PadMultiViewImages``, ``PackBEVInputs``, ``bev_collate``) is always zeros at the bottom/right, so pixel
coordinates and ``ego2img`` stay valid. The sample carries

* ``cams['valid_hw']`` (T, Ncam, 2) int64: each camera's (rows, cols) of real image in the padded input
  ((B, T, Ncam, 2) after collation);
* ``cams['img_shape']`` (h, w): the largest valid size over the sample's cameras, i.e. the image size
  before padding for a rig of one size (after collation a list of B such tuples);
* ``cams['pad_shape']`` (H, W): the padded input size, ``img.shape[-2:]`` (after collation the batch's
  common padded size, one tuple).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageEnhance

from perception.engine.registry import TRANSFORMS
from perception.structures.boxes import bev_aug_matrix
from perception.structures.cameras import image_aug_matrix

from .labels import LABEL_TYPES, CameraImageTransform, active_label_types
from .labels.base import default_label_type

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
    """Occ3D ``labels.npz`` of ``results['occ_path']`` -> ``occ_semantics`` / ``occ_mask_camera`` /
    ``occ_mask_lidar`` (200, 200, 16), through the ``occupancy`` label type (errors:
    :class:`~perception.data.labels.OccupancyLoadError`). Same as the dataset's ``labels=(..., "occupancy")``."""

    def __call__(self, results: dict) -> dict:
        _label_type(results, "occupancy").load_file(results, results.get("occ_path"))
        return results


@TRANSFORMS.register_module()
class LoadLanes:
    """OpenLane-V2 frame json of ``results['openlane_path']`` -> ``lanes`` (L, P, 3), ``traffic_elements``
    (K, 4) front-camera pixels, ``traffic_element_labels`` (K,) attribute, ``topology_lane_lane`` (L, L),
    ``topology_lane_te`` (L, K), through the ``lanes`` label type (errors:
    :class:`~perception.data.labels.LaneLoadError`). Same as the dataset's ``labels=(..., "lanes")``."""

    def __call__(self, results: dict) -> dict:
        _label_type(results, "lanes").load_file(results, results.get("openlane_path"))
        return results


def _label_type(results: dict, name: str):
    """The dataset's instance of label type ``name`` if it built one, else the registered default."""
    chosen = results.get("label_types", {})
    return chosen[name] if name in chosen else default_label_type(LABEL_TYPES.get(name))


def _size(value) -> tuple[int, int]:
    w, h = value
    return int(w), int(h)


@TRANSFORMS.register_module()
class ResizeCropFlipImage(RandomTransform):
    """Resize, crop to the output size (bottom-aligned like BEVDet, random horizontal offset in training,
    centred otherwise) and optionally flip, every camera from its own native size.

    ``final_size`` is one (w, h) for every camera or a dict {camera name: (w, h)} (one size per camera
    group). One scale ``s`` is drawn from ``scale_range`` per sample and shared by all cameras and
    frames: it is the resize factor of the rig's first (reference) camera, and camera c is resized by
    ``s * (W_c / w_c) / (W_0 / w_0)`` (W output width, w native width), so that every camera covers its
    output in the same proportion. When the reference camera keeps its width (W_0 = w_0, as in the
    nuScenes configs) that is ``s * W_c / w_c``; for a rig of one size it is ``s`` for every camera.
    The horizontal crop offset is drawn once over the largest horizontal slack and shared in
    proportion; the flip is shared. Each camera's matrix goes into its own ``ego2img`` / ``intrinsics`` /
    ``img_aug``, and label types with image-space parts (traffic elements, 2D boxes) follow their
    camera's transform."""

    def __init__(
        self,
        final_size: tuple[int, int] | dict[str, tuple[int, int]],
        scale_range: tuple[float, float] = (1.0, 1.0),
        flip_prob: float = 0.0,
        training: bool = True,
        seed: int | None = None,
    ) -> None:
        if isinstance(final_size, Mapping):
            self.final_size = {str(k): _size(v) for k, v in final_size.items()}
        else:
            self.final_size = _size(final_size)
        self.scale_range, self.flip_prob, self.training = scale_range, flip_prob, training
        self.seed = seed

    def out_size(self, camera: str) -> tuple[int, int]:
        if not isinstance(self.final_size, dict):
            return self.final_size
        if camera not in self.final_size:
            raise ValueError(
                f"ResizeCropFlipImage: final_size names no size for camera {camera!r} "
                f"(it has sizes for {sorted(self.final_size)})"
            )
        return self.final_size[camera]

    def __call__(self, results: dict) -> dict:
        frames = results["frames"]
        names = list(results.get("cameras") or [f"camera{c}" for c in range(len(frames[-1]["imgs"]))])
        if isinstance(self.final_size, dict) and "cameras" not in results:
            raise ValueError("ResizeCropFlipImage with per-camera final_size needs results['cameras']")
        outs = [self.out_size(n) for n in names]
        natives = [(img.shape[1], img.shape[0]) for img in frames[-1]["imgs"]]
        lo, hi = self.scale_range
        draw = float(self.rng.uniform(lo, hi)) if self.training else (lo + hi) / 2
        ref_ratio = outs[0][0] / natives[0][0]

        def scale_of(width: int, out_w: int) -> float:
            # Exactly ``draw`` for images of the reference camera's sizes (x / x == 1 in IEEE arithmetic).
            return draw * ((out_w / width) / ref_ratio)

        slack = max(int(round(w * scale_of(w, out[0]))) - out[0] for (w, _), out in zip(natives, outs))
        offset = int(self.rng.integers(0, slack + 1)) if self.training and slack > 0 else None
        flip = bool(self.training and self.rng.random() < self.flip_prob)
        current = {}
        for frame in frames:
            transforms = [
                self.camera_transform(
                    img.shape[1], img.shape[0], scale_of(img.shape[1], out[0]), out, offset, slack, flip
                )
                for img, out in zip(frame["imgs"], outs)
            ]
            frame["imgs"] = [self._apply(img, t) for img, t in zip(frame["imgs"], transforms)]
            aug = np.stack([t.matrix for t in transforms])
            if (aug == aug[:1]).all():
                aug = aug[0]  # one transform for every camera: broadcast, the arithmetic of a one-size rig
            frame["img_aug"] = aug @ frame["img_aug"]
            frame["ego2img"] = aug @ frame["ego2img"]
            frame["intrinsics"] = aug[..., :3, :3] @ frame["intrinsics"]
            frame.pop("valid_hw", None)
            current = dict(zip(names, transforms))
        for label in active_label_types(results):
            label.image_transform(results, current)
        return results

    def camera_transform(
        self, width: int, height: int, scale: float, out: tuple[int, int], offset: int | None, slack: int, flip: bool
    ) -> CameraImageTransform:
        """One image's resize (integer size), crop and flip; ``offset`` is the crop offset drawn over the
        largest horizontal ``slack`` (None: centred)."""
        out_w, out_h = out
        scaled_w, scaled_h = int(round(width * scale)), int(round(height * scale))
        crop_y = max(0, scaled_h - out_h)  # keep the bottom (the road) as BEVDet does
        free_x = scaled_w - out_w
        if free_x <= 0:
            crop_x = 0
        elif offset is None:
            crop_x = free_x // 2
        else:
            crop_x = min(free_x, offset if free_x == slack else int(round(offset * free_x / slack)))
        # The exact per-axis factors of the integer resize, so pixels and matrices agree.
        factors = (scaled_w / width, scaled_h / height)
        matrix = image_aug_matrix(factors, (crop_x, crop_y), flip, out_width=out_w)
        return CameraImageTransform(factors, (crop_x, crop_y), flip, (out_w, out_h), matrix)

    @staticmethod
    def _apply(img: np.ndarray, t: CameraImageTransform) -> np.ndarray:
        pil = Image.fromarray(img)
        size = (int(round(pil.size[0] * t.scale[0])), int(round(pil.size[1] * t.scale[1])))
        if size != pil.size:
            pil = pil.resize(size, Image.BILINEAR)
        (x0, y0), (out_w, out_h) = t.crop, t.out_size
        pil = pil.crop((x0, y0, x0 + out_w, y0 + out_h))  # pads with black if needed
        if t.flip:
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
    """Apply the ego -> augmented-ego transform ``mat`` to every frame's ego-side matrices and to the
    labels of every label type present in ``results``."""
    inv = np.linalg.inv(mat)
    results["bev_aug"] = mat @ results["bev_aug"]
    for frame in results["frames"]:
        frame["ego2img"] = frame["ego2img"] @ inv
        frame["cam2ego"] = mat @ frame["cam2ego"]
        frame["ego2global"] = frame["ego2global"] @ inv
        frame["prev2curr"] = mat @ frame["prev2curr"] @ inv
    for label in active_label_types(results):
        label.bev_transform(results, mat)
    return results


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


def _image_hw(frame: dict) -> np.ndarray:
    """(Ncam, 2) int64 (rows, cols) of a frame's camera images."""
    return np.array([img.shape[:2] for img in frame["imgs"]], dtype=np.int64).reshape(-1, 2)


def _pad_images(frames: list[dict], height: int, width: int) -> None:
    """Zero-pad every camera image bottom/right to (height, width), recording each camera's valid
    (rows, cols) in ``frame['valid_hw']`` first (kept if an earlier padding recorded it)."""
    for frame in frames:
        frame.setdefault("valid_hw", _image_hw(frame))
        padded = []
        for img in frame["imgs"]:
            if img.shape[:2] != (height, width):
                out = np.zeros((height, width, *img.shape[2:]), dtype=img.dtype)
                out[: img.shape[0], : img.shape[1]] = img
                img = out
            padded.append(img)
        frame["imgs"] = padded


def _largest_valid(frames: list[dict]) -> tuple[int, int]:
    hw = np.concatenate([f.get("valid_hw", _image_hw(f)) for f in frames]).max(0)
    return int(hw[0]), int(hw[1])


@TRANSFORMS.register_module()
class PadMultiViewImages:
    """Zero-pad every camera of every frame bottom/right to one common size, the largest image rounded up
    to a multiple of ``size_divisor`` (pixel coordinates and ``ego2img`` are unchanged). Records each
    camera's valid region (``frame['valid_hw']``), ``results['img_shape']`` (the largest valid size) and
    ``results['pad_shape']``."""

    def __init__(self, size_divisor: int = 32) -> None:
        self.size_divisor = size_divisor

    def __call__(self, results: dict) -> dict:
        frames = results["frames"]
        for frame in frames:
            frame.setdefault("valid_hw", _image_hw(frame))
        h, w = _largest_valid(frames)
        current = np.array([img.shape[:2] for f in frames for img in f["imgs"]]).max(0)
        d = self.size_divisor
        ph, pw = -(-int(max(h, current[0])) // d) * d, -(-int(max(w, current[1])) // d) * d
        _pad_images(frames, ph, pw)
        results["img_shape"] = (h, w)
        results["pad_shape"] = (ph, pw)
        return results


@TRANSFORMS.register_module()
class PackBEVInputs:
    """Final step: the sample dict of docs/architecture.md, as torch tensors.

    Cameras of different sizes are zero-padded bottom/right to the sample's largest size (so ``ego2img``
    stays valid). ``cams['valid_hw']`` (T, Ncam, 2) int64 is each camera's (rows, cols) of real image in
    the padded input; ``cams['img_shape']`` the largest valid (h, w) (the image size for a one-size rig);
    ``cams['pad_shape']`` the padded (H, W) = ``img.shape[-2:]``. Every label type present in ``results``
    packs its own keys.

    ``with_boxes_2d`` is accepted for old configs only and must be False: 2D boxes are no longer
    derived from the 3D boxes (the perspective head projects those itself); image-annotated 2D boxes
    are the ``boxes_2d`` label type.
    """

    def __init__(self, with_boxes_2d: bool = False) -> None:
        if with_boxes_2d:
            raise ValueError(
                "PackBEVInputs(with_boxes_2d=True) was removed: the perspective head projects the 3D boxes itself "
                "(drop the argument; image-annotated 2D boxes are the dataset's labels=(..., 'boxes_2d'))"
            )

    def __call__(self, results: dict) -> dict:
        frames = results["frames"]
        for frame in frames:
            frame.setdefault("valid_hw", _image_hw(frame))
        sizes = np.array([img.shape[:2] for f in frames for img in f["imgs"]])
        if len({tuple(hw) for hw in sizes}) > 1:
            _pad_images(frames, int(sizes[:, 0].max()), int(sizes[:, 1].max()))
        img = np.stack([np.stack(f["imgs"]) for f in frames])  # (T, Ncam, H, W, 3)
        if img.dtype == np.uint8:
            img = img.astype(np.float32)
        stack = lambda key: torch.as_tensor(np.stack([f[key] for f in frames]), dtype=torch.float32)  # noqa: E731
        shape = results.get("img_shape", _largest_valid(frames))
        sample = dict(
            img=torch.from_numpy(np.ascontiguousarray(img.transpose(0, 1, 4, 2, 3))),
            cams=dict(
                intrinsics=stack("intrinsics"),
                cam2ego=stack("cam2ego"),
                ego2img=stack("ego2img"),
                img_aug=stack("img_aug"),
                valid_hw=torch.as_tensor(np.stack([f["valid_hw"] for f in frames]), dtype=torch.int64),
                img_shape=tuple(int(v) for v in shape),
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
        if "cameras" in results:
            sample["meta"]["cameras"] = list(results["cameras"])
        for label in active_label_types(results):
            label.pack(results, sample)
        return sample
