"""Write a leaderboard-ready nuScenes detection results JSON.

  python tools/submit.py --predictions preds.pkl --infos data/nuscenes/nuscenes_infos_test.pkl \
      --out submission/results_nusc.json [--zip] [--use-external]
  python tools/submit.py --results existing.json --infos ... --out ...   (re-validate, fix meta)

``preds.pkl``: a list of per-sample dicts ``sample_token, boxes (N, 9) ego frame, scores, labels``
(the per-sample outputs of a detector's ``predict`` mode). Every sample of the info
file must be covered (missing ones get an empty list), at most 500 boxes per sample are kept.
"""

from __future__ import annotations

import argparse
import json
import pickle
import zipfile
from pathlib import Path

from perception.data.infos import load_infos
from perception.evaluation.nuscenes import (
    DEFAULT_META,
    predictions_to_submission,
    validate_submission,
    write_json_atomic,
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--predictions", help="pickle of per-sample prediction dicts")
    source.add_argument("--results", help="an existing nuScenes results JSON")
    parser.add_argument("--infos", required=True, help="info file of the submitted split")
    parser.add_argument("--out", required=True)
    parser.add_argument("--zip", action="store_true", help="also write OUT.zip holding the JSON")
    parser.add_argument("--use-external", action="store_true", help="meta.use_external (pretrained weights)")
    args = parser.parse_args(argv)
    _, infos = load_infos(args.infos)
    meta = dict(DEFAULT_META, use_external=args.use_external)
    if args.predictions:
        with open(args.predictions, "rb") as f:
            predictions = pickle.load(f)
        submission = predictions_to_submission(predictions, infos, meta)
    else:
        submission = json.loads(Path(args.results).read_text())
        submission["meta"] = dict(meta, **{k: v for k, v in submission.get("meta", {}).items() if k in meta})
        for info in infos:
            submission["results"].setdefault(info["token"], [])
    validate_submission(submission, [i["token"] for i in infos])
    out = write_json_atomic(submission, args.out)
    boxes = sum(len(v) for v in submission["results"].values())
    print(f"wrote {out}: {len(submission['results'])} samples, {boxes} boxes, meta {submission['meta']}")
    if args.zip:
        archive = out.with_suffix(".zip")
        with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as z:
            z.write(out, arcname=out.name)
        print(f"wrote {archive}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
