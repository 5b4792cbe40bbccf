"""Write a leaderboard-ready nuScenes detection results JSON.

  python tools/submit.py --predictions preds.pkl --infos data/nuscenes/nuscenes_infos_test.pkl \
      --out submission/results_nusc.json [--zip] [--use-external] [--allow-missing]
  python tools/submit.py --results existing.json --infos ... --out ...   (re-validate, fix meta)
  python tools/submit.py waymo --predictions preds.pkl --infos data/waymo/waymo_infos_testing.pkl \
      --out submission/my_method --method-name NAME --account-name EMAIL [--authors A B] [--affiliation X]
      [--description X] [--method-link URL] [--past-frames N] [--shards N] [--allow-missing]

``preds.pkl``: a list of per-sample dicts ``sample_token, boxes (N, 9) ego frame, scores, labels``
(the per-sample outputs of a detector's ``predict`` mode). Every sample of the info file must be
covered: a sample without predictions is refused unless ``--allow-missing`` says that empty
predictions are intended (it then gets an empty list). At most 500 boxes per sample are kept
(the best-scoring). ``--zip`` also writes OUT with the suffix ``.zip`` (``results_nusc.json`` ->
``results_nusc.zip``) holding the JSON. Outputs get the usual file mode (0666 less the umask).

``waymo`` writes a Waymo camera-only 3D detection submission: ``OUT/part{i}`` serialised ``Submission``
protos (task CAMERA_ONLY_DETECTION_3D, sensor CAMERA_ALL, vehicle/pedestrian/cyclist) and ``OUT.tar.gz``,
validated against the frames of the Waymo info file before writing (docs/waymo.md).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import zipfile
from pathlib import Path

from _cli import UsageError, one_line_errors, run_tool
from _submit_waymo import main as waymo_main

from perception.data.infos import load_infos
from perception.engine.files import read_pickle, set_default_file_mode
from perception.evaluation.nuscenes import (
    DEFAULT_META,
    SubmissionError,
    first_few,
    predictions_to_submission,
    read_results_json,
    validate_submission,
    write_json_atomic,
)

PROG = "submit.py"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--predictions", help="pickle of per-sample prediction dicts")
    source.add_argument("--results", help="an existing nuScenes results JSON")
    parser.add_argument("--infos", required=True, help="info file of the submitted split")
    parser.add_argument("--out", required=True, help="the results JSON to write")
    parser.add_argument("--zip", action="store_true",
                        help="also write OUT with the suffix .zip holding the JSON (results_nusc.json -> "
                             "results_nusc.zip)")
    parser.add_argument("--use-external", action="store_true", help="meta.use_external (pretrained weights)")
    parser.add_argument("--allow-missing", action="store_true",
                        help="submit samples without predictions as empty lists (refused otherwise)")
    return parser


def main(argv: list[str] | None = None) -> int:
    if argv is None:
        import sys

        argv = sys.argv[1:]
    if argv and argv[0] == "waymo":
        return waymo_main(argv[1:], PROG)
    args = _parser().parse_args(argv)
    with one_line_errors(PROG):
        return _submit(args)


def _submit(args: argparse.Namespace) -> int:
    if Path(args.out).is_dir():
        raise UsageError(f"--out {args.out} is a folder; give the path of the results JSON to write")
    _, infos = load_infos(args.infos)
    tokens = [info["token"] for info in infos]
    source = args.predictions or args.results
    meta = dict(DEFAULT_META, use_external=args.use_external)
    try:
        submission = _read_submission(args, infos, meta)
        missing = [t for t in tokens if t not in submission["results"]]
        if missing and not args.allow_missing:
            raise UsageError(
                f"{source} has no entry for {len(missing)} of the {len(tokens)} samples of {args.infos}: "
                f"{first_few(missing)}; pass --allow-missing to submit them with empty predictions"
            )
        for token in missing:
            submission["results"][token] = []
        validate_submission(submission, tokens)
    except SubmissionError as err:
        raise UsageError(f"{source}: {err}") from err
    out = write_json_atomic(submission, args.out)
    boxes = sum(len(v) for v in submission["results"].values())
    print(f"wrote {out}: {len(submission['results'])} samples ({len(missing)} empty by --allow-missing), "
          f"{boxes} boxes, meta {submission['meta']}")
    if args.zip:
        print(f"wrote {_write_zip(out)}")
    return 0


def _read_submission(args: argparse.Namespace, infos: list[dict], meta: dict) -> dict:
    """The submission dict from --predictions (only predicted samples in ``results``) or --results (its
    meta completed by ours)."""
    if args.predictions:
        predictions = read_pickle(args.predictions, "--predictions", UsageError)
        if not isinstance(predictions, (list, tuple)):
            raise UsageError(f"--predictions {args.predictions} holds a {type(predictions).__name__}, expected "
                             "a list of per-sample prediction dicts")
        predicted = {p.get("sample_token") for p in predictions if isinstance(p, dict)}
        submission = predictions_to_submission(predictions, infos, meta)
        submission["results"] = {t: r for t, r in submission["results"].items() if t in predicted}
        return submission
    submission = read_results_json(args.results)
    given = submission.get("meta", {})
    if not isinstance(given, dict):
        raise SubmissionError(f"meta is a {type(given).__name__}, expected a dict")
    submission["meta"] = dict(meta, **{k: v for k, v in given.items() if k in meta})
    return submission


def _write_zip(json_path: Path) -> Path:
    """``json_path`` with the suffix .zip, holding the JSON; written through a temporary file and renamed."""
    archive = json_path.with_suffix(".zip")
    fd, tmp = tempfile.mkstemp(dir=archive.parent, prefix=f".{archive.name}.", suffix=".tmp")
    os.close(fd)
    try:
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as z:
            z.write(json_path, arcname=json_path.name)
        set_default_file_mode(tmp)
        os.replace(tmp, archive)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return archive


if __name__ == "__main__":
    run_tool(main, PROG)
