"""nuScenes detection: predictions -> results JSON (validated, written atomically), the devkit's
``DetectionEval``, and an mmengine metric.

Predictions are what a BEV detector returns per sample: ``dict(sample_token, boxes (N, 9) ego frame
(x, y, z, w, l, h, yaw, vx, vy), scores (N,), labels (N,) indices into DETECTION_CLASSES)``, optionally
``attributes`` (N names). They go to the global frame through the sample's ``ego2global``.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
from mmengine.evaluator import BaseMetric
from mmengine.logging import MMLogger

from perception.engine.distributed import check_each_sample_once
from perception.engine.files import set_default_file_mode
from perception.engine.registry import METRICS
from perception.structures.classes import DEFAULT_ATTRIBUTE, DETECTION_CLASSES
from perception.structures.nuscenes_boxes import ego_boxes_to_global

MAX_BOXES_PER_SAMPLE = 500
VALID_ATTRIBUTES = {
    "car": {"vehicle.moving", "vehicle.parked", "vehicle.stopped"},
    "truck": {"vehicle.moving", "vehicle.parked", "vehicle.stopped"},
    "bus": {"vehicle.moving", "vehicle.parked", "vehicle.stopped"},
    "trailer": {"vehicle.moving", "vehicle.parked", "vehicle.stopped"},
    "construction_vehicle": {"vehicle.moving", "vehicle.parked", "vehicle.stopped"},
    "pedestrian": {"pedestrian.moving", "pedestrian.standing", "pedestrian.sitting_lying_down"},
    "motorcycle": {"cycle.with_rider", "cycle.without_rider"},
    "bicycle": {"cycle.with_rider", "cycle.without_rider"},
    "barrier": {""},
    "traffic_cone": {""},
}
DEFAULT_META = dict(use_camera=True, use_lidar=False, use_radar=False, use_map=False, use_external=False)
EVAL_SETS = {"v1.0-mini": "mini_val", "v1.0-trainval": "val", "v1.0-test": "test"}


class SubmissionError(ValueError):
    """A results dict that the nuScenes server or devkit would reject."""


def attribute_from_speed(name: str, speed: float) -> str:
    """The usual heuristic for models that predict no attributes (moving above 0.2 m/s)."""
    if speed > 0.2:
        if name in ("car", "truck", "bus", "trailer", "construction_vehicle"):
            return "vehicle.moving"
        if name in ("bicycle", "motorcycle"):
            return "cycle.with_rider"
        return DEFAULT_ATTRIBUTE[name]
    if name == "pedestrian":
        return "pedestrian.standing"
    if name == "bus":
        return "vehicle.stopped"
    return DEFAULT_ATTRIBUTE[name]


def _numpy(x) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().float().cpu().numpy()
    return np.asarray(x)


def prediction_to_records(
    prediction: dict, ego2global: np.ndarray, class_names: Sequence[str] = DETECTION_CLASSES
) -> list[dict]:
    """One sample's ego-frame predictions -> nuScenes ``sample_result`` dicts (global frame)."""
    token = prediction["sample_token"]
    boxes = _numpy(prediction["boxes"]).astype(np.float64).reshape(-1, 9)
    scores = _numpy(prediction["scores"]).astype(np.float64).reshape(-1)
    labels = _numpy(prediction["labels"]).astype(np.int64).reshape(-1)
    if not len(boxes) == len(scores) == len(labels):
        raise SubmissionError(
            f"sample {token}: {len(boxes)} boxes, {len(scores)} scores, {len(labels)} labels"
        )
    bad = labels[(labels < 0) | (labels >= len(class_names))]
    if len(bad):
        raise SubmissionError(f"sample {token}: unknown class label {int(bad[0])} (class indices are "
                              f"0..{len(class_names) - 1})")
    attributes = prediction.get("attributes")
    records = []
    for i, glob in enumerate(ego_boxes_to_global(boxes, ego2global)):
        name = class_names[int(labels[i])]
        attribute = (
            attributes[i]
            if attributes is not None
            else attribute_from_speed(name, float(np.hypot(*glob["velocity"])))
        )
        records.append(
            dict(
                sample_token=token,
                translation=glob["translation"],
                size=glob["size"],
                rotation=glob["rotation"],
                velocity=glob["velocity"],
                detection_name=name,
                detection_score=float(scores[i]),
                attribute_name=attribute,
            )
        )
    return records


