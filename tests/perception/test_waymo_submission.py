"""Waymo camera-only submissions (perception/evaluation/waymo_submission.py): the run-time messages match the
official field numbers (checked on the wire by a hand-written decoder), the files parse back with the protobuf
runtime field by field, and invalid objects are refused before anything is written."""

from __future__ import annotations

import math
import pickle
import tarfile

import numpy as np
import pytest

from perception.data.infos import load_infos
from perception.evaluation.waymo_submission import (
    SubmissionMetadata,
    WaymoSubmissionError,
    build_submissions,
    frames_of_infos,
    message_classes,
    prediction_objects,
    read_submissions,
    submissions_from_predictions,
    validate_submissions,
    write_submissions,
)
from tests.perception.waymo_data import waymo_data
from tests.tool_loader import load_tool

INFO = dict(token="seg_100", context_name="seg", timestamp=100)
FRAMES = {"seg": {100, 200}}
META = SubmissionMetadata("our-method", "me@example.com", ["A. Author"], "Lab", "camera-only", "https://x", 3)


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[pos]
        value |= (byte & 0x7F) << shift
        pos += 1
        shift += 7
        if byte < 0x80:
            return value, pos


def _wire_fields(data: bytes) -> list[tuple[int, int, object]]:
    """(field number, wire type, raw value) of a serialised message: the protobuf wire format by hand."""
    import struct

    out, pos = [], 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(data, pos)
        elif wire == 1:
            value, pos = struct.unpack("<d", data[pos : pos + 8])[0], pos + 8
        elif wire == 5:
            value, pos = struct.unpack("<f", data[pos : pos + 4])[0], pos + 4
        elif wire == 2:
            length, pos = _varint(data, pos)
            value, pos = data[pos : pos + length], pos + length
        else:
            raise AssertionError(f"unexpected wire type {wire}")
        out.append((number, wire, value))
    return out


def _one_object_submission():
    boxes = np.array([[10.0, -2.0, 1.0, 1.9, 4.5, 1.6, 0.25, 3.0, -1.0]])  # ours: (w, l, h), velocity
    objects = prediction_objects(dict(boxes=boxes, scores=np.array([0.75]), labels=np.array([2])), INFO)
    return build_submissions(objects, META)[0]


def test_wire_format_has_the_official_field_numbers():
    sub = _one_object_submission()
    top = {n: v for n, _, v in _wire_fields(sub.SerializeToString()) if n != 3 and n != 14}
    fields = _wire_fields(sub.SerializeToString())
    assert top[1] == 6  # task = CAMERA_ONLY_DETECTION_3D
    assert top[2] == b"our-method" and top[13] == b"me@example.com" and top[12] == 3  # CAMERA_ALL
    assert top[4] == b"Lab" and top[5] == b"camera-only" and top[6] == b"https://x" and top[9] == 3
    assert [v for n, _, v in fields if n == 3] == [b"A. Author"]
    assert [v for n, _, v in fields if n == 14] == [1, 2, 4]  # vehicle, pedestrian, cyclist
    objects = [v for n, _, v in _wire_fields(top[11]) if n == 1]
    assert len(objects) == 1
    obj = {n: v for n, _, v in _wire_fields(objects[0])}
    assert obj[2] == pytest.approx(0.75) and obj[4] == b"seg" and obj[5] == 100
    label = {n: v for n, _, v in _wire_fields(obj[1])}
    assert label[3] == 4  # class 2 of ours (cyclist) is Label.Type 4
    box = {n: v for n, _, v in _wire_fields(label[1])}
    # center 1-3, width 4, length 5, height 6, heading 7: Waymo's (length, width) from our (w, l).
    assert [box[i] for i in range(1, 8)] == pytest.approx([10.0, -2.0, 1.0, 1.9, 4.5, 1.6, 0.25])
    speed = {n: v for n, _, v in _wire_fields(label[2])}
    assert speed[1] == pytest.approx(3.0) and speed[2] == pytest.approx(-1.0)


def test_proto_file_and_runtime_messages_agree():
    classes = message_classes()
    box = classes["Label.Box"].DESCRIPTOR
    assert {f.name: f.number for f in box.fields} == dict(center_x=1, center_y=2, center_z=3, width=4, length=5,
                                                          height=6, heading=7)
    obj = classes["Object"].DESCRIPTOR
    assert {f.name: f.number for f in obj.fields} == dict(object=1, score=2, overlap_with_nlz=3, context_name=4,
                                                          frame_timestamp_micros=5, camera_name=6)
    assert classes["Object"]().score == 1.0  # the official default
    sub = classes["Submission"].DESCRIPTOR
    assert sub.fields_by_name["object_types"].enum_type.full_name == "waymo.open_dataset.Label.Type"
    assert sub.fields_by_name["inference_results"].number == 11 and sub.fields_by_name["account_name"].number == 13


