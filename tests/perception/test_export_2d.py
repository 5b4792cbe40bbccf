"""ONNX export of the 2D heads, DINO-4scale and UperNet (tools/export.py, docs/deployment.md).

The exported graphs run in stock ONNX Runtime and must match eager PyTorch (the models' own ``predict`` /
``tensor`` modes, not the export graphs) within the tool's tolerance, 1e-4 x max(1, |output|) in float32;
the export graphs in export mode must compute what eager mode computes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from ops.export import exportable
from tests.tool_loader import import_helper, load_tool

DINO_CONFIG = "configs/detection2d/dino_tiny_synthetic.py"
UPERNET_CONFIG = "configs/segmentation/upernet_tiny_synthetic.py"
HEIGHT, WIDTH = 96, 128  # static input size of the tests' graphs (levels down to 3x4, DINO's extra level 2x2)
TOLERANCE = 1e-4  # tools/export.py's float32 default, relative to max(1, |output|)


def _randomised(model: nn.Module, seed: int) -> nn.Module:
    """Every parameter perturbed and every BatchNorm given running statistics: the initialisation zeroes
    DINO's box deltas and DCNv3's offsets and makes UperNet's logits tiny, which would test little."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in model.parameters():
            param.add_(torch.randn(param.shape, generator=gen) * 0.1)
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.copy_(torch.randn(module.running_mean.shape, generator=gen) * 0.1)
                module.running_var.copy_(torch.rand(module.running_var.shape, generator=gen) + 0.5)
    return model.eval()


def _model(config: str, seed: int) -> nn.Module:
    model, _ = import_helper("_export_graphs").build(config, "random")
    return _randomised(model, seed)


def _image(batch: int = 2, seed: int = 3) -> torch.Tensor:
    return torch.randn(batch, 3, HEIGHT, WIDTH, generator=torch.Generator().manual_seed(seed))


def _export(config: str, seed: int, directory) -> tuple[nn.Module, str]:
    """The randomised model, and the file tools/export.py wrote from its checkpoint with a symbolic batch
    (exit code asserted 0: the tool's own ONNX Runtime check passed)."""
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    model = _model(config, seed)
    checkpoint = directory / "model.pth"
    torch.save({"state_dict": model.state_dict()}, checkpoint)
    out = directory / "model.onnx"
    code = load_tool("export").main([config, str(checkpoint), "--out", str(out), "--resolution",
                                     f"{HEIGHT}x{WIDTH}", "--dynamic-batch"])
    assert code == 0
    return model, str(out)


@pytest.fixture(scope="module")
def exported_dino(tmp_path_factory):
    return _export(DINO_CONFIG, 1, tmp_path_factory.mktemp("dino"))


@pytest.fixture(scope="module")
def exported_upernet(tmp_path_factory):
    return _export(UPERNET_CONFIG, 2, tmp_path_factory.mktemp("upernet"))


def _run(path: str, image: torch.Tensor) -> list:
    onnx_common = import_helper("_onnx_common")
    return onnx_common.run_onnx(onnx_common.ort_session(path, threads=1), {"image": image.numpy()})


@pytest.mark.slow
@pytest.mark.parametrize("batch", [1, 3])
def test_dino_onnx_matches_eager_predict(exported_dino, batch):
    """The exported detector on new images, at batches other than the traced one, equals the eager model's
    predict (fixed top-k, boxes clipped to the image)."""
    import onnx

    model, path = exported_dino
    graph = onnx.load(path).graph
    assert [i.name for i in graph.input] == ["image"]
    assert [o.name for o in graph.output] == ["boxes", "scores", "labels"]
    assert {"DeformConv", "GridSample", "TopK"} <= {node.op_type for node in graph.node}  # no custom operator
    assert all(node.domain in ("", "ai.onnx") for node in graph.node)
    metadata = {p.key: p.value for p in onnx.load(path).metadata_props}
    assert json.loads(metadata["img_mean"]) == [123.675, 116.28, 103.53]  # ImageNet, perception/data/coco.py
    image = _image(batch)
    with torch.no_grad():
        want = model(image, mode="predict")
    boxes, scores, labels = _run(path, image)
    k = model.max_detections
    assert boxes.shape == (batch, k, 4) and scores.shape == (batch, k) and labels.shape == (batch, k)
    for i, result in enumerate(want):
        scale = max(1.0, float(result["boxes"].abs().max()))
        torch.testing.assert_close(torch.from_numpy(scores[i]), result["scores"], rtol=0, atol=TOLERANCE)
        torch.testing.assert_close(torch.from_numpy(labels[i]), result["labels"], rtol=0, atol=0)
        torch.testing.assert_close(torch.from_numpy(boxes[i]), result["boxes"], rtol=0, atol=TOLERANCE * scale)
    assert scores.std() > 1e-3  # the randomised weights give distinct scores (not a constant prior)