def predictions_to_submission(
    predictions: Iterable[dict],
    infos: Sequence[dict],
    meta: dict | None = None,
    class_names: Sequence[str] = DETECTION_CLASSES,
    max_boxes: int = MAX_BOXES_PER_SAMPLE,
) -> dict:
    """Results dict ``{meta, results}`` covering every sample of ``infos`` (samples without predictions get
    an empty list); keeps the ``max_boxes`` best-scoring boxes per sample."""
    by_token = {info["token"]: info for info in infos}
    results: dict[str, list[dict]] = {token: [] for token in by_token}
    predicted: set[str] = set()
    for i, pred in enumerate(predictions):
        if not isinstance(pred, dict) or "sample_token" not in pred:
            raise SubmissionError(f"prediction #{i} is not a dict with a sample_token")
        token = pred["sample_token"]
        if token not in by_token:
            raise SubmissionError(f"prediction for sample {token} which is not in the info file")
        if token in predicted:
            raise SubmissionError(f"sample {token} is predicted twice")
        predicted.add(token)
        records = prediction_to_records(pred, np.asarray(by_token[token]["ego2global"]), class_names)
        records.sort(key=lambda r: -r["detection_score"])
        results[token] = records[:max_boxes]
    return dict(meta=dict(DEFAULT_META, **(meta or {})), results=results)


def first_few(tokens: Iterable[str], shown: int = 3) -> str:
    """``a, b, c and 4 more``: the first ``shown`` of ``tokens`` (sorted) for an error message."""
    tokens = sorted(tokens)
    more = f" and {len(tokens) - shown} more" if len(tokens) > shown else ""
    return ", ".join(tokens[:shown]) + more


def read_results_json(path: str | Path) -> dict:
    """A nuScenes results JSON as a dict; a missing or invalid (e.g. truncated) file, or one that names a
    sample token twice (JSON keeps only the last, so a sample's boxes would vanish silently), raises
    :class:`SubmissionError` naming the file."""
    path = Path(path)
    if not path.is_file():
        raise SubmissionError(f"results file {path} does not exist")
    repeated: list[tuple[dict, list[str]]] = []  # (object, its repeated keys); keeps the objects alive

    def collect_repeats(pairs: list[tuple[str, object]]) -> dict:
        obj = dict(pairs)
        if len(obj) < len(pairs):
            seen: set[str] = set()
            repeated.append((obj, [k for k, _ in pairs if k in seen or seen.add(k)]))
        return obj

    try:
        data = json.loads(path.read_text(), object_pairs_hook=collect_repeats)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise SubmissionError(f"results file {path} is not valid JSON (truncated?): {err}") from err
    if not isinstance(data, dict) or not isinstance(data.get("results"), dict):
        raise SubmissionError(f"results file {path} holds no 'results' mapping of sample tokens")
    tokens = [token for obj, keys in repeated if obj is data["results"] for token in keys]
    if tokens:
        raise SubmissionError(f"results file {path} lists {len(set(tokens))} sample token(s) more than once: "
                              f"{first_few(set(tokens))}")
    return data


