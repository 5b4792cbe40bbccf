"""DCNv3: reference vs an independent grid_sample formulation and hand-computed values; the C++
kernel vs the reference in float64, forward and every gradient."""

from __future__ import annotations

import pytest
import torch

import ops
from tests.ops.cases import DCNV3_CASES, dcnv3_case
from tests.ops.truth import dcnv3_by_grid_sample


@pytest.mark.parametrize("case", DCNV3_CASES, ids=list(DCNV3_CASES))
def test_reference_matches_grid_sample_formulation(case):
    input, offset, mask, args = dcnv3_case(**DCNV3_CASES[case])
    expected = dcnv3_by_grid_sample(input, offset, mask, *args)
    actual = ops.dcnv3(input, offset, mask, *args, backend="reference")
    torch.testing.assert_close(actual, expected, rtol=1e-12, atol=1e-12)


def test_hand_computed_window_average_and_half_pixel_shift():
    # One channel holding 1..9 on a 3x3 image; zero offsets and uniform weights give the 3x3 mean
    # with zero padding: centre (1+...+9)/9 = 5, corner (1+2+4+5)/9 = 4/3.
    image = torch.arange(1.0, 10.0, dtype=torch.float64).view(1, 3, 3, 1)
    offset = torch.zeros(1, 3, 3, 18, dtype=torch.float64)
    mask = torch.full((1, 3, 3, 9), 1 / 9, dtype=torch.float64)
    out = ops.dcnv3(image, offset, mask, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1.0, False, backend="reference")
    assert out[0, 1, 1, 0].item() == pytest.approx(5.0)
    assert out[0, 0, 0, 0].item() == pytest.approx(4 / 3)
    # All weight on the first point (i=0, j=0: top-left), shifted by +0.5 px in x: at the centre it
    # reads halfway between pixels (0, 0)=1 and (0, 1)=2 -> 1.5.
    mask = torch.zeros(1, 3, 3, 9, dtype=torch.float64)
    mask[..., 0] = 1
    offset[..., 0] = 0.5
    out = ops.dcnv3(image, offset, mask, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1.0, False, backend="reference")
    assert out[0, 1, 1, 0].item() == pytest.approx(1.5)
    # Point order: point 1 is (i=0, j=1), i.e. one row down from the top-left (width index outer).
    mask = torch.zeros(1, 3, 3, 9, dtype=torch.float64)
    mask[..., 1] = 1
    out = ops.dcnv3(image, torch.zeros_like(offset), mask, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1.0, False,
                    backend="reference")
    assert out[0, 1, 1, 0].item() == pytest.approx(4.0)  # pixel (row 1, col 0)
    # offset_scale scales the grid too: scale 2 puts point 0 of the centre pixel at (-1, -1): zero.
    mask = torch.zeros(1, 3, 3, 9, dtype=torch.float64)
    mask[..., 0] = 1
    out = ops.dcnv3(image, torch.zeros_like(offset), mask, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 2.0, False,
                    backend="reference")
    assert out[0, 1, 1, 0].item() == 0.0


def _forward_backward(backend, input, offset, mask, args, grad_out):
    leaves = [t.detach().clone().requires_grad_(True) for t in (input, offset, mask)]
    out = ops.dcnv3(*leaves, *args, backend=backend)
    out.backward(grad_out)
    return out.detach(), [t.grad for t in leaves]


@pytest.mark.parametrize("case", DCNV3_CASES, ids=list(DCNV3_CASES))
def test_cpu_kernel_matches_reference_forward_and_gradients(cpu_kernels, case):
    input, offset, mask, args = dcnv3_case(**DCNV3_CASES[case], seed=1)
    grad_out = torch.randn(ops.dcnv3(input, offset, mask, *args, backend="reference").shape, dtype=torch.float64)
    ref_out, ref_grads = _forward_backward("reference", input, offset, mask, args, grad_out)
    out, grads = _forward_backward("cpu", input, offset, mask, args, grad_out)
    torch.testing.assert_close(out, ref_out, rtol=1e-10, atol=1e-10)
    for name, g, ref_g in zip(("input", "offset", "mask"), grads, ref_grads):
        torch.testing.assert_close(g, ref_g, rtol=1e-9, atol=1e-9, msg=lambda m, n=name: f"grad {n}: {m}")


