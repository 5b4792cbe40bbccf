"""Export mode of the BEV models (ops/export.py) and their ONNX export (tools/export.py, docs/deployment.md).

Export mode must compute what eager mode computes; the exported tiny detector must run in ONNX Runtime
within the tool's stated tolerance."""

from __future__ import annotations

import pytest
import torch

from bev.encoder import SpatialCrossAttention
from ops.export import exportable, inverse_4x4, level_table
from tests.bev.rig import IMAGE_H, IMAGE_W, rig_ego2img, tiny_model
from tests.tool_loader import load_tool

TINY_CONFIG = "configs/bev/bevformer_v2_tiny_synthetic.py"


def test_spatial_cross_attention_export_mode_matches_eager():
    torch.manual_seed(0)
    attention = SpatialCrossAttention(dims=16, heads=2, levels=2, pillar_heights=2, points_per_height=2,
                                      dropout=0.0).eval()
    b, n_cam, q = 2, 3, 11
    shapes = [(4, 6), (2, 3)]
    value = torch.randn(b * n_cam, sum(h * w for h, w in shapes), 16)
    table = level_table(shapes)
    starts = torch.tensor([0, 24])
    query, query_pos = torch.randn(b, q, 16), torch.randn(b, q, 16)
    reference_uv = torch.rand(b, n_cam, q, 2, 2)
    visible = torch.rand(b, n_cam, q, 2) < 0.4
    visible[:, :, 0] = False  # a query no camera sees
    visible[1, :, 1] = True  # one every camera sees
    with torch.no_grad():
        eager = attention(query, query_pos, value, table, starts, reference_uv, visible)
        with exportable():
            exported = attention(query, query_pos, value, table, starts, reference_uv, visible)
    torch.testing.assert_close(exported, eager, rtol=1e-5, atol=1e-5)


def test_inverse_4x4_matches_linalg_inv():
    matrices = torch.cat([rig_ego2img(1, 1)[0, 0], torch.randn(7, 4, 4, dtype=torch.float64)])
    torch.testing.assert_close(inverse_4x4(matrices), torch.linalg.inv(matrices), rtol=1e-6, atol=1e-6)


