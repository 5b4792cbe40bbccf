#!/usr/bin/env python
"""Run an exported BEV detector (tools/export.py) on one sample of a nuScenes-format world (e.g. the
synthetic one of tools/create_data.py) through ONNX Runtime, and draw its boxes. PyTorch is not
imported: image loading, normalisation, history and decoding are numpy (docs/deployment.md).

    python tools/export.py configs/bev/bevformer_v2_tiny_synthetic.py CKPT --out bev_tiny.onnx
    python tools/infer_onnx.py bev_tiny.onnx data/synthetic/nuscenes_infos_val.pkl --index 5 --out sample.png

The graph's ``img`` input fixes the input size: each camera image is normalised with the model's
statistics (the file's ``img_mean``/``img_std`` metadata, written by tools/export.py) and zero-padded
at the bottom and right to it, as the model does with the loader's uint8 images. A model
with history gets the earlier frames' BEVs from the same graph: its ``bev`` output for frame t's images
projected with ``ego2img_t @ inv(prev2curr_t)``, which aligns that BEV with the current frame exactly as
the PyTorch spine does.
"""

from __future__ import annotations

import argparse
import json
import pickle
from pathlib import Path

import numpy as np
from _cli import UsageError, run_tool
from PIL import Image, ImageDraw

PRED_COLOR, GT_COLOR = (230, 40, 200), (40, 200, 60)


def load_infos(path: str) -> tuple[list[dict], dict]:
    if not Path(path).is_file():
        raise UsageError(f"info file {path} does not exist")
    try:
        with open(path, "rb") as f:
            data = pickle.load(f)
    except (EOFError, pickle.UnpicklingError, ValueError, ImportError, AttributeError) as err:
        raise UsageError(f"info file {path} is not a readable pickle: {err}") from err
    if not isinstance(data, dict) or "infos" not in data or "metadata" not in data:
        raise UsageError(f"info file {path} is not a perception info file (a dict with 'metadata' and 'infos')")
    return data["infos"], data["metadata"]


def camera_inputs(info: dict, cameras: list[str], data_root: Path, detector: Detector
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[np.ndarray]]:
    """(Ncam, 3, H, W) images normalised with the model's statistics and zero-padded at the bottom and right
    to the graph's input size, (Ncam, 4, 4) ego2img, (Ncam, 2) valid rows and columns, and the raw RGB
    images (for the picture)."""
    height, width = detector.height, detector.width
    images, raw, valid = np.zeros((len(cameras), 3, height, width), np.float32), [], []
    for n, name in enumerate(cameras):
        path = data_root / info["cams"][name]["data_path"]
        if not path.is_file():
            raise UsageError(f"image {path} of sample {info['token']} does not exist (check --data-root)")
        rgb = np.asarray(Image.open(path).convert("RGB"))
        h, w = rgb.shape[:2]
        if h > height or w > width:
            raise UsageError(f"image {path} is {h}x{w}, larger than the graph's {height}x{width} input "
                             "(export with --resolution HxW)")
        images[n, :, :h, :w] = ((rgb.astype(np.float32) - detector.mean) / detector.std).transpose(2, 0, 1)
        raw.append(rgb)
        valid.append((h, w))
    ego2img = np.stack([np.asarray(info["cams"][c]["ego2img"], np.float32) for c in cameras])
    return images, ego2img, np.array(valid, np.int64), raw


def past_frames(infos: list[dict], index: int, count: int) -> list[dict | None]:
    """The ``count`` key frames before ``infos[index]``, oldest first; None where the scene has none."""
    by_token = {info["token"]: info for info in infos}
    frames, current = [], infos[index]
    for _ in range(count):
        prev = current.get("prev")
        current = by_token.get(prev) if prev and current["frame_index"] > 0 else None
        frames.append(current)
        if current is None:
            frames.extend([None] * (count - len(frames)))
            break
    return frames[::-1]


