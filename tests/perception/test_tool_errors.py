"""One-line errors of the command-line tools (tools/_cli.py; docs/robustness.md, "One-line errors").

A user error (missing or malformed file, bad argument, failed validation) ends as exit code 2 with one line
``<tool>.py: error: <message naming the file>`` on stderr, no traceback and no partial output; ``--debug``
shows the traceback; any other error keeps its traceback. The tools' ``main(argv)`` are called in-process
where they print and exit as the script does (``one_line_errors``); a few cases run the real script as a
subprocess, where the exit code and the whole stderr are the point.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from perception.data.infos import load_infos
from perception.data.transforms_bev import ImageLoadError
from perception.evaluation.nuscenes import predictions_to_submission
from tests.tool_loader import import_helper, load_tool

REPO = Path(__file__).resolve().parents[2]
cli = import_helper("_cli")


# -- helpers -----------------------------------------------------------------------------------------------
def _run_script(tool: str, *args: str, prelude: str = "") -> subprocess.CompletedProcess:
    """``python tools/<tool>.py args`` in a fresh interpreter; ``prelude`` (Python) runs first, in the same
    process (e.g. to make a function raise)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop(cli.DEBUG_ENV, None)
    script = str(REPO / "tools" / f"{tool}.py")
    if prelude:
        code = (f"import runpy, sys\nsys.path.insert(0, {str(REPO / 'tools')!r})\n{prelude}\n"
                f"sys.argv = [{script!r}, *{list(args)!r}]\nrunpy.run_path({script!r}, run_name='__main__')\n")
        command = [sys.executable, "-c", code]
    else:
        command = [sys.executable, script, *args]
    return subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)


def _only_line(stderr: str, prog: str) -> str:
    """The single line of stderr, which must be ``<prog>: error: ...``."""
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{prog}: error: "), stderr
    return lines[0]


def _exits_with_one_line(capsys, prog: str, call) -> str:
    """Run ``call()`` (a tool's main in-process): it must exit with code 2 and print one error line."""
    with pytest.raises(SystemExit) as exit_info:
        call()
    assert exit_info.value.code == 2
    captured = capsys.readouterr()
    return _only_line(captured.err, prog)


def _gt_predictions(infos: list[dict]) -> list[dict]:
    preds = []
    for info in infos:
        keep = info["valid_flag"] & (info["gt_labels"] >= 0)
        preds.append(dict(sample_token=info["token"], boxes=info["gt_boxes"][keep].copy(),
                          scores=np.ones(keep.sum()), labels=info["gt_labels"][keep].copy()))
    return preds


@pytest.fixture(scope="module")
def val_infos(synthetic_world) -> list[dict]:
    return load_infos(synthetic_world.val_infos)[1]


@pytest.fixture(scope="module")
def valid_results(val_infos) -> dict:
    """A valid nuScenes results dict of the val split (one sample without boxes keeps it small)."""
    return predictions_to_submission(_gt_predictions(val_infos), val_infos)


# -- the mechanism -----------------------------------------------------------------------------------------
def test_the_user_error_tuple_names_the_project_errors():
    import importlib

    import backbones.checkpoint
    import perception.data.labels.lanes
    import perception.evaluation.occupancy_submission

    for entry in cli.USER_ERRORS:  # every named class exists: a renamed one would silently drop out
        if isinstance(entry, str):
            module, _, name = entry.rpartition(".")
            assert issubclass(getattr(importlib.import_module(module), name), Exception), entry
    types = cli.user_error_types()
    assert len(types) == len(cli.USER_ERRORS)
    assert backbones.checkpoint.CheckpointError in types
    assert isinstance(perception.evaluation.occupancy_submission.OccupancySubmissionError("x"), types)
    assert isinstance(perception.data.labels.lanes.LaneLoadError("x"), types)
    assert isinstance(json.JSONDecodeError("x", "doc", 0), types)
    assert not isinstance(ValueError("x"), types) and not isinstance(ZeroDivisionError(), types)


class _BrokenImages:
    """A dataset whose every item fails as a truncated image does in LoadMultiViewImages."""

    def __init__(self, error: Exception) -> None:
        self.error = error

    def __len__(self) -> int:
        return 2

    def __getitem__(self, index: int):
        raise self.error


@pytest.mark.parametrize("error, expected", [
    (ImageLoadError("image a/b.jpg of sample s1 is corrupt or unreadable: image file is truncated"),
     "image a/b.jpg of sample s1 is corrupt or unreadable: image file is truncated"),
    (FileNotFoundError(2, "No such file or directory", "data/x.pkl"),
     "[Errno 2] No such file or directory: 'data/x.pkl'"),
])
def test_an_error_from_a_dataloader_worker_is_reported_with_its_own_message(error, expected):
    import torch

    loader = torch.utils.data.DataLoader(_BrokenImages(error), num_workers=1)
    with pytest.raises(type(error)) as raised:
        next(iter(loader))
    assert str(raised.value).startswith(f"Caught {type(error).__name__} in DataLoader worker process 0")
    assert cli.one_line_message(raised.value) == expected


