"""The spine takes the loader's uint8 images and normalises them itself: for the same images its outputs
equal those for the CPU-normalised float input (a mixed-size rig, a mirrored sample, padding from the
pipeline and from the collate), and float input is taken as already normalised."""

from __future__ import annotations

import pytest
import torch

from bev.spine import BEVSpine
from perception.data import BEVDataset, bev_collate
from tests.bev.test_spine_rig import tiny_spine
from tests.perception.test_mixed_rig import FINAL_A, FINAL_B, NAMES, pipeline, rigs  # noqa: F401 (fixture)


def _without_cpu_normalisation(steps: list[dict]) -> list[dict]:
    return [s for s in steps if s["type"] != "NormalizeMultiViewImages"]


def _batch(rigs, normalise_on_cpu: bool) -> dict:  # noqa: F811 (the fixture)
    (path_a, _), (path_b, _) = rigs["a"], rigs["b"]
    steps_a, steps_b = pipeline(FINAL_A, 1.0, 0), pipeline(FINAL_B, 0.0, 0)  # sample a is mirrored
    if not normalise_on_cpu:
        steps_a, steps_b = _without_cpu_normalisation(steps_a), _without_cpu_normalisation(steps_b)
    a = BEVDataset(str(path_a), str(path_a.parent), steps_a, num_frames=2)
    b = BEVDataset(str(path_b), str(path_b.parent), steps_b, num_frames=2)
    return bev_collate([a[1], b[1]])


def test_uint8_input_gives_the_outputs_of_cpu_normalised_input(rigs):  # noqa: F811 (the fixture)
    as_uint8, as_float = _batch(rigs, normalise_on_cpu=False), _batch(rigs, normalise_on_cpu=True)
    assert as_uint8["img"].dtype == torch.uint8 and as_float["img"].dtype == torch.float32
    assert as_uint8["img"].shape == as_float["img"].shape
    spine = tiny_spine(len(NAMES)).eval()
    with torch.no_grad():
        out_uint8 = spine(as_uint8["img"], as_uint8["cams"], as_uint8["ego"], as_uint8["meta"])
        out_float = spine(as_float["img"], as_float["cams"], as_float["ego"], as_float["meta"])
    assert torch.equal(out_uint8.bev, out_float.bev)
    assert all(torch.equal(a, b) for a, b in zip(out_uint8.features, out_float.features))


def test_float_input_is_taken_as_normalised_and_img_norm_applies_to_uint8():
    spine = tiny_spine(2)
    seen = []
    spine.image_features = lambda images: seen.append(images) or BEVSpine.image_features(spine, images)
    img = torch.full((1, 1, 2, 3, 32, 32), 100, dtype=torch.uint8)
    cams = dict(ego2img=torch.eye(4).expand(1, 1, 2, 4, 4))
    ego = dict(prev2curr=torch.eye(4).expand(1, 1, 4, 4))
    with torch.no_grad():
        spine.eval()(img, cams, ego)
        spine(img.float(), cams, ego)
    assert torch.allclose(seen[0][0, 0, :, 0, 0], (100 - torch.tensor([123.675, 116.28, 103.53])) /
                          torch.tensor([58.395, 57.12, 57.375]))
    assert torch.equal(seen[1], img.float()[:, -1])  # float: untouched
    custom = tiny_spine(2)
    custom.img_mean, custom.img_std = (100.0, 50.0, 0.0), (1.0, 2.0, 4.0)
    custom.image_features = lambda images: seen.append(images) or BEVSpine.image_features(custom, images)
    with torch.no_grad():
        custom.eval()(img, cams, ego)
    assert seen[2][0, 0, :, 0, 0].tolist() == [0.0, 25.0, 25.0]


def test_bad_img_norm_is_refused():
    with pytest.raises(ValueError, match="img_norm"):
        BEVSpine(None, None, None, img_norm=dict(mean=(1.0, 2.0)))
