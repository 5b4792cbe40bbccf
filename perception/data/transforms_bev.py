"""Multi-camera, multi-frame transforms for BEV tasks (registered in TRANSFORMS).

A transform takes and returns the ``results`` dict built by :class:`~perception.data.BEVDataset`:

* ``cameras``: the rig's camera names, in order (the order of every per-camera list and array);
* ``frames``: T dicts (oldest first, current last), each with ``token``, ``valid``, ``img_paths`` (Ncam),
  ``imgs`` (Ncam arrays H_c x W_c x 3, uint8 until normalised; cameras may differ in size),
  ``intrinsics`` (Ncam, 3, 3), ``cam2ego`` (Ncam, 4, 4), ``ego2img`` (Ncam, 4, 4), ``img_aug``
  (Ncam, 4, 4), ``ego2global`` (4, 4), ``prev2curr`` (4, 4: this frame's ego -> the current ego) and,
  once padded, ``valid_hw`` (Ncam, 2) (rows, cols) of real image; ``native_sizes`` (Ncam (w, h), from
  ``LoadMultiViewImages``: each file's full size, which may exceed the decoded image's, see its
  ``decode_scale``; ``ResizeCropFlipImage`` resizes relative to it and removes it);
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

import math
import os
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np
import simplejpeg
import torch
from PIL import Image

from perception.engine.registry import TRANSFORMS
from perception.structures.boxes import bev_aug_matrix
from perception.structures.cameras import image_aug_matrix
from perception.structures.image_norm import IMAGENET_MEAN, IMAGENET_STD

from .labels import LABEL_TYPES, CameraImageTransform, active_label_types
from .labels.base import default_label_type
from .memory import retain_freed_memory, worker_shareable_empty


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


class DecodedImage(NamedTuple):
    """One decoded camera image: RGB uint8 ``image``, the file's full ``native_size`` (w, h) and the
    JPEG DCT ``factor`` M/8 it was decoded at (1.0: full size)."""

    image: np.ndarray
    native_size: tuple[int, int]
    factor: float


def dct_numerator(scale: float | None) -> int:
    """M of the smallest JPEG DCT scale M/8 (M = 1..8) that is at least ``scale`` (8: full size)."""
    if scale is None or scale >= 1:
        return 8
    if scale <= 0:
        raise ValueError(f"decode_scale must be > 0, got {scale}")
    return max(1, math.ceil(scale * 8 - 1e-9))


def _decode_jpeg(data: bytes, numerator: int) -> DecodedImage | None:
    """libjpeg-turbo (simplejpeg) decode at the DCT scale numerator/8; None for colour spaces it cannot
    turn into RGB (CMYK). A DCT-scaled decode samples the pixel grid at exactly numerator/8 (pixel
    centres at half-integers, docs/data.md "Loader speed")."""
    height, width, colorspace, _ = simplejpeg.decode_jpeg_header(data)
    if colorspace in ("CMYK", "YCCK"):
        return None
    size = (-(-width * numerator // 8), -(-height * numerator // 8))
    image = simplejpeg.decode_jpeg(data, colorspace="RGB", min_width=size[0], min_height=size[1])
    if (image.shape[1], image.shape[0]) != size:
        raise ValueError(f"decoded {image.shape[1]}x{image.shape[0]}, not the {numerator}/8 scale's {size}")
    return DecodedImage(image, (width, height), numerator / 8)


def _decode_pil(path: str) -> DecodedImage:
    with Image.open(path) as im:
        im.load()
        rgb = im if im.mode == "RGB" else im.convert("RGB")
        return DecodedImage(np.asarray(rgb), rgb.size, 1.0)


def read_image(path: str, token: str, numerator: int = 8) -> DecodedImage:
    """Decode one camera image: JPEG through libjpeg-turbo at the DCT scale ``numerator``/8; other formats,
    and JPEGs libjpeg-turbo refuses, at full size through PIL. Errors name the file and the sample."""
    if not Path(path).exists():
        raise ImageLoadError(f"image {path} of sample {token} does not exist")
    turbo_error = None
    try:
        data = Path(path).read_bytes()
        decoded = _decode_jpeg(data, numerator) if data[:2] == b"\xff\xd8" else None
    except (OSError, ValueError) as err:  # simplejpeg raises ValueError for corrupt or truncated data
        decoded, turbo_error = None, err
    if decoded is not None:
        return decoded
    try:
        return _decode_pil(path)
    except Exception as err:  # PIL raises several types for corrupt files
        also = f" (libjpeg-turbo: {turbo_error})" if turbo_error is not None else ""
        raise ImageLoadError(f"image {path} of sample {token} is corrupt or unreadable: {err}{also}") from err


@TRANSFORMS.register_module()
class LoadMultiViewImages:
    """Read every camera image of every frame (RGB uint8) with a thread pool.

    ``decode_scale`` (one factor, or {camera name: factor}; None: full size) is the largest factor by which
    the pipeline later resizes the camera's native image (e.g. ``ResizeCropFlipImage``'s largest scale).
    JPEGs are then decoded at the smallest DCT scale M/8 >= it, which costs a fraction of a full decode,
    and that exact scale is folded into ``ego2img`` / ``intrinsics`` / ``img_aug`` (and the label types'
    image-space parts). ``frame['native_sizes']`` keeps each file's full (w, h), so that
    ``ResizeCropFlipImage`` still resizes relative to the native image (docs/data.md "Loader speed").

    ``retain_freed_memory`` (default True) sets the loading process's glibc allocator, once, to reuse freed
    image buffers rather than fault fresh pages in for every image (``perception.data.memory``): about a
    third less CPU a nuScenes sample, for resident memory that stays at its peak."""

    def __init__(
        self,
        num_workers: int = 6,
        decode_scale: float | Mapping[str, float] | None = None,
        retain_freed_memory: bool = True,
    ) -> None:
        self.num_workers = num_workers
        self.decode_scale = dict(decode_scale) if isinstance(decode_scale, Mapping) else decode_scale
        self.retain_freed_memory = retain_freed_memory
        self._pool: ThreadPoolExecutor | None = None
        self._pool_pid: int | None = None

    def numerator(self, camera: str) -> int:
        scale = self.decode_scale
        if isinstance(scale, dict):
            if camera not in scale:
                raise ValueError(f"LoadMultiViewImages: decode_scale names no factor for camera {camera!r}")
            scale = scale[camera]
        return dct_numerator(scale)

    def __call__(self, results: dict) -> dict:
        # Created lazily, per process: it pickles into spawned DataLoader workers, and a forked worker
        # (whose copy of the pool has no threads) makes its own.
        if self._pool is None or self._pool_pid != os.getpid():
            self._pool = ThreadPoolExecutor(self.num_workers, thread_name_prefix="load_images")
            self._pool_pid = os.getpid()
            if self.retain_freed_memory:
                retain_freed_memory()
        frames = results["frames"]
        names = _camera_names(results, len(frames[-1]["img_paths"]))
        numerators = [self.numerator(n) for n in names]
        jobs = [(path, frame["token"], numerators[c]) for frame in frames for c, path in enumerate(frame["img_paths"])]
        decoded = list(self._pool.map(lambda job: read_image(*job), jobs))
        for f, frame in enumerate(frames):
            part = decoded[f * len(names) : (f + 1) * len(names)]
            frame["imgs"] = [d.image for d in part]
            frame["native_sizes"] = [d.native_size for d in part]
            if any(d.factor != 1.0 for d in part):
                _fold_decode_scale(results, frame, names, part, current=f == len(frames) - 1)
        return results

    def __getstate__(self):
        return dict(self.__dict__, _pool=None, _pool_pid=None)


def _camera_names(results: dict, count: int) -> list[str]:
    return list(results.get("cameras") or [f"camera{c}" for c in range(count)])


def _fold_decode_scale(results: dict, frame: dict, names: list[str], part: list[DecodedImage], current: bool) -> None:
    """Fold each camera's DCT scale (a resize by exactly ``factor``) into the frame's matrices and, for the
    current frame, into the label types' image-space parts."""
    transforms = [
        CameraImageTransform(
            (d.factor, d.factor), (0, 0), False, (d.image.shape[1], d.image.shape[0]), image_aug_matrix(d.factor)
        )
        for d in part
    ]
    aug = np.stack([t.matrix for t in transforms])
    frame["img_aug"] = aug @ frame["img_aug"]
    frame["ego2img"] = aug @ frame["ego2img"]
    frame["intrinsics"] = aug[..., :3, :3] @ frame["intrinsics"]
    if current:
        for label in active_label_types(results):
            label.image_transform(results, dict(zip(names, transforms)))


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
    proportion; the flip is shared. An upscale resamples only the region its crop keeps, so its crop may
    land up to one pixel before the drawn offset, between output pixels (``_upscale_origin``).
    Each camera's matrix goes into its own ``ego2img`` / ``intrinsics`` /
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
        names = _camera_names(results, len(frames[-1]["imgs"]))
        if isinstance(self.final_size, dict) and "cameras" not in results:
            raise ValueError("ResizeCropFlipImage with per-camera final_size needs results['cameras']")
        outs = [self.out_size(n) for n in names]
        natives = _native_sizes(frames[-1])
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
                    img.shape[1], img.shape[0], scale_of(native[0], out[0]), out, offset, slack, flip, native
                )
                for img, out, native in zip(frame["imgs"], outs, _native_sizes(frame))
            ]
            frame["imgs"] = [self._apply(img, t) for img, t in zip(frame["imgs"], transforms)]
            aug = np.stack([t.matrix for t in transforms])
            if (aug == aug[:1]).all():
                aug = aug[0]  # one transform for every camera: broadcast, the arithmetic of a one-size rig
            frame["img_aug"] = aug @ frame["img_aug"]
            frame["ego2img"] = aug @ frame["ego2img"]
            frame["intrinsics"] = aug[..., :3, :3] @ frame["intrinsics"]
            frame.pop("valid_hw", None)
            frame.pop("native_sizes", None)  # the output is the next transform's native image
            current = dict(zip(names, transforms))
        for label in active_label_types(results):
            label.image_transform(results, current)
        return results

    def camera_transform(
        self,
        width: int,
        height: int,
        scale: float,
        out: tuple[int, int],
        offset: int | None,
        slack: int,
        flip: bool,
        native: tuple[int, int] | None = None,
    ) -> CameraImageTransform:
        """One image's resize (integer size), crop and flip; ``offset`` is the crop offset drawn over the
        largest horizontal ``slack`` (None: centred). ``scale`` applies to the ``native`` (w, h) image (default:
        the input's ``width`` x ``height``); an input decoded smaller (``LoadMultiViewImages(decode_scale=)``)
        is resized to the same integer size."""
        out_w, out_h = out
        native_w, native_h = native if native is not None else (width, height)
        scaled_w, scaled_h = int(round(native_w * scale)), int(round(native_h * scale))
        crop_y = max(0, scaled_h - out_h)  # keep the bottom (the road) as BEVDet does
        free_x = scaled_w - out_w
        if free_x <= 0:
            crop_x = 0
        elif offset is None:
            crop_x = free_x // 2
        else:
            crop_x = min(free_x, offset if free_x == slack else int(round(offset * free_x / slack)))
        # The exact per-axis factors of the integer resize of the input, so pixels and matrices agree.
        factors = (scaled_w / width, scaled_h / height)
        crop, origin = (float(crop_x), float(crop_y)), (0, 0)
        if _is_upscale((scaled_w, scaled_h), (width, height)):
            (origin_x, left), (origin_y, top) = _upscale_origin(crop_x, factors[0]), _upscale_origin(crop_y, factors[1])
            crop, origin = (left, top), (origin_x, origin_y)
        matrix = image_aug_matrix(factors, crop, flip, out_width=out_w)
        return CameraImageTransform(factors, crop, flip, (out_w, out_h), matrix, origin)

    @staticmethod
    def _apply(img: np.ndarray, t: CameraImageTransform) -> np.ndarray:
        """Resize, crop and flip; outside the resized image is black. Bilinear throughout: an upscale
        (both sides grow, as in the nuScenes configs) through OpenCV, whose bilinear resize is PIL's when
        nothing shrinks (no antialiasing; within one level from fixed-point rounding) at a fifth of the
        cost, over the input from ``t.origin`` on only (see ``_upscale_origin``); otherwise PIL resamples
        only the kept region (``box``: the filter of resizing everything and cropping, pixels within 2
        levels of it from fixed-point rounding)."""
        height, width = img.shape[:2]
        size = (int(round(width * t.scale[0])), int(round(height * t.scale[1])))
        out_w, out_h = t.out_size
        if _is_upscale(size, (width, height)):
            kept = _upscale_region(img, t)
        else:
            x0, y0 = int(t.crop[0]), int(t.crop[1])  # whole pixels unless upscaling (_upscale_origin)
            x1, y1 = min(x0 + out_w, size[0]), min(y0 + out_h, size[1])
            if size == (width, height):  # e.g. decoded at the pipeline's scale: crop (and flip) only
                kept = img[y0:y1, x0:x1]
            else:
                box = (x0 * width / size[0], y0 * height / size[1], x1 * width / size[0], y1 * height / size[1])
                kept = np.asarray(Image.fromarray(img).resize((x1 - x0, y1 - y0), Image.BILINEAR, box=box))
        if kept.shape[:2] != (out_h, out_w):
            canvas = np.zeros((out_h, out_w, *kept.shape[2:]), dtype=kept.dtype)
            canvas[: kept.shape[0], : kept.shape[1]] = kept
            kept = canvas
        kept = np.ascontiguousarray(kept)
        # OpenCV's mirror is ~10x faster than numpy's copy of a reversed 3-channel view.
        return cv2.flip(kept, 1) if t.flip else kept


