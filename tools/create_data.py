"""Create datasets and info files.

  python tools/create_data.py synthetic --out data/synthetic [--seed 0] [--scenes 5] [--samples-per-scene 20]
                                        [--image-size 320 180] [--workers 2]
  python tools/create_data.py nuscenes --root data/nuscenes --version v1.0-trainval --out data/nuscenes
                                       [--workers 4] [--occ-root DIR]
  python tools/create_data.py openlane_v2 --root data/openlane_v2 --subset A|B [--splits train val] [--out DIR]
  python tools/create_data.py synthetic-waymo --out data/waymo_synthetic [--seed 0] [--segments 2 1] [--frames 5]
                                              [--image-width 192]
  python tools/create_data.py waymo --root data/waymo --split training|validation|testing [--interval N]
                                    [--workers N] [--out DIR]
  python tools/create_data.py synthetic-2d --out data/synthetic_2d [--samples 3] [--seed 0] [--scenes 2]
                                           [--cameras CAM_FRONT CAM_BACK] [--image-size 320 180] [--workers 1]

``synthetic`` writes a nuScenes-format world (v1.0-mini tables, images, LiDAR, Occ3D and OpenLane-V2
labels) and then its info files; ``nuscenes`` writes ``nuscenes_infos_{split}.pkl`` for a real (or
synthetic) nuScenes root, resumable through per-scene shards. ``--occ-root DIR`` takes the Occ3D labels
from an Occ3D-nuScenes release folder (``DIR/gts/<scene name>/<sample token>/labels.npz``, cross-checked
against ``DIR/annotations.json`` when present; docs/occupancy.md); without it, labels under ``--root/gts/``
are used. ``openlane_v2`` writes ``openlane_v2_infos_subset_{A,B}_{split}.pkl`` (our info format, paths
relative to ``--root``, default output folder ``--root``) from ``--root/data_dict_subset_{A,B}_{split}.pkl``
or, without it, from the frame jsons ``--root/{split}/*/info/*.json`` (docs/data.md, "OpenLane-V2").
``synthetic-waymo`` writes the synthetic world as Waymo Open Dataset v2 parquet segments
(``DIR/{training,validation}/{component}/{segment}.parquet``); ``waymo`` writes ``waymo_infos_{split}.pkl``
for a v2 root (``--root/{split}/{component}/``), the camera JPEGs under ``images/``, resumable through
per-segment shards, every ``--interval``-th frame (docs/waymo.md). ``synthetic-2d`` writes a COCO-format
detection set (``DIR/coco``) and an ADE20K-format segmentation set (``DIR/ade``) of synthetic camera images with
exact, occlusion-aware labels (docs/pretraining_2d.md).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from _cli import UsageError, one_line_errors, run_tool

from perception.data.infos import create_nuscenes_infos
from perception.data.openlane_v2 import create_openlane_v2_infos
from perception.data.synthetic import VERSION, WorldConfig, generate_world, scene_names

PROG = "create_data.py"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    syn = sub.add_parser("synthetic", help="generate the synthetic nuScenes-format world and its infos")
    syn.add_argument("--out", required=True)
    syn.add_argument("--seed", type=int, default=0)
    syn.add_argument("--scenes", type=int, default=5)
    syn.add_argument("--samples-per-scene", type=int, default=20)
    syn.add_argument("--image-size", type=int, nargs=2, default=(320, 180), metavar=("W", "H"))
    syn.add_argument("--workers", type=int, default=2)
    nus = sub.add_parser("nuscenes", help="build info files for a nuScenes root")
    nus.add_argument("--root", required=True)
    nus.add_argument("--version", required=True, choices=["v1.0-trainval", "v1.0-mini", "v1.0-test"])
    nus.add_argument("--out", required=True)
    nus.add_argument("--workers", type=int, default=4)
    nus.add_argument("--occ-root", default=None, metavar="DIR",
                     help="Occ3D-nuScenes release folder holding gts/<scene>/<token>/labels.npz (and annotations.json)")
    olv = sub.add_parser("openlane_v2", help="build info files for an OpenLane-V2 root (subset A or B)")
    olv.add_argument("--root", required=True, help="folder holding {split}/ and data_dict_subset_{A,B}_{split}.pkl")
    olv.add_argument("--subset", required=True, choices=["A", "B"])
    olv.add_argument("--splits", nargs="+", default=["train", "val"])
    olv.add_argument("--out", default=None, help="output folder (default: --root)")
    _add_waymo_parsers(sub)
    _add_synthetic_2d_parser(sub)
    args = parser.parse_args(argv)
    with one_line_errors(PROG):  # InfoFileError, missing files, ...: one line, exit code 2
        return _create(args)


def _create(args: argparse.Namespace) -> int:
    start = time.perf_counter()
    if args.command == "synthetic":
        try:  # --scenes must name v1.0-mini scenes: refused before anything is written
            scene_names(args.scenes)
        except ValueError as err:
            raise UsageError(str(err)) from err
        config = WorldConfig(
            args.out,
            seed=args.seed,
            num_scenes=args.scenes,
            samples_per_scene=args.samples_per_scene,
            image_size=tuple(args.image_size),
            workers=args.workers,
        )
        generate_world(config)
        written = create_nuscenes_infos(args.out, VERSION, args.out, workers=1)
    elif args.command == "openlane_v2":
        if not Path(args.root).is_dir():
            raise UsageError(f"--root {args.root} is not a directory")
        out_dir = Path(args.out if args.out is not None else args.root)
        written = {}
        for split in args.splits:
            out = out_dir / f"openlane_v2_infos_subset_{args.subset}_{split}.pkl"
            written[split] = create_openlane_v2_infos(args.root, args.subset, split, out)
    elif args.command in ("synthetic-waymo", "waymo"):
        written = _create_waymo(args)
    elif args.command == "synthetic-2d":
        written = _create_synthetic_2d(args)
    else:
        if not (Path(args.root) / args.version).is_dir():
            raise UsageError(f"--root {args.root} has no {args.version}/ table folder")
        occ_root = args.occ_root
        if occ_root is not None and not (Path(occ_root) / "gts").is_dir():
            what = "does not exist" if not Path(occ_root).is_dir() else "has no gts/ folder"
            raise UsageError(f"--occ-root {occ_root} {what} (expected DIR/gts/<scene name>/<sample token>/labels.npz)")
        reports = {}
        written = create_nuscenes_infos(
            args.root, args.version, args.out, workers=args.workers, occ_root=occ_root, occupancy_reports=reports
        )
        for split, report in reports.items():
            print(f"{split}: {report.summary()}")
    for split, path in written.items():
        print(f"{split}: {path}")
    print(f"done in {time.perf_counter() - start:.1f} s")
    return 0


def _add_waymo_parsers(sub) -> None:
    fixture = sub.add_parser("synthetic-waymo", help="write the synthetic world as Waymo v2 parquet segments")
    fixture.add_argument("--out", required=True)
    fixture.add_argument("--seed", type=int, default=0)
    fixture.add_argument("--segments", type=int, nargs=2, default=(2, 1), metavar=("TRAINING", "VALIDATION"))
    fixture.add_argument("--frames", type=int, default=5, help="frames per segment (10 Hz)")
    fixture.add_argument("--image-width", type=int, default=192, help="camera width (the real cameras: 1920)")
    waymo = sub.add_parser("waymo", help="build info files for a Waymo Open Dataset v2 root")
    waymo.add_argument("--root", required=True, help="folder holding {training,validation,testing}/{component}/")
    waymo.add_argument("--split", required=True, choices=["training", "validation", "testing"])
    waymo.add_argument("--interval", type=int, default=1, help="keep every N-th frame (e.g. 5)")
    waymo.add_argument("--workers", type=int, default=4)
    waymo.add_argument("--out", default=None, help="output folder for infos and images (default: --root)")


def _create_waymo(args: argparse.Namespace) -> dict:
    from perception.data.waymo.fixture import WaymoFixtureConfig, write_waymo_fixture
    from perception.data.waymo.infos import create_waymo_infos

    if args.command == "synthetic-waymo":
        config = WaymoFixtureConfig(args.out, seed=args.seed, training_segments=args.segments[0],
                                    validation_segments=args.segments[1], frames_per_segment=args.frames,
                                    image_width=args.image_width)
        write_waymo_fixture(config)
        return {split: Path(args.out) / split for split in ("training", "validation")}
    if not (Path(args.root) / args.split).is_dir():
        raise UsageError(f"--root {args.root} has no {args.split}/ folder")
    if args.interval < 1 or args.workers < 1:
        raise UsageError(f"--interval and --workers must be >= 1, got {args.interval} and {args.workers}")
    return {args.split: create_waymo_infos(args.root, args.split, args.out, args.interval, args.workers)}



def _add_synthetic_2d_parser(sub) -> None:
    syn2d = sub.add_parser("synthetic-2d", help="write synthetic COCO detection and ADE20K segmentation sets")
    syn2d.add_argument("--out", required=True)
    syn2d.add_argument("--samples", type=int, default=3, help="key frames per scene")
    syn2d.add_argument("--seed", type=int, default=0)
    syn2d.add_argument("--scenes", type=int, default=2, help="scenes (the last one is the validation split)")
    syn2d.add_argument("--cameras", nargs="+", default=["CAM_FRONT", "CAM_BACK"])
    syn2d.add_argument("--image-size", type=int, nargs=2, default=(320, 180), metavar=("W", "H"))
    syn2d.add_argument("--min-visible-pixels", type=int, default=16, help="smaller objects get no COCO box")
    syn2d.add_argument("--workers", type=int, default=1)


def _create_synthetic_2d(args: argparse.Namespace) -> dict:
    from perception.data.synthetic.sets2d import Synthetic2DConfig, generate_2d_sets

    config = Synthetic2DConfig(args.out, seed=args.seed, num_scenes=args.scenes, samples_per_scene=args.samples,
                               cameras=tuple(args.cameras), image_size=tuple(args.image_size),
                               min_visible_pixels=args.min_visible_pixels, workers=args.workers)
    try:  # refused before anything is written
        config.check()
    except ValueError as err:
        message = str(err)
        for field, option in (("num_scenes", "--scenes"), ("samples_per_scene", "--samples"),
                              ("image_size", "--image-size"), ("min_visible_pixels", "--min-visible-pixels"),
                              ("workers", "--workers"), ("cameras", "--cameras")):
            message = message.replace(field, option)
        raise UsageError(f"synthetic-2d: {message}") from err
    written = generate_2d_sets(config)
    written["ade"] = Path(args.out) / "ade"
    return written


if __name__ == "__main__":
    run_tool(main, PROG)
