"""Bad input gets a clear error naming the argument; awkward-but-valid input works."""

from __future__ import annotations

import re

import pytest
import torch

import ops
from tests.ops.cases import dcnv3_case, msda_case

BACKENDS = ["reference", "cpu"]


@pytest.mark.parametrize(("mutate", "error", "message"), [
    (lambda i, o, m: (i[0], o, m), ValueError, "input must be 4-D"),
    (lambda i, o, m: (i, o[..., :-2], m), ValueError, "offset must have shape"),
    (lambda i, o, m: (i, o, m[:, :-1]), ValueError, "mask must have shape"),
    (lambda i, o, m: (i[..., :-1], o, m), ValueError, "group\\*group_channels"),
    (lambda i, o, m: (i.long(), o, m), TypeError, "input must be a floating-point"),
    (lambda i, o, m: (i, o.float(), m), TypeError, "offset has dtype torch.float32"),
    (lambda i, o, m: (i, o, m.tolist()), TypeError, "mask must be a torch.Tensor"),
])
def test_dcnv3_rejects_bad_tensors(mutate, error, message):
    input, offset, mask, args = dcnv3_case()
    with pytest.raises(error, match=message):
        ops.dcnv3(*mutate(input, offset, mask), *args)


def test_dcnv3_rejects_bad_geometry():
    input, offset, mask, args = dcnv3_case()
    with pytest.raises(ValueError, match="stride_h must be an integer >= 1"):
        ops.dcnv3(input, offset, mask, 3, 3, 0, 1, 1, 1, 1, 1, 4, 16, 1.0, False)
    with pytest.raises(ValueError, match="remove_center needs an odd kernel"):
        ops.dcnv3(input, offset, mask, 2, 2, 1, 1, 1, 1, 1, 1, 4, 16, 1.0, True)
    small = torch.zeros(1, 1, 1, 64, dtype=torch.float64)
    with pytest.raises(ValueError, match="too small"):
        ops.dcnv3(small, offset[:1, :1, :1], mask[:1, :1, :1], 3, 3, 1, 1, 0, 0, 1, 1, 4, 16, 1.0, False)
    # An empty map with enough padding would still have output pixels; the kernels read pixel 0
    # of the map unconditionally, so it must be refused before them.
    empty = torch.zeros(1, 0, 5, 64, dtype=torch.float64)
    with pytest.raises(ValueError, match="empty 0x5 map"):
        ops.dcnv3(empty, offset[:1, :1, :3], mask[:1, :1, :3], 3, 3, 1, 1, 1, 1, 1, 1, 4, 16, 1.0, False)
    with pytest.raises(ValueError, match="channels \\(30\\) must be divisible by group \\(4\\)"):
        ops.DCNv3(channels=30, group=4)


@pytest.mark.parametrize(("mutate", "error", "message"), [
    (lambda v, s, i, l, w: (v[0], s, i, l, w), ValueError, "value must be 4-D"),
    (lambda v, s, i, l, w: (v, s.float(), i, l, w), TypeError, "spatial_shapes must be an integer"),
    (lambda v, s, i, l, w: (v, s[:1], i, l, w), ValueError, "spatial_shapes must have shape"),
    (lambda v, s, i, l, w: (v, s, i, l[..., :1], w), ValueError, "sampling_locations must have shape"),
    (lambda v, s, i, l, w: (v, s, i, l, w[:, :, :1]), ValueError, "attention_weights must have shape"),
    (lambda v, s, i, l, w: (v, s, i + torch.tensor([0, 50]), l, w), ValueError,
     re.escape("expected [0, 48], given [0, 98]")),
    (lambda v, s, i, l, w: (v, s * torch.tensor([[1, 1], [1, 0]]), i, l, w), ValueError, "level 1 a size of 3x0"),
])
def test_ms_deform_attn_rejects_bad_tensors(mutate, error, message):
    with pytest.raises(error, match=message):
        ops.ms_deform_attn(*mutate(*msda_case()))


def _msda_on_levels(shapes, starts, keys):
    """A one-batch, one-head call on ``keys`` value rows with the given level table."""
    value = torch.randn(1, keys, 1, 4)
    levels = len(shapes)
    return (value, torch.tensor(shapes), torch.tensor(starts), torch.rand(1, 3, 1, levels, 2, 2),
            torch.rand(1, 3, 1, levels, 2))


