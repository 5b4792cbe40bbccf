"""Waymo camera-only 3D detection submissions: serialised ``Submission`` protos written with the protobuf
runtime alone (no TensorFlow, no waymo-open-dataset package, no protoc step; docs/waymo.md, "Submission").

The messages come from ``waymo_submission.proto`` next to this file (the official field numbers and types):
:func:`message_classes` parses that file (a small proto2 subset: messages, nested messages, enums,
optional/repeated fields, defaults) into a ``FileDescriptorProto`` and builds the classes at run time.

A submission for the camera-only challenge: task CAMERA_ONLY_DETECTION_3D, sensor CAMERA_ALL, object types
vehicle/pedestrian/cyclist, each object with its frame's ``context_name`` and ``frame_timestamp_micros``.
It is split into ``shards`` Submission messages written as ``DIR/part{i}`` and archived as ``DIR.tar.gz``,
as the challenge asks. Everything is validated against the frames of the submitted split before writing.
"""

from __future__ import annotations

import functools
import math
import os
import re
import tarfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from perception.data.waymo.conventions import CLASS_TYPES, TYPE_NAMES, WAYMO_CLASSES, boxes_to_waymo

PROTO_FILE = Path(__file__).with_name("waymo_submission.proto")
TASK_CAMERA_ONLY_DETECTION_3D = 6
SENSOR_CAMERA_ALL = 3
MAX_METHOD_NAME = 25  # the challenge's limit on unique_method_name
CHALLENGE_TYPES = tuple(CLASS_TYPES[c] for c in WAYMO_CLASSES)  # vehicle, pedestrian, cyclist


class WaymoSubmissionError(ValueError):
    """A submission that the Waymo server would reject, or a file that is no submission (names the problem)."""


# -- the .proto, built at run time ------------------------------------------------------------------------
_SCALARS = {"double": 1, "float": 2, "int64": 3, "uint64": 4, "int32": 5, "bool": 8, "string": 9, "bytes": 12,
            "uint32": 13, "sint32": 17, "sint64": 18}
_LABELS = {"optional": 1, "required": 2, "repeated": 3}
_TOKEN = re.compile(r'"[^"]*"|[A-Za-z_][\w.]*|-?\d+(?:\.\d+)?|[{}=;\[\]]')


def parse_proto(text: str):
    """A ``FileDescriptorProto`` of a proto2 file using messages, enums and optional/repeated fields."""
    from google.protobuf import descriptor_pb2

    tokens = _TOKEN.findall(re.sub(r"//[^\n]*", "", text))
    pos = 0

    def take(expected: str | None = None) -> str:
        nonlocal pos
        token = tokens[pos]
        if expected is not None and token != expected:
            raise WaymoSubmissionError(f"{PROTO_FILE.name}: expected {expected!r}, got {token!r}")
        pos += 1
        return token

    def enum(target) -> None:
        target.name = take()
        take("{")
        while tokens[pos] != "}":
            value = target.value.add(name=take())
            take("=")
            value.number = int(take())
            take(";")
        take("}")

    def message(target, scope: str) -> None:
        target.name = take()
        full = f"{scope}.{target.name}"
        take("{")
        while tokens[pos] != "}":
            kind = take()
            if kind == "message":
                message(target.nested_type.add(), full)
            elif kind == "enum":
                enum(target.enum_type.add())
            else:
                type_name, name = take(), take()
                take("=")
                number = int(take())
                f = target.field.add(name=name, number=number, label=_LABELS[kind])
                if type_name in _SCALARS:
                    f.type = _SCALARS[type_name]
                else:
                    f.type_name = type_name  # resolved below, once every type is known
                    unresolved.append((f, full))
                if tokens[pos] == "[":
                    take("[")
                    take("default")
                    take("=")
                    f.default_value = take()
                    take("]")
                take(";")
        take("}")

    proto = descriptor_pb2.FileDescriptorProto(name=PROTO_FILE.name, syntax="proto2")
    unresolved: list = []
    while pos < len(tokens):
        keyword = take()
        if keyword in ("syntax", "package"):
            if keyword == "syntax":
                take("=")
            value = take().strip('"')
            take(";")
            if keyword == "package":
                proto.package = value
        elif keyword == "message":
            message(proto.message_type.add(), "")
        else:
            raise WaymoSubmissionError(f"{PROTO_FILE.name}: unsupported statement {keyword!r}")
    _resolve(proto, unresolved)
    return proto