def test_submission_files_parse_back_field_by_field(tmp_path):
    objects = [o for t in (100, 200) for o in prediction_objects(
        dict(boxes=np.array([[5.0, 1.0, 0.8, 0.7, 0.8, 1.7, -0.5, 0.2, 0.1]] * 2), scores=np.array([0.4, 0.6]),
             labels=np.array([1, 0])), dict(INFO, timestamp=t, token=f"seg_{t}"))]
    subs = build_submissions(objects, META, shards=3)
    archive = write_submissions(subs, tmp_path / "method", FRAMES)
    assert archive == tmp_path / "method.tar.gz"
    with tarfile.open(archive) as tar:
        assert sorted(tar.getnames()) == ["method/part0", "method/part1", "method/part2"]
    for source in (archive, tmp_path / "method", tmp_path / "method" / "part0"):
        parsed = read_submissions(source)
        assert [p.SerializeToString() for p in parsed] == [s.SerializeToString() for s in subs][: len(parsed)]
    parsed = read_submissions(archive)
    got = [o for p in parsed for o in p.inference_results.objects]
    assert len(got) == 4 and all(p.task == 6 and p.sensor_type == 3 for p in parsed)
    assert [p.unique_method_name for p in parsed] == ["our-method"] * 3
    first = got[0]
    assert (first.context_name, first.frame_timestamp_micros, first.object.type) == ("seg", 100, 2)
    assert first.score == pytest.approx(0.4)
    b = first.object.box
    assert (b.center_x, b.center_y, b.center_z, b.width, b.length, b.height) == pytest.approx(
        (5.0, 1.0, 0.8, 0.7, 0.8, 1.7))
    assert b.heading == pytest.approx(-0.5) and first.object.metadata.speed_x == pytest.approx(0.2)
    assert got[1].object.type == 1 and got[3].frame_timestamp_micros == 200


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(context_name="other"), "context_name 'other' is not a segment"),
        (dict(frame_timestamp_micros=150), "frame_timestamp_micros 150 is not a frame"),
        (dict(score=1.5), "score 1.5 is outside"),
    ],
)
def test_wrong_objects_are_refused_before_writing(tmp_path, change, message):
    sub = _one_object_submission()
    obj = sub.inference_results.objects[0]
    for key, value in change.items():
        setattr(obj, key, value)
    with pytest.raises(WaymoSubmissionError, match=message):
        write_submissions([sub], tmp_path / "method", {"seg": {100}})
    assert not (tmp_path / "method").exists()


def test_wrong_header_and_box_are_refused():
    sub = _one_object_submission()
    sub.ClearField("task")  # our enum knows only CAMERA_ONLY_DETECTION_3D; an unset task is refused
    with pytest.raises(WaymoSubmissionError, match="CAMERA_ONLY_DETECTION_3D"):
        validate_submissions([sub], FRAMES)
    sub = _one_object_submission()
    sub.inference_results.objects[0].object.box.length = math.nan
    with pytest.raises(WaymoSubmissionError, match="finite with positive size"):
        validate_submissions([sub], FRAMES)
    with pytest.raises(WaymoSubmissionError, match="method and account|unique_method_name"):
        validate_submissions(build_submissions([], SubmissionMetadata("", "")), FRAMES)


def test_predictions_must_cover_the_infos(tmp_path_factory):
    data = waymo_data(tmp_path_factory)
    _, infos = load_infos(data.validation_infos)
    one = [dict(sample_token=infos[0]["token"], boxes=np.zeros((0, 9)), scores=np.zeros(0), labels=np.zeros(0))]
    with pytest.raises(WaymoSubmissionError, match="have no predictions"):
        submissions_from_predictions(one, infos, META)
    assert len(submissions_from_predictions(one, infos, META, allow_missing=True)) == 1
    with pytest.raises(WaymoSubmissionError, match="not a frame of the info file"):
        submissions_from_predictions([dict(one[0], sample_token="nope")], infos, META)
    assert frames_of_infos(infos)[infos[0]["context_name"]] >= {infos[0]["timestamp"]}


def test_submit_tool_refuses_a_bad_prediction_file(tmp_path_factory, tmp_path, capsys):
    data = waymo_data(tmp_path_factory)
    path = tmp_path / "preds.pkl"
    path.write_bytes(pickle.dumps([dict(sample_token="nope", boxes=[], scores=[], labels=[])]))
    submit = load_tool("submit")
    with pytest.raises(SystemExit) as exc:
        submit.main(["waymo", "--predictions", str(path), "--infos", str(data.validation_infos), "--out",
                     str(tmp_path / "out"), "--method-name", "m", "--account-name", "a"])
    assert exc.value.code == 2
    assert "not a frame of the info file" in capsys.readouterr().err