@pytest.mark.parametrize("backend", BACKENDS)
def test_ms_deform_attn_refuses_starts_that_do_not_follow_the_shapes(cpu_kernels, backend):
    # Levels 8x8 and 4x4 fill 64 + 16 = 80 rows: level 1 starts at 64. A start of 60 fits in value,
    # so only the table check can tell that level 1 would read 4 rows of level 0.
    message = re.escape("ms_deform_attn: level_start_index must be the exclusive cumulative sum of H*W of "
                        "spatial_shapes [[8, 8], [4, 4]]: expected [0, 64], given [0, 60]")
    with pytest.raises(ValueError, match=message):
        ops.ms_deform_attn(*_msda_on_levels([[8, 8], [4, 4]], [0, 60], 80), backend=backend)
    with pytest.raises(ValueError, match=re.escape("expected [0, 64], given [4, 68]")):
        ops.ms_deform_attn(*_msda_on_levels([[8, 8], [4, 4]], [4, 68], 84), backend=backend)  # rows before level 0


@pytest.mark.parametrize("backend", BACKENDS)
def test_ms_deform_attn_accepts_the_matching_table(cpu_kernels, backend):
    value, shapes, starts, loc, weights = _msda_on_levels([[8, 8], [4, 4], [1, 3]], [0, 64, 80], 83)
    assert ops.ms_deform_attn(value, shapes, starts, loc, weights, backend=backend).shape == (1, 3, 4)
    int32 = ops.ms_deform_attn(value, shapes.int(), starts.int(), loc, weights, backend=backend)
    assert int32.shape == (1, 3, 4)


@pytest.mark.parametrize(("keys", "rows"), [(79, "79 keys"), (81, "81 keys"), (10, "10 keys")])
def test_ms_deform_attn_refuses_value_with_another_key_count(keys, rows):
    message = re.escape(f"value has {rows} (dim 1) but spatial_shapes [[8, 8], [4, 4]] describe sum(H*W) = 80")
    with pytest.raises(ValueError, match=message):
        ops.ms_deform_attn(*_msda_on_levels([[8, 8], [4, 4]], [0, 64], keys))


def test_level_table_is_read_again_after_an_in_place_edit():
    # The GPU path remembers accepted tables by identity and version (one host sync per new table);
    # the bookkeeping is device-independent, so it is checked here on CPU tensors.
    from ops import _checks

    shapes, starts = torch.tensor([[8, 8], [4, 4]]), torch.tensor([0, 64])
    _checks._remember(shapes, starts, 80)
    assert _checks._accepted(shapes, starts, 80)
    assert not _checks._accepted(shapes, starts, 81)
    assert not _checks._accepted(shapes.clone(), starts, 80)  # same values, another tensor: read it
    starts[1] = 60
    assert not _checks._accepted(shapes, starts, 80)


def test_level_table_is_not_read_while_tracing(monkeypatch):
    # torch.compile and torch.export see fake tensors; a jit trace or an ONNX export must not bake
    # the table in. No eager check may run there (compile and export are tested in test_registration.py).
    from ops import _checks

    shapes, starts = torch.tensor([[8, 8], [4, 4]]), torch.tensor([0, 60])
    monkeypatch.setattr(torch.jit, "is_tracing", lambda: True)
    _checks._check_level_table("op", 80, shapes, starts)
    monkeypatch.undo()
    monkeypatch.setattr(torch.onnx, "is_in_onnx_export", lambda: True)
    _checks._check_level_table("op", 80, shapes, starts)
    monkeypatch.undo()
    with torch._subclasses.fake_tensor.FakeTensorMode() as fake_mode:
        fake_shapes, fake_starts = fake_mode.from_tensor(shapes), fake_mode.from_tensor(starts)
        _checks._check_level_table("op", 80, fake_shapes, fake_starts)
    with pytest.raises(ValueError, match=re.escape("given [0, 60]")):
        _checks._check_level_table("op", 80, shapes, starts)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_ms_deform_attn_on_cuda_checks_each_table_once():
    args = [t.cuda() for t in _msda_on_levels([[8, 8], [4, 4]], [0, 60], 80)]
    with pytest.raises(ValueError, match=re.escape("expected [0, 64], given [0, 60]")):
        ops.ms_deform_attn(*args)
    args[2] = torch.tensor([0, 64], device="cuda")
    ops.ms_deform_attn(*args)  # reads the new table: one sync
    torch.cuda.set_sync_debug_mode("error")
    try:
        ops.ms_deform_attn(*args)  # the same table again: no sync
    finally:
        torch.cuda.set_sync_debug_mode("default")
    args[2][1] = 60  # edited in place: read again
    with pytest.raises(ValueError, match=re.escape("given [0, 60]")):
        ops.ms_deform_attn(*args)


