"""CUDA kernels vs the float64 reference in every dtype, forward and backward (GPU only)."""

from __future__ import annotations

import pytest
import torch

import ops
from tests.ops.cases import DCNV3_CASES, MSDA_CASES, dcnv3_case, msda_case

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]

# (rtol, atol) against the float64 reference; half types accumulate in fp32 but store in 8-10 bits.
TOLERANCES = {torch.float64: (1e-10, 1e-10), torch.float32: (1e-4, 1e-4), torch.float16: (2e-2, 2e-2),
              torch.bfloat16: (6e-2, 6e-2)}


@pytest.fixture(scope="module")
def cuda_kernels():
    from ops import _extension

    module = _extension.load_kernels("cuda")
    assert module is not None, "the CUDA kernels failed to build (set PERCEPTION_OPS_VERBOSE=1)"
    return module


def _run(fn, tensors, grad_out):
    leaves = [t.detach().clone().requires_grad_(True) for t in tensors]
    out = fn(*leaves)
    out.backward(grad_out.to(out.dtype))
    return out.detach().double().cpu(), [t.grad.double().cpu() for t in leaves]


def _compare(out, grads, ref_out, ref_grads, dtype, names):
    rtol, atol = TOLERANCES[dtype]
    scale = max(1.0, ref_out.abs().max().item())
    torch.testing.assert_close(out, ref_out, rtol=rtol, atol=atol * scale)
    for name, g, ref_g in zip(names, grads, ref_grads):
        gscale = max(1.0, ref_g.abs().max().item())
        torch.testing.assert_close(g, ref_g, rtol=rtol, atol=atol * gscale, msg=lambda m, n=name: f"grad {n}: {m}")


@pytest.mark.parametrize("dtype", list(TOLERANCES), ids=str)
@pytest.mark.parametrize("case", DCNV3_CASES, ids=list(DCNV3_CASES))
def test_dcnv3_cuda_matches_reference(cuda_kernels, case, dtype):
    input, offset, mask, args = dcnv3_case(**DCNV3_CASES[case], seed=7)
    grad_out = torch.randn(ops.dcnv3(input, offset, mask, *args, backend="reference").shape, dtype=torch.float64)
    # Truth: float64 reference on inputs rounded to the tested dtype.
    rounded = [t.to(dtype).double() for t in (input, offset, mask)]
    ref_out, ref_grads = _run(lambda a, b, c: ops.dcnv3(a, b, c, *args, backend="reference"), rounded, grad_out)
    cuda_inputs = [t.to(dtype).cuda() for t in (input, offset, mask)]
    out, grads = _run(lambda a, b, c: ops.dcnv3(a, b, c, *args, backend="cuda"), cuda_inputs, grad_out.cuda())
    _compare(out, grads, ref_out, ref_grads, dtype, ("input", "offset", "mask"))


@pytest.mark.parametrize("dtype", list(TOLERANCES), ids=str)
@pytest.mark.parametrize("case", ["base", "remove_center", "gc12_three_chunks", "stride2_gc32"])
def test_dcnv3_cuda_fused_mask_softmax(cuda_kernels, case, dtype):
    # Truth: torch.softmax over each group's points, then the float64 reference, with autograd.
    input, offset, _, args = dcnv3_case(**DCNV3_CASES[case], seed=13)
    logits = torch.randn(*offset.shape[:-1], offset.shape[-1] // 2, dtype=torch.float64) * 3
    group = args[8]
    rounded = [t.to(dtype).double() for t in (input, offset, logits)]
    grad_out = torch.randn(*input.shape[:1], *offset.shape[1:3], input.shape[-1], dtype=torch.float64)
    ref = _run(lambda a, b, c: ops.dcnv3(a, b, c.unflatten(-1, (group, -1)).softmax(-1).flatten(-2), *args,
                                         backend="reference"), rounded, grad_out)
    out = _run(lambda a, b, c: ops.dcnv3(a, b, c, *args, backend="cuda", mask_softmax=True),
               [t.to(dtype).cuda() for t in (input, offset, logits)], grad_out.cuda())
    _compare(*out, *ref, dtype, ("input", "offset", "logits"))


@pytest.mark.parametrize("dtype", list(TOLERANCES), ids=str)
@pytest.mark.parametrize("case", MSDA_CASES, ids=list(MSDA_CASES))
def test_msda_cuda_matches_reference(cuda_kernels, case, dtype):
    value, shapes, starts, loc, weights = msda_case(**MSDA_CASES[case], seed=7)
    grad_out = torch.randn(value.shape[0], loc.shape[1], value.shape[2] * value.shape[3], dtype=torch.float64)
    rounded = [t.to(dtype).double() for t in (value, loc, weights)]
    ref_out, ref_grads = _run(lambda v, l, w: ops.ms_deform_attn(v, shapes, starts, l, w, backend="reference"),
                              rounded, grad_out)
    cs, cst = shapes.cuda(), starts.cuda()
    cuda_inputs = [t.to(dtype).cuda() for t in (value, loc, weights)]
    out, grads = _run(lambda v, l, w: ops.ms_deform_attn(v, cs, cst, l, w, backend="cuda"), cuda_inputs,
                      grad_out.cuda())
    _compare(out, grads, ref_out, ref_grads, dtype, ("value", "sampling_locations", "attention_weights"))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize("group_channels", [1, 3, 8, 12, 16, 24, 32, 64, 71, 256])
def test_dcnv3_cuda_reduction_paths(cuda_kernels, group_channels, dtype):
    # A thread owns a 16-byte chunk of channels when the group allows it; the chunks of a group sum
    # their offset and mask gradients with shuffles when their count is a power of two <= 32
    # (e.g. 16 fp32 channels = 4 lanes), with atomics otherwise (12 fp32 = 3 lanes, 256 fp32 = 64).
    input, offset, mask, args = dcnv3_case(n=2, h=6, w=7, group=2, group_channels=group_channels, seed=8)
    grad_out = torch.randn(2, 6, 7, 2 * group_channels, dtype=torch.float64)
    rounded = [t.to(dtype).double() for t in (input, offset, mask)]
    ref = _run(lambda a, b, c: ops.dcnv3(a, b, c, *args, backend="reference"), rounded, grad_out)
    out = _run(lambda a, b, c: ops.dcnv3(a, b, c, *args, backend="cuda"),
               [t.to(dtype).cuda() for t in (input, offset, mask)], grad_out.cuda())
    _compare(*out, *ref, dtype, ("input", "offset", "mask"))


def _misaligned(t: torch.Tensor) -> torch.Tensor:
    """A contiguous copy of t whose data starts one element past a 16-byte boundary."""
    flat = torch.empty(t.numel() + 1, dtype=t.dtype, device=t.device)[1:]
    return flat.view(t.shape).copy_(t)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=str)
