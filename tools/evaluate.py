"""Evaluate a nuScenes detection results JSON with the devkit's DetectionEval.

  python tools/evaluate.py results_nusc.json --dataroot data/nuscenes --version v1.0-trainval \
      [--eval-set val] [--out-dir work_dirs/eval]

Prints NDS, mAP, the five TP errors and per-class AP, and writes the devkit's metrics_summary.json.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from perception.evaluation.nuscenes import evaluate_results, validate_submission


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("results")
    parser.add_argument("--dataroot", required=True)
    parser.add_argument("--version", default="v1.0-trainval", choices=["v1.0-trainval", "v1.0-mini"])
    parser.add_argument("--eval-set", default=None, help="devkit split (default: val / mini_val)")
    parser.add_argument("--out-dir", default=None)
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args(argv)
    validate_submission(json.loads(Path(args.results).read_text()))
    metrics = evaluate_results(
        args.results, args.dataroot, args.version, args.eval_set, args.out_dir, verbose=args.verbose
    )
    width = max(len(k) for k in metrics)
    for key, value in metrics.items():
        print(f"{key:<{width}}  {value:.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
