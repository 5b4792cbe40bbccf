"""The OpenLane-V2 submission pickle (perception/evaluation/lane_submission.py, docs/lanes.md): build ->
write -> load round trip, every malformed case refused with the frame and field named, truncated files,
and ``tools/evaluate.py lanes``."""

from __future__ import annotations

import copy
import json
import pickle
import re

import numpy as np
import pytest

from perception.evaluation.lane_submission import (
    LaneSubmissionError,
    build_lane_submission,
    check_lane_submission,
    load_lane_submission,
    write_lane_submission,
)
from perception.evaluation.openlane_v2 import evaluate_ols
from tests.perception.test_openlane_metric import make_ground_truth, perturb
from tests.tool_loader import load_tool

ENVELOPE = dict(method="ours", authors=["A. Author", "B. Author"], email="a@b.c", institution="Lab", country="CN")


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(11)
    gt = make_ground_truth(rng, num_frames=4)
    results = perturb(rng, gt)
    return gt, {k: v["predictions"] for k, v in results.items()}


def test_round_trip_evaluates_like_the_dict(tmp_path, data):
    gt, frames = data
    submission = build_lane_submission(frames, **ENVELOPE)
    assert submission["e-mail"] == "a@b.c" and submission["country / region"] == "CN"
    check_lane_submission(submission, expected_keys=gt.keys())
    path = write_lane_submission(tmp_path / "out" / "submission.pkl", submission)
    assert [p.name for p in path.parent.iterdir()] == ["submission.pkl"]  # no temporary file left
    loaded = load_lane_submission(path)
    assert set(loaded["results"]) == set(gt)
    assert evaluate_ols(gt, loaded["results"]) == evaluate_ols(gt, submission["results"])


def _frame(sub):
    key = next(iter(sub["results"]))
    return key, sub["results"][key]["predictions"]


def _lane(sub, i=0):
    return _frame(sub)[1]["lane_centerline"][i]


def _te(sub, i=0):
    return _frame(sub)[1]["traffic_element"][i]


def _set_lane(field, value):
    return lambda s: _lane(s).__setitem__(field, value)


def _set_te(field, value):
    return lambda s: _te(s).__setitem__(field, value)


def _set_pred(field, value):
    return lambda s: _frame(s)[1].__setitem__(field, value(_frame(s)[1]) if callable(value) else value)


