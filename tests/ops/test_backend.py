"""Backend selection, the environment override, build-failure fallback and autocast."""

from __future__ import annotations

import types

import pytest
import torch

import ops
from ops import _extension
from tests.ops.cases import dcnv3_case


def _exploding_kernels():
    def explode(*args, **kwargs):
        raise AssertionError("the compiled kernel must not be called")
    return types.SimpleNamespace(dcnv3_forward=explode, ms_deform_attn_forward=explode)


def test_environment_variable_forces_reference(monkeypatch):
    monkeypatch.setitem(_extension.loaded_kernels, "cpu", _exploding_kernels())
    monkeypatch.setenv(ops.BACKEND_ENV, "reference")
    input, offset, mask, args = dcnv3_case()
    ops.dcnv3(input, offset, mask, *args)  # would raise if the kernel were used
    monkeypatch.setenv(ops.BACKEND_ENV, "auto")
    with pytest.raises(AssertionError, match="must not be called"):
        ops.dcnv3(input, offset, mask, *args)


def test_argument_wins_over_environment(cpu_kernels, monkeypatch):
    monkeypatch.setenv(ops.BACKEND_ENV, "reference")
    assert ops.select_backend("cpu", torch.device("cpu")) == "cpu"


def test_mismatched_or_unknown_backend_is_a_clear_error(monkeypatch):
    input, offset, mask, args = dcnv3_case()
    with pytest.raises(ValueError, match="asks for the cuda kernel, but the tensors are on cpu"):
        ops.dcnv3(input, offset, mask, *args, backend="cuda")
    with pytest.raises(ValueError, match="must be one of"):
        ops.dcnv3(input, offset, mask, *args, backend="triton")
    monkeypatch.setenv(ops.BACKEND_ENV, "cuda")
    with pytest.raises(ValueError, match=r"\$PERCEPTION_OPS_BACKEND asks for the cuda kernel"):
        ops.dcnv3(input, offset, mask, *args)


@pytest.mark.parametrize(("missing", "failure", "expected"), [
    ("ninja is not installed (pip install ninja)", None, "ninja is not installed"),
    (None, RuntimeError("ninja: build stopped\nfoo.cpp:1:1: error: expected ';'"), "build failed"),
])
def test_build_failure_warns_once_and_falls_back(monkeypatch, missing, failure, expected):
    monkeypatch.setattr(_extension, "loaded_kernels", {})
    monkeypatch.setattr(_extension, "_missing_for", lambda kind: missing)

    def failing_build(kind):
        raise failure
    monkeypatch.setattr(_extension, "_build", failing_build)
    input, offset, mask, args = dcnv3_case()
    with pytest.warns(_extension.KernelBuildWarning, match=expected) as record:
        out = ops.dcnv3(input, offset, mask, *args)
    assert len(record) == 1 and "reference path" in str(record[0].message)
    torch.testing.assert_close(out, ops.dcnv3(input, offset, mask, *args, backend="reference"))
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ops.dcnv3(input, offset, mask, *args)  # no second warning


def test_build_directory_is_keyed_by_torch_and_python(monkeypatch, tmp_path):
    monkeypatch.setenv(_extension.CACHE_ENV, str(tmp_path))
    path = _extension.build_directory("cpu")
    assert path.parent == tmp_path
    assert f"torch{torch.__version__}" in path.name and "py3" in path.name


@pytest.mark.parametrize("backend", ["reference", "cpu"])
def test_autocast_bfloat16_on_cpu(cpu_kernels, backend):
    torch.manual_seed(0)
    layer = ops.DCNv3(channels=32, group=2, backend=backend)
    torch.nn.init.normal_(layer.offset.weight, std=0.3)
    x = torch.randn(2, 6, 6, 32)
    expected = layer(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = layer(x)
    # Under autocast the op computes in the dtype of its value tensor (bf16 from the Linear), with
    # offsets and mask cast to it; the result matches fp32 within bf16 precision.
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), expected, rtol=0.05, atol=0.05)
    out.float().sum().backward()
    assert layer.offset.weight.grad.dtype == torch.float32 and torch.isfinite(layer.offset.weight.grad).all()


def test_half_inputs_on_cpu_kernel_compute_in_float32(cpu_kernels):
    input, offset, mask, args = dcnv3_case(dtype=torch.float32)
    out = ops.dcnv3(input.bfloat16(), offset.bfloat16(), mask.bfloat16(), *args, backend="cpu")
    assert out.dtype == torch.bfloat16
    expected = ops.dcnv3(input.bfloat16().float(), offset.bfloat16().float(), mask.bfloat16().float(), *args,
                         backend="reference")
    torch.testing.assert_close(out.float(), expected, rtol=0.02, atol=0.02)


def test_meta_tensors_use_the_fake_kernels(monkeypatch):
    # Shape inference on the meta device must not run the reference (slow) or need a kernel build.
    monkeypatch.setattr(ops.deform_conv, "dcnv3_reference", None)
    monkeypatch.setattr(ops.deform_attn, "ms_deform_attn_reference", None)
    x = torch.empty(2, 8, 8, 64, device="meta")
    out = ops.dcnv3(x, torch.empty(2, 8, 8, 72, device="meta"), torch.empty(2, 8, 8, 36, device="meta"),
                    3, 3, 1, 1, 1, 1, 1, 1, 4, 16, 1.0, False)
    assert out.shape == (2, 8, 8, 64) and out.device.type == "meta"
    value = torch.empty(2, 60, 2, 8, device="meta")
    shapes = torch.empty(2, 2, dtype=torch.long, device="meta")
    starts = torch.empty(2, dtype=torch.long, device="meta")
    out = ops.ms_deform_attn(value, shapes, starts, torch.empty(2, 5, 2, 2, 3, 2, device="meta"),
                             torch.empty(2, 5, 2, 2, 3, device="meta"))
    assert out.shape == (2, 5, 16)
