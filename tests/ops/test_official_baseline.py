"""The official CPU formulation the benchmarks compare with (tools/_official_dcnv3.py) computes the
same function as our op: forward and every gradient, against the float64 gather reference
(ops/reference.py, which shares no code with it), and in float32 against our C++ kernel."""

from __future__ import annotations

import pytest
import torch

import ops
import ops.modules
from tests.ops.cases import DCNV3_CASES, dcnv3_case
from tests.tool_loader import import_helper

official = import_helper("_official_dcnv3")

# Groups > 1 everywhere but kernel5x3; dilation and padding; stride; the centre removed; scale 2.
CASES = ["base", "dilation2", "pad0", "stride2_gc32", "remove_center", "offset_scale2", "kernel5x3", "big_offsets"]


def _forward_backward(fn, tensors, args, grad_out, **kwargs):
    leaves = [t.detach().clone().requires_grad_(True) for t in tensors]
    out = fn(*leaves, *args, **kwargs)
    out.backward(grad_out)
    return out.detach(), [t.grad for t in leaves]


@pytest.mark.parametrize("case", CASES)
def test_formulation_matches_float64_reference_forward_and_gradients(case):
    input, offset, mask, args = dcnv3_case(**DCNV3_CASES[case], seed=5)
    grad_out = torch.randn(ops.dcnv3(input, offset, mask, *args, backend="reference").shape, dtype=torch.float64)
    expected, expected_grads = _forward_backward(ops.dcnv3, (input, offset, mask), args, grad_out,
                                                 backend="reference")
    out, grads = _forward_backward(official.grid_sample_dcnv3, (input, offset, mask), args, grad_out)
    torch.testing.assert_close(out, expected, rtol=1e-12, atol=1e-12)
    for name, g, ref in zip(("input", "offset", "mask"), grads, expected_grads):
        torch.testing.assert_close(g, ref, rtol=1e-9, atol=1e-9, msg=lambda m, n=name: f"grad {n}: {m}")


@pytest.mark.parametrize("case", ["base", "dilation2", "remove_center"])
def test_formulation_and_cpu_kernel_agree_in_float32(cpu_kernels, case):
    input, offset, mask, args = dcnv3_case(**DCNV3_CASES[case], seed=6)
    grad_out = torch.randn(ops.dcnv3(input, offset, mask, *args, backend="reference").shape, dtype=torch.float64)
    expected, expected_grads = _forward_backward(ops.dcnv3, (input, offset, mask), args, grad_out,
                                                 backend="reference")
    fp32 = [t.float() for t in (input, offset, mask)]
    for fn, kwargs in ((official.grid_sample_dcnv3, {}), (ops.dcnv3, {"backend": "cpu"})):
        out, grads = _forward_backward(fn, fp32, args, grad_out.float(), **kwargs)
        torch.testing.assert_close(out.double(), expected, rtol=1e-4, atol=1e-5)
        for name, g, ref in zip(("input", "offset", "mask"), grads, expected_grads):
            torch.testing.assert_close(g.double(), ref, rtol=1e-3, atol=1e-4, msg=lambda m, n=name: f"grad {n}: {m}")


def test_call_with_fused_softmax_matches_op():
    input, offset, _, args = dcnv3_case(**DCNV3_CASES["base"], seed=7)
    logits = torch.randn(*offset.shape[:-1], offset.shape[-1] // 2, dtype=torch.float64) * 3
    expected = ops.dcnv3(input, offset, logits, *args, backend="reference", mask_softmax=True)
    actual = official.grid_sample_dcnv3_call(input, offset, logits, *args, backend="cpu", mask_softmax=True)
    torch.testing.assert_close(actual, expected, rtol=1e-12, atol=1e-12)


def test_official_core_routes_the_layer_and_restores_the_op():
    torch.manual_seed(0)
    layer = ops.DCNv3(channels=32, group=2, backend="reference").double()
    torch.nn.init.normal_(layer.offset.weight, std=0.2)  # real offsets, not the zero init
    x = torch.randn(1, 6, 7, 32, dtype=torch.float64)
    expected = layer(x)
    with official.official_core():
        assert ops.modules.dcnv3 is official.grid_sample_dcnv3_call
        actual = layer(x)
    assert ops.modules.dcnv3 is ops.dcnv3
    torch.testing.assert_close(actual, expected, rtol=1e-12, atol=1e-12)