def _is_upscale(size: tuple[int, int], native: tuple[int, int]) -> bool:
    """Whether resizing an image of ``native`` (w, h) to ``size`` grows it (one side may stay)."""
    return size[0] >= native[0] and size[1] >= native[1] and tuple(size) != tuple(native)


def _upscale_margin(factor: float) -> int:
    """Input pixels kept before the first needed one, so the first kept output pixel's bilinear source,
    at most (factor - 1) / 2 input pixels before it, never reaches the resampled region's clamped edge."""
    return max(1, math.ceil((factor - 1) / 2))


def _upscale_origin(crop: int, factor: float) -> tuple[int, float]:
    """Where an upscale by ``factor`` resamples from, for a crop at output pixel ``crop``: the input
    pixel ``origin`` (a margin before the first one the crop needs) and the crop actually taken,
    ``factor * origin`` plus the whole output pixels of the resampled region up to ``crop`` (within one
    pixel below it, never past it). Resizing the input from ``origin`` by exactly ``factor`` samples the
    positions the matrix of that crop names, so pixels and matrix agree exactly (docs/data.md, "Loader
    speed"); the crop is fractional only where ``factor * origin`` is."""
    origin = max(0, math.floor(crop / factor) - _upscale_margin(factor))
    inside = math.floor(crop - factor * origin + 1e-9)
    return origin, factor * origin + inside


