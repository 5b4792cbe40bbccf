"""The BEV centre head (bev/centre_head.py): targets, loss and proposals against hand-computed values, a
fit of one frame, and its queries inside the detection head."""

from __future__ import annotations

import math

import pytest
import torch

from bev.centre_head import BEVCentreHead, centre_heatmap_targets, gaussian_focal_loss
from perception.structures import BEVGrid

GRID = BEVGrid(x_range=(0.0, 4.0), y_range=(0.0, 4.0), z_range=(-1.0, 3.0), resolution=1.0)


def _box(x: float, y: float, z: float = 0.5, w: float = 1.0, length: float = 1.0) -> list[float]:
    return [x, y, z, w, length, 1.5, 0.0, 0.0, 0.0]


def test_targets_gaussian_around_the_centre_cell() -> None:
    boxes = torch.tensor([_box(1.3, 2.6, z=0.7)])
    heatmap, centre, regression = centre_heatmap_targets(GRID, boxes, torch.tensor([2]), num_classes=3)
    assert centre.tolist() == [[1, 2]]
    assert regression[0].tolist() == pytest.approx([0.3, 0.6, 0.7], abs=1e-6)
    # radius max(1, round(0.5 / 1)) = 1 cell, sigma = 3 / 6 = 0.5: exp(-d^2 / 0.5)
    expected = torch.zeros(3, 4, 4)
    for i in range(4):
        for j in range(4):
            d2 = (i - 1) ** 2 + (j - 2) ** 2
            if abs(i - 1) <= 1 and abs(j - 2) <= 1:
                expected[2, i, j] = math.exp(-d2 / 0.5)
    torch.testing.assert_close(heatmap, expected)


def test_targets_take_the_maximum_of_overlapping_boxes_per_class() -> None:
    boxes = torch.tensor([_box(0.5, 0.5), _box(1.5, 0.5), _box(1.5, 0.5)])
    heatmap, _, _ = centre_heatmap_targets(GRID, boxes, torch.tensor([0, 0, 1]), num_classes=2)
    assert heatmap[0, 0, 0] == 1.0 and heatmap[0, 1, 0] == 1.0
    assert heatmap[1, 1, 0] == 1.0 and heatmap[1, 0, 0] == pytest.approx(math.exp(-2.0))
    assert heatmap[1, 3, 0] == 0.0  # two cells away: outside the radius


def test_large_boxes_get_a_larger_radius() -> None:
    heatmap, _, _ = centre_heatmap_targets(GRID, torch.tensor([_box(0.5, 0.5, w=2.0, length=4.2)]),
                                           torch.tensor([0]), num_classes=1)
    # radius round(4.2 / 2) = 2, sigma 5 / 6
    assert heatmap[0, 2, 0] == pytest.approx(math.exp(-4 / (2 * (5 / 6) ** 2)))
    assert heatmap[0, 3, 0] == 0.0


def test_gaussian_focal_loss_by_hand() -> None:
    logits = torch.tensor([0.0, math.log(3.0), -1.0])  # p = 0.5, 0.75, 1 / (1 + e)
    target = torch.tensor([1.0, 0.5, 0.0])
    p = [0.5, 0.75, 1 / (1 + math.e)]
    expected = (-math.log(p[0]) * (1 - p[0]) ** 2
                - math.log(1 - p[1]) * p[1] ** 2 * 0.5 ** 4
                - math.log(1 - p[2]) * p[2] ** 2)
    assert gaussian_focal_loss(logits, target).item() == pytest.approx(expected, rel=1e-6)


def test_proposals_read_peaks_offsets_and_heights() -> None:
    head = BEVCentreHead(GRID, in_channels=4, num_classes=2)
    heatmap = torch.full((1, 2, 4, 4), -9.0)
    heatmap[0, 1, 2, 3] = 3.0
    heatmap[0, 1, 2, 2] = 2.0  # a neighbour of the peak: suppressed
    heatmap[0, 0, 0, 0] = 1.0
    regression = torch.zeros(1, 3, 4, 4)
    regression[0, :, 2, 3] = torch.tensor([0.25, 0.75, 1.2])
    out = head.proposals(dict(heatmap=heatmap, regression=regression), top_k=2)
    assert out["labels"].tolist() == [[1, 0]]
    torch.testing.assert_close(out["centres"][0, 0], torch.tensor([2.25, 3.75, 1.2]))
    torch.testing.assert_close(out["centres"][0, 1], torch.tensor([0.0, 0.0, 0.0]))
    assert out["scores"][0, 0].item() == pytest.approx(torch.sigmoid(torch.tensor(3.0)).item())


