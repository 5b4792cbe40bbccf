// Multi-scale deformable attention on CPU, built from the per-chunk bodies in chunks.h that the
// CUDA kernels also run. Forward is parallel over (batch, query). Backward is parallel over
// (batch, head): each task owns one head's slice of grad_value and every sample of that head, so it
// needs no atomics and the result is deterministic.
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>

#include "chunks.h"
#include "kernels.h"

namespace perception_ops {
namespace {

constexpr int kCpuMaxVec = 32;  // as for DCNv3: accumulators stay in registers

struct MSDAPointers {
  const int64_t* shapes;
  const int64_t* starts;
};

template <typename scalar_t, int VEC>
void forward_kernel(const scalar_t* value, MSDAPointers levels, const scalar_t* loc, const scalar_t* attn,
                    scalar_t* out, const MSDAShape& sh) {
  using acc_t = at::opmath_type<scalar_t>;
  at::parallel_for(0, sh.batch * sh.queries, 16, [&](int64_t begin, int64_t end) {
    for (int64_t nq = begin; nq < end; ++nq) {
      for (int64_t m = 0; m < sh.heads; ++m) {
        for (int64_t c0 = 0; c0 < sh.dim; c0 += VEC) {
          acc_t acc[VEC];
          msda_forward_chunk<scalar_t, acc_t, VEC>(sh, value, levels.shapes, levels.starts, loc, attn, nq, m, c0,
                                                   acc);
          store_chunk<scalar_t, acc_t, VEC>(out + (nq * sh.heads + m) * sh.dim + c0, acc);
        }
      }
    }
  });
}

template <typename scalar_t, int VEC>
void backward_kernel(const scalar_t* value, MSDAPointers levels, const scalar_t* loc, const scalar_t* attn,
                     const scalar_t* grad_out, scalar_t* grad_value, scalar_t* grad_loc, scalar_t* grad_attn,
                     const MSDAShape& sh) {
  using acc_t = at::opmath_type<scalar_t>;
  AddScatter<scalar_t> scatter{grad_value};
  AddCommit<scalar_t> commit{grad_attn, grad_loc};
  at::parallel_for(0, sh.batch * sh.heads, 1, [&](int64_t begin, int64_t end) {
    for (int64_t task = begin; task < end; ++task) {
      const int64_t n = task / sh.heads, m = task % sh.heads;
      for (int64_t nq = n * sh.queries; nq < (n + 1) * sh.queries; ++nq) {
        for (int64_t c0 = 0; c0 < sh.dim; c0 += VEC) {
          acc_t grad[VEC];
          load_chunk<scalar_t, acc_t, VEC>(grad_out + (nq * sh.heads + m) * sh.dim + c0, grad);
          msda_backward_chunk<scalar_t, acc_t, VEC>(sh, value, levels.shapes, levels.starts, loc, attn, grad, nq, m,
                                                    c0, true, scatter, commit);
        }
      }
    }
  });
}

MSDAShape msda_shape(const torch::Tensor& value, const torch::Tensor& sampling_locations) {
  return {value.size(0), value.size(1), value.size(2), value.size(3),
          sampling_locations.size(1), sampling_locations.size(3), sampling_locations.size(4)};
}

}  // namespace

torch::Tensor ms_deform_attn_forward_cpu(const torch::Tensor& value, const torch::Tensor& spatial_shapes,
                                         const torch::Tensor& level_start_index,
                                         const torch::Tensor& sampling_locations,
                                         const torch::Tensor& attention_weights) {
  const auto sh = msda_shape(value, sampling_locations);
  auto out = torch::empty({sh.batch, sh.queries, sh.heads * sh.dim}, value.options());
  const MSDAPointers levels{spatial_shapes.const_data_ptr<int64_t>(), level_start_index.const_data_ptr<int64_t>()};
  AT_DISPATCH_FLOATING_TYPES(value.scalar_type(), "ms_deform_attn_forward_cpu", [&] {
    dispatch_chunk_width<kCpuMaxVec>(sh.dim, kCpuMaxVec, [&](auto vec) {
      forward_kernel<scalar_t, decltype(vec)::value>(
          value.const_data_ptr<scalar_t>(), levels, sampling_locations.const_data_ptr<scalar_t>(),
          attention_weights.const_data_ptr<scalar_t>(), out.mutable_data_ptr<scalar_t>(), sh);
    });
  });
  return out;
}

std::tuple<torch::Tensor, torch::Tensor, torch::Tensor> ms_deform_attn_backward_cpu(
    const torch::Tensor& value, const torch::Tensor& spatial_shapes, const torch::Tensor& level_start_index,
    const torch::Tensor& sampling_locations, const torch::Tensor& attention_weights,
    const torch::Tensor& grad_output) {
  const auto sh = msda_shape(value, sampling_locations);
  auto grad_value = torch::zeros_like(value);
  auto grad_loc = torch::zeros_like(sampling_locations);
  auto grad_attn = torch::zeros_like(attention_weights);
  const MSDAPointers levels{spatial_shapes.const_data_ptr<int64_t>(), level_start_index.const_data_ptr<int64_t>()};
  AT_DISPATCH_FLOATING_TYPES(value.scalar_type(), "ms_deform_attn_backward_cpu", [&] {
    dispatch_chunk_width<kCpuMaxVec>(sh.dim, kCpuMaxVec, [&](auto vec) {
      backward_kernel<scalar_t, decltype(vec)::value>(
          value.const_data_ptr<scalar_t>(), levels, sampling_locations.const_data_ptr<scalar_t>(),
          attention_weights.const_data_ptr<scalar_t>(), grad_output.const_data_ptr<scalar_t>(),
          grad_value.mutable_data_ptr<scalar_t>(), grad_loc.mutable_data_ptr<scalar_t>(),
          grad_attn.mutable_data_ptr<scalar_t>(), sh);
    });
  });
  return {grad_value, grad_loc, grad_attn};
}

}  // namespace perception_ops
