"""Occ3D-nuScenes occupancy submissions: write, read and score them (docs/occupancy.md, "Data, submission
and evaluation commands").

A submission is a folder (and optionally its zip) of one ``<sample token>.npz`` per sample, each holding
the predicted class grid, uint8 (200, 200, 16) indexed ``[x, y, z]``, classes 0..17 (17 free), under two
keys: ``arr_0`` (what ``np.savez_compressed(path, pred)`` writes, the challenge server's key) and ``pred``
(the key SparseOcc's RayIoU script reads), so one file serves both.

* :func:`write_occupancy_submission` validates every prediction and the token set before it writes
  anything, then writes each file atomically and the zip last.
* :func:`read_occupancy_submission` reads a folder or a zip back (``arr_0`` or ``pred``).
* :func:`evaluate_occupancy_submission` scores one against the Occ3D GT named by an info file's ``occ_path``
  (mIoU with or without the camera mask, RayIoU), as ``tools/evaluate.py occupancy`` does.
"""

from __future__ import annotations

import io
import math
import os
import tempfile
import zipfile
import zlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np
from tqdm import tqdm

from perception.engine.files import set_default_file_mode
from perception.evaluation.nuscenes import SubmissionError, first_few
from perception.evaluation.occupancy import (
    NUM_CLASSES,
    OccupancyMIoU,
    OccupancyRayIoU,
    check_semantics,
    load_occ_gt,
    scene_origins,
)
from perception.structures.bev_grid import OCC3D_GRID
from perception.structures.classes import OCC3D_CLASSES, OCC_FREE

OCC3D_SHAPE = tuple(OCC3D_GRID.voxel_shape)  # (200, 200, 16)
SUBMISSION_KEYS = ("arr_0", "pred")  # challenge server, SparseOcc's RayIoU script
RESULT_KEYS = ("mIoU", "RayIoU", "RayIoU@1", "RayIoU@2", "RayIoU@4")


class OccupancySubmissionError(SubmissionError):
    """An occupancy submission that the challenge server or the evaluator would reject (names the sample
    token or the file)."""


class OccupancyEvaluationError(ValueError):
    """The ground truth of an evaluated sample is missing or unreadable (names the sample and the file)."""


# -- predictions ---------------------------------------------------------------------------------------------
class PackedSemantics:
    """A class grid kept zlib-compressed in memory (a mostly-free Occ3D grid shrinks about 50 times), so a
    metric that collects a whole test split for a submission does not hold 640 kB per sample."""

    __slots__ = ("data", "dtype", "shape")

    def __init__(self, semantics: np.ndarray) -> None:
        arr = np.ascontiguousarray(semantics)
        self.shape, self.dtype = tuple(arr.shape), arr.dtype.str
        self.data = zlib.compress(arr.tobytes(), 1)

    def unpack(self) -> np.ndarray:
        return np.frombuffer(zlib.decompress(self.data), np.dtype(self.dtype)).reshape(self.shape)

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        arr = self.unpack()
        return arr if dtype is None else arr.astype(dtype)


def semantics_of(prediction, sample_token: str = "<unknown>") -> np.ndarray:
    """The class grid of one prediction as a numpy array (dtype unchanged): a model output
    ``{'sample_token', 'occupancy': {'semantics': ...}}`` (or ``'occupancy': grid``), ``{'semantics': ...}``,
    a tensor, an array or a :class:`PackedSemantics`."""
    value = prediction
    if isinstance(value, Mapping):
        if "occupancy" in value:
            value = value["occupancy"]
        if isinstance(value, Mapping):
            if "semantics" not in value:
                raise OccupancySubmissionError(
                    f"sample {sample_token}: prediction has no occupancy semantics (keys {sorted(value)})"
                )
            value = value["semantics"]
    if value is None:
        raise OccupancySubmissionError(f"sample {sample_token}: prediction has no occupancy semantics")
    if isinstance(value, PackedSemantics):
        return value.unpack()
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    return np.asarray(value)