def _upscale_region(img: np.ndarray, t: CameraImageTransform) -> np.ndarray:
    """The kept output pixels of an upscale, resampled from the input region they need: OpenCV's bilinear
    resize by exactly ``t.scale`` (``fx``/``fy``, no output size, so the factors are not recomputed)
    maps output pixel j of the region from ``t.origin`` to input ``origin + (j + 0.5) / factor - 0.5``,
    the full image's mapping shifted by ``factor * origin`` output pixels. It skips the rows above the
    crop and the columns beside it (the nuScenes configs keep 1600x640 of 1760x990 at scale 1.1)."""
    (out_w, out_h), ends, starts = t.out_size, [], []
    for origin, crop, factor, out, length in zip(t.origin, t.crop, t.scale, t.out_size, img.shape[1::-1]):
        ends.append(min(length, math.ceil((crop + out) / factor) + 2))  # +2: the last pixel's right neighbour
        starts.append(int(round(crop - factor * origin)))
    region = img[t.origin[1] : ends[1], t.origin[0] : ends[0]]
    resized = cv2.resize(region, None, fx=t.scale[0], fy=t.scale[1], interpolation=cv2.INTER_LINEAR)
    return resized[starts[1] : starts[1] + out_h, starts[0] : starts[0] + out_w]


