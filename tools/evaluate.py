"""Evaluate a nuScenes detection results JSON, an Occ3D occupancy submission or an OpenLane-V2 submission.

  python tools/evaluate.py nuscenes results_nusc.json --dataroot data/nuscenes --version v1.0-trainval
      [--eval-set val] [--out-dir work_dirs/eval] [--verbose]
  python tools/evaluate.py results_nusc.json --dataroot ...        (the same; the form before subcommands)
  python tools/evaluate.py occupancy --predictions DIR_OR_ZIP --data-root data/nuscenes
      --infos data/nuscenes/nuscenes_infos_val.pkl [--json OUT.json] [--no-camera-mask]
  python tools/evaluate.py lanes --predictions submission.pkl
      --ground-truth data/openlane_v2/data_dict_subset_A_val.pkl [--json OUT.json]
  python tools/evaluate.py waymo --predictions SUBMISSION_DIR_OR_FILE --ground-truth data/waymo/validation
      [--json OUT.json] [--predicted-frames-only]
  python tools/evaluate.py coco --predictions DETS.json --annotations INSTANCES.json [--json OUT.json]
  python tools/evaluate.py segmentation --predictions DIR --annotations DIR [--reduce-zero-label]
      [--num-classes N] [--json OUT.json]

``nuscenes`` runs the devkit's DetectionEval: prints NDS, mAP, the five TP errors and per-class AP, and writes
the devkit's metrics_summary.json. ``occupancy`` reads ``<sample token>.npz`` files (key ``arr_0`` or
``pred``; a folder or a zip) for every sample of the info file, loads the GT through the infos' ``occ_path``
under ``--data-root`` and prints the per-class IoU table with mIoU (camera mask unless --no-camera-mask),
RayIoU and RayIoU@1/@2/@4, in percent; ``--json`` writes them (docs/occupancy.md). ``lanes`` checks an
OpenLane-V2 submission pickle against the frames of the devkit's data_dict pickle, prints the OpenLane-V2
Score v2.1 table (DET_l per threshold, DET_t per attribute, TOP_ll, TOP_lt, OLS, in percent) and
``--json`` writes the metrics as fractions (docs/lanes.md). ``waymo`` scores a Waymo camera-only submission
(``.tar.gz``, a folder of ``part*`` files or one serialised ``Submission``) against the camera-synced boxes of
a v2 split folder: LET-3D-APL and LET-3D-AP at LEVEL_2, overall and per type, in percent; ``--json`` writes
them as fractions (docs/waymo.md). ``coco`` scores 2D boxes in the COCO results format against a COCO instances
file with pycocotools: AP, AP50, AP75, APs, APm, APl as fractions (docs/pretraining_2d.md). ``segmentation``
scores PNG label maps against the annotation PNGs of the same names with mmseg's mIoU (per-class intersection and
union pooled over the folder), aAcc and per-class IoU, in percent (docs/pretraining_2d.md).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

from _cli import UsageError, one_line_errors, run_tool

PROG = "evaluate.py"
COMMANDS = ("nuscenes", "occupancy", "lanes", "waymo", "coco", "segmentation")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    nus = sub.add_parser("nuscenes", help="a nuScenes detection results JSON (devkit DetectionEval)")
    nus.add_argument("results")
    nus.add_argument("--dataroot", required=True)
    nus.add_argument("--version", default="v1.0-trainval", choices=["v1.0-trainval", "v1.0-mini"])
    nus.add_argument("--eval-set", default=None, help="devkit split (default: val / mini_val)")
    nus.add_argument("--out-dir", default=None)
    nus.add_argument("--verbose", action="store_true")
    occ = sub.add_parser("occupancy", help="an Occ3D occupancy submission (mIoU, RayIoU)")
    occ.add_argument("--predictions", required=True, help="folder or zip of <sample token>.npz")
    occ.add_argument("--data-root", required=True, help="root that the infos' occ_path is relative to")
    occ.add_argument("--infos", required=True, help="info file of the evaluated split")
    occ.add_argument("--json", default=None, help="write the results to this JSON file")
    occ.add_argument("--no-camera-mask", action="store_true", help="mIoU over every voxel (w/o camera mask)")
    lanes = sub.add_parser("lanes", help="an OpenLane-V2 submission pickle (OpenLane-V2 Score v2.1)")
    lanes.add_argument("--predictions", required=True, help="the submission pickle")
    lanes.add_argument("--ground-truth", required=True, help="the devkit's data_dict_subset_*_<split>.pkl")
    lanes.add_argument("--json", default=None, help="write the metrics (fractions) to this JSON file")
    waymo = sub.add_parser("waymo", help="a Waymo camera-only 3D detection submission (LET-3D-APL, LET-3D-AP)")
    waymo.add_argument("--predictions", required=True, help="submission .tar.gz, folder of part files or file")
    waymo.add_argument("--ground-truth", required=True, help="the Waymo v2 split folder (e.g. data/waymo/validation)")
    waymo.add_argument("--json", default=None, help="write the metrics (fractions) to this JSON file")
    waymo.add_argument("--predicted-frames-only", action="store_true",
                       help="score only the frames the submission has objects in (e.g. every 5th frame)")
    coco = sub.add_parser("coco", help="2D boxes in the COCO results format (pycocotools box AP)")
    coco.add_argument("--predictions", required=True, help="COCO results JSON: [{image_id, category_id, bbox, score}]")
    coco.add_argument("--annotations", required=True, help="COCO instances JSON of the evaluated images")
    coco.add_argument("--json", default=None, help="write AP, AP50, AP75, APs, APm, APl (fractions) to this file")
    seg = sub.add_parser("segmentation", help="PNG label maps against ADE20K-format annotations (mIoU, aAcc)")
    seg.add_argument("--predictions", required=True, help="folder of predicted PNG label maps")
    seg.add_argument("--annotations", required=True, help="folder of ground-truth PNG label maps (same file names)")
    seg.add_argument("--reduce-zero-label", action="store_true",
                     help="label 0 is 'other' (ignored) and k is class k-1, in both folders (ADE20K)")
    seg.add_argument("--num-classes", type=int, default=None,
                     help="classes scored (default: 1 + the largest label found)")
    seg.add_argument("--json", default=None, help="write mIoU, aAcc and per_class_IoU (percent) to this file")
    return parser


def _with_command(argv: list[str]) -> list[str]:
    """The arguments with an explicit subcommand: the old form ``evaluate.py results.json --dataroot ...``
    (no subcommand, options possibly first) is the ``nuscenes`` command."""
    if not argv or argv[0] in COMMANDS or argv[0] in ("-h", "--help"):
        return argv
    if argv[0].startswith("-") or argv[0].endswith(".json") or Path(argv[0]).is_file():
        return ["nuscenes", *argv]
    raise UsageError(f"unknown command {argv[0]!r}: use nuscenes, occupancy, lanes, waymo, coco, segmentation or "
                     "a results .json path")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    with one_line_errors(PROG):
        args = _parser().parse_args(_with_command(argv))
        if args.command == "nuscenes":
            return _nuscenes(args)
        if args.command == "lanes":
            return _lanes(args)
        if args.command == "waymo":
            return _waymo(args)
        if args.command == "coco":
            return _coco(args)
        if args.command == "segmentation":
            return _segmentation(args)
        return _occupancy(args)


def _waymo(args: argparse.Namespace) -> int:
    from perception.evaluation.nuscenes import write_json_atomic
    from perception.evaluation.waymo_let import evaluate_submission, format_let_table
    from perception.evaluation.waymo_submission import WaymoSubmissionError

    try:
        result = evaluate_submission(args.predictions, args.ground_truth, args.predicted_frames_only)
    except (WaymoSubmissionError, ValueError) as err:
        raise UsageError(str(err)) from err
    print(format_let_table(result))
    if args.json:
        print(f"wrote {write_json_atomic(result, args.json)}")
    return 0


def _coco(args: argparse.Namespace) -> int:
    from perception.evaluation.coco import coco_box_ap, load_coco_results
    from perception.evaluation.nuscenes import write_json_atomic

    try:  # CocoFormatError names the file and the record
        metrics = coco_box_ap(load_coco_results(args.predictions), args.annotations)
    except ValueError as err:
        raise UsageError(str(err)) from err
    print(" ".join(f"{key}={value:.4f}" for key, value in metrics.items()))
    if args.json:
        print(f"wrote {write_json_atomic(metrics, args.json)}")
    return 0


def _segmentation(args: argparse.Namespace) -> int:
    import math

    from perception.evaluation.nuscenes import write_json_atomic
    from perception.evaluation.segmentation import evaluate_label_map_folders, format_segmentation_table

    if args.num_classes is not None and not 1 <= args.num_classes <= 255:
        raise UsageError(f"--num-classes must be in 1..255, got {args.num_classes}")
    try:  # SegmentationEvaluationError names the file and the problem
        result = evaluate_label_map_folders(args.predictions, args.annotations, args.num_classes,
                                            args.reduce_zero_label)
    except ValueError as err:
        raise UsageError(str(err)) from err
    print(format_segmentation_table(result))
    if args.json:  # classes in neither prediction nor GT have no IoU: null, not NaN (strict JSON)
        per_class = {k: None if math.isnan(v) else v for k, v in result["per_class_IoU"].items()}
        print(f"wrote {write_json_atomic({**result, 'per_class_IoU': per_class}, args.json)}")
    return 0


def _nuscenes(args: argparse.Namespace) -> int:
    """Check the results against the split (every sample once, nothing else, valid records) before the devkit
    runs, and let the devkit write into a temporary folder that replaces --out-dir's files only on success."""
    from nuscenes.nuscenes import NuScenes

    from perception.evaluation.nuscenes import (
        EVAL_SETS,
        eval_set_sample_tokens,
        evaluate_results,
        read_results_json,
        validate_submission,
    )

    path = Path(args.results)
    submission = read_results_json(path)
    if not (Path(args.dataroot) / args.version).is_dir():
        raise UsageError(f"--dataroot {args.dataroot} has no {args.version}/ table folder")
    eval_set = args.eval_set or EVAL_SETS[args.version]
    nusc = NuScenes(version=args.version, dataroot=str(args.dataroot), verbose=args.verbose)
    try:
        expected = eval_set_sample_tokens(nusc, eval_set)
    except ValueError as err:
        raise UsageError(f"--eval-set {eval_set}: {err}") from err
    try:
        validate_submission(submission, expected)
    except ValueError as err:  # SubmissionError
        raise UsageError(f"{path} does not fit split {eval_set} of {args.version}: {err}") from err
    out_dir = Path(args.out_dir or path.parent / "nuscenes_eval")
    with tempfile.TemporaryDirectory(prefix="nuscenes_eval-") as staging:
        metrics = evaluate_results(path, args.dataroot, args.version, eval_set, staging, nusc, args.verbose)
        _move_contents(Path(staging), out_dir)
    width = max(len(k) for k in metrics)
    for key, value in metrics.items():
        print(f"{key:<{width}}  {value:.4f}")
    return 0