def collect_predictions(predictions) -> dict[str, object]:
    """``{token: prediction}`` from a mapping token -> grid (or per-sample dict), or from an iterable of the
    model's per-sample dicts carrying ``sample_token``. The grids are not converted here."""
    if isinstance(predictions, Mapping):
        return {str(token): value for token, value in predictions.items()}
    out: dict[str, object] = {}
    for i, pred in enumerate(predictions):
        token = pred.get("sample_token") if isinstance(pred, Mapping) else None
        if token is None:
            raise OccupancySubmissionError(f"prediction #{i} has no 'sample_token'")
        if token in out:
            raise OccupancySubmissionError(f"sample {token} is predicted twice")
        out[token] = pred
    return out


def validate_occupancy_prediction(
    prediction, sample_token: str, shape: Sequence[int] = OCC3D_SHAPE, num_classes: int = NUM_CLASSES
) -> np.ndarray:
    """The grid of one prediction as the submission stores it: uint8 of ``shape`` holding classes
    0..num_classes-1, else :class:`OccupancySubmissionError` naming the token and the problem. The dtype is
    strict (the server expects uint8): convert arg-max indices with ``.astype(np.uint8)`` first."""
    arr = semantics_of(prediction, sample_token)
    if arr.dtype != np.uint8:
        raise OccupancySubmissionError(
            f"sample {sample_token}: occupancy prediction has dtype {arr.dtype}, expected uint8 class indices"
        )
    if tuple(arr.shape) != tuple(shape):
        raise OccupancySubmissionError(
            f"sample {sample_token}: occupancy prediction has shape {tuple(arr.shape)}, expected {tuple(shape)}"
        )
    if arr.size and int(arr.max()) >= num_classes:
        raise OccupancySubmissionError(
            f"sample {sample_token}: occupancy prediction holds class {int(arr.max())}, outside 0..{num_classes - 1}"
        )
    return arr


def _check_token_set(given: Iterable[str], expected: Sequence[str], what: str = "prediction") -> None:
    given = list(given)
    given_set, expected_set = set(given), set(expected)
    missing = [t for t in expected if t not in given_set]
    if missing:
        raise OccupancySubmissionError(
            f"sample {missing[0]} has no {what} ({len(missing)} of {len(expected_set)} expected samples lack one: "
            f"{first_few(missing)})"
        )
    unknown = [t for t in given if t not in expected_set]
    if unknown:
        raise OccupancySubmissionError(
            f"sample {unknown[0]} is not an expected sample ({len(unknown)} unknown sample tokens: "
            f"{first_few(unknown)})"
        )


