"""Draw samples and scenes: six cameras with projected 3D boxes (GT green, predictions magenta) and a BEV
panel with headings and velocity arrows.

  python tools/visualize.py --infos data/synthetic/nuscenes_infos_val.pkl --data-root data/synthetic \
      --index 0 --out work_dirs/vis/sample.png [--predictions results_nusc.json|preds.pkl] [--score-thr 0.3]
  python tools/visualize.py --infos ... --data-root ... --scene scene-0103 --out work_dirs/vis/scene.gif
  python tools/visualize.py ... --index 0 --open3d work_dirs/vis/points.png     (needs open3d)

Occupancy (Occ3D labels, docs/occupancy.md "Occupancy pictures"): one GT | prediction BEV PNG per sample, and
optionally a GIF per scene and a 3D render per sample (pyvista / open3d when installed, else Pillow):

  python tools/visualize.py occupancy --data-root data/synthetic --infos data/synthetic/nuscenes_infos_val.pkl \
      --out work_dirs/vis/occ [--predictions DIR_OF_<token>.npz] [--scene scene-0103] [--gif] [--3d]

Lanes (OpenLane-V2 topology, docs/lanes.md "Lane pictures"): one GT | prediction PNG per frame (BEV, and the
front camera when --data-root holds the images), optionally a GIF per segment:

  python tools/visualize.py lanes --ground-truth data_dict.pkl [--predictions submission.pkl] \
      [--data-root ROOT] --out work_dirs/vis/lanes [--frames N] [--gif] [--score-threshold 0.3]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from _cli import UsageError, load_json_file, report_user_error, run_tool, user_error_types
from PIL import Image
from tqdm import tqdm

from perception.data.infos import load_infos
from perception.data.transforms_bev import read_image
from perception.engine.files import read_pickle
from perception.structures import DETECTION_CLASSES, global_boxes_to_ego
from perception.visualization import render_sample, save_scene_animation

PROG = "visualize.py"


def load_predictions(path: str | None, infos: list[dict]) -> dict[str, dict]:
    """Per sample token: boxes (ego frame), labels, scores. Reads a nuScenes results JSON (global frame)
    or a pickle of per-sample prediction dicts (ego frame)."""
    if path is None:
        return {}
    if path.endswith(".json"):
        results = load_json_file(path, "--predictions").get("results")
        if not isinstance(results, dict):
            raise UsageError(f"--predictions {path} holds no 'results' mapping of sample tokens")
        by_token = {i["token"]: i for i in infos}
        out = {}
        for token, recs in results.items():
            if token not in by_token or not recs:
                continue
            boxes = global_boxes_to_ego(
                np.array([r["translation"] for r in recs]),
                np.array([r["size"] for r in recs]),
                np.array([r["rotation"] for r in recs]),
                np.array([r["velocity"] for r in recs]),
                np.asarray(by_token[token]["ego2global"]),
            )
            out[token] = dict(
                boxes=boxes,
                labels=np.array([DETECTION_CLASSES.index(r["detection_name"]) for r in recs]),
                scores=np.array([r["detection_score"] for r in recs]),
            )
        return out
    preds = read_pickle(path, "--predictions", UsageError)
    if not isinstance(preds, list) or not all(isinstance(p, dict) and "sample_token" in p for p in preds):
        raise UsageError(f"--predictions {path} is not a list of per-sample prediction dicts with a sample_token")
    return {p["sample_token"]: {k: np.asarray(p[k]) for k in ("boxes", "labels", "scores")} for p in preds}


def picture(info: dict, data_root: Path, predictions: dict, score_thr: float, with_gt: bool = True):
    cameras = list(info["cams"])  # the rig's order (checked when the infos load)
    # read_image's errors name the file and the sample (missing, truncated, corrupt).
    images = [read_image(str(data_root / info["cams"][c]["data_path"]), info["token"]).image for c in cameras]
    ego2img = np.stack([info["cams"][c]["ego2img"] for c in cameras])
    gt_boxes = gt_labels = None
    if with_gt and "gt_boxes" in info:
        keep = np.asarray(info["valid_flag"], bool) & (np.asarray(info["gt_labels"]) >= 0)
        gt_boxes, gt_labels = np.asarray(info["gt_boxes"])[keep], np.asarray(info["gt_labels"])[keep]
    pred = predictions.get(info["token"], {})
    lanes = None
    if info.get("openlane_path"):  # OpenLane-V2 centerlines of the same frame, if the dataset has them
        frame = load_json_file(data_root / info["openlane_path"], f"OpenLane-V2 frame of sample {info['token']}")
        lanes = [np.asarray(lane["points"]) for lane in frame["annotation"]["lane_centerline"]]
    return render_sample(
        images,
        ego2img,
        gt_boxes,
        gt_labels,
        pred.get("boxes"),
        pred.get("labels"),
        pred.get("scores"),
        score_threshold=score_thr,
        lanes=lanes,
        camera_names=cameras,
        title=f"{info.get('scene_name', '')}  frame {info['frame_index']}  sample {info['token']}",
    )


def _load_prediction(folder: Path, token: str, shape: tuple[int, ...]) -> np.ndarray:
    from perception.evaluation.occupancy import check_semantics

    path = folder / f"{token}.npz"
    if not path.is_file():
        raise UsageError(f"no prediction for sample {token}: {path} does not exist")
    with np.load(path) as data:
        key = next((k for k in ("arr_0", "pred", "semantics") if k in data), None)
        if key is None:
            raise UsageError(f"{path} holds {sorted(data)}; expected the key 'arr_0' or 'pred'")
        try:
            return check_semantics(data[key], token, shape=shape)
        except ValueError as err:
            raise UsageError(f"{path}: {err}") from err


def occupancy_main(argv: list[str]) -> int:
    """``visualize.py occupancy ...``: Occ3D BEV pictures (GT | prediction), GIFs per scene, 3D renders."""
    from perception.evaluation.occupancy import confusion_matrix, load_occ_gt, miou_from_confusion
    from perception.visualization.occupancy import (
        occupancy_scene_gif,
        render_occupancy_3d,
        render_occupancy_comparison,
    )

    parser = argparse.ArgumentParser(
        prog="visualize.py occupancy",
        description="Occ3D occupancy pictures: GT | prediction BEV per sample, GIF per scene, 3D renders.",
    )
    parser.add_argument("--data-root", required=True)
    parser.add_argument("--infos", required=True)
    parser.add_argument("--predictions", help="folder of <sample_token>.npz (key arr_0 or pred, uint8 (200, 200, 16))")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--scene", help="only this scene (name or token)")
    parser.add_argument("--sample-token", help="only this sample")
    parser.add_argument("--gif", action="store_true", help="also write <scene>.gif per scene")
    parser.add_argument("--3d", dest="three_d", action="store_true", help="also write a 3D render per sample")
    parser.add_argument("--backend", default="auto", choices=["auto", "pyvista", "open3d", "pillow"])
    args = parser.parse_args(argv)
    try:
        if not Path(args.infos).is_file():
            raise UsageError(f"--infos {args.infos} does not exist")
        root = Path(args.data_root)
        if not root.is_dir():
            raise UsageError(f"--data-root {root} is not a folder")
        pred_dir = Path(args.predictions) if args.predictions else None
        if pred_dir is not None and not pred_dir.is_dir():
            raise UsageError(f"--predictions {pred_dir} is not a folder")
        _, infos = load_infos(args.infos)
        if args.scene:
            infos = [i for i in infos if args.scene in (i.get("scene_name"), i.get("scene_token"))]
            if not infos:
                raise UsageError(f"--scene {args.scene} is not in {args.infos}")
        if args.sample_token:
            infos = [i for i in infos if i["token"] == args.sample_token]
            if not infos:
                raise UsageError(f"--sample-token {args.sample_token} is not in {args.infos} (or not in the scene)")
        for info in infos:  # every input checked before the first picture
            if not info.get("occ_path"):
                raise UsageError(f"sample {info['token']} has no occ_path in {args.infos}")
            if not (root / info["occ_path"]).is_file():
                raise UsageError(f"sample {info['token']}: occupancy GT {root / info['occ_path']} does not exist")
            if pred_dir is not None and not (pred_dir / f"{info['token']}.npz").is_file():
                raise UsageError(f"no prediction for sample {info['token']}: {pred_dir / (info['token'] + '.npz')} "
                                  f"does not exist")
        out = Path(args.out)
        scenes: dict[str, list] = {}
        for info in tqdm(infos, desc="samples"):
            gt = load_occ_gt(root / info["occ_path"])
            semantics, mask = gt["semantics"], gt.get("mask_camera")
            pred = _load_prediction(pred_dir, info["token"], semantics.shape) if pred_dir is not None else None
            iou = None
            if pred is not None:
                iou = miou_from_confusion(confusion_matrix(pred, semantics, mask))["mIoU"]
                iou = f"mIoU {iou:.1f} (camera mask)"
            scene = info.get("scene_name") or info.get("scene_token", "scene")
            title = f"{scene}  frame {info.get('frame_index', '?')}  sample {info['token']}"
            stem = f"{scene}_{int(info.get('frame_index', 0)):03d}_{info['token']}"
            render_occupancy_comparison(semantics, pred, mask, title=title, iou=iou, path=out / f"{stem}.png")
            if args.three_d:
                render_occupancy_3d(semantics, out / f"{stem}_3d_gt.png", args.backend, title=f"GT  {title}")
                if pred is not None:
                    render_occupancy_3d(pred, out / f"{stem}_3d_pred.png", args.backend, title=f"prediction  {title}")
            scenes.setdefault(scene, []).append(((semantics, pred, mask), title, iou))
        if args.gif:
            for scene, items in scenes.items():
                occupancy_scene_gif(
                    [f for f, _, _ in items], out / f"{scene}.gif", titles=[t for _, t, _ in items],
                    ious=[i for _, _, i in items],
                )
    except user_error_types() as err:
        return report_user_error("visualize.py occupancy", err)
    print(f"wrote {len(infos)} sample pictures{' and ' + str(len(scenes)) + ' GIFs' if args.gif else ''} to {out}")
    return 0


def _load_lane_ground_truth(path: str) -> dict:
    """{(split, segment_id, timestamp): frame json} of an OpenLane-V2 data_dict pickle."""
    from perception.data.openlane_v2 import load_data_dict

    try:
        return dict(load_data_dict(path))
    except (ValueError, OSError) as err:  # its errors name the file and the problem
        raise UsageError(f"--ground-truth: {err}") from err


def _load_lane_predictions(path: str) -> dict:
    """{key: prediction frame} of an OpenLane-V2 submission pickle ({'results': {key: {'predictions': ...}}})."""
    from perception.evaluation.lane_submission import load_lane_submission

    try:
        submission = load_lane_submission(path)
    except (ValueError, OSError) as err:  # its errors name the file and the problem
        raise UsageError(f"--predictions: {err}") from err
    results = submission.get("results") if isinstance(submission, dict) else None
    if not isinstance(results, dict):
        raise UsageError(f"--predictions {path} holds no 'results' mapping of frame keys")
    return {k: v.get("predictions", v) if isinstance(v, dict) else v for k, v in results.items()}


FRONT_CAMERAS = ("ring_front_center", "CAM_FRONT")  # OpenLane-V2 subset A (Argoverse 2), subset B (nuScenes)


def _front_camera(frame: dict, camera: str | None):
    """(name, image_path, ego2img) of the front camera of a frame json, or None without sensor data."""
    sensors = frame.get("sensor") or {}
    name = camera or next((c for c in FRONT_CAMERAS if c in sensors), next(iter(sensors), None))
    if name is None or name not in sensors:
        return None
    cam = sensors[name]
    ego2img = None
    try:  # extrinsic: camera -> ego; intrinsic K: camera -> pixels
        cam2ego = np.eye(4)
        cam2ego[:3, :3] = np.asarray(cam["extrinsic"]["rotation"], dtype=np.float64)
        cam2ego[:3, 3] = np.asarray(cam["extrinsic"]["translation"], dtype=np.float64)
        k = np.eye(4)
        k[:3, :3] = np.asarray(cam["intrinsic"]["K"], dtype=np.float64)
        ego2img = k @ np.linalg.inv(cam2ego)
    except (KeyError, TypeError, ValueError):
        pass
    return name, cam.get("image_path"), ego2img


def _key_order(key):
    parts = key if isinstance(key, tuple) else (key,)
    return tuple((0, int(p), "") if str(p).isdigit() else (1, 0, str(p)) for p in parts)


def _key_text(key) -> str:
    return "/".join(str(p) for p in (key if isinstance(key, tuple) else (key,)))


def _key_stem(key) -> str:
    return "".join(c if c.isalnum() or c in "-." else "_" for c in _key_text(key).replace("/", "_"))


def lanes_main(argv: list[str]) -> int:
    """``visualize.py lanes ...``: OpenLane-V2 lane topology pictures (GT | prediction) and GIFs per segment."""
    from perception.visualization.lanes import frame_attributes, render_lane_comparison

    parser = argparse.ArgumentParser(
        prog="visualize.py lanes",
        description="OpenLane-V2 lane topology pictures: GT | prediction per frame (BEV + front camera), GIF per "
        "segment.",
    )
    parser.add_argument("--ground-truth", required=True, help="OpenLane-V2 data_dict pickle")
    parser.add_argument("--predictions", help="submission pickle ({'results': {key: {'predictions': frame}}})")
    parser.add_argument("--data-root", help="folder the frames' sensor image_path are relative to")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--frames", type=int, help="only the first N frames (in key order)")
    parser.add_argument("--gif", action="store_true", help="also write <split>_<segment>.gif per segment")
    parser.add_argument("--score-threshold", type=float, default=0.3, help="predicted lanes/elements below: hidden")
    parser.add_argument("--link-threshold", type=float, default=0.5, help="topology entries drawn from this value")
    parser.add_argument("--camera", help="camera of the traffic elements (default ring_front_center / CAM_FRONT)")
    args = parser.parse_args(argv)
    try:
        if not Path(args.ground_truth).is_file():
            raise UsageError(f"--ground-truth {args.ground_truth} does not exist")
        if args.predictions and not Path(args.predictions).is_file():
            raise UsageError(f"--predictions {args.predictions} does not exist")
        if args.frames is not None and args.frames < 1:
            raise UsageError(f"--frames must be at least 1, got {args.frames}")
        root = Path(args.data_root) if args.data_root else None
        if root is not None and not root.is_dir():
            raise UsageError(f"--data-root {root} is not a folder")
        gt = _load_lane_ground_truth(args.ground_truth)
        preds = _load_lane_predictions(args.predictions) if args.predictions else None
        if preds is not None:
            extra = [k for k in preds if k not in gt]
            if extra:
                raise UsageError(f"{len(extra)} frame(s) of --predictions are not in --ground-truth, e.g. "
                                  f"{_key_text(extra[0])}: the files do not belong together")
        keys = sorted(gt, key=_key_order)[: args.frames]
        if not keys:
            raise UsageError(f"--ground-truth {args.ground_truth} holds no frames")
        if preds is not None:
            missing = [k for k in keys if k not in preds]
            if missing:
                raise UsageError(f"{len(missing)} frame(s) of --ground-truth have no prediction in "
                                  f"{args.predictions}, e.g. {_key_text(missing[0])}")
        segments: dict = {}
        for key in keys:
            parts = key if isinstance(key, tuple) else (key,)
            segments.setdefault(parts[:-1] if len(parts) > 1 else ("frames",), []).append(key)
        out = Path(args.out)
        warned, written = False, []
        for segment, seg_keys in tqdm(segments.items(), desc="segments"):
            legend = sorted(set(frame_attributes(*[gt[k] for k in seg_keys])) | set(frame_attributes(
                *[preds[k] for k in seg_keys], score_threshold=args.score_threshold) if preds is not None else []))
            pictures = []
            for key in seg_keys:
                image = ego2img = None
                camera = _front_camera(gt[key], args.camera) if root is not None else None
                if camera is not None and camera[1]:
                    image_path = root / camera[1]
                    if image_path.is_file():
                        image = Image.fromarray(read_image(str(image_path), _key_text(key)).image)
                        ego2img = camera[2]
                    elif not warned:
                        print(f"visualize.py lanes: warning: front image {image_path} does not exist; drawing the "
                              "BEV only for frames without their image", file=sys.stderr)
                        warned = True
                title = f"{_key_text(key)}" + (f"  {camera[0]}" if image is not None else "")
                picture = render_lane_comparison(
                    gt[key], preds[key] if preds is not None else None, image, ego2img,
                    score_threshold=args.score_threshold, link_threshold=args.link_threshold, title=title,
                    path=out / f"{_key_stem(key)}.png", legend_attributes=legend,
                )
                written.append(out / f"{_key_stem(key)}.png")
                print(f"wrote {written[-1]}")
                if args.gif:
                    pictures.append(picture)
            if args.gif:
                gif = save_scene_animation(pictures, out / f"{_key_stem(segment)}.gif", max_width=1600)
                print(f"wrote {gif}")
    except user_error_types() as err:
        return report_user_error("visualize.py lanes", err)
    print(f"wrote {len(written)} frame pictures{' and ' + str(len(segments)) + ' GIFs' if args.gif else ''} to {out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] == "occupancy":
        return occupancy_main(argv[1:])
    if argv and argv[0] == "lanes":
        return lanes_main(argv[1:])
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--infos", required=True)
    parser.add_argument("--data-root", required=True)
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--index", type=int, help="sample index in the info file")
    which.add_argument("--sample-token")
    which.add_argument("--scene", help="scene name or token: writes an animation (.gif)")
    parser.add_argument("--predictions", help="nuScenes results JSON or pickle of per-sample predictions")
    parser.add_argument("--score-thr", type=float, default=0.3)
    parser.add_argument("--no-gt", action="store_true")
    parser.add_argument("--out", required=True, help=".png for a sample, .gif for a scene")
    parser.add_argument("--open3d", help="also write an open3d offscreen render of the LiDAR points here")
    args = parser.parse_args(argv)
    try:
        return samples_main(args)
    except user_error_types() as err:
        return report_user_error(PROG, err)


def samples_main(args: argparse.Namespace) -> int:
    """``visualize.py --index/--sample-token/--scene``: camera + BEV pictures of samples, a GIF of a scene."""
    _, infos = load_infos(args.infos)
    root = Path(args.data_root)
    if not root.is_dir():
        raise UsageError(f"--data-root {root} is not a folder")
    predictions = load_predictions(args.predictions, infos)
    if args.scene:
        frames = [i for i in infos if args.scene in (i.get("scene_name"), i["scene_token"])]
        if not frames:
            raise UsageError(f"--scene {args.scene} is not in {args.infos}")
        pictures = [
            picture(i, root, predictions, args.score_thr, not args.no_gt).image
            for i in tqdm(frames, desc="frames")
        ]
        print(f"wrote {save_scene_animation(pictures, args.out)}")
        return 0
    if args.sample_token:
        matches = [i for i in infos if i["token"] == args.sample_token]
        if not matches:
            raise UsageError(f"--sample-token {args.sample_token} is not in {args.infos}")
        info = matches[0]
    elif not 0 <= args.index < len(infos):
        raise UsageError(f"--index {args.index} is past the end of {args.infos}, which holds {len(infos)} samples "
                         f"(indices 0..{len(infos) - 1})")
    else:
        info = infos[args.index]
    print(f"wrote {picture(info, root, predictions, args.score_thr, not args.no_gt).save(args.out)}")
    if args.open3d:
        from perception.structures import transform_points
        from perception.visualization.sample import render_open3d

        points = np.fromfile(root / info["lidar_path"], dtype=np.float32).reshape(-1, 5)[:, :3]
        points = transform_points(np.asarray(info["lidar2ego"]), points.astype(np.float64))
        print(f"wrote {render_open3d(points, info['gt_boxes'], args.open3d)}")
    return 0


if __name__ == "__main__":
    run_tool(main, PROG)
