"""InternImage exported to ONNX and run in stock ONNX Runtime (tools/export.py, docs/deployment.md).

Tolerance: 1e-4 x max(1, |logit|) in float32, the tool's default (measured about 3e-7 on InternImage-T)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import backbones
from ops import DCNv3
from tests.tool_loader import import_helper, load_tool

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

SHAPES_CONFIG = "configs/classification/internimage_tiny_shapes.py"


def _deformed(model: torch.nn.Module) -> torch.nn.Module:
    """Random offsets and mask logits in every DCNv3 layer (the official initialisation zeroes them, which
    would test only the regular grid)."""
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for layer in model.modules():
            if isinstance(layer, DCNv3):
                layer.offset.weight.copy_(torch.randn(layer.offset.weight.shape, generator=gen) * 0.02)
                layer.offset.bias.copy_(torch.rand(layer.offset.bias.shape, generator=gen) * 4 - 2)
                layer.mask.weight.copy_(torch.randn(layer.mask.weight.shape, generator=gen) * 0.02)
                layer.mask.bias.copy_(torch.randn(layer.mask.bias.shape, generator=gen))
    return model.eval()


@pytest.mark.slow
def test_internimage_t_runs_in_onnx_runtime_with_dynamic_batch(tmp_path):
    onnx_common = import_helper("_onnx_common")
    torch.manual_seed(0)
    model = _deformed(backbones.create_model("internimage_t"))
    path = onnx_common.export_onnx(model, [torch.randn(1, 3, 224, 224)], tmp_path / "t.onnx", ["image"], ["logits"],
                                   dynamic_batch=True)
    session = onnx_common.ort_session(path, threads=2)
    for batch in (1, 3):
        image = torch.randn(batch, 3, 224, 224, generator=torch.Generator().manual_seed(batch))
        with torch.no_grad():
            want = model(image)
        got = onnx_common.run_onnx(session, {"image": image.numpy()})
        assert got[0].shape == (batch, 1000)
        assert onnx_common.max_difference([want], got) < 1e-4 * max(1.0, want.abs().max().item())


def test_export_mode_leaves_the_backbone_unchanged(make_tiny):
    """InternImage has no export-mode branch of its own: its op lowers only while torch.onnx traces."""
    from ops.export import exportable

    model = _deformed(make_tiny())
    image = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        eager = model(image)
        with exportable():
            exported = model(image)
    assert torch.equal(eager, exported)


@pytest.mark.parametrize("part", ["model", "backbone"])
def test_export_tool_on_the_shapes_classifier(part, tmp_path, capsys):
    export_tool = load_tool("export")
    out = tmp_path / f"{part}.onnx"
    assert export_tool.main([SHAPES_CONFIG, "random", "--out", str(out), "--part", part, "--size", "32"]) == 0
    assert "largest |ONNX Runtime - PyTorch|" in capsys.readouterr().out
    import onnx

    graph = onnx.load(str(out)).graph
    assert "DeformConv" in {node.op_type for node in graph.node}
    names = [o.name for o in graph.output]
    assert names == (["logits"] if part == "model" else ["stage0", "stage1", "stage2", "stage3"])
    shape = [d.dim_value for d in graph.output[0].type.tensor_type.shape.dim]
    assert shape == ([1, 8] if part == "model" else [1, 32, 8, 8])


def test_export_tool_fp16_graph_is_checked_in_onnx_runtime(tmp_path, capsys):
    """--fp16: a float16 graph, compared with the float32 PyTorch model at the fp16 tolerance (2e-2)."""
    export_tool = load_tool("export")
    out = tmp_path / "fp16.onnx"
    assert export_tool.main([SHAPES_CONFIG, "random", "--out", str(out), "--size", "32", "--fp16"]) == 0
    import onnx

    graph = onnx.load(str(out)).graph
    assert graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT16
    assert graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT16


def test_export_tool_refuses_a_difference_above_the_tolerance(tmp_path, capsys):
    export_tool = load_tool("export")
    out = tmp_path / "refused.onnx"
    assert export_tool.main([SHAPES_CONFIG, "random", "--out", str(out), "--size", "32", "--tolerance", "0"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "refusing it" in err and not out.exists()


def test_export_tool_names_a_missing_checkpoint(tmp_path):
    export_tool = load_tool("export")
    with pytest.raises(export_tool.UsageError, match="checkpoint .*missing.pth does not exist"):
        export_tool.main([SHAPES_CONFIG, str(tmp_path / "missing.pth"), "--out", str(tmp_path / "x.onnx")])


def test_max_difference_counts_shape_mismatch_and_nan():
    onnx_common = import_helper("_onnx_common")
    want = [torch.zeros(2, 3)]
    assert onnx_common.max_difference(want, [np.full((2, 3), 0.5, np.float32)]) == 0.5
    assert onnx_common.max_difference(want, [np.zeros((3, 2), np.float32)]) == float("inf")
    assert onnx_common.max_difference(want, [np.full((2, 3), np.nan, np.float32)]) == float("inf")