class Detector:
    """An ONNX Runtime session on an exported BEV detector, fed with numpy arrays."""

    def __init__(self, path: str, threads: int | None = None) -> None:
        import onnxruntime as ort

        if not Path(path).is_file():
            raise UsageError(f"model {path} does not exist")
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        self.session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        self.inputs = {i.name: i.shape for i in self.session.get_inputs()}
        self.outputs = [o.name for o in self.session.get_outputs()]
        if "img" not in self.inputs or "detection.boxes" not in self.outputs:
            raise UsageError(f"model {path} is not an exported BEV detector (inputs {list(self.inputs)}, outputs "
                             f"{self.outputs})")
        _, self.cameras, _, self.height, self.width = self.inputs["img"]
        self.history_frames = self.inputs["history"][1] if "history" in self.inputs else 0
        metadata = self.session.get_modelmeta().custom_metadata_map
        if "img_mean" not in metadata or "img_std" not in metadata:
            raise UsageError(f"model {path} has no img_mean/img_std metadata (export it with tools/export.py)")
        self.mean = np.array(json.loads(metadata["img_mean"]), np.float32)
        self.std = np.array(json.loads(metadata["img_std"]), np.float32)

    def run(self, images: np.ndarray, ego2img: np.ndarray, valid_hw: np.ndarray, history: np.ndarray | None = None,
            history_valid: np.ndarray | None = None) -> dict[str, np.ndarray]:
        feed = dict(img=images[None], ego2img=ego2img[None], valid_hw=valid_hw[None])
        if self.history_frames:
            feed.update(history=history[None], history_valid=history_valid[None])
        return dict(zip(self.outputs, self.session.run(None, feed)))

    def empty_history(self) -> tuple[np.ndarray, np.ndarray]:
        shape = [d if isinstance(d, int) else 1 for d in self.inputs["history"][1:]]
        return np.zeros(shape, np.float32), np.zeros(self.history_frames, bool)


def detect(detector: Detector, infos: list[dict], index: int, cameras: list[str], data_root: Path):
    """The current sample's (boxes, scores, labels) kept by the decoder (inside its range), the raw images and
    matrices, and how many earlier frames the history had ("used/needed")."""
    info = infos[index]
    images, ego2img, valid_hw, raw = camera_inputs(info, cameras, data_root, detector)
    history = history_valid = None
    if detector.history_frames:
        history, history_valid = detector.empty_history()
        current_from_global = np.linalg.inv(np.asarray(info["ego2global"], np.float64))
        for t, past in enumerate(past_frames(infos, index, detector.history_frames)):
            if past is None:
                continue
            past_images, past_ego2img, past_valid, _ = camera_inputs(past, cameras, data_root, detector)
            prev2curr = current_from_global @ np.asarray(past["ego2global"], np.float64)
            to_past = (past_ego2img.astype(np.float64) @ np.linalg.inv(prev2curr)).astype(np.float32)
            empty, no_history = detector.empty_history()
            history[t] = detector.run(past_images, to_past, past_valid, empty, no_history)["bev"][0]
            history_valid[t] = True
    out = detector.run(images, ego2img, valid_hw, history, history_valid)
    keep = out["detection.inside"][0]
    boxes, scores, labels = (out[f"detection.{k}"][0][keep] for k in ("boxes", "scores", "labels"))
    used = 0 if history_valid is None else int(history_valid.sum())
    return boxes, scores, labels, raw, ego2img, f"{used}/{detector.history_frames}"


# -- the picture -------------------------------------------------------------------------------------------
def bev_corners(boxes: np.ndarray) -> np.ndarray:
    """(N, 4, 2) ego-frame (x, y) footprint corners of (x, y, z, w, l, h, yaw, ...) boxes."""
    half_l, half_w = boxes[:, 4] / 2, boxes[:, 3] / 2
    local = np.stack([np.stack([half_l, half_w], -1), np.stack([half_l, -half_w], -1),
                      np.stack([-half_l, -half_w], -1), np.stack([-half_l, half_w], -1)], 1)
    cos, sin = np.cos(boxes[:, 6])[:, None], np.sin(boxes[:, 6])[:, None]
    x = local[..., 0] * cos - local[..., 1] * sin + boxes[:, None, 0]
    y = local[..., 0] * sin + local[..., 1] * cos + boxes[:, None, 1]
    return np.stack([x, y], -1)


