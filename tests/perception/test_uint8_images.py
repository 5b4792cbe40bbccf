"""The loader ships uint8 images and the model normalises them (docs/data.md "Loader speed"): on a small
image, resize + flip + colour jitter in uint8 followed by the model's normalisation agrees within
rounding with an independent float64 computation of the same steps, equals the CPU float path
(NormalizeMultiViewImages) exactly, and bev_collate gives the same batch from a DataLoader worker as in
process."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader

from bev.spine import normalize_images
from perception.data import bev_collate
from perception.data.transforms_bev import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    NormalizeMultiViewImages,
    PackBEVInputs,
    PadMultiViewImages,
    PhotometricAugmentation,
    ResizeCropFlipImage,
)
from perception.structures.cameras import image_aug_matrix

from .helpers import bilinear_resample

WIDTH, HEIGHT = 20, 12  # native size; x2 -> 40 x 24, padded to 64 x 32
SEED = 7


def smooth_image(seed: int) -> np.ndarray:
    """A (HEIGHT, WIDTH, 3) uint8 image of mid-range colours (little clipping under jitter)."""
    rng = np.random.default_rng(seed)
    return rng.integers(60, 196, size=(HEIGHT, WIDTH, 3), dtype=np.uint8)


def sample_results(images: list[np.ndarray]) -> dict:
    n = len(images)
    frame = dict(token="f0", valid=True, img_paths=[f"cam{c}.jpg" for c in range(n)], imgs=list(images),
                 intrinsics=np.tile(np.eye(3), (n, 1, 1)), cam2ego=np.tile(np.eye(4), (n, 1, 1)),
                 ego2img=np.tile(np.eye(4), (n, 1, 1)), img_aug=np.tile(np.eye(4), (n, 1, 1)),
                 ego2global=np.eye(4), prev2curr=np.eye(4))
    return dict(sample_token="s0", scene_token="scene", timestamp=0, frame_index=0,
                cameras=[f"cam{c}" for c in range(n)], bev_aug=np.eye(4), frames=[frame])


def run_pipeline(images: list[np.ndarray], normalise_on_cpu: bool) -> dict:
    """Resize x2 with a mirror, jitter every camera (all four jitters on), pad, pack."""
    steps = [
        ResizeCropFlipImage((2 * WIDTH, 2 * HEIGHT), scale_range=(2.0, 2.0), flip_prob=1.0, seed=SEED),
        PhotometricAugmentation(brightness=0.3, contrast=0.4, saturation=0.5, hue=0.05, prob=1.0, seed=SEED),
    ]
    steps += [NormalizeMultiViewImages()] if normalise_on_cpu else []
    steps += [PadMultiViewImages(size_divisor=32), PackBEVInputs()]
    results = sample_results(images)
    for step in steps:
        results = step(results)
    return results


# -- the independent float64 reference ---------------------------------------------------------------


def bilinear_x2(img: np.ndarray) -> np.ndarray:
    """Bilinear upscaling by exactly 2 with pixel centres at half-integers and edge clamping (float64)."""
    return bilinear_resample(img, image_aug_matrix(2.0), (2 * img.shape[1], 2 * img.shape[0]))


def luma(img: np.ndarray) -> np.ndarray:
    return img[..., 0] * 0.299 + img[..., 1] * 0.587 + img[..., 2] * 0.114


def jitter(img: np.ndarray, b: float, c: float, s: float, h: float) -> np.ndarray:
    """Brightness, contrast (towards the mean luma), saturation (towards each pixel's luma), hue (rotation
    about the grey axis by h turns, Rodrigues' formula), as docs/data.md states them; no clipping until
    the end."""
    img = img * b
    img = c * img + (1 - c) * luma(img).mean()
    img = s * img + (1 - s) * luma(img)[..., None]
    k = np.full(3, 1 / np.sqrt(3))
    theta = 2 * np.pi * h
    along = (img @ k)[..., None] * k
    return np.cos(theta) * img + np.sin(theta) * np.cross(k, img) + (1 - np.cos(theta)) * along


def photometric_draws(count: int) -> list[tuple[float, float, float, float]]:
    """The factors PhotometricAugmentation draws with prob=1 (the stream is seeded [seed, worker 0]; per
    camera: brightness, contrast, saturation, hue, each a coin then a uniform)."""
    rng = np.random.default_rng([SEED, 0])
    draws = []
    for _ in range(count):
        factors = []
        for amount in (0.3, 0.4, 0.5):
            rng.random()
            factors.append(rng.uniform(1 - amount, 1 + amount))
        rng.random()
        factors.append(rng.uniform(-0.05, 0.05))
        draws.append(tuple(factors))
    return draws


def reference_normalised(images: list[np.ndarray]) -> np.ndarray:
    """(Ncam, 3, 2H, 2W) float64: resize, mirror, jitter, clip, normalise."""
    out = []
    for img, (b, c, s, h) in zip(images, photometric_draws(len(images))):
        big = bilinear_x2(img.astype(np.float64))[:, ::-1]
        rgb = np.clip(jitter(big, b, c, s, h), 0, 255)
        out.append(((rgb - np.array(IMAGENET_MEAN)) / np.array(IMAGENET_STD)).transpose(2, 0, 1))
    return np.stack(out)


# -- tests ---------------------------------------------------------------------------------------------


def test_reference_resize_is_pils_bilinear_upscale():
    # Guards the reference itself: PIL's bilinear x2 of an 8-bit image is the float64 one, rounded to whole
    # levels after each of its two passes (rows, then columns): within one level, half a level on average.
    img = smooth_image(1)
    pil = np.asarray(Image.fromarray(img).resize((2 * WIDTH, 2 * HEIGHT), Image.BILINEAR)).astype(np.float64)
    diff = np.abs(pil - bilinear_x2(img.astype(np.float64)))
    assert diff.max() <= 1.0 and diff.mean() < 0.5


def test_uint8_pipeline_then_model_normalisation_matches_float64_reference():
    images = [smooth_image(1), smooth_image(2)]
    sample = run_pipeline(images, normalise_on_cpu=False)
    img, valid_hw = sample["img"], sample["cams"]["valid_hw"]
    assert img.dtype == torch.uint8 and img.shape == (1, 2, 3, 32, 64)
    assert valid_hw.tolist() == [[[24, 40], [24, 40]]]
    normalised = normalize_images(img, IMAGENET_MEAN, IMAGENET_STD, valid_hw)
    assert normalised.dtype == torch.float32
    levels = (normalised[0, :, :, :24, :40].double().numpy() - reference_normalised(images)) * np.array(
        IMAGENET_STD)[:, None, None]
    # The uint8 path rounds twice (the resize, within one level, then the jitter, half a level), and the
    # jitter's gain carries the first: 1.9 levels at most, 0.42 on average here. A wrong draw, step order
    # or constant is tens of levels off.
    assert np.abs(levels).max() < 2.5
    assert np.abs(levels).mean() < 0.6
    # The padding is zero, as when already-normalised images are padded.
    assert float(normalised[..., 24:, :].abs().max()) == 0 and float(normalised[..., 40:].abs().max()) == 0


def test_model_normalisation_equals_the_cpu_float_path_exactly():
    images = [smooth_image(3), smooth_image(4)]
    as_uint8 = run_pipeline(images, normalise_on_cpu=False)
    as_float = run_pipeline(images, normalise_on_cpu=True)
    assert as_float["img"].dtype == torch.float32
    on_model = normalize_images(as_uint8["img"], IMAGENET_MEAN, IMAGENET_STD, as_uint8["cams"]["valid_hw"])
    assert torch.equal(on_model, as_float["img"])


def test_normalize_images_by_hand():
    img = torch.tensor([0, 255], dtype=torch.uint8).view(1, 1, 2).expand(3, 1, 2).contiguous()
    out = normalize_images(img, (10.0, 20.0, 30.0), (2.0, 4.0, 5.0), torch.tensor([1, 1]))
    assert out[:, 0, 0].tolist() == [-5.0, -5.0, -6.0]
    assert out[:, 0, 1].tolist() == [0.0, 0.0, 0.0]  # column 1 is padding (1 valid column)


class _Samples(torch.utils.data.Dataset):
    """Packed samples of two sizes (the second one smaller, so the batch pads it)."""

    def __init__(self) -> None:
        self.samples = [run_pipeline([smooth_image(5), smooth_image(6)], normalise_on_cpu=False),
                        _smaller(run_pipeline([smooth_image(7), smooth_image(8)], normalise_on_cpu=False))]

    def __len__(self) -> int:
        return 2

    def __getitem__(self, i: int) -> dict:
        return self.samples[i]


def _smaller(sample: dict) -> dict:
    sample["img"] = sample["img"][..., :16, :32].clone()
    sample["cams"]["valid_hw"] = torch.full_like(sample["cams"]["valid_hw"], 16)
    sample["cams"]["pad_shape"] = (16, 32)
    return sample


def test_bev_collate_in_a_worker_gives_the_in_process_batch():
    dataset = _Samples()
    in_process = bev_collate([dataset[0], dataset[1]])
    from_worker = next(iter(DataLoader(dataset, batch_size=2, num_workers=1, collate_fn=bev_collate)))
    assert from_worker["img"].dtype == torch.uint8 and from_worker["img"].shape == (2, 1, 2, 3, 32, 64)
    assert torch.equal(from_worker["img"], in_process["img"])
    assert torch.equal(in_process["img"][0], dataset[0]["img"])
    assert torch.equal(in_process["img"][1, ..., :16, :32], dataset[1]["img"])
    assert int(in_process["img"][1, ..., 16:, :].max()) == 0 and int(in_process["img"][1, ..., 32:].max()) == 0
    assert in_process["cams"]["pad_shape"] == (32, 64)


class _PackedWhereLoaded(torch.utils.data.Dataset):
    """Runs the pipeline, PackBEVInputs included, where the DataLoader calls it (in its worker)."""

    def __len__(self) -> int:
        return 2

    def __getitem__(self, i: int) -> dict:
        return run_pipeline([smooth_image(5 + i), smooth_image(7 + i)], normalise_on_cpu=False)


def _collate_noting_copies(batch: list[dict]) -> dict:
    out = bev_collate(batch)
    out["packed_shared"] = batch[0]["img"].is_shared()
    out["batch_is_the_packed_tensor"] = out["img"].data_ptr() == batch[0]["img"].data_ptr()
    return out


def test_a_batch_of_one_leaves_the_worker_without_another_copy():
    # Inside a worker PackBEVInputs writes the images into shared memory, and bev_collate takes a batch of
    # one as it is; in process it is a view too. A batch of two is one new buffer.
    dataset = _PackedWhereLoaded()
    batches = list(DataLoader(dataset, batch_size=1, num_workers=1, collate_fn=_collate_noting_copies))
    assert len(batches) == 2
    for i, batch in enumerate(batches):
        assert batch["packed_shared"] and batch["batch_is_the_packed_tensor"]
        assert batch["img"].shape == (1, 1, 2, 3, 32, 64) and torch.equal(batch["img"][0], dataset[i]["img"])
    in_process = _collate_noting_copies([dataset[0]])
    assert not in_process["packed_shared"] and in_process["batch_is_the_packed_tensor"]
    two = _collate_noting_copies([dataset[0], dataset[1]])
    assert not two["batch_is_the_packed_tensor"] and torch.equal(two["img"][1], dataset[1]["img"])


def test_upscale_resamples_what_its_matrix_says():
    # ResizeCropFlipImage upscales through OpenCV over only the input region its crop needs, so the crop
    # may fall between output pixels. Against the float64 bilinear resampling through the transform's own
    # matrix, on an image of sharp edges (blocks of 10 x 10 pixels): within one level (OpenCV's fixed-point
    # weights); a tenth of a pixel of disagreement between matrix and pixels would cost tens of levels.
    rng = np.random.default_rng(0)
    blocks = Image.fromarray(rng.integers(0, 256, (45, 80, 3), dtype=np.uint8)).resize((800, 450), Image.NEAREST)
    img = np.asarray(blocks)
    resize = ResizeCropFlipImage((800, 320))
    for scale, offset in ((1.07, None), (1.2, 37), (2.0, None), (3.7, 1500)):
        size = (round(800 * scale), round(450 * scale))
        slack = size[0] - 800
        t = resize.camera_transform(800, 450, scale, (800, 320), offset, slack, False)
        asked = (slack // 2 if offset is None else offset, size[1] - 320)
        assert all(a - 1 < c <= a for a, c in zip(asked, t.crop)), (t.crop, asked)
        assert t.origin[1] > 0  # the rows above the crop were not resampled
        got = resize._apply(img, t).astype(int)
        diff = np.abs(got - bilinear_resample(img, t.matrix, (800, 320)))
        assert diff.max() <= 1 and diff.mean() < 0.3, scale
        if all(float(c).is_integer() for c in t.crop):  # whole pixels (x2): PIL's resize, then the crop
            x0, y0 = (int(c) for c in t.crop)
            pil = np.asarray(Image.fromarray(img).resize(size, Image.BILINEAR))[y0:y0 + 320, x0:x0 + 800]
            assert np.abs(got - pil).max() <= 1
        mirrored = resize.camera_transform(800, 450, scale, (800, 320), offset, slack, True)
        assert np.array_equal(resize._apply(img, mirrored), resize._apply(img, t)[:, ::-1])