def test_head_fits_one_frame_and_proposes_its_boxes() -> None:
    torch.manual_seed(0)
    head = BEVCentreHead(GRID, in_channels=8, num_classes=3, mid_channels=16)
    bev = torch.randn(1, 8, 4, 4)
    boxes = torch.tensor([_box(0.6, 3.2, z=0.4), _box(3.5, 1.5, z=1.1)])
    labels = torch.tensor([1, 2])
    optimizer = torch.optim.Adam(head.parameters(), lr=0.02)
    for _ in range(300):
        losses = head.loss(head(bev), [boxes], [labels])
        optimizer.zero_grad()
        sum(losses.values()).backward()
        optimizer.step()
    with torch.no_grad():
        out = head.proposals(head(bev), top_k=2)
    found = sorted(zip(out["labels"][0].tolist(), out["centres"][0].tolist()))
    assert [label for label, _ in found] == [1, 2]
    for (_, centre), box in zip(found, boxes.tolist()):
        assert centre == pytest.approx(box[:3], abs=0.1)


def test_detection_head_appends_centre_queries_to_every_group() -> None:
    from bev.heads import Detection3DHead

    grid = BEVGrid(x_range=(-8.0, 8.0), y_range=(-8.0, 8.0), z_range=(-3.0, 5.0), resolution=2.0)
    decoder = dict(type="BEVDetectionHead", embed_dims=16, num_queries=6, num_layers=1, num_heads=2, ffn_dims=16,
                   group_detr=2, max_detections=10)
    head = Detection3DHead(decoder, centre=dict(type="BEVCentreHead", mid_channels=8), centre_queries=4, grid=grid,
                           in_channels=16)

    class Spine:
        bev = torch.randn(2, 16, 8, 8)
        features, ego2img, image_size = [], torch.eye(4).expand(2, 1, 4, 4), (32, 32)

    out = head(Spine())
    assert out["layers"][-1][0].shape == (2, 2 * (6 + 4), 10)
    from perception.structures.targets import BatchTargets

    targets = BatchTargets(dict(gt_boxes=[torch.tensor([_box(1.0, 2.0)]), torch.zeros(0, 9)],
                                gt_labels=[torch.tensor([3]), torch.zeros(0, dtype=torch.long)]), 2)
    losses = head.loss(out, targets)
    assert {"loss_heatmap", "loss_centre", "loss_cls", "loss_bbox"} <= set(losses)
    assert all(torch.isfinite(v) for v in losses.values())
    head.eval()
    assert head(Spine())["layers"][-1][0].shape == (2, 6 + 4, 10)


def test_centre_queries_need_a_centre_head() -> None:
    from bev.heads import Detection3DHead

    with pytest.raises(ValueError, match="centre head"):
        Detection3DHead(dict(type="BEVDetectionHead", embed_dims=16, num_queries=4, num_layers=1), centre_queries=4,
                        grid=GRID)


def test_grid_crop_gives_the_window_and_its_cells() -> None:
    grid = BEVGrid(x_range=(-51.2, 51.2), y_range=(-51.2, 51.2), z_range=(-3.0, 5.0), resolution=3.2)
    window, xs, ys = grid.crop((-32.0, 32.0), (-25.6, 32.0))
    assert (xs, ys) == (slice(6, 26), slice(8, 26))
    assert window.shape == (20, 18) and window.z_range == grid.z_range
    assert window.cell_centers()[0, 0].tolist() == pytest.approx(grid.cell_centers()[6, 8].tolist())
    with pytest.raises(ValueError, match="cell edges"):
        grid.crop((-32.0, 31.0), (-32.0, 32.0))
    with pytest.raises(ValueError, match="cell edges"):
        grid.crop((-54.4, 32.0), (-32.0, 32.0))


def test_detection_window_reads_only_its_cells_and_its_boxes() -> None:
    from bev.heads import Detection3DHead

    torch.manual_seed(0)
    grid = BEVGrid(x_range=(-8.0, 8.0), y_range=(-8.0, 8.0), z_range=(-3.0, 5.0), resolution=2.0)
    decoder = dict(type="BEVDetectionHead", embed_dims=16, num_queries=6, num_layers=1, num_heads=2, ffn_dims=16)
    head = Detection3DHead(decoder, centre=dict(type="BEVCentreHead", mid_channels=8), centre_queries=2, grid=grid,
                           in_channels=16, window=dict(x_range=(-4.0, 4.0), y_range=(-4.0, 2.0))).eval()
    assert head.decoder.grid.shape == (4, 3)

    class Spine:
        bev = torch.randn(1, 16, 8, 8)
        features, ego2img, image_size = [], torch.eye(4).expand(1, 1, 4, 4), (32, 32)

    before = head(Spine())["layers"][-1]
    Spine.bev[..., :2, :] = 100.0  # x < -4 m: outside the window
    Spine.bev[..., :, 5:] = -100.0  # y >= 2 m
    after = head(Spine())["layers"][-1]
    torch.testing.assert_close(before, after)
    head.train()
    boxes = torch.tensor([_box(1.0, 1.0), _box(1.0, 3.0), _box(-5.0, 0.0)])
    kept, _ = head._in_range([boxes], [torch.tensor([0, 1, 2])])
    assert kept[0].tolist() == boxes[:1].tolist()