def eval_set_sample_tokens(nusc, eval_set: str) -> list[str]:
    """The sample tokens the devkit's ``DetectionEval`` scores for ``eval_set`` (a predefined split, which must
    suit the database version as the devkit asserts, or a custom split); ValueError for a wrong pairing."""
    from nuscenes.eval.common.loaders import get_samples_of_custom_split
    from nuscenes.utils.splits import create_splits_scenes, is_predefined_split

    if not is_predefined_split(split_name=eval_set):
        return list(get_samples_of_custom_split(split_name=eval_set, nusc=nusc))
    suffix = {"mini_train": "mini", "mini_val": "mini", "test": "test"}.get(eval_set, "trainval")
    if not nusc.version.endswith(suffix):
        raise ValueError(f"split {eval_set} belongs to a v1.0-{suffix} database, not {nusc.version}")
    if eval_set == "test" and not nusc.sample_annotation:
        raise ValueError(f"split test of {nusc.version} has no annotations to evaluate against")
    scenes = set(create_splits_scenes()[eval_set])
    return [s["token"] for s in nusc.sample if nusc.get("scene", s["scene_token"])["name"] in scenes]


def validate_submission(submission: dict, expected_tokens: Iterable[str] | None = None) -> None:
    """Raise :class:`SubmissionError` naming the first problem the server or devkit would reject."""
    if set(submission) != {"meta", "results"}:
        raise SubmissionError(f"top-level keys must be meta and results, got {sorted(submission)}")
    if not isinstance(submission["meta"], dict) or not isinstance(submission["results"], dict):
        raise SubmissionError("meta and results must be JSON objects (dicts)")
    missing_meta = set(DEFAULT_META) - set(submission["meta"])
    if missing_meta:
        raise SubmissionError(f"meta lacks {sorted(missing_meta)}")
    results = submission["results"]
    if expected_tokens is not None:
        expected = set(expected_tokens)
        missing, extra = expected - set(results), set(results) - expected
        if missing:
            raise SubmissionError(
                f"{len(missing)} of the {len(expected)} samples have no entry: {first_few(missing)}"
            )
        if extra:
            raise SubmissionError(f"{len(extra)} unknown sample tokens (not in the split): {first_few(extra)}")
    for token, records in results.items():
        if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
            raise SubmissionError(f"sample {token}: expected a list of box dicts, got {type(records).__name__}")
        if len(records) > MAX_BOXES_PER_SAMPLE:
            raise SubmissionError(f"sample {token} has {len(records)} boxes (at most {MAX_BOXES_PER_SAMPLE})")
        for r in records:
            _validate_record(token, r)


def _validate_record(token: str, r: dict) -> None:
    if r.get("sample_token") != token:
        raise SubmissionError(f"sample {token}: a box carries sample_token {r.get('sample_token')!r}")
    name = r.get("detection_name")
    if name not in VALID_ATTRIBUTES:
        raise SubmissionError(f"sample {token}: unknown detection_name {name!r}")
    lengths = dict(translation=3, size=3, rotation=4, velocity=2)
    for key, n in lengths.items():
        value = r.get(key)
        if value is None or len(value) != n or not all(math.isfinite(float(v)) for v in value):
            raise SubmissionError(f"sample {token}: {key} must be {n} finite numbers, got {value!r}")
    if min(r["size"]) <= 0:
        raise SubmissionError(f"sample {token}: size must be positive, got {r['size']}")
    score = r.get("detection_score")
    if score is None or not (0.0 <= float(score) <= 1.0):
        raise SubmissionError(f"sample {token}: detection_score must be in [0, 1], got {score!r}")
    if r.get("attribute_name") not in VALID_ATTRIBUTES[name]:
        raise SubmissionError(
            f"sample {token}: attribute {r.get('attribute_name')!r} is not valid for {name}"
        )


