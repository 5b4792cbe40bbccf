"""The benchmark tools' ``--profile``: kernel names grouped into categories, per-step sums."""

from __future__ import annotations

import pytest

from tests.tool_loader import import_helper, load_tool


@pytest.fixture(scope="module")
def profiler():
    # The tools import their helpers (_timing, _profile) by plain name from tools/.
    return import_helper("_profile")


@pytest.mark.parametrize("name, category", [
    ("void dcnv3_backward_kernel<float, float, 4, 8>(float const*, ...)", "dcnv3 backward"),
    ("void dcnv3_mask_softmax_backward_kernel<c10::Half, float>(...)", "dcnv3 backward"),
    ("void dcnv3_forward_kernel<c10::Half, float, 8, 4>(...)", "dcnv3 forward"),
    ("perception_ops::dcnv3", "dcnv3 forward"),
    ("void msda_backward_kernel<float, float, 4>(...)", "deformable attention"),
    ("sm90_xmma_gemm_f16f16_f16f32_f32_tn_n_tilesize128x128x64_warpgroupsize1x1x1_execute_segment_k_off",
     "matmul"),
    ("sm90_xmma_fprop_implicit_gemm_indexed_f16f16_f16f32_f32_nhwckrsc_nhwc", "convolution"),
    ("void at::native::(anonymous namespace)::vectorized_layer_norm_kernel<c10::Half, float>(...)", "layer norm"),
    ("void at::native::(anonymous namespace)::GammaBetaBackwardCUDAKernelTemplate<float, float>(...)",
     "layer norm"),
    ("void at::native::vectorized_elementwise_kernel<4, at::native::GeluCUDAKernelImpl(...)", "elementwise"),
    ("void at::native::vectorized_elementwise_kernel<4, at::native::bfloat16_copy_kernel_cuda(...)",
     "copy and cast"),
    ("void at::native::(anonymous namespace)::multi_tensor_apply_kernel<FusedAdamMathFunctor<float, 4>>",
     "optimizer"),
    ("void at::native::reduce_kernel<512, 1, at::native::ReduceOp<float, ...>>", "reduction"),
    ("aten::addmm", "matmul"),
    ("triton_per_fused_native_layer_norm_0", "layer norm"),
    ("triton_poi_fused_add_gelu_mul_3", "inductor fused"),
    ("aten::_scaled_dot_product_flash_attention_for_cpu_backward", "attention"),
    ("void pytorch_flash::flash_fwd_kernel<Flash_fwd_kernel_traits<64, 128>>(...)", "attention"),
    ("void at::native::index_elementwise_kernel<128, 4, ...>(...)", "indexing"),
    ("aten::lerp_", "optimizer"),
    ("void at::native::batch_norm_collect_statistics_kernel<float, float, float>(...)", "batch norm"),
    ("some_unknown_kernel", "other"),
])
def test_kernel_names_fall_into_their_category(profiler, name, category):
    assert profiler.categorize(name) == category


def test_summary_is_per_step_and_ranked(profiler):
    events = [("dcnv3_forward_kernel", 3000.0, 4), ("sm90_xmma_gemm_x", 9000.0, 20), ("layer_norm_kernel", 1000.0, 2)]
    result = profiler.summarize(events, wall_ms=40.0, steps=2, top=2)
    # 13,000 µs over 2 steps = 6.5 ms busy per step; 26 launches / 2 = 13.
    assert result.wall_ms == pytest.approx(20.0)
    assert result.busy_ms == pytest.approx(6.5)
    assert result.launches == pytest.approx(13.0)
    assert result.category_ms == pytest.approx({"matmul": 4.5, "dcnv3 forward": 1.5, "layer norm": 0.5})
    assert list(result.category_ms) == ["matmul", "dcnv3 forward", "layer norm"]
    assert [name for name, _, _ in result.top] == ["sm90_xmma_gemm_x", "dcnv3_forward_kernel"]
    assert result.top[0][1:] == pytest.approx((4.5, 10.0))


def test_backbone_benchmark_prints_the_profile_on_cpu(capsys):
    tool = load_tool("benchmark_backbone")
    assert tool.main(["--device", "cpu", "--model", "internimage_t", "--mode", "train", "--batch", "2",
                      "--size", "32", "--iters", "1", "--warmup", "1", "--profile", "1"]) == 0
    out = capsys.readouterr().out
    assert "profile: wall" in out
    # A training step runs both DCNv3 kernels, and the ATen matmuls of the linear layers.
    for category in ("dcnv3 forward", "dcnv3 backward", "matmul"):
        assert f"    {category} " in out