@pytest.mark.parametrize("case", ["base", "remove_center", "stride2_gc32"])
def test_cpu_kernel_float32_close_to_float64_reference(cpu_kernels, case):
    input, offset, mask, args = dcnv3_case(**DCNV3_CASES[case], seed=2)
    expected = ops.dcnv3(input, offset, mask, *args, backend="reference")
    actual = ops.dcnv3(input.float(), offset.float(), mask.float(), *args, backend="cpu")
    assert actual.dtype == torch.float32
    torch.testing.assert_close(actual.double(), expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("kwargs", [dict(n=1, h=4, w=5, group=2, group_channels=3),
                                    dict(n=2, h=5, w=4, group=1, group_channels=2, stride=2, remove_center=True,
                                         offset_scale=2.0),
                                    dict(n=1, h=5, w=5, group=1, group_channels=2, dilation=2, pad=0)])
def test_cpu_kernel_gradcheck(cpu_kernels, kwargs):
    input, offset, mask, args = dcnv3_case(**kwargs, offset_range=1.5, seed=3)
    leaves = [t.requires_grad_(True) for t in (input, offset, mask)]
    assert torch.autograd.gradcheck(lambda a, b, c: ops.dcnv3(a, b, c, *args, backend="cpu"), leaves,
                                    eps=1e-6, atol=1e-6)


def _softmax_over_points(logits, group):
    return logits.unflatten(-1, (group, -1)).softmax(-1).flatten(-2)


@pytest.mark.parametrize("case", ["base", "remove_center", "gc12_three_chunks", "kernel5x3"])
def test_fused_mask_softmax_matches_torch_softmax_then_op(cpu_kernels, case):
    # Truth: torch.softmax over each group's points, then the unfused reference, with autograd
    # through both; the kernel takes the logits and must give the same output and logit gradients.
    input, offset, _, args = dcnv3_case(**DCNV3_CASES[case], seed=11)
    logits = torch.randn(*offset.shape[:-1], offset.shape[-1] // 2, dtype=torch.float64) * 3
    group = args[8]
    leaves = [t.detach().clone().requires_grad_(True) for t in (input, offset, logits)]
    expected = ops.dcnv3(leaves[0], leaves[1], _softmax_over_points(leaves[2], group), *args, backend="reference")
    grad_out = torch.randn_like(expected)
    expected.backward(grad_out)
    for backend in ("reference", "cpu"):
        fused = [t.detach().clone().requires_grad_(True) for t in (input, offset, logits)]
        out = ops.dcnv3(*fused, *args, backend=backend, mask_softmax=True)
        out.backward(grad_out)
        torch.testing.assert_close(out, expected, rtol=1e-10, atol=1e-10)
        for name, g, ref in zip(("input", "offset", "logits"), (t.grad for t in fused), (t.grad for t in leaves)):
            torch.testing.assert_close(g, ref, rtol=1e-9, atol=1e-9, msg=lambda m, n=name, b=backend: f"{b} {n}: {m}")


@pytest.mark.parametrize("case", ["base", "remove_center"])
def test_fused_mask_softmax_float32_close_to_float64_reference(cpu_kernels, case):
    # float32 computes the softmax's exponentials with the kernels' own polynomial (cpu_rows.h);
    # logits down to -100 exercise its underflow to zero.
    input, offset, _, args = dcnv3_case(**DCNV3_CASES[case], seed=13)
    logits = torch.randn(*offset.shape[:-1], offset.shape[-1] // 2, dtype=torch.float64) * 4
    logits[..., ::5] = -100.0
    group = args[8]
    leaves = [t.detach().clone().requires_grad_(True) for t in (input, offset, logits)]
    expected = ops.dcnv3(leaves[0], leaves[1], _softmax_over_points(leaves[2], group), *args, backend="reference")
    grad_out = torch.randn_like(expected)
    expected.backward(grad_out)
    fused = [t.detach().float().requires_grad_(True) for t in (input, offset, logits)]
    out = ops.dcnv3(*fused, *args, backend="cpu", mask_softmax=True)
    out.backward(grad_out.float())
    torch.testing.assert_close(out.double(), expected, rtol=1e-4, atol=1e-5)
    for name, g, ref in zip(("input", "offset", "logits"), (t.grad for t in fused), (t.grad for t in leaves)):
        torch.testing.assert_close(g.double(), ref, rtol=1e-3, atol=1e-4, msg=lambda m, n=name: f"{n}: {m}")


def test_fused_mask_softmax_gradcheck(cpu_kernels):
    input, offset, _, args = dcnv3_case(n=1, h=4, w=5, group=2, group_channels=3, offset_range=1.5, seed=12)
    logits = torch.randn(*offset.shape[:-1], offset.shape[-1] // 2, dtype=torch.float64)
    leaves = [t.requires_grad_(True) for t in (input, offset, logits)]
    assert torch.autograd.gradcheck(lambda a, b, c: ops.dcnv3(a, b, c, *args, backend="cpu", mask_softmax=True),
                                    leaves, eps=1e-6, atol=1e-6)


def test_official_module_semantics_on_kernel_and_reference(cpu_kernels):
    torch.manual_seed(0)
    layer = ops.DCNv3(channels=32, group=2, offset_scale=2.0, center_feature_scale=True).double()
    for p in (layer.offset.weight, layer.mask.weight, layer.center_feature_scale_proj_weight):
        torch.nn.init.normal_(p, std=0.2)  # leave the zero init so the test exercises real offsets
    x = torch.randn(2, 7, 9, 32, dtype=torch.float64)
    layer.backend = "reference"
    expected = layer(x)
    layer.backend = "cpu"
    torch.testing.assert_close(layer(x), expected, rtol=1e-10, atol=1e-10)
