"""torch.library registration: opcheck, torch.compile(fullgraph=True) and torch.export."""

from __future__ import annotations

import pytest
import torch

import ops
from tests.ops.cases import dcnv3_case, msda_case


def test_opcheck_dcnv3(cpu_kernels):
    input, offset, mask, args = dcnv3_case(n=2, h=5, w=6, group=2, group_channels=4, seed=5)
    for t in (input, offset, mask):
        t.requires_grad_(True)
    grad = torch.randn(2, 5, 6, 8, dtype=torch.float64)
    for mask_softmax in (False, True):
        torch.library.opcheck(torch.ops.perception_ops.dcnv3.default, (input, offset, mask, *args, mask_softmax))
        torch.library.opcheck(torch.ops.perception_ops.dcnv3_backward.default,
                              (input.detach(), offset.detach(), mask.detach(), grad, *args, mask_softmax))


def test_opcheck_ms_deform_attn(cpu_kernels):
    value, shapes, starts, loc, weights = msda_case(seed=5)
    for t in (value, loc, weights):
        t.requires_grad_(True)
    torch.library.opcheck(torch.ops.perception_ops.ms_deform_attn.default, (value, shapes, starts, loc, weights))
    grad = torch.randn(2, 5, 16, dtype=torch.float64)
    torch.library.opcheck(torch.ops.perception_ops.ms_deform_attn_backward.default,
                          (value.detach(), shapes, starts, loc.detach(), weights.detach(), grad))


class _DeformBlock(torch.nn.Module):
    """A DCNv3 layer followed by deformable attention over its output, as a model would use them."""

    def __init__(self):
        super().__init__()
        self.dcn = ops.DCNv3(channels=16, group=2)
        self.attn = ops.MultiScaleDeformableAttention(embed_dims=16, num_heads=2, num_levels=1, num_points=2,
                                                      dropout=0.0)
        torch.nn.init.normal_(self.dcn.offset.weight, std=0.5)

    def forward(self, x, ref):
        y = self.dcn(x)
        n, h, w, c = y.shape
        shapes = torch.tensor([[h, w]], device=x.device)
        starts = torch.zeros(1, dtype=torch.long, device=x.device)
        return self.attn(y.flatten(1, 2), reference_points=ref, spatial_shapes=shapes, level_start_index=starts)


@pytest.mark.slow
def test_compiled_module_fullgraph_matches_eager_on_cpu(cpu_kernels):
    torch.manual_seed(0)
    model = _DeformBlock()
    x = torch.randn(2, 6, 7, 16, requires_grad=True)
    ref = torch.rand(2, 42, 1, 2)
    expected = model(x, ref)
    expected.sum().backward()
    expected_grad = x.grad.clone()
    x.grad = None
    compiled = torch.compile(model, fullgraph=True)
    actual = compiled(x, ref)
    actual.sum().backward()
    torch.testing.assert_close(actual, expected, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(x.grad, expected_grad, rtol=1e-4, atol=1e-5)


def test_export_traces_the_custom_ops(cpu_kernels):
    torch.manual_seed(0)
    model = _DeformBlock().eval()
    x = torch.randn(2, 6, 7, 16)
    ref = torch.rand(2, 42, 1, 2)
    exported = torch.export.export(model, (x, ref))
    targets = {str(node.target) for node in exported.graph.nodes if node.op == "call_function"}
    assert "perception_ops.dcnv3.default" in targets
    assert "perception_ops.ms_deform_attn.default" in targets
    torch.testing.assert_close(exported.module()(x, ref), model(x, ref))


@pytest.mark.slow
def test_compiling_before_any_eager_call_builds_the_kernels_outside_the_trace(cpu_kernels, monkeypatch):
    # mmengine's `compile=True` compiles train_step before the first step, so the first op call a
    # process makes may be traced: the kernels must then load outside the graph, not be traced into it.
    from ops import _extension

    monkeypatch.setattr(_extension, "loaded_kernels", {})
    torch._dynamo.reset()
    torch.manual_seed(0)
    model = _DeformBlock()
    x = torch.randn(2, 6, 7, 16, requires_grad=True)
    ref = torch.rand(2, 42, 1, 2)
    actual = torch.compile(model, fullgraph=True)(x, ref)
    actual.sum().backward()
    assert _extension.loaded_kernels.get("cpu") is not None
    compiled_grad = x.grad.clone()
    x.grad = None
    expected = model(x, ref)
    expected.sum().backward()
    torch.testing.assert_close(actual, expected, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(compiled_grad, x.grad, rtol=1e-4, atol=1e-5)
