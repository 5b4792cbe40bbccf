"""Evaluate a nuScenes detection results JSON, an Occ3D occupancy submission or an OpenLane-V2 submission.

  python tools/evaluate.py nuscenes results_nusc.json --dataroot data/nuscenes --version v1.0-trainval
      [--eval-set val] [--out-dir work_dirs/eval] [--verbose]
  python tools/evaluate.py results_nusc.json --dataroot ...        (the same; the form before subcommands)
  python tools/evaluate.py occupancy --predictions DIR_OR_ZIP --data-root data/nuscenes
      --infos data/nuscenes/nuscenes_infos_val.pkl [--json OUT.json] [--no-camera-mask]
  python tools/evaluate.py lanes --predictions submission.pkl
      --ground-truth data/openlane_v2/data_dict_subset_A_val.pkl [--json OUT.json]

``nuscenes`` runs the devkit's DetectionEval: prints NDS, mAP, the five TP errors and per-class AP, and writes
the devkit's metrics_summary.json. ``occupancy`` reads ``<sample token>.npz`` files (key ``arr_0`` or
``pred``; a folder or a zip) for every sample of the info file, loads the GT through the infos' ``occ_path``
under ``--data-root`` and prints the per-class IoU table with mIoU (camera mask unless --no-camera-mask),
RayIoU and RayIoU@1/@2/@4, in percent; ``--json`` writes them (docs/occupancy.md). ``lanes`` checks an
OpenLane-V2 submission pickle against the frames of the devkit's data_dict pickle, prints the OpenLane-V2
Score v2.1 table (DET_l per threshold, DET_t per attribute, TOP_ll, TOP_lt, OLS, in percent) and
``--json`` writes the metrics as fractions (docs/lanes.md).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

COMMANDS = ("nuscenes", "occupancy", "lanes")


def _fail(message: str) -> int:
    print(f"evaluate.py: error: {message}", file=sys.stderr)
    raise SystemExit(2)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="evaluate.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
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
    return parser


def _with_command(argv: list[str]) -> list[str]:
    """The arguments with an explicit subcommand: the old form ``evaluate.py results.json --dataroot ...``
    (no subcommand, options possibly first) is the ``nuscenes`` command."""
    if not argv or argv[0] in COMMANDS or argv[0] in ("-h", "--help"):
        return argv
    if argv[0].startswith("-") or argv[0].endswith(".json") or Path(argv[0]).is_file():
        return ["nuscenes", *argv]
    return _fail(f"unknown command {argv[0]!r}: use nuscenes, occupancy, lanes or a results .json path")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = _parser().parse_args(_with_command(argv))
    if args.command == "nuscenes":
        return _nuscenes(args)
    if args.command == "lanes":
        return _lanes(args)
    return _occupancy(args)


def _nuscenes(args: argparse.Namespace) -> int:
    from perception.evaluation.nuscenes import SubmissionError, evaluate_results, validate_submission

    path = Path(args.results)
    if not path.is_file():
        return _fail(f"results file {path} does not exist")
    try:
        validate_submission(json.loads(path.read_text()))
    except (ValueError, TypeError, SubmissionError) as err:  # JSON syntax errors are ValueErrors too
        return _fail(f"{path}: {err}")
    metrics = evaluate_results(
        args.results, args.dataroot, args.version, args.eval_set, args.out_dir, verbose=args.verbose
    )
    width = max(len(k) for k in metrics)
    for key, value in metrics.items():
        print(f"{key:<{width}}  {value:.4f}")
    return 0


def _occupancy(args: argparse.Namespace) -> int:
    from perception.data.infos import InfoFileError
    from perception.evaluation.nuscenes import write_json_atomic
    from perception.evaluation.occupancy_submission import (
        OccupancyEvaluationError,
        OccupancySubmissionError,
        evaluate_occupancy_submission,
        format_occupancy_table,
    )

    if not Path(args.predictions).exists():
        return _fail(f"--predictions {args.predictions} does not exist")
    if not Path(args.data_root).is_dir():
        return _fail(f"--data-root {args.data_root} is not a folder")
    try:
        result = evaluate_occupancy_submission(
            args.predictions, args.infos, args.data_root, use_camera_mask=not args.no_camera_mask
        )
    except (OccupancySubmissionError, OccupancyEvaluationError, InfoFileError) as err:
        return _fail(str(err))
    print(format_occupancy_table(result))
    if args.json:
        print(f"wrote {write_json_atomic(result, args.json)}")
    return 0


def _lanes(args: argparse.Namespace) -> int:
    from perception.evaluation.lane_submission import (
        LaneSubmissionError,
        check_lane_submission,
        load_lane_submission,
    )
    from perception.evaluation.nuscenes import write_json_atomic
    from perception.evaluation.openlane_v2 import (
        OpenLaneV2EvaluationError,
        evaluate_ols,
        format_ols_table,
        load_lane_ground_truth,
    )

    try:
        ground_truth = load_lane_ground_truth(args.ground_truth)
        submission = load_lane_submission(args.predictions)
        check_lane_submission(submission, expected_keys=ground_truth.keys())
        metrics = evaluate_ols(ground_truth, submission["results"])
    except (LaneSubmissionError, OpenLaneV2EvaluationError) as err:
        return _fail(str(err))
    print(format_ols_table(metrics))
    if args.json:
        print(f"wrote {write_json_atomic(metrics, args.json)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