# -- writing -------------------------------------------------------------------------------------------------
def write_occupancy_submission(
    predictions,
    expected_tokens: Iterable[str] | None,
    out_dir: str | Path,
    zip_path: str | Path | None = None,
    *,
    shape: Sequence[int] = OCC3D_SHAPE,
    num_classes: int = NUM_CLASSES,
    progress: bool = True,
) -> Path:
    """Write ``out_dir/<sample token>.npz`` for every sample (keys ``arr_0`` and ``pred``, uint8 ``shape``)
    and then, when ``zip_path`` is given, a zip holding them under the folder's name.

    ``predictions``: the model's per-sample dicts ``{'sample_token', 'occupancy': {'semantics': uint8 (X, Y, Z)}}``
    or a mapping ``{token: grid}`` (tensor, array, per-sample dict or :class:`PackedSemantics`).
    ``expected_tokens``: the samples of the submitted split (None: whatever is predicted).

    Everything is checked before the first file is written: every expected token predicted, no unknown
    token, and each grid's dtype, shape and classes (:func:`validate_occupancy_prediction`); ``out_dir`` may
    not hold ``.npz`` files of other samples (the zip and a later evaluation would take them in). The first
    problem raises :class:`OccupancySubmissionError` naming its sample. Each file is written to a temporary
    name and renamed, the zip too, so readers never see half a file. Returns ``out_dir``."""
    preds = collect_predictions(predictions)
    tokens = list(dict.fromkeys(expected_tokens)) if expected_tokens is not None else list(preds)
    _check_token_set(preds, tokens)
    for token in tqdm(tokens, desc="check occupancy", unit="sample", disable=not progress):
        validate_occupancy_prediction(preds[token], token, shape, num_classes)
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise OccupancySubmissionError(f"{out_dir} exists and is not a folder")
    wanted = set(tokens)
    stale = sorted(p.name for p in _npz_files(out_dir) if p.stem not in wanted) if out_dir.is_dir() else []
    if stale:
        raise OccupancySubmissionError(
            f"{out_dir} already holds {len(stale)} .npz files of other samples (e.g. {stale[0]}); "
            f"write the submission to an empty folder"
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    for token in tqdm(tokens, desc="write occupancy", unit="sample", disable=not progress):
        arr = validate_occupancy_prediction(preds[token], token, shape, num_classes)
        _write_npz_atomic(out_dir / f"{token}.npz", arr)
    if zip_path is not None:
        _write_zip_atomic(Path(zip_path), out_dir, tokens)
    return out_dir


def _write_npz_atomic(path: Path, arr: np.ndarray) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:  # a file object: numpy appends no ".npz" to the temporary name
            np.savez_compressed(f, **{key: arr for key in SUBMISSION_KEYS})
        set_default_file_mode(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _write_zip_atomic(zip_path: Path, out_dir: Path, tokens: Sequence[str]) -> None:
    zip_path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=zip_path.parent, prefix=f".{zip_path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        # The npz members are compressed already; the zip only stores them, in the folder's name.
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED) as z:
            for token in tokens:
                z.write(out_dir / f"{token}.npz", arcname=f"{out_dir.name}/{token}.npz")
        set_default_file_mode(tmp)
        os.replace(tmp, zip_path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# -- reading -------------------------------------------------------------------------------------------------
def _npz_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.glob("*.npz") if not p.name.startswith(".") and p.is_file())


class OccupancySubmissionFiles(Mapping):
    """A submission folder or zip as a lazy mapping ``{sample token: uint8 grid}``: files are read (and
    checked) when accessed. ``source(token)`` names a sample's file. Close it (or use ``with``) to release
    an open zip."""

    def __init__(
        self, path: str | Path, shape: Sequence[int] | None = OCC3D_SHAPE, num_classes: int = NUM_CLASSES
    ) -> None:
        self.path, self.shape, self.num_classes = Path(path), shape, num_classes
        self._zip: zipfile.ZipFile | None = None
        self._members: dict[str, str] = {}
        if self.path.is_dir():
            self._members = {p.stem: p.name for p in _npz_files(self.path)}
            if not self._members:
                raise OccupancySubmissionError(f"{self.path} holds no <sample token>.npz files")
        elif self.path.is_file():
            try:
                self._zip = zipfile.ZipFile(self.path)
            except (zipfile.BadZipFile, OSError) as err:
                raise OccupancySubmissionError(
                    f"{self.path} is neither a folder nor a readable zip ({type(err).__name__}: {err})"
                ) from err
            for name in self._zip.namelist():
                base = name.rsplit("/", 1)[-1]
                if not base.endswith(".npz") or base.startswith(".") or name.startswith("__MACOSX/"):
                    continue
                token = base[: -len(".npz")]
                if token in self._members:
                    raise OccupancySubmissionError(
                        f"{self.path}: sample {token} appears twice ({self._members[token]}, {name})"
                    )
                self._members[token] = name
            if not self._members:
                self.close()
                raise OccupancySubmissionError(f"{self.path} holds no <sample token>.npz files")
        else:
            raise OccupancySubmissionError(f"submission {self.path} does not exist")

    def source(self, token: str) -> str:
        """The file of a sample: ``DIR/<token>.npz`` or ``ZIP:<member>``."""
        name = self._members[token]
        return f"{self.path}:{name}" if self._zip is not None else str(self.path / name)

    def __getitem__(self, token: str) -> np.ndarray:
        if token not in self._members:
            raise KeyError(token)
        where = self.source(token)
        try:
            name = self._members[token]
            raw = self._zip.read(name) if self._zip is not None else (self.path / name).read_bytes()
            with np.load(io.BytesIO(raw), allow_pickle=False) as data:
                keys = [k for k in SUBMISSION_KEYS if k in data.files]
                if not keys:
                    raise OccupancySubmissionError(
                        f"{where} has neither key {' nor '.join(SUBMISSION_KEYS)} (keys {data.files})"
                    )
                arrays = [data[k] for k in keys]
        except OccupancySubmissionError:
            raise
        except Exception as err:  # zip, zlib, npy header and EOF errors of a truncated or corrupt file
            raise OccupancySubmissionError(
                f"{where} is truncated or corrupt ({type(err).__name__}: {err})"
            ) from err
        if len(arrays) == 2 and not np.array_equal(arrays[0], arrays[1]):
            raise OccupancySubmissionError(f"{where}: keys arr_0 and pred hold different grids")
        try:
            return check_semantics(arrays[-1], token, self.shape, self.num_classes)
        except ValueError as err:
            raise OccupancySubmissionError(f"{where}: {err}") from err

    def __iter__(self) -> Iterator[str]:
        return iter(self._members)

    def __len__(self) -> int:
        return len(self._members)

    def close(self) -> None:
        if self._zip is not None:
            self._zip.close()
            self._zip = None

    def __enter__(self) -> OccupancySubmissionFiles:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def read_occupancy_submission(
    path: str | Path, shape: Sequence[int] | None = OCC3D_SHAPE, num_classes: int = NUM_CLASSES
) -> dict[str, np.ndarray]:
    """``{sample token: uint8 grid}`` of a submission folder or zip (members may sit in a sub-folder). A file
    may hold ``arr_0``, ``pred`` or both (then equal); any integer dtype is read as uint8 when its classes
    are in range. Errors (:class:`OccupancySubmissionError`) name the file: missing path, no npz, truncated
    or corrupt npz, missing key, wrong shape, dtype or class. For a whole split prefer
    :class:`OccupancySubmissionFiles`, which reads one file at a time."""
    with OccupancySubmissionFiles(path, shape, num_classes) as files:
        return {token: files[token] for token in files}


# -- evaluation ----------------------------------------------------------------------------------------------
def _load_gt(path: Path, token: str, shape: Sequence[int]) -> dict[str, np.ndarray]:
    if not path.is_file():
        raise OccupancyEvaluationError(f"sample {token}: GT file {path} does not exist")
    try:
        gt = load_occ_gt(path)
    except Exception as err:  # zip and npy errors of a corrupt file
        raise OccupancyEvaluationError(
            f"sample {token}: GT file {path} is corrupt or unreadable ({type(err).__name__}: {err})"
        ) from err
    if "semantics" not in gt or gt["semantics"].shape != tuple(shape):
        got = gt["semantics"].shape if "semantics" in gt else "no 'semantics'"
        raise OccupancyEvaluationError(f"sample {token}: GT file {path} holds {got}, expected {tuple(shape)}")
    return gt


def _finite_or_none(value: float) -> float | None:
    return None if value is None or math.isnan(value) else float(value)


def evaluate_occupancy_submission(
    predictions,
    infos: str | Path | Sequence[dict],
    data_root: str | Path,
    use_camera_mask: bool = True,
    ray_iou: bool = True,
    progress: bool = True,
) -> dict:
    """Score a submission (folder, zip, or a mapping ``{token: grid}``) against the Occ3D GT of the info
    file's samples (``data_root / occ_path``): every info sample must be predicted and nothing else.

    Returns (percent; None for a class absent from GT and predictions) ``mIoU``, ``RayIoU``, ``RayIoU@1``,
    ``RayIoU@2``, ``RayIoU@4``, ``per_class_IoU`` and ``per_class_RayIoU`` ({class: {'@1', '@2', '@4'}}) over
    the 17 non-free classes, plus ``samples``, ``use_camera_mask`` and ``ray_iou``. The mIoU pools one
    confusion matrix over the split (with the camera mask unless ``use_camera_mask=False``), RayIoU casts
    rays from the scene's key-frame LiDAR origins (docs/occupancy.md, "Metrics")."""
    if isinstance(infos, (str, Path)):
        from perception.data.infos import load_infos

        _, infos = load_infos(infos)
    infos = list(infos)
    close = None
    if isinstance(predictions, (str, Path)):
        predictions = close = OccupancySubmissionFiles(predictions)
    try:
        tokens = [info["token"] for info in infos]
        _check_token_set(predictions.keys(), tokens)
        for info in infos:
            if not info.get("occ_path"):
                raise OccupancyEvaluationError(f"sample {info['token']}: the info has no occ_path (no Occ3D GT)")
        origins = scene_origins(infos) if ray_iou else {}
        miou = OccupancyMIoU(use_camera_mask=use_camera_mask)
        rays = OccupancyRayIoU()
        for info in tqdm(infos, desc="occupancy eval", unit="sample", disable=not progress):
            token = info["token"]
            pred = predictions[token]
            if not isinstance(predictions, OccupancySubmissionFiles):
                pred = check_semantics(semantics_of(pred, token), token, OCC3D_SHAPE)
            gt = _load_gt(Path(data_root) / info["occ_path"], token, OCC3D_SHAPE)
            if use_camera_mask and "mask_camera" not in gt:
                raise OccupancyEvaluationError(
                    f"sample {token}: GT file {Path(data_root) / info['occ_path']} has no mask_camera"
                )
            miou.add(pred, gt["semantics"], gt.get("mask_camera"), token)
            if ray_iou:
                rays.add(pred, gt["semantics"], origins[token], token)
    finally:
        if close is not None:
            close.close()
    out = miou.compute()
    result = {
        "mIoU": _finite_or_none(out["mIoU"]),
        "RayIoU": None,
        "RayIoU@1": None,
        "RayIoU@2": None,
        "RayIoU@4": None,
        "per_class_IoU": {k: _finite_or_none(v) for k, v in out["per_class_IoU"].items()},
    }
    if ray_iou:
        ray = rays.compute()
        result.update({k: _finite_or_none(ray[k]) for k in RESULT_KEYS[1:]})
        result["per_class_RayIoU"] = {
            c: {t: _finite_or_none(v) for t, v in per.items()} for c, per in ray["per_class_RayIoU"].items()
        }
    result.update(samples=len(infos), use_camera_mask=use_camera_mask, ray_iou=ray_iou)
    return result


def format_occupancy_table(result: dict) -> str:
    """The per-class table (IoU and, with rays, the class's mean RayIoU over the thresholds) and the summary
    lines of :func:`evaluate_occupancy_submission`'s result, in percent."""

    def fmt(v) -> str:
        return f"{v:7.2f}" if v is not None else "      -"

    names = [c for i, c in enumerate(OCC3D_CLASSES) if i != OCC_FREE]
    width = max(len(n) for n in names + ["RayIoU@4"])
    rays = result.get("per_class_RayIoU")
    mask = "camera mask" if result.get("use_camera_mask", True) else "no camera mask"
    lines = [f"{'class':<{width}}  {'IoU':>7}" + (f"  {'RayIoU':>7}" if rays else "") + f"   ({mask})"]
    for name in names:
        line = f"{name:<{width}}  {fmt(result['per_class_IoU'].get(name))}"
        if rays:
            values = [v for v in rays[name].values() if v is not None]
            line += f"  {fmt(sum(values) / len(values) if values else None)}"
        lines.append(line)
    lines.append("-" * (width + (20 if rays else 11)))
    for key in RESULT_KEYS:
        if key == "mIoU" or rays:
            lines.append(f"{key:<{width}}  {fmt(result[key])}")
    lines.append(f"{result.get('samples', 0)} samples")
    return "\n".join(lines)