@pytest.mark.slow
@pytest.mark.parametrize("batch", [1, 3])
def test_upernet_onnx_matches_eager_logits(exported_upernet, batch):
    import onnx

    model, path = exported_upernet
    assert [o.name for o in onnx.load(path).graph.output] == ["logits"]
    image = _image(batch, seed=4)
    with torch.no_grad():
        want = model(image, mode="tensor")
    (logits,) = _run(path, image)
    assert logits.shape == (batch, model.num_classes, HEIGHT, WIDTH)
    assert want.abs().max() > 0.1  # logits of a real size, not the classifier's near-zero initialisation
    torch.testing.assert_close(torch.from_numpy(logits), want, rtol=0,
                               atol=TOLERANCE * max(1.0, float(want.abs().max())))


def test_dino_export_graph_in_export_mode_equals_eager_predict():
    export_graphs = import_helper("_export_graphs")
    model = _model(DINO_CONFIG, 5)
    image = _image(seed=6)
    with torch.no_grad():
        want = model(image, mode="predict")
        with exportable():
            boxes, scores, labels = export_graphs.Detector2DGraph(model)(image)
            tensor_mode = model(image, mode="tensor")
        eager_tensor_mode = model(image, mode="tensor")
    for i, result in enumerate(want):
        torch.testing.assert_close(boxes[i], result["boxes"], rtol=1e-5, atol=1e-4)
        torch.testing.assert_close(scores[i], result["scores"], rtol=1e-5, atol=1e-6)
        assert torch.equal(labels[i], result["labels"])
    for exported, eager in zip(tensor_mode, eager_tensor_mode):
        torch.testing.assert_close(exported, eager, rtol=1e-5, atol=1e-6)


def test_upernet_export_graph_in_export_mode_equals_eager():
    export_graphs = import_helper("_export_graphs")
    model = _model(UPERNET_CONFIG, 7)
    image = _image(seed=8)
    with torch.no_grad():
        eager = model(image, mode="tensor")
        with exportable():
            exported = export_graphs.SegmentorGraph(model)(image)
    torch.testing.assert_close(exported, eager, rtol=1e-5, atol=1e-6)


def test_dino_decode_topk_by_hand():
    """Two queries, two classes on a 10x20 (HxW) canvas: the (query, class) pairs in sigmoid order."""
    model = _model(DINO_CONFIG, 0)
    model.max_detections, model.num_classes = 3, 2
    logits = torch.tensor([[[0.0, 2.0], [1.0, -1.0]]])  # sigmoid order: (q0, c1), (q1, c0), (q0, c0)
    boxes = torch.tensor([[[0.5, 0.5, 0.2, 0.4], [0.25, 0.5, 0.5, 1.0]]])  # cxcywh, normalised
    xyxy, scores, labels = model.decode_topk(logits, boxes, (10, 20))
    q0, q1 = [8.0, 3.0, 12.0, 7.0], [0.0, 0.0, 10.0, 10.0]
    torch.testing.assert_close(xyxy, torch.tensor([[q0, q1, q0]]))
    torch.testing.assert_close(scores, torch.tensor([[2.0, 1.0, 0.0]]).sigmoid())
    assert labels.tolist() == [[1, 0, 0]]


def test_sliding_window_segmentor_is_refused_naming_the_part(tmp_path):
    config = tmp_path / "upernet_slide.py"
    config.write_text(f"_base_ = [{str(Path(UPERNET_CONFIG).resolve())!r}]\n"
                      "model = dict(test_mode='slide', crop_size=(64, 64), stride=(32, 32))\n")
    export_tool = load_tool("export")
    with pytest.raises(export_tool.UsageError, match="sliding-window inference"):
        export_tool.main([str(config), "random", "--out", str(tmp_path / "x.onnx")])
    with pytest.raises(export_tool.UsageError, match="--part backbone is for classification configs"):
        export_tool.main([DINO_CONFIG, "random", "--out", str(tmp_path / "x.onnx"), "--part", "backbone"])