def _native_sizes(frame: dict) -> list[tuple[int, int]]:
    """Each camera's native (w, h): the file's full size when ``LoadMultiViewImages`` recorded it, else
    the image's own."""
    sizes = frame.get("native_sizes")
    return [tuple(s) for s in sizes] if sizes is not None else [(img.shape[1], img.shape[0]) for img in frame["imgs"]]


# Luma weights of PIL's "L" conversion (ITU-R 601-2), the grey that contrast and saturation blend towards.
LUMA = np.array([0.299, 0.587, 0.114])


@TRANSFORMS.register_module()
class PhotometricAugmentation(RandomTransform):
    """Brightness, contrast, saturation and hue jitter, each with probability ``prob``, drawn per camera
    (geometry untouched).

    The four are one colour matrix applied in one pass (rounded, clipped to 0..255 once, at the end;
    OpenCV's ``transform``):
    brightness scales RGB by b; contrast blends with the image's mean luma (after brightness) by c;
    saturation blends each pixel with its luma by s; hue rotates RGB about the grey axis by h turns
    (h in [-hue, hue]; greys stay grey, +h turns red towards green as an HSV hue shift does).
    Factors are drawn in the order brightness, contrast, saturation, hue (docs/data.md "Loader speed")."""

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

    def _draw(self, amount: float) -> float | None:
        return float(self.rng.uniform(1 - amount, 1 + amount)) if self.rng.random() < self.prob else None

    def _jitter(self, img: np.ndarray) -> np.ndarray:
        b, c, s = self._draw(self.brightness), self._draw(self.contrast), self._draw(self.saturation)
        h = float(self.rng.uniform(-self.hue, self.hue)) if self.rng.random() < self.prob and self.hue > 0 else None
        if b is None and c is None and s is None and h is None:
            return img
        mean_luma = float(LUMA @ np.array(cv2.mean(img)[:3])) if c is not None else None
        matrix = color_matrix(b, c, s, h, mean_luma)
        # OpenCV applies the 3x4 affine per pixel with one rounding and saturation to 0..255 (within 0.71
        # of a level of the exact value), about 10x faster than PIL's matrix convert.
        return cv2.transform(np.ascontiguousarray(img), matrix[:3])