def test_cuda_kernels_accept_misaligned_views(cuda_kernels, dtype):
    # Vector loads need 16-byte alignment; a view with a storage offset must fall back to narrower
    # chunks rather than fault or read the wrong channels.
    input, offset, mask, args = dcnv3_case(n=1, h=5, w=6, group=2, group_channels=16, seed=10)
    grad_out = torch.randn(1, 5, 6, 32, dtype=torch.float64)
    rounded = [t.to(dtype).double() for t in (input, offset, mask)]
    ref = _run(lambda a, b, c: ops.dcnv3(a, b, c, *args, backend="reference"), rounded, grad_out)
    tensors = [_misaligned(t.to(dtype).cuda()) for t in (input, offset, mask)]
    assert tensors[0].data_ptr() % 16 != 0
    out = _run(lambda a, b, c: ops.dcnv3(a, b, c, *args, backend="cuda"), tensors,
               _misaligned(grad_out.to(dtype).cuda()))
    _compare(*out, *ref, dtype, ("input", "offset", "mask"))

    value, shapes, starts, loc, weights = msda_case(**MSDA_CASES["dim32"], seed=10)
    grad_out = torch.randn(value.shape[0], loc.shape[1], value.shape[2] * value.shape[3], dtype=torch.float64)
    rounded = [t.to(dtype).double() for t in (value, loc, weights)]
    ref = _run(lambda v, l, w: ops.ms_deform_attn(v, shapes, starts, l, w, backend="reference"), rounded, grad_out)
    cs, cst = shapes.cuda(), starts.cuda()
    tensors = [_misaligned(t.to(dtype).cuda()) for t in (value, loc, weights)]
    out = _run(lambda v, l, w: ops.ms_deform_attn(v, cs, cst, l, w, backend="cuda"), tensors,
               _misaligned(grad_out.to(dtype).cuda()))
    _compare(*out, *ref, dtype, ("value", "sampling_locations", "attention_weights"))


def test_cuda_gradcheck(cuda_kernels):
    input, offset, mask, args = dcnv3_case(n=1, h=4, w=5, group=2, group_channels=3, offset_range=1.5, seed=9,
                                           device="cuda")
    leaves = [t.requires_grad_(True) for t in (input, offset, mask)]
    assert torch.autograd.gradcheck(lambda a, b, c: ops.dcnv3(a, b, c, *args, backend="cuda"), leaves,
                                    eps=1e-6, atol=1e-6)


def test_cuda_bad_offsets_and_large_batch(cuda_kernels):
    input, offset, mask, args = dcnv3_case(n=300, h=3, w=3, group=1, group_channels=4, device="cuda")
    offset[0, 0, 0, :2] = float("nan")
    offset[1, 0, 0, :2] = 1e30
    out = ops.dcnv3(input, offset, mask, *args, backend="cuda")
    assert torch.isfinite(out).all()
    expected = ops.dcnv3(input.cpu(), offset.cpu(), mask.cpu(), *args, backend="reference")
    torch.testing.assert_close(out.cpu(), expected)


def test_cuda_autocast_and_compile(cuda_kernels):
    torch.manual_seed(0)
    layer = ops.DCNv3(channels=64, group=4).cuda()
    torch.nn.init.normal_(layer.offset.weight, std=0.3)
    x = torch.randn(2, 16, 16, 64, device="cuda")
    expected = layer(x)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        out = layer(x)
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), expected, rtol=0.05, atol=0.05)
    compiled = torch.compile(layer, fullgraph=True)
    torch.testing.assert_close(compiled(x), expected, rtol=1e-4, atol=1e-4)