def test_messages_are_one_line_and_os_errors_name_the_file():
    assert cli.one_line_message(FileNotFoundError(2, "No such file or directory", "x.pkl")) == (
        "x.pkl: No such file or directory")
    assert cli.one_line_message(cli.UsageError("first\n  second\n")) == "first second"


def _tool_main(record: list, error: BaseException | None = None, result=None):
    def main():
        record.append(list(sys.argv))
        if error is not None:
            raise error
        return result
    return main


def test_run_tool_exit_codes_debug_flag_and_internal_errors(monkeypatch, capsys):
    monkeypatch.delenv(cli.DEBUG_ENV, raising=False)
    seen: list = []
    monkeypatch.setattr(sys, "argv", ["x.py", "--a", "1"])
    with pytest.raises(SystemExit) as exit_info:
        cli.run_tool(_tool_main(seen, cli.UsageError("--a 1 is bad")), "x.py")
    assert exit_info.value.code == 2 and _only_line(capsys.readouterr().err, "x.py") == "x.py: error: --a 1 is bad"

    monkeypatch.setattr(sys, "argv", ["x.py", "--debug", "--a", "1", "--", "--debug"])
    with pytest.raises(SystemExit) as exit_info:
        cli.run_tool(_tool_main(seen, FileNotFoundError(2, "No such file or directory", "in.json")), "x.py")
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "Traceback" in err
    assert err.strip().splitlines()[-1] == "x.py: error: in.json: No such file or directory"
    assert seen[-1] == ["x.py", "--a", "1", "--", "--debug"]  # taken off before the tool parses; not after --

    monkeypatch.setenv(cli.DEBUG_ENV, "1")
    monkeypatch.setattr(sys, "argv", ["x.py"])
    with pytest.raises(SystemExit):
        cli.run_tool(_tool_main(seen, cli.UsageError("bad")), "x.py")
    assert "Traceback" in capsys.readouterr().err
    monkeypatch.delenv(cli.DEBUG_ENV)

    with pytest.raises(ZeroDivisionError):  # not a user error: the traceback stays
        cli.run_tool(_tool_main(seen, ZeroDivisionError("bug")), "x.py")
    for result, code in ((None, 0), ({"metrics": 1}, 0), (3, 3)):
        with pytest.raises(SystemExit) as exit_info:
            cli.run_tool(_tool_main(seen, result=result), "x.py")
        assert exit_info.value.code == code


