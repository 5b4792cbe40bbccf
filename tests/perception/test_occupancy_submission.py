"""Occ3D data, submission and evaluation commands (docs/occupancy.md): an Occ3D release folder attached to
the infos, the challenge submission (write, validate, read), ``tools/evaluate.py occupancy`` against the
metric functions, ``--format-only`` of ``OccupancyMetric`` and the nuScenes forms of ``tools/evaluate.py``."""

from __future__ import annotations

import json
import re
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from perception.data.infos import attach_occupancy, load_infos
from perception.evaluation.occupancy import (
    OccupancyMetric,
    load_occ_gt,
    occupancy_miou,
    occupancy_rayiou,
    scene_origins,
)
from perception.evaluation.occupancy_submission import (
    OccupancySubmissionError,
    read_occupancy_submission,
    write_occupancy_submission,
)
from perception.structures.classes import OCC3D_CLASSES
from tests.tool_loader import load_tool

SHAPE = (200, 200, 16)
CAR, TRUCK, DRIVEABLE, SIDEWALK = 4, 10, 11, 13


@pytest.fixture(scope="module")
def val(synthetic_world):
    """(infos, {token: GT dict}) of the synthetic world's val split."""
    _, infos = load_infos(synthetic_world.val_infos)
    assert all(info["occ_path"] for info in infos)
    return infos, {i["token"]: load_occ_gt(synthetic_world.root / i["occ_path"]) for i in infos}


def _evaluate(*args: str) -> int:
    return load_tool("evaluate").main(list(args))


def _one_error_line(capsys) -> str:
    """The one error line of a tool's stderr (besides the progress bar of the loop it stopped in)."""
    err = capsys.readouterr().err.strip()
    lines = [line for line in err.splitlines() if not re.search(r"(sample|scene)/s\]$|s/(sample|scene)\]$", line)]
    assert len(lines) == 1 and "Traceback" not in err and ": error: " in lines[0], err
    return lines[0]


# -- the Occ3D release folder --------------------------------------------------------------------------------
def test_release_folder_is_attached_and_loads(synthetic_world, val, tmp_path, capsys):
    from perception.data import NuScenesBEVDataset

    infos, gts = val
    release = tmp_path / "Occ3D-nuScenes" / "trainval"  # outside the nuScenes root: absolute occ_path
    chosen = infos[1:3]
    for info in chosen:
        dst = release / "gts" / info["scene_name"] / info["token"] / "labels.npz"
        dst.parent.mkdir(parents=True)
        shutil.copy(synthetic_world.root / info["occ_path"], dst)
    listed = {info["token"]: {"timestamp": str(info["timestamp"])} for info in infos[1:4]}  # infos[3]: no file
    (release / "annotations.json").write_text(
        json.dumps({"train_split": [], "val_split": [infos[0]["scene_name"]],
                    "scene_infos": {infos[0]["scene_name"]: listed}})
    )
    out = tmp_path / "infos"
    tool = load_tool("create_data")
    argv = ["nuscenes", "--root", str(synthetic_world.root), "--version", synthetic_world.version,
            "--out", str(out), "--workers", "1", "--occ-root", str(release)]
    assert tool.main(argv) == 0
    printed = capsys.readouterr().out
    assert f"val: 2/{len(infos)} samples with Occ3D labels from {release}" in printed
    assert "annotations.json lists 3, listed without labels 1" in printed
    assert "train: 0/" in printed

    _, attached = load_infos(out / "nuscenes_infos_val.pkl")
    by_token = {i["token"]: i for i in attached}
    for info in chosen:
        path = by_token[info["token"]]["occ_path"]
        assert path == (release / "gts" / info["scene_name"] / info["token"] / "labels.npz").as_posix()
        assert Path(path).is_absolute()
    assert sum(i["occ_path"] is not None for i in attached) == 2
    # The dataset joins data_root / occ_path, which keeps the absolute path: through LoadOccupancy ...
    index = [i["token"] for i in attached].index(chosen[0]["token"])
    ds = NuScenesBEVDataset(str(out / "nuscenes_infos_val.pkl"), str(synthetic_world.root),
                            [dict(type="LoadOccupancy")], filter_invalid=False)
    assert ds.infos[index]["token"] == chosen[0]["token"]
    sample = ds[index]
    np.testing.assert_array_equal(sample["occ_semantics"], gts[chosen[0]["token"]]["semantics"])
    # ... and through the occupancy label type.
    ds = NuScenesBEVDataset(str(out / "nuscenes_infos_val.pkl"), str(synthetic_world.root),
                            labels=("boxes", "occupancy"), filter_invalid=False)
    sample = ds[index]
    np.testing.assert_array_equal(sample["occ_semantics"], gts[chosen[0]["token"]]["semantics"])
    np.testing.assert_array_equal(sample["occ_mask_camera"], gts[chosen[0]["token"]]["mask_camera"].astype(bool))

    # Without --occ-root the labels under the nuScenes root are used, as before.
    assert tool.main(argv[:-2]) == 0
    assert all(i["occ_path"] == f"gts/{i['scene_name']}/{i['token']}/labels.npz"
               for i in load_infos(out / "nuscenes_infos_val.pkl")[1])

    # A missing release folder: one line, exit code 2.
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        tool.main(argv[:-1] + [str(tmp_path / "nowhere")])
    assert exit_info.value.code == 2 and "nowhere" in _one_error_line(capsys)


