"""``submit.py waymo``: a Waymo camera-only 3D detection submission from per-sample predictions
(perception/evaluation/waymo_submission.py does the work; docs/waymo.md)."""

from __future__ import annotations

import argparse

from _cli import UsageError, one_line_errors

from perception.data.infos import load_infos
from perception.engine.files import read_pickle
from perception.evaluation.waymo_submission import (
    SubmissionMetadata,
    WaymoSubmissionError,
    describe,
    frames_of_infos,
    submissions_from_predictions,
    write_submissions,
)


def _parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=f"{prog} waymo", description=__doc__)
    parser.add_argument("--predictions", required=True, help="pickle of per-sample prediction dicts")
    parser.add_argument("--infos", required=True, help="Waymo info file of the submitted split")
    parser.add_argument("--out", required=True, help="folder for part{i}; OUT.tar.gz is the archive to upload")
    parser.add_argument("--method-name", required=True, help="unique_method_name")
    parser.add_argument("--account-name", required=True, help="account_name (the registered e-mail)")
    parser.add_argument("--authors", nargs="*", default=[])
    parser.add_argument("--affiliation", default="")
    parser.add_argument("--description", default="")
    parser.add_argument("--method-link", default="")
    parser.add_argument("--past-frames", type=int, default=0, help="number_past_frames_exclude_current")
    parser.add_argument("--latency", type=float, default=None, help="latency_second")
    parser.add_argument("--shards", type=int, default=1, help="number of Submission protos (part files)")
    parser.add_argument("--allow-missing", action="store_true", help="submit unpredicted frames without objects")
    return parser


def main(argv: list[str], prog: str) -> int:
    args = _parser(prog).parse_args(argv)
    with one_line_errors(prog):
        _, infos = load_infos(args.infos)
        predictions = read_pickle(args.predictions, "--predictions", UsageError)
        if not isinstance(predictions, (list, tuple)):
            raise UsageError(f"--predictions {args.predictions} holds a {type(predictions).__name__}, expected a "
                             "list of per-sample prediction dicts")
        metadata = SubmissionMetadata(args.method_name, args.account_name, args.authors, args.affiliation,
                                      args.description, args.method_link, args.past_frames, 0, args.latency)
        try:
            submissions = submissions_from_predictions(predictions, infos, metadata, args.shards, args.allow_missing)
            archive = write_submissions(submissions, args.out, frames_of_infos(infos))
        except WaymoSubmissionError as err:
            raise UsageError(f"{args.predictions}: {err}") from err
        print(f"wrote {archive}: {describe(submissions)}")
    return 0