# -- tools/evaluate.py -------------------------------------------------------------------------------------
@pytest.mark.parametrize("breakage, message", [
    ("missing", r"{path} does not fit split mini_val of v1.0-mini: 2 of the {n} samples have no entry: "),
    ("extra", r"{path} does not fit split mini_val of v1.0-mini: 2 unknown sample tokens \(not in the split\): "
              r"aaa, bbb$"),
    ("duplicate", r"results file {path} lists 1 sample token\(s\) more than once: {token}$"),
    ("truncated", r"results file {path} is not valid JSON \(truncated\?\): "),
])
def test_evaluate_checks_the_results_before_the_devkit_and_leaves_nothing(
    breakage, message, valid_results, val_infos, synthetic_world, tmp_path, capsys
):
    import re

    tokens = [i["token"] for i in val_infos]
    results = json.loads(json.dumps(valid_results))
    path = tmp_path / "results_nusc.json"
    text = json.dumps(results)
    if breakage == "missing":
        del results["results"][tokens[0]], results["results"][tokens[1]]
        text = json.dumps(results)
    elif breakage == "extra":
        results["results"].update(aaa=[], bbb=[])
        text = json.dumps(results)
    elif breakage == "duplicate":  # JSON keeps the last entry: the first one's boxes would vanish
        text = text.replace('"results": {', f'"results": {{"{tokens[2]}": [], ', 1)
    elif breakage == "truncated":
        text = text[: len(text) // 2]
    path.write_text(text)
    evaluate = load_tool("evaluate")
    out_dir = tmp_path / "eval"
    line = _exits_with_one_line(capsys, "evaluate.py", lambda: evaluate.main(
        ["nuscenes", str(path), "--dataroot", str(synthetic_world.root), "--version", "v1.0-mini",
         "--out-dir", str(out_dir)]))
    expected = message.format(path=re.escape(str(path)), n=len(tokens), token=tokens[2])
    assert re.search(expected, line.removeprefix("evaluate.py: error: ")), line
    if breakage == "missing":
        assert sorted(tokens[:2])[0] in line
    assert not out_dir.exists() and not list(tmp_path.rglob("plots"))


@pytest.mark.slow
def test_evaluate_script_one_line_and_debug_traceback(valid_results, val_infos, synthetic_world, tmp_path):
    results = json.loads(json.dumps(valid_results))
    del results["results"][val_infos[0]["token"]]
    path = tmp_path / "results_nusc.json"
    path.write_text(json.dumps(results))
    args = [str(path), "--dataroot", str(synthetic_world.root), "--version", "v1.0-mini"]
    run = _run_script("evaluate", *args)
    assert run.returncode == 2
    line = _only_line(run.stderr, "evaluate.py")
    assert str(path) in line and f"1 of the {len(val_infos)} samples have no entry: {val_infos[0]['token']}" in line
    assert not (tmp_path / "nuscenes_eval").exists()  # the default --out-dir, next to the results

    run = _run_script("evaluate", "--debug", *args)
    assert run.returncode == 2 and "Traceback (most recent call last)" in run.stderr
    assert run.stderr.strip().splitlines()[-1] == line and not (tmp_path / "nuscenes_eval").exists()


# -- tools/submit.py ---------------------------------------------------------------------------------------
@pytest.fixture()
def normal_umask():
    old = os.umask(0o022)
    yield
    os.umask(old)


def test_submit_refuses_missing_samples_unless_allowed(val_infos, synthetic_world, tmp_path, capsys, normal_umask):
    submit = load_tool("submit")
    preds = tmp_path / "preds.pkl"
    preds.write_bytes(pickle.dumps(_gt_predictions(val_infos)[:-2]))
    out = tmp_path / "sub" / "results_nusc.json"
    argv = ["--predictions", str(preds), "--infos", str(synthetic_world.val_infos), "--out", str(out), "--zip"]
    line = _exits_with_one_line(capsys, "submit.py", lambda: submit.main(argv))
    missing = sorted(i["token"] for i in val_infos[-2:])
    assert line == (f"submit.py: error: {preds} has no entry for 2 of the {len(val_infos)} samples of "
                    f"{synthetic_world.val_infos}: {missing[0]}, {missing[1]}; pass --allow-missing to submit them "
                    "with empty predictions")
    assert not out.parent.exists()

    assert submit.main([*argv, "--allow-missing"]) == 0
    data = json.loads(out.read_text())
    assert data["results"][val_infos[-1]["token"]] == [] and len(data["results"]) == len(val_infos)
    archive = tmp_path / "sub" / "results_nusc.zip"  # what --help says: OUT with the suffix .zip
    assert archive.is_file() and "results_nusc.zip" in submit._parser().format_help().replace("\n", " ")
    assert sorted(p.name for p in out.parent.iterdir()) == ["results_nusc.json", "results_nusc.zip"]
    assert (out.stat().st_mode & 0o777, archive.stat().st_mode & 0o777) == (0o644, 0o644)


@pytest.mark.parametrize("breakage, message", [
    ("nan", "translation must be 3 finite numbers, got [nan, "),
    ("too_many", "has 501 boxes (at most 500)"),
    ("name", "unknown detection_name 'vehicle.car'"),
    ("label", "unknown class label 10 (class indices are 0..9)"),
    ("truncated", "is truncated or not a pickle"),
])
def test_submit_validation_failures_are_one_line(breakage, message, valid_results, val_infos, synthetic_world,
                                                 tmp_path, capsys):
    results = json.loads(json.dumps(valid_results))
    token = next(t for t, records in results["results"].items() if records)
    record = results["results"][token][0]
    source = ["--results", str(tmp_path / "in.json")]
    if breakage == "nan":
        record["translation"][0] = float("nan")
    elif breakage == "too_many":
        results["results"][token] = [dict(record) for _ in range(501)]
    elif breakage == "name":
        record["detection_name"] = "vehicle.car"
    else:
        preds = _gt_predictions(val_infos)
        preds[0]["labels"][:] = 10
        data = pickle.dumps(preds)
        (tmp_path / "preds.pkl").write_bytes(data if breakage == "label" else data[: len(data) // 2])
        source = ["--predictions", str(tmp_path / "preds.pkl")]
    (tmp_path / "in.json").write_text(json.dumps(results))
    out = tmp_path / "out" / "results_nusc.json"
    submit = load_tool("submit")
    line = _exits_with_one_line(capsys, "submit.py", lambda: submit.main(
        [*source, "--infos", str(synthetic_world.val_infos), "--out", str(out)]))
    assert source[1] in line and message in line, line
    assert not out.parent.exists()


@pytest.mark.slow
def test_an_internal_error_keeps_its_traceback(val_infos, synthetic_world, tmp_path):
    preds = tmp_path / "preds.pkl"
    preds.write_bytes(pickle.dumps(_gt_predictions(val_infos)))
    prelude = ("import perception.evaluation.nuscenes as nuscenes\n"
               "def broken(*args, **kwargs):\n    raise ZeroDivisionError('a bug of ours')\n"
               "nuscenes.predictions_to_submission = broken")
    run = _run_script("submit", "--predictions", str(preds), "--infos", str(synthetic_world.val_infos),
                      "--out", str(tmp_path / "r.json"), prelude=prelude)
    assert run.returncode == 1 and "Traceback (most recent call last)" in run.stderr
    assert run.stderr.strip().endswith("ZeroDivisionError: a bug of ours") and "error:" not in run.stderr


# -- tools/visualize.py ------------------------------------------------------------------------------------
@pytest.fixture()
def world_copy(synthetic_world, tmp_path) -> Path:
    """A copy of the synthetic world that a test may damage."""
    return Path(shutil.copytree(synthetic_world.root, tmp_path / "world"))


@pytest.mark.parametrize("breakage", ["index", "missing", "truncated"])
def test_visualize_bad_inputs_are_one_line(breakage, world_copy, tmp_path, capsys):
    infos_path = world_copy / "nuscenes_infos_val.pkl"
    infos = load_infos(infos_path)[1]
    image = world_copy / next(iter(infos[0]["cams"].values()))["data_path"]
    index = 0
    if breakage == "index":
        index = len(infos)
        expected = (f"--index {index} is past the end of {infos_path}, which holds {len(infos)} samples "
                    f"(indices 0..{len(infos) - 1})")
    elif breakage == "missing":
        image.unlink()
        expected = f"image {image} of sample {infos[0]['token']} does not exist"
    else:
        image.write_bytes(image.read_bytes()[:1500])
        expected = f"image {image} of sample {infos[0]['token']} is corrupt or unreadable: "
    out = tmp_path / "vis" / "sample.png"
    visualize = load_tool("visualize")
    code = visualize.main(["--infos", str(infos_path), "--data-root", str(world_copy), "--index", str(index),
                           "--out", str(out)])
    assert code == 2
    assert _only_line(capsys.readouterr().err, "visualize.py").startswith(f"visualize.py: error: {expected}")
    assert not out.parent.exists()


# -- tools/create_data.py ----------------------------------------------------------------------------------
def test_create_data_bad_arguments_are_one_line(tmp_path, capsys):
    create_data = load_tool("create_data")
    line = _exits_with_one_line(capsys, "create_data.py", lambda: create_data.main(
        ["nuscenes", "--root", str(tmp_path / "nowhere"), "--version", "v1.0-mini", "--out", str(tmp_path / "o")]))
    assert line == f"create_data.py: error: --root {tmp_path / 'nowhere'} has no v1.0-mini/ table folder"
    line = _exits_with_one_line(capsys, "create_data.py", lambda: create_data.main(
        ["synthetic", "--out", str(tmp_path / "o"), "--scenes", "0"]))
    assert line.startswith("create_data.py: error: --scenes must be in 1..") and line.endswith("got 0")
    assert not (tmp_path / "o").exists()


# -- tools/train.py ----------------------------------------------------------------------------------------
@pytest.mark.slow
def test_a_truncated_jpeg_during_training_ends_as_one_line(world_copy, tmp_path):
    for image in (world_copy / "samples").rglob("*.jpg"):
        image.write_bytes(image.read_bytes()[:1500])
    options = [f"train_dataloader.dataset.data_root={world_copy}/",
               f"train_dataloader.dataset.ann_file={world_copy / 'nuscenes_infos_train.pkl'}",
               f"val_dataloader.dataset.data_root={world_copy}/",
               f"val_dataloader.dataset.ann_file={world_copy / 'nuscenes_infos_val.pkl'}",
               f"val_evaluator.ann_file={world_copy / 'nuscenes_infos_val.pkl'}",
               f"val_evaluator.data_root={world_copy}/", "train_cfg.max_iters=2"]
    run = _run_script("train", str(REPO / "configs" / "bev" / "bevformer_v2_tiny_synthetic.py"),
                      "--work-dir", str(tmp_path / "work"), "--cfg-options", *options)
    assert run.returncode == 2, run.stderr[-3000:]
    assert "Traceback" not in run.stderr and "DataLoader worker" not in run.stderr
    errors = [line for line in run.stderr.splitlines() if ": error: " in line]
    assert len(errors) == 1 and run.stderr.strip().splitlines()[-1] == errors[0]
    assert errors[0].startswith(f"train.py: error: image {world_copy / 'samples'}")
    assert " of sample " in errors[0] and "is corrupt or unreadable" in errors[0]