@pytest.mark.parametrize("backend", BACKENDS)
def test_dcnv3_non_contiguous_inputs(cpu_kernels, backend):
    input, offset, mask, args = dcnv3_case(n=2, h=6, w=5, group=2, group_channels=8)
    expected = ops.dcnv3(input, offset, mask, *args, backend="reference")
    # Same values, transposed storage.
    input_t = input.transpose(1, 2).contiguous().transpose(1, 2)
    offset_t = offset.transpose(0, 3).contiguous().transpose(0, 3)
    assert not input_t.is_contiguous() and not offset_t.is_contiguous()
    torch.testing.assert_close(ops.dcnv3(input_t, offset_t, mask, *args, backend=backend), expected)


@pytest.mark.parametrize("backend", BACKENDS)
def test_empty_batch(cpu_kernels, backend):
    input, offset, mask, args = dcnv3_case(n=0)
    for t in (input, offset, mask):
        t.requires_grad_(True)
    out = ops.dcnv3(input, offset, mask, *args, backend=backend)
    assert out.shape == (0, 8, 8, 64)
    out.sum().backward()
    assert input.grad.shape == input.shape
    value, shapes, starts, loc, weights = msda_case(n=0)
    assert ops.ms_deform_attn(value, shapes, starts, loc, weights, backend=backend).shape == (0, 5, 16)


@pytest.mark.parametrize("backend", BACKENDS)
def test_batch_not_multiple_of_256(cpu_kernels, backend):
    # Upstream fails on batches over 256 that are not multiples of 256 (im2col_step).
    input, offset, mask, args = dcnv3_case(n=257, h=3, w=2, group=1, group_channels=2)
    out = ops.dcnv3(input, offset, mask, *args, backend=backend)
    one = ops.dcnv3(input[256:], offset[256:], mask[256:], *args, backend="reference")
    torch.testing.assert_close(out[256:], one)


@pytest.mark.parametrize("backend", BACKENDS)
def test_non_finite_and_huge_offsets_read_nothing(cpu_kernels, backend):
    input, offset, mask, args = dcnv3_case(n=1, h=4, w=4, group=1, group_channels=4)
    offset = offset.clone()
    offset[0, 0, 0, :2] = float("nan")  # point 0 of pixel (0, 0)
    offset[0, 0, 1, :2] = float("inf")
    offset[0, 1, 0, :2] = -float("inf")
    offset[0, 1, 1, :2] = 1e30
    offset[0, 2, 2, :2] = -3e9  # would overflow int32 pixel indices
    leaves = [t.clone().requires_grad_(True) for t in (input, offset, mask)]
    out = ops.dcnv3(*leaves, *args, backend=backend)
    assert torch.isfinite(out).all()
    # The bad point contributes nothing: same result as giving it zero weight.
    mask_zeroed = mask.clone()
    for h, w in ((0, 0), (0, 1), (1, 0), (1, 1), (2, 2)):
        mask_zeroed[0, h, w, 0] = 0
    clean = offset.nan_to_num(0.0, 0.0, 0.0)
    torch.testing.assert_close(out, ops.dcnv3(input, clean, mask_zeroed, *args, backend="reference"))
    out.sum().backward()
    assert all(torch.isfinite(t.grad).all() for t in leaves)


@pytest.mark.parametrize("backend", BACKENDS)
def test_msda_non_finite_locations_read_nothing(cpu_kernels, backend):
    value, shapes, starts, loc, weights = msda_case(n=1)
    loc = loc.clone()
    loc[0, 0, 0, 0, 0] = float("nan")
    loc[0, 1, 0, 0, 0] = 1e20
    out = ops.ms_deform_attn(value, shapes, starts, loc, weights, backend=backend)
    weights_zeroed = weights.clone()
    weights_zeroed[0, 0, 0, 0, 0] = 0
    weights_zeroed[0, 1, 0, 0, 0] = 0
    expected = ops.ms_deform_attn(value, shapes, starts, loc.nan_to_num(0.0), weights_zeroed, backend="reference")
    torch.testing.assert_close(out, expected)