def test_release_inside_the_data_root_is_relative_and_annotations_are_optional(synthetic_world, val, tmp_path):
    from perception.data.labels.occupancy import Occupancy

    infos, gts = val
    data_root = tmp_path / "nuscenes"
    info = infos[0]
    dst = data_root / "occ3d" / "gts" / info["scene_name"] / info["token"] / "labels.npz"
    dst.parent.mkdir(parents=True)
    shutil.copy(synthetic_world.root / info["occ_path"], dst)
    copies = [dict(i) for i in infos]
    report = attach_occupancy(copies, data_root / "occ3d", data_root)  # no annotations.json: lenient
    assert (report.with_labels, report.samples, report.annotations) == (1, len(infos), False)
    assert copies[0]["occ_path"] == f"occ3d/gts/{info['scene_name']}/{info['token']}/labels.npz"
    assert all(c["occ_path"] is None for c in copies[1:])
    results = {"sample_token": info["token"]}
    Occupancy().load(results, copies[0], str(data_root))
    np.testing.assert_array_equal(results["occ_semantics"], gts[info["token"]]["semantics"])


# -- writing and reading submissions --------------------------------------------------------------------------
def _gt_predictions(infos, gts) -> list[dict]:
    """GT as the model's per-sample outputs (uint8 tensors)."""
    return [{"sample_token": i["token"], "occupancy": {"semantics": torch.from_numpy(gts[i["token"]]["semantics"])}}
            for i in infos]


def test_submission_round_trips_through_the_evaluator(synthetic_world, val, tmp_path, capsys):
    infos, gts = val
    tokens = [i["token"] for i in infos]
    out, archive = tmp_path / "occ_submission", tmp_path / "occ_submission.zip"
    assert write_occupancy_submission(_gt_predictions(infos, gts), tokens, out, archive, progress=False) == out
    assert sorted(p.name for p in out.iterdir()) == sorted(f"{t}.npz" for t in tokens)  # no temporary files
    with np.load(out / f"{tokens[0]}.npz") as data:
        assert sorted(data.files) == ["arr_0", "pred"]
        assert data["arr_0"].dtype == np.uint8 and data["arr_0"].shape == SHAPE
        np.testing.assert_array_equal(data["pred"], gts[tokens[0]]["semantics"])
        np.testing.assert_array_equal(data["arr_0"], data["pred"])
    with zipfile.ZipFile(archive) as z:
        assert sorted(z.namelist()) == sorted(f"occ_submission/{t}.npz" for t in tokens)
    for source in (out, archive):
        back = read_occupancy_submission(source)
        assert sorted(back) == sorted(tokens)
        assert all(np.array_equal(back[t], gts[t]["semantics"]) and back[t].dtype == np.uint8 for t in tokens)

    report = tmp_path / "result.json"
    assert _evaluate("occupancy", "--predictions", str(archive), "--data-root", str(synthetic_world.root),
                     "--infos", str(synthetic_world.val_infos), "--json", str(report)) == 0
    printed = capsys.readouterr().out
    assert "mIoU" in printed and "RayIoU@4" in printed and "driveable_surface" in printed and "free" not in printed
    result = json.loads(report.read_text())
    for key in ("mIoU", "RayIoU", "RayIoU@1", "RayIoU@2", "RayIoU@4"):
        assert result[key] == pytest.approx(100.0), key
    assert list(result["per_class_IoU"]) == list(OCC3D_CLASSES[:17])
    present = [v for v in result["per_class_IoU"].values() if v is not None]
    assert len(present) >= 3 and all(v == pytest.approx(100.0) for v in present)

    # A truncated file makes the tool stop with one line naming it.
    broken = tmp_path / "broken"
    shutil.copytree(out, broken)
    raw = (broken / f"{tokens[2]}.npz").read_bytes()
    (broken / f"{tokens[2]}.npz").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(SystemExit) as exit_info:
        _evaluate("occupancy", "--predictions", str(broken), "--data-root", str(synthetic_world.root),
                  "--infos", str(synthetic_world.val_infos))
    assert exit_info.value.code == 2 and f"{tokens[2]}.npz" in _one_error_line(capsys)


