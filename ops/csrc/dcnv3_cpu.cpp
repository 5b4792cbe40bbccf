// DCNv3 on CPU, built from the per-chunk bodies in chunks.h that the CUDA kernels also run.
// Forward is parallel over output pixels. Backward is parallel over (batch, group): each task owns
// one channel slice of grad_input and every sample of its group, so it needs no atomics and the
// result is deterministic.
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>

#include "chunks.h"
#include "kernels.h"

namespace perception_ops {
namespace {

// Widest chunk on CPU: up to 32 channels keeps the accumulators in registers and lets the compiler
// vectorise the channel loop.
constexpr int kCpuMaxVec = 32;

template <typename scalar_t, int VEC>
void forward_kernel(const scalar_t* input, const scalar_t* offset, const scalar_t* mask, scalar_t* out,
                    const DCNv3Geometry& geo) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t C = geo.channels();
  at::parallel_for(0, geo.batch * geo.out_h * geo.out_w, 16, [&](int64_t begin, int64_t end) {
    for (int64_t np_ = begin; np_ < end; ++np_) {
      for (int64_t g = 0; g < geo.group; ++g) {
        for (int64_t c0 = 0; c0 < geo.group_channels; c0 += VEC) {
          acc_t acc[VEC];
          dcnv3_forward_chunk<scalar_t, acc_t, VEC>(geo, input, offset, mask, np_, g, c0, acc);
          store_chunk<scalar_t, acc_t, VEC>(out + np_ * C + g * geo.group_channels + c0, acc);
        }
      }
    }
  });
}

template <typename scalar_t, int VEC>
void backward_kernel(const scalar_t* input, const scalar_t* offset, const scalar_t* mask,
                     const scalar_t* grad_out, scalar_t* grad_input, scalar_t* grad_offset,
                     scalar_t* grad_mask, const DCNv3Geometry& geo) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t C = geo.channels(), pixels = geo.out_h * geo.out_w;
  AddScatter<scalar_t> scatter{grad_input};
  AddCommit<scalar_t> commit{grad_mask, grad_offset};
  at::parallel_for(0, geo.batch * geo.group, 1, [&](int64_t begin, int64_t end) {
    for (int64_t task = begin; task < end; ++task) {
      const int64_t n = task / geo.group, g = task % geo.group;
      for (int64_t np_ = n * pixels; np_ < (n + 1) * pixels; ++np_) {
        for (int64_t c0 = 0; c0 < geo.group_channels; c0 += VEC) {
          acc_t grad[VEC];
          load_chunk<scalar_t, acc_t, VEC>(grad_out + np_ * C + g * geo.group_channels + c0, grad);
          dcnv3_backward_chunk<scalar_t, acc_t, VEC>(geo, input, offset, mask, grad, np_, g, c0, true, scatter,
                                                     commit);
        }
        if (geo.mask_softmax) {  // this task has committed every chunk of the row
          const int64_t row = (np_ * geo.group + g) * geo.points;
          mask_softmax_backward<acc_t>(mask + row, grad_mask + row, geo.points);
        }
      }
    }
  });
}

}  // namespace

torch::Tensor dcnv3_forward_cpu(const torch::Tensor& input, const torch::Tensor& offset,
                                const torch::Tensor& mask, const DCNv3Geometry& geo) {
  auto out = torch::empty({geo.batch, geo.out_h, geo.out_w, geo.channels()}, input.options());
  AT_DISPATCH_FLOATING_TYPES(input.scalar_type(), "dcnv3_forward_cpu", [&] {
    dispatch_chunk_width<kCpuMaxVec>(geo.group_channels, kCpuMaxVec, [&](auto vec) {
      forward_kernel<scalar_t, decltype(vec)::value>(input.const_data_ptr<scalar_t>(),
                                                     offset.const_data_ptr<scalar_t>(),
                                                     mask.const_data_ptr<scalar_t>(),
                                                     out.mutable_data_ptr<scalar_t>(), geo);
    });
  });
  return out;
}

std::tuple<torch::Tensor, torch::Tensor, torch::Tensor> dcnv3_backward_cpu(
    const torch::Tensor& input, const torch::Tensor& offset, const torch::Tensor& mask,
    const torch::Tensor& grad_output, const DCNv3Geometry& geo) {
  auto grad_input = torch::zeros_like(input);
  auto grad_offset = torch::zeros_like(offset);
  auto grad_mask = torch::zeros_like(mask);
  AT_DISPATCH_FLOATING_TYPES(input.scalar_type(), "dcnv3_backward_cpu", [&] {
    dispatch_chunk_width<kCpuMaxVec>(geo.group_channels, kCpuMaxVec, [&](auto vec) {
      backward_kernel<scalar_t, decltype(vec)::value>(
          input.const_data_ptr<scalar_t>(), offset.const_data_ptr<scalar_t>(), mask.const_data_ptr<scalar_t>(),
          grad_output.const_data_ptr<scalar_t>(), grad_input.mutable_data_ptr<scalar_t>(),
          grad_offset.mutable_data_ptr<scalar_t>(), grad_mask.mutable_data_ptr<scalar_t>(), geo);
    });
  });
  return {grad_input, grad_offset, grad_mask};
}

}  // namespace perception_ops
