"""The lane-topology head against independent truth: the polyline reference's sampling point from
hand-computed coordinates, the topology loss against a hand-written focal loss, GT box handling under
image mirroring and the original-pixel mapping against hand-computed boxes, and a tiny BEVFormer v2
with the head that overfits one frame (lanes within a metre, traffic elements, topology)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import lane_topology  # noqa: F401  (registers LaneTopologyHead)
from backbones import InternImage
from bev.encoder import BEVEncoder
from bev.model import BEVFormerV2
from bev.spine import SpineOutput
from lane_topology.head import BEVPolylineReference, LaneGeometry, LaneTopologyHead
from lane_topology.topology import matched_pair_focal_loss
from perception.engine import MODELS
from perception.models.necks import FPN
from perception.structures.bev_grid import BEVGrid
from perception.structures.targets import BatchTargets
from tests.bev.rig import IMAGE_H, IMAGE_W, rig_ego2img

DIMS = 32
LANE_RANGE = BEVGrid((-20.0, 20.0), (-10.0, 10.0), (-2.0, 2.0), 1.0)
SPINE_GRID = BEVGrid((-20.0, 20.0), (-20.0, 20.0), (-3.0, 5.0), 2.0)


def test_polyline_reference_samples_the_bev_at_the_mean_point():
    """Lane bounds x [-20, 20], y [-10, 10]; BEV grid +-20 m. A polyline from (0, 0) to (10, 5) has its
    mean point at (5, 2.5): on the BEV map u = (2.5 + 20) / 40 = 0.5625 (y), v = (5 + 20) / 40 = 0.625 (x)."""
    geometry = LaneGeometry(LANE_RANGE, num_points=3)
    points = torch.tensor([[[0.0, 0.0, 0.0], [5.0, 2.5, 0.0], [10.0, 5.0, 0.0]]])[None]  # (1, 1, 3, 3)
    ref = BEVPolylineReference(geometry, SPINE_GRID).sampling_reference(geometry.normalize(points))
    torch.testing.assert_close(ref, torch.tensor([[[0.5625, 0.625]]]))
    assert geometry.code_size == 9
    assert LaneGeometry(LANE_RANGE, 11, ("centerline", "left", "right")).code_size == 99


def test_matched_pair_focal_loss_equals_the_hand_written_focal_loss():
    """Queries 2 and 0 match GT lanes 0 and 1 (GT: lane 0 -> lane 1). The four matched pairs' logits are
    compared with the GT pairs; one positive, so the sum is divided by 1."""
    logits = torch.tensor([[[0.5, -1.0, 2.0], [0.0, 0.3, 0.0], [1.5, 0.0, -0.5]]])
    gt = [torch.tensor([[0.0, 1.0], [0.0, 0.0]])]
    matches = [(torch.tensor([2, 0]), torch.tensor([0, 1]))]

    def focal(x: float, t: float, alpha: float = 0.25, gamma: float = 2.0) -> float:
        p = 1 / (1 + math.exp(-x))
        p_t, a_t = (p, alpha) if t else (1 - p, 1 - alpha)
        return -a_t * (1 - p_t) ** gamma * math.log(p_t)

    # pair (query 2 -> query 2) = GT (0 -> 0) = 0; (2 -> 0) = GT (0 -> 1) = 1; (0 -> 2) = GT (1 -> 0) = 0; (0 -> 0) = 0
    expected = focal(-0.5, 0) + focal(1.5, 1) + focal(2.0, 0) + focal(0.5, 0)
    got = matched_pair_focal_loss(logits, gt, matches, matches)
    assert got.item() == pytest.approx(expected, rel=1e-6)
    empty = matched_pair_focal_loss(logits, gt, [(torch.tensor([], dtype=torch.long),) * 2], matches)
    assert empty.item() == 0.0


def _spine(b: int = 1, flips: torch.Tensor | None = None) -> SpineOutput:
    features = [torch.randn(b * 6, DIMS, IMAGE_H // s, IMAGE_W // s) for s in (4, 8, 16, 32)]
    return SpineOutput(bev=torch.randn(b, DIMS, *SPINE_GRID.shape), features=features,
                       ego2img=torch.eye(4).expand(b, 6, 4, 4), image_size=(IMAGE_H, IMAGE_W), valid_region=None,
                       grid=SPINE_GRID, image_flips=flips)


def _small_head(**kwargs) -> LaneTopologyHead:
    return LaneTopologyHead(DIMS, grid=SPINE_GRID, lane_range=LANE_RANGE, num_points=5, num_lane_queries=8,
                            num_te_queries=6, num_layers=2, num_heads=4, ffn_dims=64, dropout=0.0,
                            topology_dims=16, **kwargs)


def test_gt_boxes_of_a_mirrored_camera_are_mirrored_back_with_their_attributes():
    """Input 96 px wide. A GT box x 10..30 of a mirrored front image lies at 96 - 30 .. 96 - 10 = 66..86 in
    the flipped-back features; turn_left (5) becomes turn_right (6), red (1) stays."""
    head = _small_head()
    targets = BatchTargets(dict(traffic_elements=[torch.tensor([[10.0, 8.0, 30.0, 24.0], [0.0, 0.0, 48.0, 32.0]])],
                                traffic_element_labels=[torch.tensor([5, 1])]), 1)
    flipped = head._element_targets(targets, (IMAGE_H, IMAGE_W), torch.tensor([True]), torch.device("cpu"))[0]
    assert flipped["labels"].tolist() == [6, 1]
    torch.testing.assert_close(flipped["boxes"][0], torch.tensor([76 / 96, 16 / 64, 20 / 96, 16 / 64]))
    torch.testing.assert_close(flipped["boxes"][1], torch.tensor([72 / 96, 16 / 64, 48 / 96, 32 / 64]))
    plain = head._element_targets(targets, (IMAGE_H, IMAGE_W), None, torch.device("cpu"))[0]
    assert plain["labels"].tolist() == [5, 1]
    torch.testing.assert_close(plain["boxes"][0], torch.tensor([20 / 96, 16 / 64, 20 / 96, 16 / 64]))


def test_predicted_boxes_map_back_to_the_original_image_pixels():
    """The input was the original resized by 0.5 and cropped 10 px from the top: a box x 20..40, y 5..25
    of the input is x 40..80, y 30..70 of the original. With a mirrored input the box is at x 56..76 of
    the input, but the flipped-back features (and so the prediction) hold it at x 20..40 again, with the
    attribute the original image shows: same box, same attribute."""
    head = _small_head()
    aug = np.diag([0.5, 0.5, 1.0, 1.0])
    aug[1, 2] = -10.0
    box = torch.tensor([[30 / 96, 15 / 64, 20 / 96, 20 / 64]])
    outputs = dict(image_size=(IMAGE_H, IMAGE_W), te_flips=None)
    xyxy, labels = head._boxes_in_original_pixels(box, torch.tensor([6]), outputs, 0,
                                                  dict(traffic_element_img_aug=aug))
    torch.testing.assert_close(xyxy, torch.tensor([[40.0, 30.0, 80.0, 70.0]]))
    assert labels.tolist() == [6]
    mirror = np.eye(4)
    mirror[0, 0], mirror[0, 2] = -1.0, 96.0
    xyxy, labels = head._boxes_in_original_pixels(box, torch.tensor([6]), dict(outputs, te_flips=torch.tensor([True])),
                                                  0, dict(traffic_element_img_aug=mirror @ aug))
    torch.testing.assert_close(xyxy, torch.tensor([[40.0, 30.0, 80.0, 70.0]]), atol=1e-4, rtol=0)
    assert labels.tolist() == [6]


def test_output_and_prediction_shapes():
    head = _small_head(max_lanes=5).eval()
    outputs = head(_spine(2))
    assert outputs["lane_lane"].shape == (2, 8, 8) and outputs["lane_element"].shape == (2, 8, 6)
    (pred, _) = head.predict(outputs, [{}, {}])
    assert pred["lane_points"].shape == (5, 5, 3) and pred["topology_lclc"].shape == (5, 5)
    assert pred["te_boxes"].shape == (6, 4) and pred["topology_lcte"].shape == (5, 6)
    assert bool((pred["lane_scores"][:-1] >= pred["lane_scores"][1:]).all())
    lo = torch.tensor([LANE_RANGE.x_range[0], LANE_RANGE.y_range[0], LANE_RANGE.z_range[0]])
    hi = torch.tensor([LANE_RANGE.x_range[1], LANE_RANGE.y_range[1], LANE_RANGE.z_range[1]])
    assert bool(((pred["lane_points"] >= lo) & (pred["lane_points"] <= hi)).all())
    with pytest.raises(ValueError, match="te_camera"):
        _small_head(te_camera=6)(_spine())


# -- on a tiny spine --------------------------------------------------------------------------------
def tiny_lane_model() -> BEVFormerV2:
    torch.manual_seed(0)
    return BEVFormerV2(
        backbone=InternImage("t", channels=16, depths=(1, 1, 1, 1), groups=(1, 2, 4, 8)),
        neck=FPN([16, 32, 64, 128], DIMS, num_outs=4, start_level=1),
        encoder=BEVEncoder(SPINE_GRID, embed_dims=DIMS, num_layers=1, num_heads=4, num_levels=3, ffn_dims=64,
                           dropout=0.0),
        heads=dict(lanes=_small_head()), bev_levels=3)


def one_frame() -> dict:
    """Three directed lanes (a straight one ahead, its continuation, a curve), two traffic elements in the
    front image; lane 0 -> lane 1, lane 0 controlled by element 0."""
    t = torch.linspace(0, 1, 5)[:, None]
    lane0 = torch.cat([t * 8, torch.zeros_like(t) - 1.5, torch.zeros_like(t)], -1)
    lane1 = torch.cat([8 + t * 8, torch.zeros_like(t) - 1.5, torch.zeros_like(t)], -1)
    lane2 = torch.cat([-10 + t * 10, 4 + 3 * t ** 2, torch.zeros_like(t)], -1)
    g = torch.Generator().manual_seed(0)
    return dict(img=torch.randn(1, 1, 6, 3, IMAGE_H, IMAGE_W, generator=g), cams=dict(ego2img=rig_ego2img(1, 1)),
                ego=dict(prev2curr=torch.eye(4)[None, None], history_valid=torch.ones(1, 1, dtype=torch.bool)),
                meta=[dict(sample_token="f0")], lanes=[torch.stack([lane0, lane1, lane2])],
                traffic_elements=[torch.tensor([[40.0, 10.0, 52.0, 22.0], [10.0, 20.0, 24.0, 30.0]])],
                traffic_element_labels=[torch.tensor([2, 5])],
                topology_lane_lane=[torch.tensor([[0.0, 1.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]])],
                topology_lane_te=[torch.tensor([[1.0, 0.0], [0.0, 0.0], [0.0, 1.0]])])


def _fit_failures(model: BEVFormerV2, batch: dict) -> list[str]:
    """What the model does not yet reproduce of the frame (empty: everything)."""
    model.eval()
    with torch.no_grad():
        (pred,) = model(**batch, mode="predict")
    lanes, failures = pred["lanes"], []
    # Every GT lane has one of the top-3 predictions within 1 m on average over its points, in its
    # direction (the point order is compared as it is).
    errors = (lanes["lane_points"][:3, None] - batch["lanes"][0][None]).norm(dim=-1).mean(-1)  # (pred, gt)
    best = errors.min(0)
    if not bool((best.values < 1.0).all()):
        failures.append(f"mean lane point errors (m) {best.values.tolist()}")
    order = best.indices
    if not (lanes["topology_lclc"][order[0], order[1]] > 0.5 > lanes["topology_lclc"][order[1], order[0]]):
        failures.append(f"lane 0 -> 1 {lanes['topology_lclc'][order[0], order[1]]:.2f}, "
                        f"1 -> 0 {lanes['topology_lclc'][order[1], order[0]]:.2f}")
    te_err = (lanes["te_boxes"][:2, None] - batch["traffic_elements"][0][None]).abs().mean(-1)
    if not bool((te_err.min(0).values < 3.0).all()):
        failures.append(f"box errors (px) {te_err.min(0).values.tolist()}")
    te_order = te_err.min(0).indices
    if lanes["te_attributes"][te_order].tolist() != [2, 5]:
        failures.append(f"attributes {lanes['te_attributes'][te_order].tolist()}")
    lcte = lanes["topology_lcte"][order[0]][te_order]
    if not (lcte[0] > 0.5 > lcte[1]):
        failures.append(f"lane 0 - element links {lcte.tolist()}")
    return failures


@pytest.mark.slow
def test_the_head_on_a_tiny_spine_overfits_one_frame():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        model = tiny_lane_model()
        batch = one_frame()
        optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3)
        for step in range(1, 401):
            model.train()
            losses = model(**batch, mode="loss")
            optimizer.zero_grad()
            sum(losses.values()).backward()
            optimizer.step()
            if step % 50 == 0 and not (failures := _fit_failures(model, batch)):
                break
    finally:
        torch.set_num_threads(threads)
    assert not failures, f"after {step} steps: {failures}"


def test_loss_keys_and_config_build():
    model = tiny_lane_model().train()
    losses = model(**one_frame(), mode="loss")
    names = {k.split(".", 1)[1] if k.count(".") == 1 else k.split(".", 2)[2] for k in losses}
    assert {"loss_lane_cls", "loss_lane", "loss_te_cls", "loss_te_l1", "loss_te_giou", "loss_lclc",
            "loss_lcte"} <= names
    assert "lanes.d0.loss_lane" in losses and all(torch.isfinite(v) for v in losses.values())
    built = MODELS.build(dict(type="LaneTopologyHead", in_channels=DIMS, grid=SPINE_GRID, num_layers=1,
                              num_lane_queries=4, num_te_queries=4))
    assert built.geometry.num_points == 11 and built.geometry.bounds.x_range == (-50.0, 50.0)


def test_initial_lane_references_are_straight_segments():
    """The learned start and end points, with the 3 other points of a 5-point line evenly between them:
    (0, 0, 0) -> (1, 0.5, 1) gives (0.25, 0.125, 0.25), (0.5, 0.25, 0.5), (0.75, 0.375, 0.75)."""
    geometry = LaneGeometry(LANE_RANGE, num_points=5, lines=("centerline", "left"))
    ends = torch.tensor([0.0, 0.0, 0.0, 1.0, 0.5, 1.0, 0.2, 0.2, 0.2, 0.2, 0.2, 0.6])
    lines = geometry.straight_lines(ends)
    assert lines.shape == (10, 3)
    torch.testing.assert_close(lines[:5], torch.tensor([[0.0, 0.0, 0.0], [0.25, 0.125, 0.25], [0.5, 0.25, 0.5],
                                                        [0.75, 0.375, 0.75], [1.0, 0.5, 1.0]]))
    torch.testing.assert_close(lines[5:, 2], torch.tensor([0.2, 0.3, 0.4, 0.5, 0.6]))
    # With the first layer's regression branch at zero its refined reference is the initial one: the
    # straight segments between the learned start and end points.
    head = _small_head()
    with torch.no_grad():
        head.lane_decoder.reg_branches[0][-1].weight.zero_()
        head.lane_decoder.reg_branches[0][-1].bias.zero_()
        first = head(_spine())["lanes"][0]["reference"][0]  # (queries, 5, 3)
        pos = head.lane_decoder.query_embedding.weight[:, :DIMS]
        ends = head.lane_decoder.reference(pos).sigmoid().unflatten(-1, (2, 3))  # (queries, start/end, 3)
    t = torch.linspace(0, 1, 5)[None, :, None]
    torch.testing.assert_close(first, ends[:, :1] * (1 - t) + ends[:, 1:] * t, atol=1e-5, rtol=0)
