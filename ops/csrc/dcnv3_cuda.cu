// DCNv3 on CUDA. One thread per chunk of VEC channels of one (output pixel, group), VEC chosen per
// direction from the dtype (cuda_utils.cuh); the `lanes` = group_channels / VEC threads of a
// group are neighbours in a warp, so their corner loads coalesce and their offset and mask loads are
// one broadcast. The per-chunk arithmetic is chunks.h, shared with the CPU kernels.
// Backward scatters grad_input with (vector) float atomics into an fp32 buffer for half types and
// sums the lanes' offset and mask gradients with shuffles (atomics when lanes is not a power of 2).
// With the mask softmax fused, a second small kernel turns the mask gradients into logit gradients.
#include "cuda_utils.cuh"
#include "kernels.h"

namespace perception_ops {
namespace {

template <typename scalar_t, typename acc_t, int VEC>
__global__ void __launch_bounds__(kThreads)
    dcnv3_forward_kernel(const scalar_t* __restrict__ input, const scalar_t* __restrict__ offset,
                         const scalar_t* __restrict__ mask, scalar_t* __restrict__ out, DCNv3Geometry geo,
                         int64_t total, int lanes) {
  for (int64_t idx = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; idx < total;
       idx += int64_t(gridDim.x) * blockDim.x) {
    const ChunkThread t(idx, geo.group, lanes);  // row = (batch, output pixel)
    const int64_t c0 = int64_t(t.lane) * VEC;
    acc_t acc[VEC];
    dcnv3_forward_chunk<scalar_t, acc_t, VEC>(geo, input, offset, mask, t.row, t.group, c0, acc);
    store_chunk<scalar_t, acc_t, VEC>(out + t.row * geo.channels() + t.group * geo.group_channels + c0, acc);
  }
}

template <typename scalar_t, typename acc_t, int VEC>
__global__ void __launch_bounds__(kThreads)
    dcnv3_backward_kernel(const scalar_t* __restrict__ input, const scalar_t* __restrict__ offset,
                          const scalar_t* __restrict__ mask, const scalar_t* __restrict__ grad_out,
                          acc_t* __restrict__ grad_input, acc_t* __restrict__ grad_offset,
                          acc_t* __restrict__ grad_mask, DCNv3Geometry geo, int64_t total, int lanes,
                          bool shuffle) {
  const AtomicScatter<acc_t> scatter{grad_input};
  // Every thread of a block runs the same iterations (the bound depends on `base` only), so all
  // lanes reach the shuffles in LaneCommit together; threads past the end run with active=false.
  for (int64_t base = blockIdx.x * int64_t(blockDim.x); base < total; base += int64_t(gridDim.x) * blockDim.x) {
    const int64_t idx = base + threadIdx.x;
    const bool active = idx < total;
    const ChunkThread t(active ? idx : 0, geo.group, lanes);
    const int64_t c0 = int64_t(t.lane) * VEC;
    acc_t grad[VEC];
    const int64_t at = t.row * geo.channels() + t.group * geo.group_channels + c0;
    load_chunk<scalar_t, acc_t, VEC>(grad_out + at, grad);
    const LaneCommit<acc_t> commit{grad_mask, grad_offset, lanes, t.lane, shuffle, active};
    dcnv3_backward_chunk<scalar_t, acc_t, VEC>(geo, input, offset, mask, grad, t.row, t.group, c0, active, scatter,
                                               commit);
  }
}

// With the softmax fused: turns the committed point-weight gradients of each (pixel, group) row into
// logit gradients, once the main backward kernel has summed every chunk's share.
template <typename scalar_t, typename acc_t>
__global__ void __launch_bounds__(kThreads)
    dcnv3_mask_softmax_backward_kernel(const scalar_t* __restrict__ logits, acc_t* __restrict__ grad_mask,
                                       int64_t rows, int64_t points) {
  for (int64_t row = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; row < rows;
       row += int64_t(gridDim.x) * blockDim.x) {
    mask_softmax_backward<acc_t>(logits + row * points, grad_mask + row * points, points);
  }
}

}  // namespace

torch::Tensor dcnv3_forward_cuda(const torch::Tensor& input, const torch::Tensor& offset,
                                 const torch::Tensor& mask, const DCNv3Geometry& geo) {
  const c10::cuda::CUDAGuard guard(input.device());
  auto out = torch::empty({geo.batch, geo.out_h, geo.out_w, geo.channels()}, input.options());
  if (out.numel() == 0) return out;
  auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, input.scalar_type(), "dcnv3_forward_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    constexpr int kMaxVec = forward_chunk_width<scalar_t>();
    const int cap = aligned_chunk_cap<scalar_t>(kMaxVec, {input.const_data_ptr(), out.const_data_ptr()});
    dispatch_chunk_width<kMaxVec>(geo.group_channels, cap, [&](auto vec) {
      constexpr int VEC = decltype(vec)::value;
      const int lanes = int(geo.group_channels / VEC);
      const int64_t total = geo.batch * geo.out_h * geo.out_w * geo.group * lanes;
      dcnv3_forward_kernel<scalar_t, acc_t, VEC><<<grid_blocks(total), kThreads, 0, stream>>>(
          input.const_data_ptr<scalar_t>(), offset.const_data_ptr<scalar_t>(), mask.const_data_ptr<scalar_t>(),
          out.mutable_data_ptr<scalar_t>(), geo, total, lanes);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  });
  return out;
}

std::tuple<torch::Tensor, torch::Tensor, torch::Tensor> dcnv3_backward_cuda(
    const torch::Tensor& input, const torch::Tensor& offset, const torch::Tensor& mask,
    const torch::Tensor& grad_output, const DCNv3Geometry& geo) {
  const c10::cuda::CUDAGuard guard(input.device());
  const auto acc_type = input.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  auto grad_input = torch::zeros(input.sizes(), input.options().dtype(acc_type));
  auto grad_offset = torch::zeros(offset.sizes(), offset.options().dtype(acc_type));
  auto grad_mask = torch::zeros(mask.sizes(), mask.options().dtype(acc_type));
  if (grad_output.numel() > 0) {
    auto stream = c10::cuda::getCurrentCUDAStream();
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, input.scalar_type(), "dcnv3_backward_cuda", [&] {
      using acc_t = at::opmath_type<scalar_t>;
      constexpr int kMaxVec = backward_chunk_width<acc_t>();
      const int cap = aligned_chunk_cap<scalar_t>(kMaxVec, {input.const_data_ptr(), grad_output.const_data_ptr()});
      dispatch_chunk_width<kMaxVec>(geo.group_channels, cap, [&](auto vec) {
        constexpr int VEC = decltype(vec)::value;
        const int lanes = int(geo.group_channels / VEC);
        const int64_t total = geo.batch * geo.out_h * geo.out_w * geo.group * lanes;
        dcnv3_backward_kernel<scalar_t, acc_t, VEC><<<grid_blocks(total), kThreads, 0, stream>>>(
            input.const_data_ptr<scalar_t>(), offset.const_data_ptr<scalar_t>(), mask.const_data_ptr<scalar_t>(),
            grad_output.const_data_ptr<scalar_t>(), grad_input.mutable_data_ptr<acc_t>(),
            grad_offset.mutable_data_ptr<acc_t>(), grad_mask.mutable_data_ptr<acc_t>(), geo, total, lanes,
            lanes_fit_warp(lanes));
        C10_CUDA_KERNEL_LAUNCH_CHECK();
      });
      if (geo.mask_softmax) {
        const int64_t rows = geo.batch * geo.out_h * geo.out_w * geo.group;
        dcnv3_mask_softmax_backward_kernel<scalar_t, acc_t><<<grid_blocks(rows), kThreads, 0, stream>>>(
            mask.const_data_ptr<scalar_t>(), grad_mask.mutable_data_ptr<acc_t>(), rows, geo.points);
        C10_CUDA_KERNEL_LAUNCH_CHECK();
      }
    });
  }
  const auto dtype = input.scalar_type();
  return {grad_input.to(dtype), grad_offset.to(dtype), grad_mask.to(dtype)};
}

}  // namespace perception_ops