def _perturbed(gt: np.ndarray) -> np.ndarray:
    pred = gt.copy()
    half = np.zeros(SHAPE, bool)
    half[:100] = True
    pred[half & (gt == DRIVEABLE)] = SIDEWALK  # wrong class on half the road
    pred[(gt == CAR) & ~half] = TRUCK
    pred[130:140, 90:110, 1:4] = CAR  # a phantom object
    return pred


def test_perturbed_prediction_matches_the_metric_functions(synthetic_world, val, tmp_path):
    infos, gts = val
    tokens = [i["token"] for i in infos]
    preds = {t: _perturbed(gts[t]["semantics"]) for t in tokens}
    write_occupancy_submission(preds, tokens, tmp_path / "sub", progress=False)  # a mapping of bare arrays
    origins = scene_origins(infos)
    ray = occupancy_rayiou([preds[t] for t in tokens], [gts[t]["semantics"] for t in tokens],
                           [origins[t] for t in tokens])
    for mask in (True, False):
        report = tmp_path / f"result_{mask}.json"
        args = ["occupancy", "--predictions", str(tmp_path / "sub"), "--data-root", str(synthetic_world.root),
                "--infos", str(synthetic_world.val_infos), "--json", str(report)]
        assert _evaluate(*args, *([] if mask else ["--no-camera-mask"])) == 0
        result = json.loads(report.read_text())
        miou = occupancy_miou([preds[t] for t in tokens], [gts[t]["semantics"] for t in tokens],
                              [gts[t]["mask_camera"] for t in tokens] if mask else None)
        assert result["mIoU"] == pytest.approx(miou["mIoU"], abs=1e-9)
        assert 20.0 < result["mIoU"] < 95.0
        for name, value in miou["per_class_IoU"].items():
            assert result["per_class_IoU"][name] == (None if np.isnan(value) else pytest.approx(value, abs=1e-9))
        for key in ("RayIoU", "RayIoU@1", "RayIoU@2", "RayIoU@4"):
            assert result[key] == pytest.approx(ray[key], abs=1e-9), key
        assert 20.0 < result["RayIoU"] < 95.0
    assert result["use_camera_mask"] is False and result["samples"] == len(tokens)


def _grids(tokens, **changes):
    grids = {t: np.full(SHAPE, 17, np.uint8) for t in tokens}
    grids.update(changes)
    return grids


@pytest.mark.parametrize(
    "case, match",
    [
        ("missing", r"sample c has no prediction \(1 of 3"),
        ("unknown", r"sample zz is not an expected sample"),
        ("shape", r"sample b: .*shape \(200, 200, 15\), expected \(200, 200, 16\)"),
        ("dtype", r"sample b: .*dtype int64, expected uint8"),
        ("float", r"sample b: .*dtype float32"),
        ("class", r"sample b: .*class 18, outside 0\.\.17"),
        ("twice", r"sample a is predicted twice"),
        ("no_semantics", r"sample b: prediction has no occupancy semantics"),
    ],
)
def test_invalid_submissions_name_the_sample_and_write_nothing(tmp_path, case, match):
    tokens = ["a", "b", "c"]
    bad = np.full(SHAPE, 17, np.uint8)
    if case == "missing":
        preds = _grids(tokens[:2])
    elif case == "unknown":
        preds = _grids(tokens + ["zz"])
    elif case == "shape":
        preds = _grids(tokens, b=np.zeros((200, 200, 15), np.uint8))
    elif case == "dtype":
        preds = _grids(tokens, b=bad.astype(np.int64))
    elif case == "float":
        preds = _grids(tokens, b=bad.astype(np.float32))
    elif case == "class":
        bad[5, 5, 5] = 18
        preds = _grids(tokens, b=torch.from_numpy(bad))
    elif case == "twice":
        preds = [{"sample_token": t, "occupancy": {"semantics": bad}} for t in ["a", "b", "a", "c"]]
    else:
        preds = [{"sample_token": t, "occupancy": {"logits" if t == "b" else "semantics": bad}} for t in tokens]
    out, archive = tmp_path / "sub", tmp_path / "sub.zip"
    with pytest.raises(OccupancySubmissionError, match=match):
        write_occupancy_submission(preds, tokens, out, archive, progress=False)
    assert not out.exists() and not archive.exists()