def _two_frames(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    img = torch.randn(1, 2, 6, 3, IMAGE_H, IMAGE_W, generator=g)
    prev2curr = torch.eye(4).repeat(1, 2, 1, 1)
    prev2curr[:, 0, 0, 3] = -1.5  # the ego drove 1.5 m forward since the previous frame
    prev2curr[:, 0, 1, 3] = 0.3
    return img, dict(ego2img=rig_ego2img(1, 2)), dict(prev2curr=prev2curr, history_valid=torch.ones(1, 2, dtype=bool))


def test_export_graph_with_caller_history_matches_eager_model():
    """The exported graph's recipe (docs/deployment.md): the history BEV is the graph's own ``bev`` output
    on the past frame's images with ego2img @ inv(prev2curr); then the current frame with that history
    gives the eager two-frame model's detections, in export mode."""
    export_tool = load_tool("export")
    model = tiny_model(num_frames=2, hybrid_queries=8).eval()
    img, cams, ego = _two_frames()
    graph = export_tool.BEVGraph(model)
    with torch.no_grad():
        eager = model(img, cams, ego, mode="predict")[0]["detection"]
        with exportable():
            to_past = cams["ego2img"][:, 0] @ torch.linalg.inv(ego["prev2curr"][:, 0])[:, None]
            no_history = torch.zeros(1, 1, 32, *model.spine.grid.shape), torch.zeros(1, 1, dtype=torch.bool)
            full = torch.tensor([[[IMAGE_H, IMAGE_W]] * 6])  # the images fill the input: no padding
            history = graph(img[:, 0], to_past, full, *no_history)[0]
            _, boxes, scores, labels, inside = graph(img[:, 1], cams["ego2img"][:, 1], full, history[:, None],
                                                     torch.ones(1, 1, dtype=torch.bool))
    assert inside.dtype == torch.bool and boxes.shape[:2] == scores.shape == labels.shape
    torch.testing.assert_close(boxes[0][inside[0]], eager["boxes"], rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(scores[0][inside[0]], eager["scores"], rtol=1e-4, atol=1e-5)
    assert torch.equal(labels[0][inside[0]], eager["labels"])


def test_decode_topk_is_predict_before_filtering():
    model = tiny_model().eval()
    decoder = model.heads["detection"].decoder
    logits, codes = torch.randn(2, 16, 10), torch.randn(2, 16, 10) * 30
    predicted = decoder.predict([(logits, codes)])
    boxes, scores, labels, inside = decoder.decode_topk([(logits, codes)])
    assert not inside.all()  # some boxes fall outside the grid and are dropped
    for i, pred in enumerate(predicted):
        torch.testing.assert_close(pred["boxes"], boxes[i][inside[i]])
        torch.testing.assert_close(pred["scores"], scores[i][inside[i]])
        assert torch.equal(pred["labels"], labels[i][inside[i]])


def test_video_mode_is_refused_naming_the_part():
    export_tool = load_tool("export")
    model = tiny_model(num_frames=2)
    model.video_mode = True
    with pytest.raises(export_tool.UsageError, match="video mode"):
        export_tool.refuse_unexportable(model)


@pytest.fixture(scope="module")
def exported_tiny_detector(tmp_path_factory, synthetic_world):
    """The tiny synthetic detector (random weights) exported by tools/export.py at the test world's image size,
    with the tool's printout."""
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    export_tool = load_tool("export")
    out = tmp_path_factory.mktemp("onnx") / "bev_tiny.onnx"
    width, height = synthetic_world.image_size
    code = export_tool.main([TINY_CONFIG, "random", "--out", str(out), "--dynamic-batch",
                             "--resolution", f"{height}x{width}"])
    return out, code


@pytest.mark.slow
def test_tiny_detector_exports_and_runs_in_onnx_runtime(exported_tiny_detector):
    """tools/export.py exits 0 only when ONNX Runtime matched PyTorch within its tolerance (1e-4 relative)."""
    out, code = exported_tiny_detector
    assert code == 0
    import onnx

    graph = onnx.load(str(out)).graph
    assert {"DeformConv", "GridSample"} <= {node.op_type for node in graph.node}
    assert [i.name for i in graph.input] == ["img", "ego2img", "valid_hw", "history", "history_valid"]
    assert [o.name for o in graph.output][:5] == ["bev", "detection.boxes", "detection.scores", "detection.labels",
                                                  "detection.inside"]


@pytest.mark.slow
def test_infer_onnx_draws_a_synthetic_sample_without_torch(exported_tiny_detector, synthetic_world, tmp_path):
    """tools/infer_onnx.py in a fresh interpreter: history from the previous frame, boxes decoded, the
    picture written, and torch never imported."""
    import subprocess
    import sys

    out, code = exported_tiny_detector
    assert code == 0
    picture = tmp_path / "sample.png"
    script = ("import sys; sys.path.insert(0, 'tools'); import infer_onnx; "
              f"code = infer_onnx.main([{str(out)!r}, {str(synthetic_world.val_infos)!r}, '--index', '2', "
              f"'--out', {str(picture)!r}, '--score-thr', '0', '--threads', '1']); "
              "print('torch imported:', 'torch' in sys.modules); sys.exit(code)")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "torch imported: False" in result.stdout
    assert "(history frames 1/1)" in result.stdout and " boxes, " in result.stdout
    from PIL import Image

    assert Image.open(picture).size[0] > 0


@pytest.mark.slow
def test_three_head_model_exports_and_runs_in_onnx_runtime(tmp_path, capsys):
    """Detection, occupancy and lanes on one spine: every head's outputs come out of one graph, within tolerance."""
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    export_tool = load_tool("export")
    out = tmp_path / "three_heads.onnx"
    config = "configs/multitask/detection_occupancy_lanes_tiny_synthetic.py"
    assert export_tool.main([config, "random", "--out", str(out)]) == 0
    import onnx

    names = [o.name for o in onnx.load(str(out)).graph.output]
    assert "detection.boxes" in names and "occupancy" in names
    assert any(n.startswith("lanes.lane_lane") for n in names)
