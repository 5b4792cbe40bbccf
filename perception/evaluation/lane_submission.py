"""The OpenLane-V2 submission pickle (docs/lanes.md): build, validate, write atomically and read back.

A submission is ``{'method', 'authors' (list of at most 10 str), 'e-mail', 'institution / company',
'country / region' (an ISO 3166 name or code), 'results': {(split, segment_id, timestamp): {'predictions':
frame}}}`` with each frame ``{'lane_centerline': [{'id', 'points' (n, 3), 'confidence'}], 'traffic_element':
[{'id', 'attribute' 0..12, 'points' (2, 2), 'confidence'}], 'topology_lclc' (#lc, #lc), 'topology_lcte'
(#lc, #te)}``, every array numpy. :func:`check_lane_submission` enforces the devkit's own format check
and, beyond it, that the envelope is complete, values are finite, confidences and topology lie in [0, 1],
attributes are 0..12, and (with ``expected_keys``) every frame is there.
"""

from __future__ import annotations

import numbers
import os
import pickle
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from perception.engine.files import read_pickle, set_default_file_mode
from perception.structures.classes import TRAFFIC_ELEMENT_ATTRIBUTES

MAX_AUTHORS = 10
ENVELOPE_STR_KEYS = ("method", "e-mail", "institution / company", "country / region")
FRAME_KEYS = ("lane_centerline", "traffic_element", "topology_lclc", "topology_lcte")


class LaneSubmissionError(ValueError):
    """A submission that the OpenLane-V2 server (or :func:`evaluate_ols`) would refuse; the message names
    the first bad frame key and field."""


def build_lane_submission(
    results: Mapping[tuple, Mapping],
    *,
    method: str,
    authors: Sequence[str],
    email: str,
    institution: str,
    country: str,
) -> dict:
    """The submission dict of per-frame predictions (key -> devkit predictions frame, e.g. from
    :func:`perception.evaluation.openlane_v2.frame_from_prediction`). Not validated here."""
    return {
        "method": method,
        "authors": list(authors),
        "e-mail": email,
        "institution / company": institution,
        "country / region": country,
        "results": {tuple(key): {"predictions": frame} for key, frame in results.items()},
    }


def _valid_country(value: str) -> bool:
    """ISO 3166 by the ``iso3166`` package (what the devkit uses: a name, alpha-2, alpha-3 or numeric
    code); without the package, any non-empty string (the server checks again)."""
    try:
        from iso3166 import countries
    except ImportError:  # pragma: no cover - tools/install.sh installs it
        return bool(value.strip())
    try:
        countries.get(value)
    except (KeyError, ValueError):
        return False
    return True


def _fail(key, field: str, problem: str):
    where = "submission" if key is None else f"frame {key!r}"
    raise LaneSubmissionError(f"{where}: {field}: {problem}")


def _check_array(key, field: str, value, shape: tuple, unit_range: bool = False) -> None:
    """``shape`` entries of None accept any size (but at least 1)."""
    if not isinstance(value, np.ndarray):
        _fail(key, field, f"is {type(value).__name__}, expected a numpy array")
    if not (np.issubdtype(value.dtype, np.floating) or np.issubdtype(value.dtype, np.integer)):
        _fail(key, field, f"has dtype {value.dtype}, expected a real number array")
    ok = value.ndim == len(shape) and all(
        (s is None and v >= 1) or s == v for s, v in zip(shape, value.shape)
    )
    if not ok:
        want = "(" + ", ".join("n" if s is None else str(s) for s in shape) + ")"
        _fail(key, field, f"has shape {tuple(value.shape)}, expected {want}")
    if value.size and not np.isfinite(value).all():
        _fail(key, field, "contains NaN or infinity")
    if unit_range and value.size and (value.min() < 0 or value.max() > 1):
        _fail(key, field, f"has values outside [0, 1] (min {value.min():g}, max {value.max():g})")