def color_matrix(
    brightness: float | None,
    contrast: float | None,
    saturation: float | None,
    hue: float | None,
    mean_luma: float | None = None,
) -> np.ndarray:
    """The 4x4 affine RGB matrix of :class:`PhotometricAugmentation` (None: that jitter is off);
    ``mean_luma`` is the input's mean luma, needed for contrast."""
    mat = np.eye(4)
    if brightness is not None:
        mat = np.diag([brightness] * 3 + [1.0]) @ mat
    if contrast is not None:
        step = np.diag([contrast] * 3 + [1.0])
        step[:3, 3] = (1 - contrast) * (mean_luma if brightness is None else brightness * mean_luma)
        mat = step @ mat
    if saturation is not None:
        step = np.eye(4)
        step[:3, :3] = saturation * np.eye(3) + (1 - saturation) * np.outer(np.ones(3), LUMA)
        mat = step @ mat
    if hue is not None:
        step = np.eye(4)
        step[:3, :3] = _grey_axis_rotation(2 * np.pi * hue)
        mat = step @ mat
    return mat


def _grey_axis_rotation(theta: float) -> np.ndarray:
    """Rodrigues' rotation by ``theta`` about (1, 1, 1) / sqrt(3)."""
    k = np.full(3, 1 / np.sqrt(3))
    cross = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.cos(theta) * np.eye(3) + np.sin(theta) * cross + (1 - np.cos(theta)) * np.outer(k, k)