# case -> (mutation of the first frame, the field and problem the message must name)
MALFORMED = {
    "lane points as a list": (_set_lane("points", [[0, 0, 0]] * 11), "lane_centerline[0].points: is list"),
    "lane points (n, 2)": (_set_lane("points", np.zeros((11, 2))), r"lane_centerline[0].points: has shape (11, 2)"),
    "lane points NaN": (_set_lane("points", np.full((11, 3), np.nan)), "lane_centerline[0].points: contains NaN"),
    "lane confidence 1.5": (_set_lane("confidence", 1.5), "lane_centerline[0].confidence: is 1.5, outside [0, 1]"),
    "lane confidence str": (_set_lane("confidence", "0.5"), "lane_centerline[0].confidence: is str"),
    "lane without id": (lambda s: _lane(s).pop("id"), "lane_centerline[0].id: is missing"),
    "te box (4,)": (_set_te("points", np.zeros(4)), "traffic_element[0].points: has shape (4,)"),
    "te attribute 13": (_set_te("attribute", 13), "traffic_element[0].attribute: is 13, outside 0..12"),
    "te without attribute": (lambda s: _te(s).pop("attribute"), "traffic_element[0].attribute: is missing"),
    "te confidence NaN": (_set_te("confidence", float("nan")), "traffic_element[0].confidence"),
    "duplicate id across lists": (lambda s: _te(s).__setitem__("id", _lane(s)["id"]), "traffic_element[0].id"),
    "lclc as list": (_set_pred("topology_lclc", lambda p: p["topology_lclc"].tolist()), "topology_lclc: is list"),
    "lclc shape": (_set_pred("topology_lclc", lambda p: p["topology_lclc"][:-1]), "topology_lclc: has shape"),
    "lcte shape": (_set_pred("topology_lcte", lambda p: p["topology_lcte"][:, :-1]), "topology_lcte: has shape"),
    "lcte above 1": (_set_pred("topology_lcte", lambda p: p["topology_lcte"] + 2), "topology_lcte: has values outside"),
    "missing lcte": (lambda s: _frame(s)[1].pop("topology_lcte"), "topology_lcte: is missing"),
    "lanes as tuple": (
        _set_pred("lane_centerline", lambda p: tuple(p["lane_centerline"])), "lane_centerline: is tuple"
    ),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_frames_are_refused_naming_frame_and_field(data, case):
    gt, frames = data
    # the first frame must have a lane and an element to break: put the richest one first
    frames = copy.deepcopy(frames)
    richest = max(frames, key=lambda k: min(len(frames[k]["lane_centerline"]), len(frames[k]["traffic_element"])))
    frames = {richest: frames.pop(richest), **frames}
    submission = build_lane_submission(frames, **ENVELOPE)
    key = next(iter(submission["results"]))
    mutate, field = MALFORMED[case]
    mutate(submission)
    with pytest.raises(LaneSubmissionError, match=re.escape(f"frame {key!r}: {field}")):
        check_lane_submission(submission)


ENVELOPE_CASES = {
    "11 authors": (lambda s: s.__setitem__("authors", ["x"] * 11), "authors: has 11 names"),
    "authors str": (lambda s: s.__setitem__("authors", "x"), "authors: must be a list of str"),
    "bad country": (lambda s: s.__setitem__("country / region", "Narnia"), "country / region: 'Narnia' is not"),
    "no e-mail": (lambda s: s.pop("e-mail"), "e-mail: is missing"),
    "method int": (lambda s: s.__setitem__("method", 3), "method: is int"),
    "no results": (lambda s: s.pop("results"), "results: is missing"),
    "key not a tuple": (
        lambda s: s["results"].__setitem__("val/x/y", next(iter(s["results"].values()))), "frame 'val/x/y': key"
    ),
}


@pytest.mark.parametrize("case", sorted(ENVELOPE_CASES))
def test_malformed_envelopes_are_refused(data, case):
    submission = build_lane_submission(copy.deepcopy(data[1]), **ENVELOPE)
    mutate, message = ENVELOPE_CASES[case]
    mutate(submission)
    with pytest.raises(LaneSubmissionError, match=re.escape(message)):
        check_lane_submission(submission)


def test_missing_frames_are_named(tmp_path, data):
    gt, frames = data
    keys = list(gt)
    partial = build_lane_submission({k: frames[k] for k in keys[:2]}, **ENVELOPE)
    with pytest.raises(LaneSubmissionError, match=re.escape(f"frame {keys[2]!r}: frame: is missing")):
        check_lane_submission(partial, expected_keys=keys)
    with pytest.raises(LaneSubmissionError):  # write validates first and leaves nothing behind
        write_lane_submission(tmp_path / "s.pkl", partial, expected_keys=keys)
    assert not list(tmp_path.iterdir())


def test_truncated_or_foreign_files_give_a_clear_error(tmp_path, data):
    path = write_lane_submission(tmp_path / "s.pkl", build_lane_submission(data[1], **ENVELOPE))
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(LaneSubmissionError, match="is truncated or not a pickle"):
        load_lane_submission(path)
    path.write_bytes(b"not a pickle at all")
    with pytest.raises(LaneSubmissionError, match="is truncated or not a pickle"):
        load_lane_submission(path)
    path.write_bytes(pickle.dumps([1, 2]))
    with pytest.raises(LaneSubmissionError, match="holds a list, expected a dict"):
        load_lane_submission(path)
    with pytest.raises(LaneSubmissionError, match="does not exist"):
        load_lane_submission(tmp_path / "nowhere.pkl")


# -- tools/evaluate.py lanes ----------------------------------------------------------------------------
def test_cli_writes_the_json(tmp_path, data, capsys):
    gt, frames = data
    gt_path = tmp_path / "data_dict_subset_A_val.pkl"
    gt_path.write_bytes(pickle.dumps(gt))
    sub = write_lane_submission(tmp_path / "submission.pkl", build_lane_submission(frames, **ENVELOPE))
    out = tmp_path / "ols.json"
    tool = load_tool("evaluate")
    assert tool.main(["lanes", "--predictions", str(sub), "--ground-truth", str(gt_path), "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "OLS" in printed and "DET_l @ 1.0 m" in printed
    result = json.loads(out.read_text())
    expected = evaluate_ols(gt, {k: {"predictions": f} for k, f in frames.items()})
    for key in ("OLS", "DET_l", "DET_t", "TOP_ll", "TOP_lt"):
        assert 0 <= result[key] <= 1 and result[key] == pytest.approx(expected[key], abs=1e-12)

    partial = write_lane_submission(
        tmp_path / "partial.pkl", build_lane_submission({k: frames[k] for k in list(frames)[1:]}, **ENVELOPE)
    )
    with pytest.raises(SystemExit) as exit_info:
        tool.main(["lanes", "--predictions", str(partial), "--ground-truth", str(gt_path)])
    assert exit_info.value.code == 2
    assert f"frame {next(iter(gt))!r}: frame: is missing" in capsys.readouterr().err
