"""The synthetic 2D sets (perception/data/synthetic/sets2d.py), checked against the ray caster's own per-pixel
hits (render_camera), the documented ground palette and pycocotools."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from pycocotools.coco import COCO

from perception.data.synthetic.generator import _solids, camera_intrinsics, camera_to_ego
from perception.data.synthetic.render import GROUND_ID, SKY_ID, render_camera
from perception.data.synthetic.sets2d import ADE_SPLITS, _jobs, render_view_2d
from perception.structures.classes import DETECTION_CLASSES, SEGMENTATION_2D_CLASSES


def _views(config):
    """(job, raw renderer output (image, depth, ids, hits)) per image, straight from render_camera."""
    for job in _jobs(config):
        solids = _solids(job.world, job.time_s)[0]
        cam2global = job.world.ego2global(job.time_s) @ camera_to_ego(job.camera)
        intrinsics = camera_intrinsics(job.camera, job.image_size)
        yield job, solids, intrinsics, cam2global, render_camera(job.world, solids, intrinsics, cam2global,
                                                                 job.image_size)


def test_pycocotools_reads_both_splits(synthetic_2d):
    width, height = synthetic_2d.config.image_size
    total = 0
    for split, path in (("train", synthetic_2d.coco_train), ("val", synthetic_2d.coco_val)):
        coco = COCO(str(path))
        assert [coco.cats[i]["name"] for i in sorted(coco.cats)] == list(DETECTION_CLASSES)
        assert sorted(coco.cats) == list(range(1, 11))
        assert len(coco.imgs) == 4
        for image in coco.imgs.values():
            assert Image.open(synthetic_2d.root / "coco" / split / image["file_name"]).size == (width, height)
            assert (image["width"], image["height"]) == (width, height)
        for ann in coco.anns.values():
            assert ann["iscrowd"] == 0 and ann["area"] >= synthetic_2d.config.min_visible_pixels
        total += len(coco.anns)
        # COCO's own evaluation of the ground truth as detections: every box found, AP 1
        if coco.anns:
            from pycocotools.cocoeval import COCOeval

            dets = [dict(image_id=a["image_id"], category_id=a["category_id"], bbox=a["bbox"], score=1.0)
                    for a in coco.anns.values()]
            evaluator = COCOeval(coco, coco.loadRes(dets), "bbox")
            evaluator.params.areaRng = [[0, 1e10]] * 4  # small images: every area range holds them all
            evaluator.evaluate()
            evaluator.accumulate()
            recall = evaluator.eval["recall"][0, :, 0, -1]  # IoU 0.5, per category, all areas, max dets
            assert np.all(recall[recall >= 0] == 1.0)
    assert total > 10


def test_boxes_enclose_exactly_the_pixels_the_renderer_marked(synthetic_2d):
    config = synthetic_2d.config
    by_split = {split: COCO(str(path)) for split, path in (("train", synthetic_2d.coco_train),
                                                           ("val", synthetic_2d.coco_val))}
    checked = skipped = 0
    for job, _, _, _, (_, _, ids, _) in _views(config):
        coco = by_split[job.split]
        image_id = next(i for i, im in coco.imgs.items() if im["file_name"] == f"{job.name}.jpg")
        anns = coco.loadAnns(coco.getAnnIds(imgIds=[image_id]))
        expected = {}
        for k, cls in enumerate(job.world.object_classes):
            mask = ids == k
            if mask.sum() >= config.min_visible_pixels:
                expected[k] = (cls, mask)
            elif mask.any():
                skipped += 1
        assert len(anns) == len(expected)
        for ann in anns:
            mask = coco.annToMask(ann).astype(bool)
            k = int(ids[mask][0])  # the object whose pixels the annotation's mask covers
            cls, truth = expected.pop(k)
            np.testing.assert_array_equal(mask, truth)
            rows, cols = np.nonzero(truth)
            assert ann["bbox"] == [cols.min(), rows.min(), cols.max() + 1 - cols.min(), rows.max() + 1 - rows.min()]
            assert ann["area"] == truth.sum()
            assert DETECTION_CLASSES[ann["category_id"] - 1] == cls
            checked += 1
        assert not expected
    assert checked > 10


def _ground_class_from_colour(rgb: np.ndarray) -> np.ndarray:
    """The ground surface of uncompressed ground pixels from render.py's palette: road (88, 88, 94),
    sidewalk (170, 165, 158) or joints (135, 130, 125), grass (78, 128, 52), each plus one noise value for all
    three channels (so the channel differences stay, up to 1 of rounding); paint (235, 235, 230) and
    (230, 195, 40) exactly. Returns SEGMENTATION_2D_CLASSES names, '' where no rule matches."""
    r, g, b = (rgb[:, i].astype(int) for i in range(3))
    out = np.full(len(rgb), "", dtype=object)
    out[(abs(g - r) <= 1) & (abs(b - r - 6) <= 1)] = "road"
    out[(abs(g - r + 5) <= 1) & (abs(b - r + 12) <= 1)] = "sidewalk"
    out[(abs(g - r - 50) <= 1) & (abs(b - r + 26) <= 1)] = "terrain"
    paint = ((r == 235) & (g == 235) & (b == 230)) | ((r == 230) & (g == 195) & (b == 40))
    out[paint] = "lane_paint"
    return out


def test_masks_have_the_documented_class_ids(synthetic_2d):
    config = synthetic_2d.config
    seen = set()
    for job, solids, intrinsics, cam2global, (image, _, ids, _) in _views(config):
        path = synthetic_2d.ade_root / "annotations" / ADE_SPLITS[job.split] / f"{job.name}.png"
        label = np.array(Image.open(path))
        assert label.dtype == np.uint8 and label.shape == ids.shape
        assert label.max() <= len(SEGMENTATION_2D_CLASSES)
        names = np.array(("other",) + SEGMENTATION_2D_CLASSES, dtype=object)[label]
        seen |= set(np.unique(names))
        world = job.world
        objects = len(world.object_classes)
        for k, cls in enumerate(world.object_classes):
            assert (names[ids == k] == cls).all()
        for k, occ in enumerate(world.scenery_occ):
            assert (names[ids == objects + k] == {15: "building", 16: "vegetation"}[int(occ)]).all()
        assert (names[ids >= objects + len(world.scenery_occ)] == "other").all()  # traffic lights and signs
        assert (names[ids == SKY_ID] == "sky").all()
        ground = ids == GROUND_ID
        from_colour = _ground_class_from_colour(image[ground])
        assert (from_colour != "").mean() > 0.99  # the palette rules cover the ground
        matched = from_colour != ""
        np.testing.assert_array_equal(names[ground][matched], from_colour[matched])
        # the label maps come with exactly the world's camera image
        np.testing.assert_array_equal(render_view_2d(world, solids, intrinsics, cam2global, job.image_size)["image"],
                                      image)
        jpeg = np.array(Image.open(synthetic_2d.ade_root / "images" / ADE_SPLITS[job.split] / f"{job.name}.jpg"))
        assert np.abs(jpeg.astype(int) - image).mean() < 6
    assert {"road", "sidewalk", "lane_paint", "sky", "car"} <= seen


def test_create_data_synthetic_2d_cli(tmp_path, capsys):
    from tests.tool_loader import load_tool

    tool = load_tool("create_data")
    out = tmp_path / "sets"
    assert tool.main(["synthetic-2d", "--out", str(out), "--samples", "1", "--cameras", "CAM_FRONT",
                      "--image-size", "64", "40"]) == 0
    for split, ade in ADE_SPLITS.items():
        instances = json.loads((out / "coco" / "annotations" / f"instances_{split}.json").read_text())
        assert len(instances["images"]) == 1
        assert (out / "coco" / split / instances["images"][0]["file_name"]).exists()
        assert len(list((out / "ade" / "images" / ade).glob("*.jpg"))) == 1
        assert len(list((out / "ade" / "annotations" / ade).glob("*.png"))) == 1


@pytest.mark.parametrize("args, message", [(["--scenes", "1"], "--scenes must be >= 2"),
                                           (["--cameras", "CAM_SIDE"], "--cameras must be"),
                                           (["--image-size", "4", "4"], "--image-size")])
def test_create_data_synthetic_2d_rejects_bad_arguments(tmp_path, capsys, args, message):
    from tests.tool_loader import load_tool

    tool = load_tool("create_data")
    with pytest.raises(SystemExit) as exit_info:
        tool.main(["synthetic-2d", "--out", str(tmp_path / "x"), *args])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
