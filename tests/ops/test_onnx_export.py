"""The ONNX lowerings of the deformable ops (ops/export.py), run in stock ONNX Runtime against the
float64 pure-PyTorch references (ops/reference.py) on the op tests' shape families (tests/ops/cases.py).

Tolerances: float64 1e-12 (ORT's DeformConv and GridSample take double); float32 1e-5 absolute on
outputs of magnitude ~1 (measured about 5e-7)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import ops
from ops import export as ops_export
from tests.ops.cases import DCNV3_CASES, MSDA_CASES, dcnv3_case, msda_case
from tests.tool_loader import import_helper

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

TOLERANCE = {torch.float32: 1e-5, torch.float64: 1e-12}


class _DCNv3Call(nn.Module):
    def __init__(self, args: tuple, mask_softmax: bool) -> None:
        super().__init__()
        self.args, self.mask_softmax = args, mask_softmax

    def forward(self, input, offset, mask):
        return ops.dcnv3(input, offset, mask, *self.args, mask_softmax=self.mask_softmax)


class _Cases(nn.Module):
    """Several op calls in one graph (one export for a whole shape family: export time, not ONNX Runtime,
    dominates), each taking its own consecutive inputs."""

    def __init__(self, calls: list[nn.Module], arity: int) -> None:
        super().__init__()
        self.calls, self.arity = nn.ModuleList(calls), arity

    def forward(self, *inputs):
        return tuple(call(*inputs[i * self.arity:(i + 1) * self.arity]) for i, call in enumerate(self.calls))


class _MSDACall(nn.Module):
    """The level table is built inside the model (ops.export.level_table), as the models do."""

    def __init__(self, shapes: list[tuple[int, int]]) -> None:
        super().__init__()
        self.shapes = shapes

    def forward(self, value, locations, weights):
        table = ops_export.level_table(self.shapes, value.device)
        starts = torch.cat([table.new_zeros(1), table.prod(1).cumsum(0)[:-1]])
        return ops.ms_deform_attn(value, table, starts, locations, weights)


def _run_in_ort(module, inputs, tmp_path, outputs: int = 1):
    onnx_common = import_helper("_onnx_common")
    names = [f"in{i}" for i in range(len(inputs))]
    path = onnx_common.export_onnx(module, inputs, tmp_path / "op.onnx", names, [f"out{i}" for i in range(outputs)])
    session = onnx_common.ort_session(path, threads=1)
    results = onnx_common.run_onnx(session, {n: t.numpy() for n, t in zip(names, inputs)})
    return (results[0] if outputs == 1 else results), path


def _op_types(path) -> set[str]:
    import onnx

    return {node.op_type for node in onnx.load(str(path)).graph.node}


@pytest.mark.slow
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
def test_dcnv3_lowers_to_deform_conv(dtype, tmp_path):
    """Every DCNv3 shape family of the op tests, in one exported graph."""
    cases = {name: dcnv3_case(dtype=dtype, **kwargs) for name, kwargs in DCNV3_CASES.items()}
    module = _Cases([_DCNv3Call(args, mask_softmax=False) for *_, args in cases.values()], arity=3)
    inputs = [t for input, offset, mask, _ in cases.values() for t in (input, offset, mask)]
    got, path = _run_in_ort(module, inputs, tmp_path, outputs=len(cases))
    assert "DeformConv" in _op_types(path)
    for (name, (input, offset, mask, args)), out in zip(cases.items(), got, strict=True):
        want = ops.dcnv3_reference(input.double(), offset.double(), mask.double(), *args)
        assert out.dtype == input.numpy().dtype, name
        assert abs(torch.from_numpy(out).double() - want).max().item() < TOLERANCE[dtype], name


@pytest.mark.parametrize("case", ["remove_center", "offset_scale2"])
def test_dcnv3_lowering_softmaxes_mask_logits(case, tmp_path):
    """mask_softmax=True (what the DCNv3 layer passes): the softmax happens before DeformConv."""
    input, offset, logits, args = dcnv3_case(dtype=torch.float32, **DCNV3_CASES[case])
    logits = logits * 20 - 5
    got, _ = _run_in_ort(_DCNv3Call(args, mask_softmax=True), (input, offset, logits), tmp_path)
    want = ops.dcnv3_reference(input.double(), offset.double(), logits.double(), *args, mask_softmax=True)
    assert abs(torch.from_numpy(got).double() - want).max().item() < TOLERANCE[torch.float32]


@pytest.mark.slow
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
def test_ms_deform_attn_lowers_to_grid_sample(dtype, tmp_path):
    """Every MSDA shape family of the op tests (1-4 levels, 2-8 points), in one exported graph."""
    cases = {name: msda_case(dtype=dtype, **kwargs) for name, kwargs in MSDA_CASES.items()}
    module = _Cases([_MSDACall([tuple(s) for s in shapes.tolist()]) for _, shapes, *_ in cases.values()], arity=3)
    inputs = [t for value, _, _, locations, weights in cases.values() for t in (value, locations, weights)]
    got, path = _run_in_ort(module, inputs, tmp_path, outputs=len(cases))
    assert "GridSample" in _op_types(path)
    for (name, (value, shapes, starts, locations, weights)), out in zip(cases.items(), got, strict=True):
        assert ((locations < 0) | (locations > 1)).any(), name  # some samples fall (partly) outside the maps
        want = ops.ms_deform_attn_reference(value.double(), shapes, starts, locations.double(), weights.double())
        assert abs(torch.from_numpy(out).double() - want).max().item() < TOLERANCE[dtype], name


@pytest.mark.parametrize("case", list(MSDA_CASES))
def test_grid_sample_form_matches_reference_in_eager_float64(case):
    value, shapes, starts, locations, weights = msda_case(**MSDA_CASES[case])
    got = ops_export.ms_deform_attn_grid_sample(value, [tuple(s) for s in shapes.tolist()], locations, weights)
    want = ops.ms_deform_attn_reference(value, shapes, starts, locations, weights)
    assert abs(got - want).max().item() < 1e-12


def test_export_mode_switch_and_context():
    assert not ops_export.is_exportable()
    with ops_export.exportable():
        assert ops_export.is_exportable()
        with ops_export.exportable(False):
            assert not ops_export.is_exportable()
        assert ops_export.is_exportable()
    assert not ops_export.is_exportable()
    ops_export.set_exportable(True)
    try:
        assert ops_export.is_exportable()
    finally:
        ops_export.set_exportable(False)


def test_bad_msda_export_kind_is_named():
    with pytest.raises(ValueError, match="set_msda_export: kind must be one of"):
        ops_export.set_msda_export("tensorrt")


def test_level_table_keeps_static_sizes():
    table = ops_export.level_table([(5, 7), (2, 3)])
    assert table.tolist() == [[5, 7], [2, 3]] and table.dtype == torch.long
    assert ops_export.static_level_shapes(table) == ((5, 7), (2, 3))
    assert ops_export.static_level_shapes(torch.tensor([[4, 1]])) == ((4, 1),)


class _MSDAWithPlainTable(nn.Module):
    def forward(self, value, locations, weights):
        table = torch.tensor([[6, 8], [3, 4]], device=value.device)  # built inside the model: symbolic values
        return ops.ms_deform_attn(value, table, torch.tensor([0, 48]), locations, weights)


def test_msda_export_without_static_level_sizes_names_the_fix(tmp_path):
    value, _, _, locations, weights = msda_case(dtype=torch.float32)
    with pytest.raises(ops_export.LoweringError, match="level_table"):
        _run_in_ort(_MSDAWithPlainTable(), (value, locations, weights), tmp_path)


def test_trt_plugin_option_emits_one_fused_node(tmp_path):
    """set_msda_export("trt_plugin"): one trt::MultiscaleDeformableAttnPlugin_TRT node with TensorRT's input
    layout (int32 level table and starts). Only the graph is checked: no TensorRT here to run it."""
    import onnx

    onnx_common = import_helper("_onnx_common")
    value, shapes, _, locations, weights = msda_case(dtype=torch.float32)
    ops_export.set_msda_export("trt_plugin")
    try:
        path = tmp_path / "trt.onnx"
        torch.onnx.export(_MSDACall([tuple(s) for s in shapes.tolist()]).eval(), (value, locations, weights), str(path),
                          opset_version=onnx_common.OPSET, dynamo=True)
    finally:
        ops_export.set_msda_export("grid_sample")
    model = onnx.load(str(path))
    nodes = [n for n in model.graph.node if n.op_type == "MultiscaleDeformableAttnPlugin_TRT"]
    assert len(nodes) == 1 and nodes[0].domain == "trt"
    assert "GridSample" not in {n.op_type for n in model.graph.node}
