// Multi-scale deformable attention on CUDA. One thread per chunk of VEC channels of one
// (query, head), VEC chosen per direction from the dtype (cuda_utils.cuh); the
// `lanes` = dim / VEC threads of a head are neighbours in a warp, so their corner loads coalesce
// and their location and weight loads are one broadcast. The per-chunk arithmetic is chunks.h,
// shared with the CPU kernels. Backward scatters grad_value with (vector) float atomics into an
// fp32 buffer for half types and sums the lanes' location and weight gradients with shuffles
// (atomics when lanes is not a power of 2).
#include "cuda_utils.cuh"
#include "kernels.h"

namespace perception_ops {
namespace {

struct LevelTables {
  const int64_t* shapes;
  const int64_t* starts;
};

template <typename scalar_t, typename acc_t, int VEC>
__global__ void __launch_bounds__(kThreads)
    msda_forward_kernel(const scalar_t* __restrict__ value, LevelTables levels, const scalar_t* __restrict__ loc,
                        const scalar_t* __restrict__ attn, scalar_t* __restrict__ out, MSDAShape sh, int64_t total,
                        int lanes) {
  for (int64_t idx = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; idx < total;
       idx += int64_t(gridDim.x) * blockDim.x) {
    const ChunkThread t(idx, sh.heads, lanes);  // row = (batch, query), group = head
    const int64_t c0 = int64_t(t.lane) * VEC;
    acc_t acc[VEC];
    msda_forward_chunk<scalar_t, acc_t, VEC>(sh, value, levels.shapes, levels.starts, loc, attn, t.row, t.group, c0,
                                             acc);
    store_chunk<scalar_t, acc_t, VEC>(out + (t.row * sh.heads + t.group) * sh.dim + c0, acc);
  }
}

template <typename scalar_t, typename acc_t, int VEC>
__global__ void __launch_bounds__(kThreads)
    msda_backward_kernel(const scalar_t* __restrict__ value, LevelTables levels, const scalar_t* __restrict__ loc,
                         const scalar_t* __restrict__ attn, const scalar_t* __restrict__ grad_out,
                         acc_t* __restrict__ grad_value, acc_t* __restrict__ grad_loc, acc_t* __restrict__ grad_attn,
                         MSDAShape sh, int64_t total, int lanes, bool shuffle) {
  const AtomicScatter<acc_t> scatter{grad_value};
  // Lockstep loop, as in the DCNv3 backward: every lane reaches the shuffles in LaneCommit.
  for (int64_t base = blockIdx.x * int64_t(blockDim.x); base < total; base += int64_t(gridDim.x) * blockDim.x) {
    const int64_t idx = base + threadIdx.x;
    const bool active = idx < total;
    const ChunkThread t(active ? idx : 0, sh.heads, lanes);
    const int64_t c0 = int64_t(t.lane) * VEC;
    acc_t grad[VEC];
    load_chunk<scalar_t, acc_t, VEC>(grad_out + (t.row * sh.heads + t.group) * sh.dim + c0, grad);
    const LaneCommit<acc_t> commit{grad_attn, grad_loc, lanes, t.lane, shuffle, active};
    msda_backward_chunk<scalar_t, acc_t, VEC>(sh, value, levels.shapes, levels.starts, loc, attn, grad, t.row, t.group,
                                              c0, active, scatter, commit);
  }
}

MSDAShape msda_shape(const torch::Tensor& value, const torch::Tensor& loc) {
  return {value.size(0), value.size(1), value.size(2), value.size(3), loc.size(1), loc.size(3), loc.size(4)};
}

LevelTables level_tables(const torch::Tensor& spatial_shapes, const torch::Tensor& level_start_index) {
  return {spatial_shapes.const_data_ptr<int64_t>(), level_start_index.const_data_ptr<int64_t>()};
}

}  // namespace

torch::Tensor ms_deform_attn_forward_cuda(const torch::Tensor& value, const torch::Tensor& spatial_shapes,
                                          const torch::Tensor& level_start_index,
                                          const torch::Tensor& sampling_locations,
                                          const torch::Tensor& attention_weights) {
  const c10::cuda::CUDAGuard guard(value.device());
  const auto sh = msda_shape(value, sampling_locations);
  auto out = torch::empty({sh.batch, sh.queries, sh.heads * sh.dim}, value.options());
  if (out.numel() == 0) return out;
  auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, value.scalar_type(), "ms_deform_attn_forward_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    constexpr int kMaxVec = forward_chunk_width<scalar_t>();
    const int cap = aligned_chunk_cap<scalar_t>(kMaxVec, {value.const_data_ptr(), out.const_data_ptr()});
    dispatch_chunk_width<kMaxVec>(sh.dim, cap, [&](auto vec) {
      constexpr int VEC = decltype(vec)::value;
      const int lanes = int(sh.dim / VEC);
      const int64_t total = sh.batch * sh.queries * sh.heads * lanes;
      msda_forward_kernel<scalar_t, acc_t, VEC><<<grid_blocks(total), kThreads, 0, stream>>>(
          value.const_data_ptr<scalar_t>(), level_tables(spatial_shapes, level_start_index),
          sampling_locations.const_data_ptr<scalar_t>(), attention_weights.const_data_ptr<scalar_t>(),
          out.mutable_data_ptr<scalar_t>(), sh, total, lanes);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  });
  return out;
}

std::tuple<torch::Tensor, torch::Tensor, torch::Tensor> ms_deform_attn_backward_cuda(
    const torch::Tensor& value, const torch::Tensor& spatial_shapes, const torch::Tensor& level_start_index,
    const torch::Tensor& sampling_locations, const torch::Tensor& attention_weights,
    const torch::Tensor& grad_output) {
  const c10::cuda::CUDAGuard guard(value.device());
  const auto sh = msda_shape(value, sampling_locations);
  const auto acc_type = value.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  auto grad_value = torch::zeros(value.sizes(), value.options().dtype(acc_type));
  auto grad_loc = torch::zeros(sampling_locations.sizes(), value.options().dtype(acc_type));
  auto grad_attn = torch::zeros(attention_weights.sizes(), value.options().dtype(acc_type));
  if (grad_output.numel() > 0) {
    auto stream = c10::cuda::getCurrentCUDAStream();
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, value.scalar_type(), "ms_deform_attn_backward_cuda",
                                    [&] {
      using acc_t = at::opmath_type<scalar_t>;
      constexpr int kMaxVec = backward_chunk_width<acc_t>();
      const int cap = aligned_chunk_cap<scalar_t>(kMaxVec, {value.const_data_ptr(), grad_output.const_data_ptr()});
      dispatch_chunk_width<kMaxVec>(sh.dim, cap, [&](auto vec) {
        constexpr int VEC = decltype(vec)::value;
        const int lanes = int(sh.dim / VEC);
        const int64_t total = sh.batch * sh.queries * sh.heads * lanes;
        msda_backward_kernel<scalar_t, acc_t, VEC><<<grid_blocks(total), kThreads, 0, stream>>>(
            value.const_data_ptr<scalar_t>(), level_tables(spatial_shapes, level_start_index),
            sampling_locations.const_data_ptr<scalar_t>(), attention_weights.const_data_ptr<scalar_t>(),
            grad_output.const_data_ptr<scalar_t>(), grad_value.mutable_data_ptr<acc_t>(),
            grad_loc.mutable_data_ptr<acc_t>(), grad_attn.mutable_data_ptr<acc_t>(), sh, total, lanes,
            lanes_fit_warp(lanes));
        C10_CUDA_KERNEL_LAUNCH_CHECK();
      });
    });
  }
  const auto dtype = value.scalar_type();
  return {grad_value.to(dtype), grad_loc.to(dtype), grad_attn.to(dtype)};
}

}  // namespace perception_ops
