"""Reduced-size JPEG decoding in LoadMultiViewImages (docs/data.md "Loader speed"): pixels close to a full
decode + resize, projection matrices exact (checked against hand-computed intrinsics and against where a
drawn 3D point shows up in the pixels), labels and errors; and the loader-speed paths of the other
image transforms keep their results."""

from __future__ import annotations

import io
import re

import numpy as np
import pytest
import simplejpeg
from PIL import Image

from perception.data import ImageLoadError
from perception.data.transforms_bev import (
    LoadMultiViewImages,
    NormalizeMultiViewImages,
    PhotometricAugmentation,
    ResizeCropFlipImage,
    _stack_channel_first,
    color_matrix,
    dct_numerator,
    read_image,
)
from perception.structures.cameras import compose_ego2img, project_points

from .helpers import bilinear_resample

# A point 20 m ahead of a camera looking along ego x (OpenCV axes: x right, y down, z forward).
CAM2EGO = np.array([[0.0, 0.0, 1.0, 0.0], [-1.0, 0.0, 0.0, 0.0], [0.0, -1.0, 0.0, 1.5], [0.0, 0.0, 0.0, 1.0]])
POINT = np.array([[20.0, 1.3, 1.1]])
BLOB_SIGMA = 6.0  # native pixels


def texture(w: int, h: int, seed: int = 0) -> np.ndarray:
    """Smooth colour waves with one sharp-edged block (a stand-in for a camera picture)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w] + 0.5
    img = np.zeros((h, w, 3))
    for c in range(3):
        a, b, phase = rng.uniform(0.02, 0.15), rng.uniform(0.02, 0.15), rng.uniform(0, 6)
        img[..., c] = 128 + 70 * np.sin(a * xx + phase) * np.cos(b * yy)
    img[h // 3 : h // 2, w // 4 : w // 2] = (220, 40, 40)
    return np.clip(img, 0, 255).astype(np.uint8)


def blob(w: int, h: int, uv: np.ndarray) -> np.ndarray:
    """A grey picture with a bright Gaussian blob centred at continuous pixel ``uv`` (pixel i spans [i, i+1))."""
    yy, xx = np.mgrid[0:h, 0:w] + 0.5
    value = 40 + 200 * np.exp(-((xx - uv[0]) ** 2 + (yy - uv[1]) ** 2) / (2 * BLOB_SIGMA**2))
    return np.repeat(value[..., None], 3, 2).astype(np.uint8)


def centroid(img: np.ndarray) -> np.ndarray:
    """Continuous-pixel centroid of the blob (background 40 removed)."""
    weight = np.clip(img[..., 1].astype(np.float64) - 45, 0, None)
    yy, xx = np.mgrid[0 : img.shape[0], 0 : img.shape[1]] + 0.5
    return np.array([(weight * xx).sum(), (weight * yy).sum()]) / weight.sum()


def save_jpeg(path, img: np.ndarray, quality: int = 95) -> str:
    Image.fromarray(img).save(path, quality=quality)
    return str(path)


def intrinsics(w: int, h: int) -> np.ndarray:
    return np.array([[0.9 * w, 0.0, w / 2 + 3.3], [0.0, 0.9 * w, h / 2 - 2.1], [0.0, 0.0, 1.0]])


def camera_results(paths: list[str], sizes: list[tuple[int, int]]) -> dict:
    """A one-frame results dict, as BEVDataset builds it, for cameras of the given native sizes."""
    ks = [intrinsics(w, h) for w, h in sizes]
    frame = dict(
        token="sample-token-0",
        valid=True,
        img_paths=paths,
        intrinsics=np.stack(ks),
        cam2ego=np.stack([CAM2EGO] * len(ks)),
        ego2img=np.stack([compose_ego2img(k, CAM2EGO) for k in ks]),
        img_aug=np.tile(np.eye(4), (len(ks), 1, 1)),
    )
    return dict(cameras=[f"CAM{c}" for c in range(len(paths))], frames=[frame], bev_aug=np.eye(4))


def blob_camera(tmp_path, w: int, h: int, name: str = "blob.jpg") -> str:
    """A JPEG of a blob drawn where POINT projects in a (w, h) camera."""
    uv, _ = project_points(compose_ego2img(intrinsics(w, h), CAM2EGO), POINT)
    return save_jpeg(tmp_path / name, blob(w, h, uv[0]))


def run(steps: list, results: dict) -> dict:
    for step in steps:
        results = step(results)
    return results


@pytest.mark.parametrize("scale, m", [(None, 8), (1.0, 8), (1.5, 8), (0.5, 4), (0.51, 5), (0.375, 3), (0.3, 3),
                                      (0.125, 1), (0.05, 1)])
def test_dct_numerator_is_the_smallest_scale_not_below(scale, m):
    assert dct_numerator(scale) == m


def test_full_decode_is_pil_bit_for_bit(tmp_path):
    path = save_jpeg(tmp_path / "t.jpg", texture(320, 176), quality=90)
    decoded = read_image(path, "tok")
    assert np.array_equal(decoded.image, np.asarray(Image.open(path).convert("RGB")))
    assert decoded.native_size == (320, 176) and decoded.factor == 1.0


@pytest.mark.parametrize("m, mean_tol", [(4, 1.5), (2, 2.5)])
def test_reduced_decode_is_close_to_full_decode_and_resize(tmp_path, m, mean_tol):
    # Tolerance: mean |diff| <= mean_tol grey levels and 99th percentile <= 16 (the filters differ at the
    # block's sharp edges); measured 0.94 / 14 at 1/2 and 1.04 / 12 at 1/4.
    path = save_jpeg(tmp_path / "t.jpg", texture(320, 176), quality=90)
    reduced = read_image(path, "tok", numerator=m)
    size = (320 * m // 8, 176 * m // 8)
    full = np.asarray(Image.open(path).convert("RGB").resize(size, Image.BILINEAR))
    assert reduced.image.shape == (size[1], size[0], 3) and reduced.factor == m / 8
    diff = np.abs(reduced.image.astype(np.int64) - full)
    assert diff.mean() <= mean_tol and np.percentile(diff, 99) <= 16, (diff.mean(), np.percentile(diff, 99))


def test_dct_scaled_grid_is_exactly_m_over_8(tmp_path):
    # Independent of the matrices: a blob drawn at native (u, v) lands at (u, v) * M / 8 in the decoded
    # picture (pixel centres at half-integers), within 0.05 decoded pixels (measured <= 0.008).
    uv = np.array([201.3, 97.7])
    path = save_jpeg(tmp_path / "b.jpg", blob(400, 225, uv))
    for m in (1, 2, 3, 4, 5, 6, 7):
        decoded = read_image(path, "tok", numerator=m)
        assert decoded.image.shape[:2] == (-(-225 * m // 8), -(-400 * m // 8))
        np.testing.assert_allclose(centroid(decoded.image), uv * m / 8, atol=0.05)


def test_reduced_decode_gives_the_matrices_of_full_decode_and_resize(tmp_path):
    w, h = 320, 176
    path = blob_camera(tmp_path, w, h)
    resize = dict(final_size=(144, 80), scale_range=(0.5, 0.5), training=False)
    full = run([LoadMultiViewImages(), ResizeCropFlipImage(**resize)], camera_results([path], [(w, h)]))
    reduced = run([LoadMultiViewImages(decode_scale=0.5), ResizeCropFlipImage(**resize)],
                  camera_results([path], [(w, h)]))
    a, b = full["frames"][0], reduced["frames"][0]
    assert b["imgs"][0].shape == a["imgs"][0].shape == (80, 144, 3)
    # By hand: resize 320x176 by 1/2 to 160x88, centred crop x0 = (160 - 144) // 2 = 8, bottom crop y0 = 8.
    k = intrinsics(w, h)
    expected = np.array([[k[0, 0] / 2, 0, k[0, 2] / 2 - 8], [0, k[1, 1] / 2, k[1, 2] / 2 - 8], [0, 0, 1]])
    np.testing.assert_allclose(b["intrinsics"][0], expected, rtol=0, atol=1e-12)
    for key in ("intrinsics", "ego2img", "img_aug"):
        np.testing.assert_allclose(b[key], a[key], rtol=0, atol=1e-12)
    assert "native_sizes" not in b  # the resize made its output the next transform's native image
    # The point projects where its blob is, in both (0.05 output pixels; measured <= 0.003).
    for frame in (a, b):
        uv, _ = project_points(frame["ego2img"][0], POINT)
        np.testing.assert_allclose(centroid(frame["imgs"][0]), uv[0], atol=0.05)


def test_sizes_not_divisible_by_8_stay_exact_for_their_own_pixels(tmp_path):
    # 250x141 at 1/2 decodes to 125x71 (libjpeg rounds up), a resize by exactly 1/2; the resize to the
    # pipeline's 125x70 is then 70/71 on rows, so the matrix is K scaled by (1/2, 1/2 * 70/71).
    w, h = 250, 141
    path = blob_camera(tmp_path, w, h)
    out = run([LoadMultiViewImages(decode_scale=0.5),
               ResizeCropFlipImage(final_size=(125, 70), scale_range=(0.5, 0.5), training=False)],
              camera_results([path], [(w, h)]))["frames"][0]
    k = intrinsics(w, h)
    sx, sy = 0.5, 0.5 * 70 / 71
    expected = np.array([[k[0, 0] * sx, 0, k[0, 2] * sx], [0, k[1, 1] * sy, k[1, 2] * sy], [0, 0, 1]])
    np.testing.assert_allclose(out["intrinsics"][0], expected, rtol=1e-12, atol=1e-12)
    # Within 0.05 pixels (measured 0.004); the full-decode matrix (rows 70/141) would be 0.25 off here.
    uv, _ = project_points(out["ego2img"][0], POINT)
    np.testing.assert_allclose(centroid(out["imgs"][0]), uv[0], atol=0.05)


def test_decode_scale_per_camera_and_without_a_resize(tmp_path):
    paths = [blob_camera(tmp_path, 320, 176, "a.jpg"), blob_camera(tmp_path, 320, 176, "b.jpg")]
    results = camera_results(paths, [(320, 176)] * 2)
    out = LoadMultiViewImages(decode_scale={"CAM0": 0.25, "CAM1": 0.9})(results)["frames"][0]
    assert [img.shape[:2] for img in out["imgs"]] == [(44, 80), (176, 320)]
    assert out["native_sizes"] == [(320, 176), (320, 176)]
    np.testing.assert_allclose(out["intrinsics"][0, :2], intrinsics(320, 176)[:2] / 4, atol=1e-12)
    np.testing.assert_allclose(out["intrinsics"][1], intrinsics(320, 176), atol=0)
    for c in range(2):  # no resize after the loader: the decoded pixels and the matrices still agree
        uv, _ = project_points(out["ego2img"][c], POINT)
        np.testing.assert_allclose(centroid(out["imgs"][c]), uv[0], atol=0.05)
    with pytest.raises(ValueError, match="no factor for camera 'CAM1'"):
        LoadMultiViewImages(decode_scale={"CAM0": 0.5})(camera_results(paths, [(320, 176)] * 2))


def test_image_space_labels_follow_the_decode_scale(tmp_path):
    path = save_jpeg(tmp_path / "t.jpg", texture(320, 176))
    results = camera_results([path], [(320, 176)])
    results.update(gt_boxes_2d=[np.array([[40.0, 20.0, 120.0, 100.0]])], gt_labels_2d=[np.array([3])])
    out = LoadMultiViewImages(decode_scale=0.5)(results)
    np.testing.assert_allclose(out["gt_boxes_2d"][0], [[20.0, 10.0, 60.0, 50.0]])
    np.testing.assert_allclose(out["frames"][0]["img_aug"][0], np.diag([0.5, 0.5, 1.0, 1.0]))


def test_png_and_grayscale_images_decode(tmp_path):
    rgb = texture(96, 64)
    png = tmp_path / "t.png"
    Image.fromarray(rgb).save(png)
    decoded = read_image(str(png), "tok", numerator=4)  # not a JPEG: full size, factor 1
    assert np.array_equal(decoded.image, rgb) and decoded.factor == 1.0
    grey = tmp_path / "g.jpg"
    Image.fromarray(rgb[..., 0]).save(grey, quality=95)
    decoded = read_image(str(grey), "tok")
    assert np.array_equal(decoded.image, np.asarray(Image.open(grey).convert("RGB")))


@pytest.mark.parametrize("decode_scale", [None, 0.5])
def test_truncated_and_corrupt_jpegs_name_the_file_and_sample(tmp_path, decode_scale):
    data = io.BytesIO()
    Image.fromarray(texture(320, 176)).save(data, "JPEG", quality=90)
    truncated, corrupt = tmp_path / "truncated.jpg", tmp_path / "corrupt.jpg"
    truncated.write_bytes(data.getvalue()[: len(data.getvalue()) // 2])
    corrupt.write_bytes(b"\xff\xd8 not a jpeg")
    load = LoadMultiViewImages(decode_scale=decode_scale)
    for path in (truncated, corrupt):
        with pytest.raises(ImageLoadError, match=f"{re.escape(path.name)} of sample sample-token-0 is corrupt"):
            load(camera_results([str(path)], [(320, 176)]))
    with pytest.raises(ImageLoadError, match="missing.jpg of sample sample-token-0 does not exist"):
        load(camera_results([str(tmp_path / "missing.jpg")], [(320, 176)]))
    with pytest.raises(ValueError):
        simplejpeg.decode_jpeg(truncated.read_bytes())  # strict: libjpeg-turbo's warning is an error


# ---- the loader-speed paths of the other transforms keep their results


def test_box_resize_matches_resize_then_crop(tmp_path):
    img = texture(320, 176)
    rcf = ResizeCropFlipImage((144, 80))
    for scale, out, offset, flip in ((1.13, (300, 160), 20, False), (0.5, (144, 80), 5, True),
                                     (0.37, (120, 60), 3, False), (1.3, (500, 300), None, True)):
        t = rcf.camera_transform(320, 176, scale, out, offset, 40, flip)
        got = ResizeCropFlipImage._apply(img, t)
        if t.origin != (0, 0):  # an upscale from the region its crop needs: its crop may be fractional
            assert np.abs(got - bilinear_resample(img, t.matrix, out)).max() <= 1
            continue
        size = (int(round(320 * t.scale[0])), int(round(176 * t.scale[1])))
        (x0, y0), (w, h) = (int(c) for c in t.crop), t.out_size
        pil = Image.fromarray(img).resize(size, Image.BILINEAR).crop((x0, y0, x0 + w, y0 + h))
        expected = np.asarray(pil.transpose(Image.FLIP_LEFT_RIGHT) if flip else pil)
        assert got.shape == expected.shape
        assert np.abs(got.astype(np.int64) - expected).max() <= 2  # PIL's fixed-point filter rounding


def test_normalize_and_pack_keep_the_broadcast_arithmetic(tmp_path):
    imgs = [texture(64, 32, seed) for seed in range(4)]
    results = dict(frames=[dict(imgs=imgs[:2], valid=True), dict(imgs=imgs[2:], valid=True)])
    norm = NormalizeMultiViewImages()
    out = norm(results)
    expected = np.stack([np.stack([(i.astype(np.float32) - norm.mean) / norm.std for i in imgs[k : k + 2]])
                         for k in (0, 2)])
    packed = np.stack([np.stack(f["imgs"]) for f in out["frames"]])
    assert np.array_equal(packed, expected)
    stacked = _stack_channel_first(out["frames"])
    assert np.array_equal(stacked.numpy(), expected.transpose(0, 1, 4, 2, 3))
    assert stacked.data_ptr() == out["frames"][0]["imgs"][0].base.ctypes.data  # taken as is, not copied
    out["frames"][1]["imgs"] = out["frames"][1]["imgs"][::-1]  # reordered: copied in the new order
    again = _stack_channel_first(out["frames"])
    assert again.data_ptr() != stacked.data_ptr()
    assert np.array_equal(again[1, 0].numpy(), expected[1, 1].transpose(2, 0, 1))


def test_color_matrix_semantics():
    rgb = np.array([[200.0, 30.0, 30.0, 1.0], [90.0, 90.0, 90.0, 1.0]]).T
    assert np.array_equal(color_matrix(None, None, None, None), np.eye(4))
    np.testing.assert_allclose(color_matrix(1.2, None, None, None) @ rgb, rgb * [[1.2], [1.2], [1.2], [1]])
    # Contrast pulls towards the (brightened) mean luma; saturation 0 gives each pixel's luma.
    np.testing.assert_allclose((color_matrix(None, 0.0, None, None, mean_luma=77.0) @ rgb)[:3], 77.0)
    luma = np.array([0.299, 0.587, 0.114]) @ rgb[:3]
    np.testing.assert_allclose((color_matrix(None, None, 0.0, None) @ rgb)[:3], np.tile(luma, (3, 1)))
    # Hue: greys stay grey, a third of a turn takes red to green.
    np.testing.assert_allclose((color_matrix(None, None, None, 0.05) @ rgb)[:3, 1], 90.0)
    np.testing.assert_allclose(color_matrix(None, None, None, 1 / 3)[:3, :3] @ [1, 0, 0], [0, 1, 0], atol=1e-12)


def test_photometric_applies_the_matrix_once_with_rounding_and_clipping():
    img = texture(64, 32)
    aug = PhotometricAugmentation(prob=1.0, seed=0)
    out = aug._jitter(img)
    aug2 = PhotometricAugmentation(prob=1.0, seed=0)  # the same draws, applied by hand
    b, c, s = aug2._draw(0.25), aug2._draw(0.5), aug2._draw(0.5)
    aug2.rng.random()
    h = float(aug2.rng.uniform(-0.05, 0.05))
    mean_luma = float(np.array([0.299, 0.587, 0.114]) @ img.reshape(-1, 3).mean(0))
    mat = color_matrix(b, c, s, h, mean_luma)
    expected = np.clip(np.floor(img @ mat[:3, :3].T + mat[:3, 3] + 0.5), 0, 255)
    assert np.abs(out.astype(np.float64) - expected).max() <= 1  # PIL's float32 arithmetic