@TRANSFORMS.register_module()
class BEVAugmentation(RandomTransform):
    """Random rotation about z, scale and x/y mirrors of the ego frame, applied to the boxes, lanes and
    occupancy and folded into every frame's ego-side matrices (``ego2img``, ``cam2ego``, ``ego2global``,
    ``prev2curr``), so projections stay consistent.

    ``half_turn_prob`` adds a half turn (pi) to the rotation. Unlike one mirror, it keeps the world's
    handedness: a mirrored right-hand-traffic scene drives on the left, which erases the heading cue of
    vehicles whose front and back look alike (the synthetic world's; docs/bev.md, "The three-head demo's
    model"). Drawn only when it is positive, so configs without it keep their random stream."""

    def __init__(
        self,
        rotation_range: tuple[float, float] = (-0.3925, 0.3925),
        scale_range: tuple[float, float] = (0.95, 1.05),
        flip_x_prob: float = 0.5,
        flip_y_prob: float = 0.5,
        half_turn_prob: float = 0.0,
        seed: int | None = None,
    ) -> None:
        self.rotation_range, self.scale_range = rotation_range, scale_range
        self.flip_x_prob, self.flip_y_prob = flip_x_prob, flip_y_prob
        if not 0.0 <= half_turn_prob <= 1.0:
            raise ValueError(f"half_turn_prob must be in [0, 1], got {half_turn_prob}")
        self.half_turn_prob = half_turn_prob
        self.seed = seed

    def __call__(self, results: dict) -> dict:
        rotation = float(self.rng.uniform(*self.rotation_range))
        scale = float(self.rng.uniform(*self.scale_range))
        flip_x, flip_y = bool(self.rng.random() < self.flip_x_prob), bool(self.rng.random() < self.flip_y_prob)
        if self.half_turn_prob > 0 and self.rng.random() < self.half_turn_prob:
            rotation += math.pi
        return apply_bev_transform(results, bev_aug_matrix(rotation, scale, flip_x, flip_y))


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
    """uint8 RGB -> float32 (x - mean) / std (ImageNet statistics by default, RGB order) on the CPU.

    The BEV configs leave it out: they ship uint8 images (4x less to write, copy and transfer) and the
    model normalises them on its device with the same arithmetic (bev/spine.py ``normalize_images``,
    docs/data.md "Loader speed"). Float input is taken by the model as already normalised, so a pipeline
    with this step still works."""

    def __init__(self, mean=IMAGENET_MEAN, std=IMAGENET_STD) -> None:
        self.mean, self.std = np.array(mean, np.float32), np.array(std, np.float32)

    def __call__(self, results: dict) -> dict:
        frames = results["frames"]
        shapes = {img.shape for frame in frames for img in frame["imgs"]}
        if len(shapes) == 1 and len(next(iter(shapes))) == 3:
            # One size: normalise into the (T, Ncam, C, H, W) array that PackBEVInputs then takes as is.
            h, w, c = next(iter(shapes))
            stack = np.empty((len(frames), len(frames[0]["imgs"]), c, h, w), dtype=np.float32)
        else:
            stack = None
        for t, frame in enumerate(frames):
            frame["imgs"] = [
                self._normalize(img, None if stack is None else stack[t, n]) for n, img in enumerate(frame["imgs"])
            ]
        results["img_norm"] = dict(mean=self.mean.tolist(), std=self.std.tolist())
        return results

    def _normalize(self, img: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """(x - mean) / std channel by channel into channel-first memory ``out`` (C, H, W), returned as its
        (H, W, C) view: the arithmetic of the broadcast form without its slow 3-wide inner loop."""
        out = np.empty((img.shape[2], *img.shape[:2]), dtype=np.float32) if out is None else out
        for c in range(img.shape[2]):
            np.subtract(img[..., c], self.mean[c], out=out[c], dtype=np.float32)
            np.divide(out[c], self.std[c], out=out[c])
        return out.transpose(1, 2, 0)


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

    ``img`` (T, Ncam, 3, H, W) keeps the images' dtype: uint8 RGB in the BEV configs, whose model
    normalises on its device (bev/spine.py ``normalize_images``); float32 after
    ``NormalizeMultiViewImages``.

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
        img = _stack_channel_first(frames)  # (T, Ncam, 3, H, W) uint8 (float32 after NormalizeMultiViewImages)
        stack = lambda key: torch.as_tensor(np.stack([f[key] for f in frames]), dtype=torch.float32)  # noqa: E731
        shape = results.get("img_shape", _largest_valid(frames))
        sample = dict(
            img=img,
            cams=dict(
                intrinsics=stack("intrinsics"),
                cam2ego=stack("cam2ego"),
                ego2img=stack("ego2img"),
                img_aug=stack("img_aug"),
                valid_hw=torch.as_tensor(np.stack([f["valid_hw"] for f in frames]), dtype=torch.int64),
                img_shape=tuple(int(v) for v in shape),
                pad_shape=tuple(img.shape[3:5]),
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


def _stack_channel_first(frames: list[dict]) -> torch.Tensor:
    """Every frame's (H, W, C) camera images of one size -> one (T, Ncam, C, H, W) tensor of their dtype
    (uint8 as loaded, float32 once normalised): the array ``NormalizeMultiViewImages`` wrote them into when
    they are still its views, else a copy, in shared memory inside a DataLoader worker so that neither
    the worker's hand-over nor ``bev_collate`` of a batch of one copies it again."""
    shared = _shared_stack(frames)
    if shared is not None:
        return torch.from_numpy(shared)
    first = frames[0]["imgs"][0]
    shape = (len(frames), len(frames[0]["imgs"]), first.shape[2], *first.shape[:2])
    out = worker_shareable_empty(shape, torch.from_numpy(np.empty(0, first.dtype)).dtype)
    planes = out.numpy()
    for t, frame in enumerate(frames):
        for c, img in enumerate(frame["imgs"]):
            # OpenCV splits the channels straight into the planes: ~5x numpy's strided plane copies.
            cv2.split(np.ascontiguousarray(img), list(planes[t, c]))
    return out


def _shared_stack(frames: list[dict]) -> np.ndarray | None:
    """The float32 (T, Ncam, C, H, W) array whose [t, c] (as (H, W, C) views) are exactly the frames'
    images, or None (an image was replaced, padded, reordered or is not a view)."""
    base = frames[0]["imgs"][0].base
    if not isinstance(base, np.ndarray) or base.dtype != np.float32 or base.ndim != 5:
        return None
    if base.shape[:2] != (len(frames), len(frames[0]["imgs"])):
        return None
    for t, frame in enumerate(frames):
        for c, img in enumerate(frame["imgs"]):
            view = base[t, c].transpose(1, 2, 0)
            same = img.base is base and img.shape == view.shape and img.strides == view.strides
            if not same or img.__array_interface__["data"][0] != view.__array_interface__["data"][0]:
                return None
    return base
