"""Multi-scale deformable attention: reference vs an independent per-level grid_sample formulation;
the C++ kernel vs the reference in float64, forward and every gradient."""

from __future__ import annotations

import pytest
import torch

import ops
from tests.ops.cases import MSDA_CASES, msda_case
from tests.ops.truth import msda_by_grid_sample


@pytest.mark.parametrize("case", MSDA_CASES, ids=list(MSDA_CASES))
def test_reference_matches_grid_sample_formulation(case):
    inputs = msda_case(**MSDA_CASES[case])
    torch.testing.assert_close(ops.ms_deform_attn(*inputs, backend="reference"), msda_by_grid_sample(*inputs),
                               rtol=1e-12, atol=1e-12)


def test_hand_computed_sample():
    # One level 2x2 holding 1, 2 / 3, 4; sampling at the image centre (0.5, 0.5) averages all four;
    # sampling at x = 0.25 (the centre of column 0) in row 0 reads exactly 1.
    value = torch.tensor([1.0, 2.0, 3.0, 4.0], dtype=torch.float64).view(1, 4, 1, 1)
    shapes = torch.tensor([[2, 2]])
    starts = torch.tensor([0])
    loc = torch.tensor([[0.5, 0.5], [0.25, 0.25]], dtype=torch.float64).view(1, 2, 1, 1, 1, 2)
    weights = torch.ones(1, 2, 1, 1, 1, dtype=torch.float64)
    out = ops.ms_deform_attn(value, shapes, starts, loc, weights, backend="reference")
    assert out[0, :, 0].tolist() == pytest.approx([2.5, 1.0])


def _forward_backward(backend, value, shapes, starts, loc, weights, grad_out):
    leaves = [t.detach().clone().requires_grad_(True) for t in (value, loc, weights)]
    out = ops.ms_deform_attn(leaves[0], shapes, starts, leaves[1], leaves[2], backend=backend)
    out.backward(grad_out)
    return out.detach(), [t.grad for t in leaves]


@pytest.mark.parametrize("case", MSDA_CASES, ids=list(MSDA_CASES))
def test_cpu_kernel_matches_reference_forward_and_gradients(cpu_kernels, case):
    value, shapes, starts, loc, weights = msda_case(**MSDA_CASES[case], seed=1)
    grad_out = torch.randn(value.shape[0], loc.shape[1], value.shape[2] * value.shape[3], dtype=torch.float64)
    ref_out, ref_grads = _forward_backward("reference", value, shapes, starts, loc, weights, grad_out)
    out, grads = _forward_backward("cpu", value, shapes, starts, loc, weights, grad_out)
    torch.testing.assert_close(out, ref_out, rtol=1e-10, atol=1e-10)
    for name, g, ref_g in zip(("value", "sampling_locations", "attention_weights"), grads, ref_grads):
        torch.testing.assert_close(g, ref_g, rtol=1e-9, atol=1e-9, msg=lambda m, n=name: f"grad {n}: {m}")


def test_cpu_kernel_gradcheck(cpu_kernels):
    value, shapes, starts, loc, weights = msda_case(n=1, shapes=((3, 4), (2, 2)), heads=2, dim=2, queries=3,
                                                    points=2, seed=4)
    leaves = [t.requires_grad_(True) for t in (value, loc, weights)]
    assert torch.autograd.gradcheck(
        lambda v, l, w: ops.ms_deform_attn(v, shapes, starts, l, w, backend="cpu"), leaves, eps=1e-6, atol=1e-6)


@pytest.mark.parametrize("ref_dims", [2, 4])
def test_module_on_kernel_matches_reference(cpu_kernels, ref_dims):
    torch.manual_seed(0)
    attn = ops.MultiScaleDeformableAttention(embed_dims=32, num_heads=4, num_levels=2, num_points=3,
                                             dropout=0.0).double()
    torch.nn.init.normal_(attn.attention_weights.weight, std=0.3)
    shapes = torch.tensor([[6, 5], [3, 3]])
    starts = torch.tensor([0, 30])
    query = torch.randn(2, 7, 32, dtype=torch.float64)
    value = torch.randn(2, 39, 32, dtype=torch.float64)
    ref = torch.rand(2, 7, 2, ref_dims, dtype=torch.float64)
    kwargs = dict(value=value, reference_points=ref, spatial_shapes=shapes, level_start_index=starts)
    attn.backend = "reference"
    expected = attn(query, **kwargs)
    attn.backend = "cpu"
    torch.testing.assert_close(attn(query, **kwargs), expected, rtol=1e-10, atol=1e-10)


def test_module_standard_initialisation():
    attn = ops.MultiScaleDeformableAttention(embed_dims=16, num_heads=4, num_levels=2, num_points=2)
    bias = attn.sampling_offsets.bias.view(4, 2, 2, 2)
    # Head 0 looks along +x, head 1 along +y (angles 0, 90 degrees), point i at distance i+1.
    torch.testing.assert_close(bias[0, 0], torch.tensor([[1.0, 0.0], [2.0, 0.0]]))
    torch.testing.assert_close(bias[1, 1], torch.tensor([[0.0, 1.0], [0.0, 2.0]]), atol=1e-6, rtol=0)
    assert attn.attention_weights.weight.abs().sum() == 0 and attn.sampling_offsets.weight.abs().sum() == 0


def test_sampling_locations_move_by_one_pixel_of_each_level():
    from ops.modules import sampling_locations

    shapes = torch.tensor([[4, 8], [2, 5]])  # level 0: H=4, W=8; level 1: H=2, W=5
    reference = torch.tensor([0.5, 0.25]).view(1, 1, 1, 1, 1, 2)
    offsets = torch.tensor([[[1.0, 2.0]], [[-1.0, 1.0]]]).view(1, 1, 1, 2, 1, 2)  # (N, Q, M, L, P, 2)
    out = sampling_locations(reference, offsets, shapes)
    expected = torch.tensor([[0.5 + 1 / 8, 0.25 + 2 / 4], [0.5 - 1 / 5, 0.25 + 1 / 2]]).view(1, 1, 1, 2, 1, 2)
    torch.testing.assert_close(out, expected)