def test_stale_files_of_other_samples_are_refused_before_writing(tmp_path):
    out = tmp_path / "sub"
    write_occupancy_submission(_grids(["old"]), ["old"], out, progress=False)
    with pytest.raises(OccupancySubmissionError, match="other samples .*old.npz"):
        write_occupancy_submission(_grids(["a"]), ["a"], out, progress=False)
    assert sorted(p.name for p in out.iterdir()) == ["old.npz"]
    write_occupancy_submission(_grids(["old"]), ["old"], out, progress=False)  # rewriting the same set is fine


def test_reading_corrupt_or_foreign_files_names_them(tmp_path):
    out = tmp_path / "sub"
    write_occupancy_submission(_grids(["a", "b"]), ["a", "b"], out, progress=False)
    raw = (out / "b.npz").read_bytes()
    (out / "b.npz").write_bytes(raw[:100])
    with pytest.raises(OccupancySubmissionError, match=r"sub/b\.npz is truncated or corrupt"):
        read_occupancy_submission(out)

    # The challenge baseline's own files (np.savez_compressed(path, pred): key arr_0) and SparseOcc's (key
    # pred) both read; so does a zip of a folder; any integer dtype is read as uint8.
    grid = np.full(SHAPE, 17, np.int64)
    grid[0, 0, 0] = 4
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    np.savez_compressed(mixed / "a.npz", grid)
    np.savez_compressed(mixed / "b.npz", pred=grid.astype(np.uint8))
    back = read_occupancy_submission(mixed)
    assert back["a"].dtype == np.uint8 and back["a"][0, 0, 0] == 4 and np.array_equal(back["a"], back["b"])

    np.savez_compressed(mixed / "c.npz", semantics=grid)
    with pytest.raises(OccupancySubmissionError, match=r"c\.npz has neither key arr_0 nor pred"):
        read_occupancy_submission(mixed)
    (mixed / "c.npz").unlink()
    np.savez_compressed(mixed / "d.npz", arr_0=np.zeros(SHAPE, np.uint8), pred=np.ones(SHAPE, np.uint8))
    with pytest.raises(OccupancySubmissionError, match=r"d\.npz: keys arr_0 and pred hold different grids"):
        read_occupancy_submission(mixed)
    (mixed / "d.npz").unlink()
    np.savez_compressed(mixed / "e.npz", np.full((200, 200, 16), 18, np.uint8))
    with pytest.raises(OccupancySubmissionError, match=r"e\.npz: sample e: .*class 18"):
        read_occupancy_submission(mixed)

    archive = tmp_path / "broken.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.write(out / "a.npz", "results/a.npz")
        z.writestr("results/b.npz", raw[:100])
    with pytest.raises(OccupancySubmissionError, match=r"broken\.zip:results/b\.npz is truncated or corrupt"):
        read_occupancy_submission(archive)
    (tmp_path / "notazip.zip").write_bytes(b"nonsense")
    with pytest.raises(OccupancySubmissionError, match="notazip.zip is neither a folder nor a readable zip"):
        read_occupancy_submission(tmp_path / "notazip.zip")
    with pytest.raises(OccupancySubmissionError, match="does not exist"):
        read_occupancy_submission(tmp_path / "nowhere")


def test_evaluate_tool_rejects_bad_input_in_one_line(synthetic_world, val, tmp_path, capsys):
    infos, gts = val
    common = ["--data-root", str(synthetic_world.root), "--infos", str(synthetic_world.val_infos)]
    with pytest.raises(SystemExit) as exit_info:
        _evaluate("occupancy", "--predictions", str(tmp_path / "missing_dir"), *common)
    assert exit_info.value.code == 2 and "missing_dir does not exist" in _one_error_line(capsys)

    # A submission lacking a sample of the info file names it.
    tokens = [i["token"] for i in infos]
    write_occupancy_submission({t: gts[t]["semantics"] for t in tokens[1:]}, None, tmp_path / "part",
                               progress=False)
    with pytest.raises(SystemExit) as exit_info:
        _evaluate("occupancy", "--predictions", str(tmp_path / "part"), *common)
    assert exit_info.value.code == 2 and f"sample {tokens[0]} has no prediction" in _one_error_line(capsys)

    with pytest.raises(SystemExit) as exit_info:
        _evaluate("occupancy", "--predictions", str(tmp_path / "part"), "--data-root", str(synthetic_world.root),
                  "--infos", str(tmp_path / "none.pkl"))
    assert exit_info.value.code == 2 and "none.pkl does not exist" in _one_error_line(capsys)


