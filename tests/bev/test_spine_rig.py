"""The spine on a rig of 5 cameras of two image sizes: a collated batch of mixed sizes (one sample
mirrored) runs through it, each camera's valid region follows the flip-back, the known 3D point lands
inside it in the features' pixels, and samples in the padding are never taken."""

from __future__ import annotations

import torch

from backbones import InternImage
from bev.encoder import BEVEncoder, project_to_cameras
from bev.spine import BEVSpine
from perception.data import BEVDataset, bev_collate
from perception.models.necks import FPN
from perception.structures import BEVGrid
from perception.structures.cameras import project_points
from tests.perception.test_mixed_rig import FINAL_A, FINAL_B, NAMES, pipeline, rigs  # noqa: F401 (fixture)


def tiny_spine(num_cameras: int) -> BEVSpine:
    torch.manual_seed(0)
    grid = BEVGrid(x_range=(-20.0, 20.0), y_range=(-20.0, 20.0), z_range=(-3.0, 5.0), resolution=4.0)
    dims = 32
    return BEVSpine(InternImage("t", channels=16, depths=(1, 1, 1, 1), groups=(1, 2, 4, 8)),
                    FPN([16, 32, 64, 128], dims, num_outs=4, start_level=1),
                    BEVEncoder(grid, embed_dims=dims, num_layers=1, num_heads=4, num_levels=3, num_cameras=num_cameras,
                               ffn_dims=64, dropout=0.0),
                    num_frames=2, bev_levels=3)


def test_mixed_rig_batch_runs_through_the_spine(rigs):  # noqa: F811 (the fixture)
    (path_a, points_a), (path_b, points_b) = rigs["a"], rigs["b"]
    a = BEVDataset(str(path_a), str(path_a.parent), pipeline(FINAL_A, 1.0, 0), num_frames=2)  # mirrored
    b = BEVDataset(str(path_b), str(path_b.parent), pipeline(FINAL_B, 0.0, 0), num_frames=2)
    batch = bev_collate([a[1], b[1]])
    spine = tiny_spine(len(NAMES)).eval()
    with torch.no_grad():
        out = spine(batch["img"], batch["cams"], batch["ego"], batch["meta"])
    height, width = batch["img"].shape[-2:]
    assert out.bev.shape == (2, 32, 10, 10) and torch.isfinite(out.bev).all()
    assert out.ego2img.shape == (2, 5, 4, 4) and out.image_size == (height, width)
    assert [f.shape[0] for f in out.features] == [2 * 5] * 4
    # Valid regions in the flipped-back features' pixels: rig A (mirrored) ends at the padded width.
    for i, final in enumerate((FINAL_A, FINAL_B)):
        for c, name in enumerate(NAMES):
            cols, rows = final[name]
            u0 = width - cols if i == 0 else 0
            assert out.valid_region[i, c].tolist() == [u0, 0, u0 + cols, rows]
    # The known point, BEV-augmented, lands inside each camera's valid region in the features' frame.
    for i, points in enumerate((points_a, points_b)):
        bev_aug = batch["ego"]["bev_aug"][i].double()
        for c, name in enumerate(NAMES):
            p = bev_aug[:3, :3] @ torch.as_tensor(points[name]) + bev_aug[:3, 3]
            (u, v), = project_points(out.ego2img[i, c].double(), p[None])[0].tolist()
            u0, v0, u1, v1 = out.valid_region[i, c].tolist()
            assert u0 <= u < u1 and v0 <= v < v1, (i, name, u, v)


def test_samples_that_project_into_the_padding_are_not_visible():
    # ego2img = identity: a point (x, y, z) lands on pixel (x / z, y / z) at depth z.
    ego2img = torch.eye(4).expand(1, 2, 4, 4)
    points = torch.tensor([[10.0, 10.0, 1.0], [25.0, 10.0, 1.0], [10.0, 28.0, 1.0]])
    region = torch.tensor([[[0.0, 0.0, 20.0, 20.0], [0.0, 0.0, 32.0, 32.0]]])  # camera 0: a 20x20 image
    _, visible_padded = project_to_cameras(points, ego2img, (32, 32))
    uv, visible = project_to_cameras(points, ego2img, (32, 32), region)
    assert visible_padded.all()  # without the regions the padding counts as image
    assert visible[0, 0].tolist() == [True, False, False] and visible[0, 1].tolist() == [True, True, True]
    torch.testing.assert_close(uv[0, 0, 0], torch.tensor([10 / 32, 10 / 32]))