def _resolve(proto, unresolved: list) -> None:
    """Set each message/enum field's type to the innermost definition visible from its message's scope."""
    kinds = {}

    def collect(messages, scope: str) -> None:
        for m in messages:
            full = f"{scope}.{m.name}"
            kinds[full] = 11  # TYPE_MESSAGE
            for e in m.enum_type:
                kinds[f"{full}.{e.name}"] = 14  # TYPE_ENUM
            collect(m.nested_type, full)

    collect(proto.message_type, "")
    for f, scope in unresolved:
        parts = scope.split(".")
        for depth in range(len(parts), 0, -1):
            candidate = ".".join(parts[:depth] + [f.type_name])
            if candidate in kinds:
                break
        else:
            raise WaymoSubmissionError(f"{PROTO_FILE.name}: unknown type {f.type_name!r} of field {f.name}")
        f.type = kinds[candidate]
        f.type_name = f".{proto.package}{candidate}"


@functools.cache
def message_classes() -> dict[str, type]:
    """{message name: class} of :data:`PROTO_FILE` (top-level and nested, e.g. ``Label.Box``)."""
    from google.protobuf import descriptor_pool, message_factory

    proto = parse_proto(PROTO_FILE.read_text())
    pool = descriptor_pool.DescriptorPool()
    pool.Add(proto)
    out = {}

    def add(messages, prefix: str) -> None:
        for m in messages:
            name = f"{prefix}{m.name}"
            out[name] = message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{proto.package}.{name}"))
            add(m.nested_type, f"{name}.")

    add(proto.message_type, "")
    return out


# -- building ----------------------------------------------------------------------------------------------
@dataclass
class SubmissionMetadata:
    """The method's description that every shard carries (the challenge requires a method and account name)."""

    unique_method_name: str
    account_name: str
    authors: Sequence[str] = field(default_factory=list)
    affiliation: str = ""
    description: str = ""
    method_link: str = ""
    number_past_frames_exclude_current: int = 0
    number_future_frames_exclude_current: int = 0
    latency_second: float | None = None


def _numpy(x) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().float().cpu().numpy()
    return np.asarray(x)


def prediction_objects(prediction: Mapping, info: Mapping, classes: Sequence[str] = WAYMO_CLASSES) -> list:
    """One sample's predictions (``boxes`` (N, 9) vehicle frame, ``scores``, ``labels`` into ``classes``)
    as ``Object`` messages of the info's frame; predictions of other classes are dropped."""
    Object = message_classes()["Object"]
    boxes = _numpy(prediction["boxes"]).astype(np.float64)
    boxes = boxes.reshape(0, 9) if boxes.size == 0 else boxes.reshape(-1, boxes.shape[-1])
    scores = _numpy(prediction["scores"]).astype(np.float64).reshape(-1)
    labels = _numpy(prediction["labels"]).astype(np.int64).reshape(-1)
    if not len(boxes) == len(scores) == len(labels):
        raise WaymoSubmissionError(f"sample {info['token']}: {len(boxes)} boxes, {len(scores)} scores, "
                                   f"{len(labels)} labels")
    waymo = boxes_to_waymo(boxes)
    objects = []
    for n in range(len(boxes)):
        name = classes[labels[n]] if 0 <= labels[n] < len(classes) else None
        if name not in CLASS_TYPES:
            continue
        obj = Object(score=float(scores[n]), context_name=str(info["context_name"]),
                     frame_timestamp_micros=int(info["timestamp"]))
        label = obj.object
        (label.box.center_x, label.box.center_y, label.box.center_z) = waymo["center"][n].tolist()
        (label.box.length, label.box.width, label.box.height) = waymo["size"][n].tolist()
        label.box.heading = float(waymo["heading"][n])
        label.metadata.speed_x, label.metadata.speed_y = waymo["speed"][n].tolist()
        label.type = CLASS_TYPES[name]
        objects.append(obj)
    return objects


def build_submissions(objects: Sequence, metadata: SubmissionMetadata, shards: int = 1) -> list:
    """``shards`` Submission messages (camera-only task, CAMERA_ALL, the three types), ``objects`` split
    evenly over them in order."""
    if shards < 1:
        raise WaymoSubmissionError(f"shards must be >= 1, got {shards}")
    Submission = message_classes()["Submission"]
    out = []
    bounds = np.linspace(0, len(objects), shards + 1).round().astype(int)
    for i in range(shards):
        sub = Submission(task=TASK_CAMERA_ONLY_DETECTION_3D, sensor_type=SENSOR_CAMERA_ALL,
                         unique_method_name=metadata.unique_method_name, account_name=metadata.account_name,
                         affiliation=metadata.affiliation, description=metadata.description,
                         method_link=metadata.method_link,
                         number_past_frames_exclude_current=metadata.number_past_frames_exclude_current,
                         number_future_frames_exclude_current=metadata.number_future_frames_exclude_current)
        sub.authors.extend(metadata.authors)
        sub.object_types.extend(CHALLENGE_TYPES)
        if metadata.latency_second is not None:
            sub.latency_second = float(metadata.latency_second)
        sub.inference_results.objects.extend(objects[bounds[i]:bounds[i + 1]])
        out.append(sub)
    return out