# -- tools/test.py --format-only ------------------------------------------------------------------------------
def test_format_only_metric_writes_the_submission(synthetic_world, val, tmp_path):
    infos, gts = val
    from mmengine.evaluator import Evaluator
    from mmengine.registry import DefaultScope

    out = tmp_path / "work" / "occupancy_submission"
    # As the Runner's test loop (scope perception) builds and drives it from the config that tools/test.py
    # --format-only edits.
    with DefaultScope.overwrite_default_scope("perception"):
        evaluator = Evaluator([dict(type="OccupancyMetric", ann_file=str(synthetic_world.val_infos),
                                    data_root=str(synthetic_world.root), format_only=True, out_dir=str(out))])
    assert isinstance(evaluator.metrics[0], OccupancyMetric)
    preds = _gt_predictions(infos, gts)
    evaluator.process(preds[:3])
    evaluator.process(preds[3:])
    assert evaluator.evaluate(len(preds)) == {}
    for source in (out, tmp_path / "work" / "occupancy_submission.zip"):
        back = read_occupancy_submission(source)
        assert sorted(back) == sorted(gts) and all(np.array_equal(back[t], gts[t]["semantics"]) for t in gts)

    metric = OccupancyMetric(str(synthetic_world.val_infos), str(synthetic_world.root), format_only=True,
                             out_dir=str(tmp_path / "partial"))
    metric.process(None, preds[1:])
    with pytest.raises(OccupancySubmissionError, match=f"sample {infos[0]['token']} has no prediction"):
        metric.compute_metrics(metric.results)


def test_test_tool_switches_metrics_to_format_only(tmp_path):
    from mmengine.config import Config

    test = load_tool("test")
    occ = dict(type="OccupancyMetric", ann_file="a.pkl", data_root="d")
    cfg = Config(dict(work_dir=str(tmp_path / "w"),
                      test_evaluator=[dict(type="NuScenesDetectionMetric", ann_file="a.pkl", data_root="d"), occ]))
    metrics = test.set_format_only(cfg)
    assert all(m["format_only"] for m in metrics)
    assert metrics[1]["out_dir"] == str(tmp_path / "w" / "occupancy_submission") and "out_dir" not in metrics[0]
    cfg = Config(dict(work_dir="w", test_evaluator=dict(occ, out_dir="mine")))
    assert test.set_format_only(cfg)[0]["out_dir"] == "mine"


# -- tools/evaluate.py nuscenes: both forms ---------------------------------------------------------------
def test_evaluate_tool_keeps_the_nuscenes_form(synthetic_world, tmp_path, capsys):
    from perception.evaluation.nuscenes import predictions_to_submission, write_json_atomic

    _, infos = load_infos(synthetic_world.val_infos)
    preds = []
    for info in infos:
        keep = info["valid_flag"] & (info["gt_labels"] >= 0)
        preds.append(dict(sample_token=info["token"], boxes=info["gt_boxes"][keep], scores=np.ones(keep.sum()),
                          labels=info["gt_labels"][keep], attributes=list(info["gt_attributes"][keep])))
    path = write_json_atomic(predictions_to_submission(preds, infos), tmp_path / "results_nusc.json")
    options = ["--dataroot", str(synthetic_world.root), "--version", "v1.0-mini", "--eval-set", "mini_val"]
    for argv in ([str(path), *options, "--out-dir", str(tmp_path / "old")],
                 ["nuscenes", str(path), *options, "--out-dir", str(tmp_path / "new")]):
        assert _evaluate(*argv) == 0
        printed = capsys.readouterr().out
        nds = [line for line in printed.splitlines() if line.startswith("NDS")]
        assert nds and float(nds[0].split()[-1]) == pytest.approx(1.0, abs=1e-4)
    assert (tmp_path / "old" / "metrics_summary.json").exists() and (tmp_path / "new" / "metrics_summary.json").exists()
    with pytest.raises(SystemExit) as exit_info:
        _evaluate(str(tmp_path / "nope.json"), *options)
    assert exit_info.value.code == 2 and "nope.json does not exist" in _one_error_line(capsys)
    with pytest.raises(SystemExit) as exit_info:
        _evaluate("ocupancy", "--predictions", "x")
    assert exit_info.value.code == 2 and "unknown command 'ocupancy'" in _one_error_line(capsys)