def draw(raw: list[np.ndarray], ego2img: np.ndarray, boxes: np.ndarray, scores: np.ndarray, labels: np.ndarray,
         classes: list[str], gt_boxes: np.ndarray | None, score_thr: float, bev_range: float = 50.0,
         panel: int = 360) -> Image.Image:
    """The cameras in two rows with the predicted box centres, and a BEV panel (x up, y left) with the
    predicted (magenta) and ground-truth (green) footprints."""
    shown = scores >= score_thr
    cols = -(-len(raw) // 2)
    height = max(int(round(panel * im.shape[0] / im.shape[1])) for im in raw)
    canvas = Image.new("RGB", (cols * panel + 2 * height, 2 * height), (20, 20, 24))
    pen = ImageDraw.Draw(canvas)
    for n, (rgb, matrix) in enumerate(zip(raw, ego2img)):
        scale = panel / rgb.shape[1]
        x0, y0 = (n % cols) * panel, (n // cols) * height
        canvas.paste(Image.fromarray(rgb).resize((panel, int(round(rgb.shape[0] * scale)))), (x0, y0))
        for box, label in zip(boxes[shown], labels[shown]):
            u, v, depth = (matrix @ np.array([*box[:3], 1.0]))[:3]
            if depth > 0.1 and 0 <= u / depth < rgb.shape[1] and 0 <= v / depth < rgb.shape[0]:
                cx, cy = x0 + u / depth * scale, y0 + v / depth * scale
                pen.ellipse([cx - 3, cy - 3, cx + 3, cy + 3], outline=PRED_COLOR, width=2)
                pen.text((cx + 4, cy - 10), classes[int(label)], fill=PRED_COLOR)
    side, origin = 2 * height, cols * panel

    def to_pixels(xy: np.ndarray) -> list[tuple[float, float]]:  # ego x forward = up, y left = left
        return [(origin + side / 2 - y / bev_range * side / 2, side / 2 - x / bev_range * side / 2) for x, y in xy]

    pen.rectangle([origin, 0, origin + side - 1, side - 1], outline=(90, 90, 90))
    for footprints, color in ((bev_corners(gt_boxes) if gt_boxes is not None and len(gt_boxes) else [], GT_COLOR),
                              (bev_corners(boxes[shown]), PRED_COLOR)):
        for corners in footprints:
            pen.polygon(to_pixels(corners), outline=color)
    pen.rectangle([origin + side / 2 - 3, side / 2 - 5, origin + side / 2 + 3, side / 2 + 5], fill=(240, 240, 240))
    return canvas


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", help="a BEV detector exported by tools/export.py")
    parser.add_argument("infos", help="an info file (tools/create_data.py)")
    parser.add_argument("--data-root", default=None, help="the world's root (default: the info file's folder)")
    parser.add_argument("--index", type=int, default=0, help="which sample of the info file")
    parser.add_argument("--out", default="onnx_sample.png", help="the picture to write")
    parser.add_argument("--score-thr", type=float, default=0.3, help="boxes drawn from this score")
    parser.add_argument("--threads", type=int, default=None, help="ONNX Runtime intra-op threads")
    args = parser.parse_args(argv)
    infos, metadata = load_infos(args.infos)
    if not 0 <= args.index < len(infos):
        raise UsageError(f"--index {args.index} is outside the info file's {len(infos)} samples")
    detector = Detector(args.model, args.threads)
    cameras = list(metadata.get("cameras") or infos[args.index]["cams"])
    if len(cameras) != detector.cameras:
        raise UsageError(f"the model takes {detector.cameras} cameras, the info file has {len(cameras)}")
    data_root = Path(args.data_root) if args.data_root else Path(args.infos).parent
    boxes, scores, labels, raw, ego2img, history = detect(detector, infos, args.index, cameras, data_root)
    info = infos[args.index]
    gt = np.asarray(info["gt_boxes"])[np.asarray(info.get("valid_flag", np.ones(len(info["gt_boxes"]), bool)), bool)] \
        if "gt_boxes" in info else None
    classes = list(metadata.get("classes") or [str(i) for i in range(int(labels.max(initial=0)) + 1)])
    picture = draw(raw, ego2img, boxes, scores, labels, classes, gt, args.score_thr)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    picture.save(args.out)
    shown = int((scores >= args.score_thr).sum())
    print(f"sample {info['token']} (history frames {history}): {len(boxes)} boxes, {shown} with score >= "
          f"{args.score_thr}; wrote {args.out}")
    for box, score, label in sorted(zip(boxes, scores, labels), key=lambda item: -item[1])[:5]:
        print(f"  {classes[int(label)]:<22} {score:.3f}  centre ({box[0]:.1f}, {box[1]:.1f}, {box[2]:.1f}) m")
    return 0


if __name__ == "__main__":
    run_tool(main, "infer_onnx.py")