def submissions_from_predictions(predictions: Sequence[Mapping], infos: Sequence[Mapping],
                                 metadata: SubmissionMetadata, shards: int = 1, allow_missing: bool = False,
                                 classes: Sequence[str] = WAYMO_CLASSES) -> list:
    """Shards of the per-sample predictions (``sample_token``, ``boxes``, ``scores``, ``labels``) of the
    frames of Waymo ``infos``: every prediction must name a frame of the infos, and every frame must be
    predicted unless ``allow_missing``."""
    by_token = {info["token"]: info for info in infos}
    frames_of_infos(infos)  # Waymo infos only
    objects, seen = [], set()
    for n, prediction in enumerate(predictions):
        token = prediction.get("sample_token") if isinstance(prediction, Mapping) else None
        if token not in by_token:
            raise WaymoSubmissionError(f"prediction {n}: sample_token {token!r} is not a frame of the info file")
        if token in seen:
            raise WaymoSubmissionError(f"prediction {n}: sample_token {token!r} is predicted twice")
        seen.add(token)
        objects += prediction_objects(prediction, by_token[token], classes)
    missing = [t for t in by_token if t not in seen]
    if missing and not allow_missing:
        raise WaymoSubmissionError(f"{len(missing)} of the {len(by_token)} frames have no predictions, e.g. "
                                   f"{missing[:3]}; allow_missing submits them without objects")
    return build_submissions(objects, metadata, shards)


def frames_of_infos(infos: Iterable[Mapping]) -> dict[str, set[int]]:
    """{context_name: {frame_timestamp_micros}} of Waymo infos (perception/data/waymo/infos.py)."""
    frames: dict[str, set[int]] = {}
    for info in infos:
        if "context_name" not in info:
            raise WaymoSubmissionError(f"info {info.get('token')} has no context_name: not a Waymo info file "
                                       "(tools/create_data.py waymo writes them)")
        frames.setdefault(str(info["context_name"]), set()).add(int(info["timestamp"]))
    return frames


def validate_submissions(submissions: Sequence, frames: Mapping[str, set[int]]) -> None:
    """Check each shard's header and every object: a known context name and one of its frame timestamps,
    a challenge type, a finite box with positive size, a score in [0, 1]."""
    if not submissions:
        raise WaymoSubmissionError("a submission needs at least one shard")
    for i, sub in enumerate(submissions):
        where = f"shard {i}"
        header_set = sub.HasField("task") and sub.HasField("sensor_type")
        if not header_set or sub.task != TASK_CAMERA_ONLY_DETECTION_3D or sub.sensor_type != SENSOR_CAMERA_ALL:
            raise WaymoSubmissionError(f"{where}: task {sub.task} / sensor_type {sub.sensor_type}, expected "
                                       f"CAMERA_ONLY_DETECTION_3D ({TASK_CAMERA_ONLY_DETECTION_3D}) / CAMERA_ALL "
                                       f"({SENSOR_CAMERA_ALL})")
        if not sub.unique_method_name or not sub.account_name:
            raise WaymoSubmissionError(f"{where}: unique_method_name and account_name must be set")
        if len(sub.unique_method_name) > MAX_METHOD_NAME:
            raise WaymoSubmissionError(f"{where}: unique_method_name {sub.unique_method_name!r} is longer than "
                                       f"{MAX_METHOD_NAME} characters")
        if sorted(sub.object_types) != sorted(CHALLENGE_TYPES):
            raise WaymoSubmissionError(f"{where}: object_types {list(sub.object_types)}, expected {CHALLENGE_TYPES}")
        for n, obj in enumerate(sub.inference_results.objects):
            _validate_object(obj, frames, f"{where} object {n}")


