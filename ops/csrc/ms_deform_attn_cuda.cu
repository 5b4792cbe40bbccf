// Multi-scale deformable attention on CUDA. One thread per output element (n, query, head, dim):
// consecutive threads read consecutive channels of one bilinear corner (coalesced). Backward
// scatters grad_value with float atomics and reduces the partial gradients of locations and
// weights with warp shuffles when a head's channels fit one warp, with atomics otherwise.
#include "cuda_utils.cuh"
#include "kernels.h"

namespace perception_ops {
namespace {

struct MSDAShape {
  int64_t batch, keys, heads, dim, queries, levels, points;
};

// Skips levels whose (start, H, W) would read outside value, so bad tables cannot corrupt memory.
__device__ __forceinline__ bool level_fits(int64_t start, int64_t height, int64_t width, int64_t keys) {
  return start >= 0 && height > 0 && width > 0 && start + height * width <= keys;
}

template <typename scalar_t, typename acc_t>
__global__ void msda_forward_kernel(const scalar_t* __restrict__ value, const int64_t* __restrict__ shapes,
                                    const int64_t* __restrict__ starts, const scalar_t* __restrict__ loc,
                                    const scalar_t* __restrict__ attn, scalar_t* __restrict__ out, MSDAShape sh,
                                    int64_t total) {
  const int64_t M = sh.heads, D = sh.dim, L = sh.levels, P = sh.points;
  for (int64_t idx = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; idx < total;
       idx += int64_t(gridDim.x) * blockDim.x) {
    const int64_t d = idx % D, m = (idx / D) % M, nq = idx / (D * M), n = nq / sh.queries;
    const int64_t sample0 = (nq * M + m) * L * P;
    acc_t acc = 0;
    for (int64_t l = 0; l < L; ++l) {
      const int64_t height = shapes[2 * l], width = shapes[2 * l + 1];
      if (!level_fits(starts[l], height, width, sh.keys)) continue;
      const scalar_t* level = value + ((n * sh.keys + starts[l]) * M + m) * D + d;
      for (int64_t p = 0; p < P; ++p) {
        const int64_t s_idx = sample0 + l * P + p;
        acc_t h, w;
        msda_pixel<acc_t>(loc + 2 * s_idx, height, width, h, w);
        Bilinear<acc_t> s;
        if (!bilinear_setup<acc_t>(h, w, height, width, s)) continue;
        const acc_t a = acc_t(attn[s_idx]);
#pragma unroll
        for (int k = 0; k < 4; ++k) {
          if (s.weight[k] != acc_t(0)) acc += a * s.weight[k] * acc_t(level[s.pixel[k] * M * D]);
        }
      }
    }
    out[idx] = scalar_t(acc);
  }
}

template <typename scalar_t, typename acc_t>
__global__ void msda_backward_kernel(const scalar_t* __restrict__ value, const int64_t* __restrict__ shapes,
                                     const int64_t* __restrict__ starts, const scalar_t* __restrict__ loc,
                                     const scalar_t* __restrict__ attn, const scalar_t* __restrict__ grad_out,
                                     acc_t* __restrict__ grad_value, acc_t* __restrict__ grad_loc,
                                     acc_t* __restrict__ grad_attn, MSDAShape sh, int64_t total, bool use_shuffles) {
  const int64_t M = sh.heads, D = sh.dim, L = sh.levels, P = sh.points;
  for (int64_t base = blockIdx.x * int64_t(blockDim.x); base < total; base += int64_t(gridDim.x) * blockDim.x) {
    const int64_t idx = base + threadIdx.x;
    const bool active = idx < total;
    const int64_t safe = active ? idx : 0;
    const int64_t d = safe % D, m = (safe / D) % M, nq = safe / (D * M), n = nq / sh.queries;
    const int64_t sample0 = (nq * M + m) * L * P;
    const acc_t go = active ? acc_t(grad_out[idx]) : acc_t(0);
    for (int64_t l = 0; l < L; ++l) {
      const int64_t height = shapes[2 * l], width = shapes[2 * l + 1];
      const bool fits = level_fits(starts[l], height, width, sh.keys);
      const int64_t level_offset = ((n * sh.keys + starts[l]) * M + m) * D + d;
      for (int64_t p = 0; p < P; ++p) {
        const int64_t s_idx = sample0 + l * P + p;
        acc_t d_attn = 0, d_h = 0, d_w = 0;
        acc_t h, w;
        msda_pixel<acc_t>(loc + 2 * s_idx, height, width, h, w);
        Bilinear<acc_t> s;
        if (active && fits && bilinear_setup<acc_t>(h, w, height, width, s)) {
          const acc_t a = acc_t(attn[s_idx]);
#pragma unroll
          for (int k = 0; k < 4; ++k) {
            if (s.weight[k] == acc_t(0) && s.dweight_dh[k] == acc_t(0) && s.dweight_dw[k] == acc_t(0)) continue;
            const int64_t at = level_offset + s.pixel[k] * M * D;
            const acc_t v = acc_t(value[at]);
            if (s.weight[k] != acc_t(0)) atomicAdd(grad_value + at, a * s.weight[k] * go);
            d_attn += s.weight[k] * v * go;
            d_h += s.dweight_dh[k] * v * go;
            d_w += s.dweight_dw[k] * v * go;
          }
          d_w *= a * acc_t(width);
          d_h *= a * acc_t(height);
        }
        if (use_shuffles) {
          d_attn = segment_sum(d_attn, int(D));
          d_h = segment_sum(d_h, int(D));
          d_w = segment_sum(d_w, int(D));
          if (active && d == 0) {
            grad_attn[s_idx] = d_attn;
            grad_loc[2 * s_idx] = d_w;
            grad_loc[2 * s_idx + 1] = d_h;
          }
        } else if (active && (d_attn != acc_t(0) || d_h != acc_t(0) || d_w != acc_t(0))) {
          atomicAdd(grad_attn + s_idx, d_attn);
          atomicAdd(grad_loc + 2 * s_idx, d_w);
          atomicAdd(grad_loc + 2 * s_idx + 1, d_h);
        }
      }
    }
  }
}

MSDAShape msda_shape(const torch::Tensor& value, const torch::Tensor& loc) {
  return {value.size(0), value.size(1), value.size(2), value.size(3), loc.size(1), loc.size(3), loc.size(4)};
}

}  // namespace

torch::Tensor ms_deform_attn_forward_cuda(const torch::Tensor& value, const torch::Tensor& spatial_shapes,
                                          const torch::Tensor& level_start_index,
                                          const torch::Tensor& sampling_locations,
                                          const torch::Tensor& attention_weights) {
  const c10::cuda::CUDAGuard guard(value.device());
  const auto sh = msda_shape(value, sampling_locations);
  auto out = torch::empty({sh.batch, sh.queries, sh.heads * sh.dim}, value.options());
  const int64_t total = out.numel();
  if (total == 0) return out;
  auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, value.scalar_type(), "ms_deform_attn_forward_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    msda_forward_kernel<scalar_t, acc_t><<<grid_blocks(total), kThreads, 0, stream>>>(
        value.const_data_ptr<scalar_t>(), spatial_shapes.const_data_ptr<int64_t>(),
        level_start_index.const_data_ptr<int64_t>(), sampling_locations.const_data_ptr<scalar_t>(),
        attention_weights.const_data_ptr<scalar_t>(), out.mutable_data_ptr<scalar_t>(), sh, total);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
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
  const int64_t total = grad_output.numel();
  if (total > 0) {
    auto stream = c10::cuda::getCurrentCUDAStream();
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, value.scalar_type(), "ms_deform_attn_backward_cuda",
                                    [&] {
      using acc_t = at::opmath_type<scalar_t>;
      msda_backward_kernel<scalar_t, acc_t><<<grid_blocks(total), kThreads, 0, stream>>>(
          value.const_data_ptr<scalar_t>(), spatial_shapes.const_data_ptr<int64_t>(),
          level_start_index.const_data_ptr<int64_t>(), sampling_locations.const_data_ptr<scalar_t>(),
          attention_weights.const_data_ptr<scalar_t>(), grad_output.const_data_ptr<scalar_t>(),
          grad_value.mutable_data_ptr<acc_t>(), grad_loc.mutable_data_ptr<acc_t>(),
          grad_attn.mutable_data_ptr<acc_t>(), sh, total, warp_segments(sh.dim));
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  }
  const auto dtype = value.scalar_type();
  return {grad_value.to(dtype), grad_loc.to(dtype), grad_attn.to(dtype)};
}

}  // namespace perception_ops
