"""Eager calls reach the kernels through a plain autograd.Function; traced calls through the
registered custom op. Both must give the same values and gradients, and each must be taken when
it should be."""

from __future__ import annotations

import pytest
import torch
from torch.profiler import profile

import ops
from ops.backend import calls_kernels_directly
from tests.ops.cases import dcnv3_case, msda_case


def _grads_of(fn, tensors):
    leaves = [t.detach().clone().requires_grad_(True) for t in tensors]
    out = fn(*leaves)
    out.backward(torch.linspace(-1, 1, out.numel(), dtype=out.dtype, device=out.device).view_as(out))
    return out.detach(), [t.grad for t in leaves]


def _recorded_ops(fn) -> set[str]:
    with profile() as prof:
        fn()
    return {e.key for e in prof.key_averages() if e.key.startswith("perception_ops::")}


@pytest.mark.parametrize("mask_softmax", [False, True])
def test_dcnv3_eager_path_matches_the_registered_op_bitwise(cpu_kernels, mask_softmax):
    input, offset, mask, args = dcnv3_case(n=2, h=5, w=6, group=2, group_channels=4, seed=3)
    direct = _grads_of(lambda i, o, m: ops.dcnv3(i, o, m, *args, mask_softmax=mask_softmax), (input, offset, mask))
    registered = _grads_of(lambda i, o, m: torch.ops.perception_ops.dcnv3(i, o, m, *args, mask_softmax),
                           (input, offset, mask))
    # The same kernels run on both paths, so the results are identical, not merely close.
    assert torch.equal(direct[0], registered[0])
    for a, b in zip(direct[1], registered[1]):
        assert torch.equal(a, b)


def test_msda_eager_path_matches_the_registered_op_bitwise(cpu_kernels):
    value, shapes, starts, loc, weights = msda_case(seed=3)
    direct = _grads_of(lambda v, lo, w: ops.ms_deform_attn(v, shapes, starts, lo, w), (value, loc, weights))
    registered = _grads_of(lambda v, lo, w: torch.ops.perception_ops.ms_deform_attn(v, shapes, starts, lo, w),
                           (value, loc, weights))
    assert torch.equal(direct[0], registered[0])
    for a, b in zip(direct[1], registered[1]):
        assert torch.equal(a, b)


def test_eager_calls_skip_the_dispatcher(cpu_kernels):
    input, offset, mask, args = dcnv3_case(n=1, h=4, w=4, group=2, group_channels=4)
    input.requires_grad_(True)
    seen = _recorded_ops(lambda: ops.dcnv3(input, offset, mask, *args, backend="cpu").sum().backward())
    # The kernels record themselves (so profiles still show them); the dispatcher's op does not run.
    assert seen == {"perception_ops::dcnv3_forward", "perception_ops::dcnv3_backward"}
    seen = _recorded_ops(lambda: torch.ops.perception_ops.dcnv3(input, offset, mask, *args).sum().backward())
    assert "perception_ops::dcnv3" in seen


def test_traced_and_fake_calls_take_the_registered_op(cpu_kernels):
    from torch._subclasses.fake_tensor import FakeTensorMode

    plain = torch.zeros(2)
    assert calls_kernels_directly(plain, torch.nn.Parameter(plain))
    assert not calls_kernels_directly(torch.zeros(2, device="meta"))
    with FakeTensorMode() as mode:
        assert not calls_kernels_directly(mode.from_tensor(plain))
    # Under functorch transforms (vmap, grad) the direct path would hand wrapped tensors to C++.
    assert torch.func.vmap(lambda x: torch.tensor(calls_kernels_directly(x)))(torch.zeros(3, 2)).tolist() == [
        False] * 3

    traced = []

    @torch.compile(fullgraph=True, backend="eager")
    def compiled(x):
        traced.append(calls_kernels_directly(x))
        return x + 1

    compiled(plain)
    assert traced == [False]


@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::torch.jit.TracerWarning")
def test_jit_trace_records_the_registered_op(cpu_kernels):
    # A direct call would be invisible to the tracer, leaving a graph without the op.
    input, offset, mask, args = dcnv3_case(n=1, h=4, w=4, group=2, group_channels=4)
    traced = torch.jit.trace(lambda i, o, m: ops.dcnv3(i, o, m, *args), (input, offset, mask))
    assert "perception_ops::dcnv3" in str(traced.graph)
    shifted = offset + 0.5
    torch.testing.assert_close(traced(input, shifted, mask), ops.dcnv3(input, shifted, mask, *args))


def test_double_backward_is_refused_clearly(cpu_kernels):
    input, offset, mask, args = dcnv3_case(n=1, h=4, w=4, group=2, group_channels=4)
    input.requires_grad_(True)
    (grad,) = torch.autograd.grad(ops.dcnv3(input, offset, mask, *args).square().sum(), input, create_graph=True)
    with pytest.raises(RuntimeError, match="twice|once_differentiable|double"):
        grad.sum().backward()


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_cuda_eager_path_matches_the_registered_op(dtype):
    # The CUDA backward scatters with atomics, whose order varies, so the paths agree closely
    # rather than bitwise; the forward has no atomics and is compared exactly.
    tolerance = dict(rtol=1e-2, atol=1e-2) if dtype == torch.bfloat16 else dict(rtol=1e-5, atol=1e-5)
    input, offset, mask, args = dcnv3_case(n=2, h=9, w=7, group=2, group_channels=16, seed=4, device="cuda")
    input, offset, mask = (t.to(dtype) for t in (input, offset, mask))
    direct = _grads_of(lambda i, o, m: ops.dcnv3(i, o, m, *args, mask_softmax=True), (input, offset, mask))
    assert ops.select_backend(None, input.device) == "cuda"
    registered = _grads_of(lambda i, o, m: torch.ops.perception_ops.dcnv3(i, o, m, *args, True),
                           (input, offset, mask))
    assert torch.equal(direct[0], registered[0])
    for a, b in zip(direct[1], registered[1]):
        torch.testing.assert_close(a, b, **tolerance)
    value, shapes, starts, loc, weights = (t.to(dtype) if t.is_floating_point() else t
                                           for t in msda_case(seed=4, device="cuda"))
    direct = _grads_of(lambda v, lo, w: ops.ms_deform_attn(v, shapes, starts, lo, w), (value, loc, weights))
    registered = _grads_of(lambda v, lo, w: torch.ops.perception_ops.ms_deform_attn(v, shapes, starts, lo, w),
                           (value, loc, weights))
    assert torch.equal(direct[0], registered[0])
    for a, b in zip(direct[1], registered[1]):
        torch.testing.assert_close(a, b, **tolerance)


def test_dcnv3_without_gradients_calls_the_kernel_without_the_function(cpu_kernels, monkeypatch):
    input, offset, mask, args = dcnv3_case(n=1, h=4, w=5, group=2, group_channels=4, seed=4)
    expected = ops.dcnv3(input.requires_grad_(True), offset, mask, *args, mask_softmax=True).detach()
    input.requires_grad_(False)

    def refuse(*a, **k):
        raise AssertionError("the autograd Function ran although nothing needs gradients")

    monkeypatch.setattr(ops.deform_conv._DCNv3Direct, "apply", refuse)
    with torch.inference_mode():
        assert torch.equal(ops.dcnv3(input, offset, mask, *args, mask_softmax=True), expected)
    with torch.no_grad():
        assert torch.equal(ops.dcnv3(input, offset, mask, *args, mask_softmax=True), expected)
    assert torch.equal(ops.dcnv3(input, offset, mask, *args, mask_softmax=True), expected)  # no input needs grad