def write_json_atomic(data: dict, path: str | Path) -> Path:
    """Write through a temporary file in the same folder and rename, so readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f)
        set_default_file_mode(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def evaluate_results(
    result_path: str | Path,
    dataroot: str,
    version: str,
    eval_set: str | None = None,
    output_dir: str | Path | None = None,
    nusc=None,
    verbose: bool = False,
) -> dict:
    """Run the devkit's ``DetectionEval`` (config ``detection_cvpr_2019``) and return flat metrics:
    ``NDS, mAP, mATE, mASE, mAOE, mAVE, mAAE`` and ``AP/<class>`` (mean over distance thresholds)."""
    from nuscenes.eval.common.config import config_factory
    from nuscenes.eval.detection.evaluate import DetectionEval

    if nusc is None:
        from nuscenes.nuscenes import NuScenes

        nusc = NuScenes(version=version, dataroot=str(dataroot), verbose=verbose)
    eval_set = eval_set or EVAL_SETS[version]
    output_dir = Path(output_dir or Path(result_path).parent / "nuscenes_eval")
    evaluator = DetectionEval(
        nusc,
        config_factory("detection_cvpr_2019"),
        str(result_path),
        eval_set,
        str(output_dir),
        verbose=verbose,
    )
    if verbose:
        summary = evaluator.main(plot_examples=0, render_curves=False)
    else:  # the devkit prints its tables unconditionally
        with contextlib.redirect_stdout(io.StringIO()):
            summary = evaluator.main(plot_examples=0, render_curves=False)
    names = dict(trans_err="mATE", scale_err="mASE", orient_err="mAOE", vel_err="mAVE", attr_err="mAAE")
    metrics = dict(NDS=summary["nd_score"], mAP=summary["mean_ap"])
    metrics.update({names[k]: v for k, v in summary["tp_errors"].items()})
    metrics.update({f"AP/{k}": float(v) for k, v in summary["mean_dist_aps"].items()})
    return metrics


@METRICS.register_module()
class NuScenesDetectionMetric(BaseMetric):
    """mmengine metric: collects per-sample predictions, writes ``results_nusc.json`` and runs the devkit.

    Args:
        ann_file: our info file of the evaluated split (gives ego2global and the sample list).
        data_root: nuScenes root holding ``<version>/`` tables.
        version / eval_set: devkit version and split (eval_set defaults per version).
        out_dir: where the results JSON and the devkit's summaries go.
        format_only: write the JSON (e.g. for the test server) without evaluating.
        head: the name of the detection head whose predictions are scored.
    """

    default_prefix = "nuscenes"

    def __init__(
        self,
        ann_file: str,
        data_root: str,
        version: str = "v1.0-trainval",
        eval_set: str | None = None,
        out_dir: str = "work_dirs/nuscenes_eval",
        format_only: bool = False,
        meta: dict | None = None,
        head: str = "detection",
        collect_device: str = "cpu",
        prefix: str | None = None,
    ) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix)
        self.head = head
        self.ann_file, self.data_root, self.version = ann_file, data_root, version
        self.eval_set, self.out_dir, self.format_only, self.meta = eval_set, out_dir, format_only, meta

    def process(self, data_batch, data_samples: Sequence[dict]) -> None:
        """``data_samples``: the model's per-sample predictions (the detection head's dict under
        ``head``, docs/architecture.md) or detection dicts themselves (boxes, scores, labels)."""
        for sample in data_samples:
            pred = dict(sample[self.head], sample_token=sample["sample_token"]) if self.head in sample else sample
            self.results.append(
                {
                    k: _numpy(v) if k != "sample_token" and k != "attributes" else v
                    for k, v in pred.items()
                    if k in ("sample_token", "boxes", "scores", "labels", "attributes")
                }
            )

    def compute_metrics(self, results: list) -> dict:
        from perception.data.infos import load_infos

        # Each sample once, in collection order (docs/distributed.md, evaluation under DDP).
        self.scored_tokens = check_each_sample_once((r["sample_token"] for r in results), type(self).__name__)
        _, infos = load_infos(self.ann_file)
        submission = predictions_to_submission(results, infos, self.meta)
        validate_submission(submission, [i["token"] for i in infos])
        path = write_json_atomic(submission, Path(self.out_dir) / "results_nusc.json")
        logger = MMLogger.get_current_instance()
        logger.info(f"nuScenes results written to {path}")
        if self.format_only:
            return {}
        metrics = evaluate_results(path, self.data_root, self.version, self.eval_set, self.out_dir)
        logger.info("nuScenes detection: " + ", ".join(f"{k} {v:.4f}" for k, v in metrics.items()))
        return metrics