def _check_confidence(key, field: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        _fail(key, field, f"is {type(value).__name__}, expected a number")
    if not np.isfinite(value) or not 0 <= value <= 1:
        _fail(key, field, f"is {value!r}, outside [0, 1]")


def _check_frame(key, predictions) -> None:
    if not isinstance(predictions, Mapping):
        _fail(key, "predictions", f"is {type(predictions).__name__}, expected a dict")
    for name in FRAME_KEYS:
        if name not in predictions:
            _fail(key, name, "is missing")
    ids: dict[Any, str] = {}
    for kind, shape in (("lane_centerline", (None, 3)), ("traffic_element", (2, 2))):
        instances = predictions[kind]
        if not isinstance(instances, list):
            _fail(key, kind, f"is {type(instances).__name__}, expected a list")
        fields = ("id", "points", "confidence") + (("attribute",) if kind == "traffic_element" else ())
        for i, inst in enumerate(instances):
            where = f"{kind}[{i}]"
            if not isinstance(inst, Mapping):
                _fail(key, where, f"is {type(inst).__name__}, expected a dict")
            for f in fields:
                if f not in inst:
                    _fail(key, f"{where}.{f}", "is missing")
            _check_array(key, f"{where}.points", inst["points"], shape)
            _check_confidence(key, f"{where}.confidence", inst["confidence"])
            if kind == "traffic_element":
                attr = inst["attribute"]
                if isinstance(attr, bool) or not isinstance(attr, numbers.Integral):
                    _fail(key, f"{where}.attribute", f"is {type(attr).__name__}, expected an int")
                if not 0 <= attr < len(TRAFFIC_ELEMENT_ATTRIBUTES):
                    _fail(key, f"{where}.attribute", f"is {attr}, outside 0..{len(TRAFFIC_ELEMENT_ATTRIBUTES) - 1}")
            try:
                seen = inst["id"] in ids
            except TypeError:
                _fail(key, f"{where}.id", f"is {type(inst['id']).__name__}, not hashable")
            if seen:
                _fail(key, f"{where}.id", f"{inst['id']!r} is also the id of {ids[inst['id']]} (ids must be unique)")
            ids[inst["id"]] = where
    num_l, num_t = len(predictions["lane_centerline"]), len(predictions["traffic_element"])
    for name, shape in (("topology_lclc", (num_l, num_l)), ("topology_lcte", (num_l, num_t))):
        value = predictions[name]
        if isinstance(value, np.ndarray) and value.ndim == 2 and value.shape != shape:
            _fail(
                key, name,
                f"has shape {value.shape}, but the frame has {num_l} lane centerlines and {num_t} traffic "
                f"elements: expected {shape}",
            )
        _check_array(key, name, value, shape, unit_range=True)


def check_lane_submission(submission, expected_keys: Iterable[tuple] | None = None) -> None:
    """Raise :class:`LaneSubmissionError` naming the first problem: a missing or mistyped envelope key, more
    than 10 authors, a country that is not ISO 3166, a frame key that is not (split, segment_id, timestamp)
    of str, or a frame field of the wrong type, shape, a non-numpy array, NaN, a confidence or topology
    value outside [0, 1], an attribute outside 0..12, duplicate ids, a topology shape that does not match
    the lists; with ``expected_keys``, the first expected frame that is missing."""
    if not isinstance(submission, Mapping):
        _fail(None, "submission", f"is {type(submission).__name__}, expected a dict")
    for name in ENVELOPE_STR_KEYS:
        if name not in submission:
            _fail(None, name, "is missing")
        if not isinstance(submission[name], str):
            _fail(None, name, f"is {type(submission[name]).__name__}, expected a str")
    if not _valid_country(submission["country / region"]):
        _fail(None, "country / region", f"{submission['country / region']!r} is not an ISO 3166 country name or code")
    if "authors" not in submission:
        _fail(None, "authors", "is missing")
    authors = submission["authors"]
    if not isinstance(authors, list) or not all(isinstance(a, str) for a in authors):
        _fail(None, "authors", "must be a list of str")
    if len(authors) > MAX_AUTHORS:
        _fail(None, "authors", f"has {len(authors)} names, at most {MAX_AUTHORS} are allowed")
    if "results" not in submission:
        _fail(None, "results", "is missing")
    results = submission["results"]
    if not isinstance(results, Mapping):
        _fail(None, "results", f"is {type(results).__name__}, expected a dict")
    for key, entry in results.items():
        if not (isinstance(key, tuple) and len(key) == 3 and all(isinstance(k, str) for k in key)):
            _fail(key, "key", "expected a (split, segment_id, timestamp) tuple of str")
        if not isinstance(entry, Mapping):
            _fail(key, "results entry", f"is {type(entry).__name__}, expected {{'predictions': ...}}")
        if "predictions" not in entry:
            _fail(key, "predictions", "is missing")
        _check_frame(key, entry["predictions"])
    if expected_keys is not None:
        missing = [key for key in expected_keys if key not in results]
        if missing:
            _fail(missing[0], "frame", f"is missing from the submission ({len(missing)} expected frames are missing)")


def write_lane_submission(
    path: str | Path, submission: Mapping, expected_keys: Iterable[tuple] | None = None
) -> Path:
    """Validate, then pickle through a temporary file in the same folder and ``os.replace`` (readers never
    see half a file). Returns the path."""
    check_lane_submission(submission, expected_keys)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            pickle.dump(dict(submission), f, protocol=pickle.HIGHEST_PROTOCOL)
        set_default_file_mode(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_lane_submission(path: str | Path) -> dict:
    """Read a submission pickle; :class:`LaneSubmissionError` for a missing, truncated or corrupt file or one
    that is not a dict (the content is checked by :func:`check_lane_submission`)."""
    path = Path(path)
    data = read_pickle(path, "submission", LaneSubmissionError)
    if not isinstance(data, dict):
        raise LaneSubmissionError(f"submission {path} holds a {type(data).__name__}, expected a dict")
    return data