def _validate_object(obj, frames: Mapping[str, set[int]], where: str) -> None:
    if obj.context_name not in frames:
        raise WaymoSubmissionError(f"{where}: context_name {obj.context_name!r} is not a segment of the split "
                                   f"({len(frames)} segments, e.g. {sorted(frames)[:2]})")
    if obj.frame_timestamp_micros not in frames[obj.context_name]:
        raise WaymoSubmissionError(f"{where}: frame_timestamp_micros {obj.frame_timestamp_micros} is not a frame "
                                   f"of segment {obj.context_name}")
    if obj.object.type not in CHALLENGE_TYPES:
        raise WaymoSubmissionError(f"{where}: type {obj.object.type} is not vehicle/pedestrian/cyclist")
    box = obj.object.box
    values = [box.center_x, box.center_y, box.center_z, box.length, box.width, box.height, box.heading]
    if not all(math.isfinite(v) for v in values) or min(box.length, box.width, box.height) <= 0:
        raise WaymoSubmissionError(f"{where}: box {values} must be finite with positive size")
    if not 0.0 <= obj.score <= 1.0:
        raise WaymoSubmissionError(f"{where}: score {obj.score} is outside [0, 1]")


# -- files -----------------------------------------------------------------------------------------------
def write_submissions(submissions: Sequence, out_dir: str | Path, frames: Mapping[str, set[int]]) -> Path:
    """Validate, then write ``out_dir/part{i}`` (serialised Submission) and ``out_dir.tar.gz`` holding the
    folder; returns the archive's path."""
    validate_submissions(submissions, frames)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for i, sub in enumerate(submissions):
        tmp = out_dir / f".part{i}.tmp"
        tmp.write_bytes(sub.SerializeToString())
        os.replace(tmp, out_dir / f"part{i}")
    archive = out_dir.with_name(out_dir.name + ".tar.gz")
    tmp = archive.with_name(archive.name + ".tmp")
    with tarfile.open(tmp, "w:gz") as tar:
        for i in range(len(submissions)):
            tar.add(out_dir / f"part{i}", arcname=f"{out_dir.name}/part{i}")
    os.replace(tmp, archive)
    return archive


def _parse(data: bytes, source: str):
    from google.protobuf.message import DecodeError

    sub = message_classes()["Submission"]()
    try:
        sub.ParseFromString(data)
    except DecodeError as err:
        raise WaymoSubmissionError(f"{source} is not a serialised Submission proto ({err})") from err
    return sub


def read_submissions(path: str | Path) -> list:
    """The Submission messages of a ``.tar``/``.tar.gz`` archive, a folder of serialised shards (every
    regular file, sorted by name) or one serialised file."""
    path = Path(path)
    if not path.exists():
        raise WaymoSubmissionError(f"submission {path} does not exist")
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith("."))
        if not files:
            raise WaymoSubmissionError(f"submission folder {path} holds no files")
        return [_parse(p.read_bytes(), str(p)) for p in files]
    if tarfile.is_tarfile(path):
        with tarfile.open(path) as tar:
            members = sorted((m for m in tar.getmembers() if m.isfile()), key=lambda m: m.name)
            if not members:
                raise WaymoSubmissionError(f"submission archive {path} holds no files")
            return [_parse(tar.extractfile(m).read(), f"{path}:{m.name}") for m in members]
    return [_parse(path.read_bytes(), str(path))]


def submission_objects(submissions: Iterable) -> dict[tuple[str, int], dict[str, np.ndarray]]:
    """{(context_name, timestamp): boxes (N, 9) ours, types (N,), scores (N,)} of submitted objects."""
    from perception.data.waymo.conventions import boxes_from_waymo

    rows: dict[tuple[str, int], list] = {}
    for sub in submissions:
        for obj in sub.inference_results.objects:
            b, m = obj.object.box, obj.object.metadata
            rows.setdefault((obj.context_name, int(obj.frame_timestamp_micros)), []).append(
                (b.center_x, b.center_y, b.center_z, b.length, b.width, b.height, b.heading, m.speed_x, m.speed_y,
                 obj.object.type, obj.score))
    out = {}
    for key, values in rows.items():
        arr = np.array(values, dtype=np.float64)
        out[key] = dict(boxes=boxes_from_waymo(arr[:, :3], arr[:, 3:6], arr[:, 6], arr[:, 7:9]),
                        types=arr[:, 9].astype(np.int64), scores=arr[:, 10])
    return out


def describe(submissions: Sequence) -> str:
    """A one-line summary: shards, objects per type."""
    counts: dict[str, int] = {}
    for sub in submissions:
        for obj in sub.inference_results.objects:
            name = TYPE_NAMES.get(obj.object.type, str(obj.object.type))
            counts[name] = counts.get(name, 0) + 1
    return f"{len(submissions)} shard(s), objects {counts or '{}'}"