def _move_contents(source: Path, target: Path) -> None:
    """Move every entry of ``source`` into ``target`` (created), replacing entries of the same name."""
    target.mkdir(parents=True, exist_ok=True)
    for entry in source.iterdir():
        destination = target / entry.name
        if destination.is_dir() and not destination.is_symlink():
            shutil.rmtree(destination)
        elif destination.exists() or destination.is_symlink():
            destination.unlink()
        shutil.move(str(entry), str(destination))


def _occupancy(args: argparse.Namespace) -> int:
    from perception.evaluation.nuscenes import write_json_atomic
    from perception.evaluation.occupancy_submission import evaluate_occupancy_submission, format_occupancy_table

    if not Path(args.predictions).exists():
        raise UsageError(f"--predictions {args.predictions} does not exist")
    if not Path(args.data_root).is_dir():
        raise UsageError(f"--data-root {args.data_root} is not a folder")
    # Its errors (OccupancySubmissionError, OccupancyEvaluationError, InfoFileError) name the file and sample.
    result = evaluate_occupancy_submission(
        args.predictions, args.infos, args.data_root, use_camera_mask=not args.no_camera_mask
    )
    print(format_occupancy_table(result))
    if args.json:
        print(f"wrote {write_json_atomic(result, args.json)}")
    return 0


def _lanes(args: argparse.Namespace) -> int:
    from perception.evaluation.lane_submission import check_lane_submission, load_lane_submission
    from perception.evaluation.nuscenes import write_json_atomic
    from perception.evaluation.openlane_v2 import evaluate_ols, format_ols_table, load_lane_ground_truth

    # Their errors (LaneSubmissionError, OpenLaneV2EvaluationError) name the file and the frame.
    ground_truth = load_lane_ground_truth(args.ground_truth)
    submission = load_lane_submission(args.predictions)
    check_lane_submission(submission, expected_keys=ground_truth.keys())
    metrics = evaluate_ols(ground_truth, submission["results"])
    print(format_ols_table(metrics))
    if args.json:
        print(f"wrote {write_json_atomic(metrics, args.json)}")
    return 0


if __name__ == "__main__":
    run_tool(main, PROG)
