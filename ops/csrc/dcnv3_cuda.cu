// DCNv3 on CUDA. One thread per output element (n, pixel, group, channel): consecutive threads
// read consecutive channels of the same bilinear corner, so global loads are coalesced. Backward
// scatters grad_input with float atomics (fp32 buffer for half types) and reduces the per-channel
// partial gradients of offsets and mask with warp shuffles when a group's channels fit one warp
// (InternImage: 16 or 32 channels per group), with atomics otherwise.
#include "cuda_utils.cuh"
#include "kernels.h"

namespace perception_ops {
namespace {

template <typename scalar_t, typename acc_t>
__global__ void dcnv3_forward_kernel(const scalar_t* __restrict__ input, const scalar_t* __restrict__ offset,
                                     const scalar_t* __restrict__ mask, scalar_t* __restrict__ out,
                                     DCNv3Geometry geo, int64_t total) {
  const int64_t C = geo.channels(), Cg = geo.group_channels, P = geo.points;
  const int64_t pixels = geo.out_h * geo.out_w;
  for (int64_t idx = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; idx < total;
       idx += int64_t(gridDim.x) * blockDim.x) {
    const int64_t c = idx % Cg, g = (idx / Cg) % geo.group, np_ = idx / C;
    const int64_t pix = np_ % pixels, n = np_ / pixels;
    const int64_t ho = pix / geo.out_w, wo = pix % geo.out_w;
    const scalar_t* image = input + n * geo.height * geo.width * C + g * Cg + c;
    const scalar_t* off = offset + (np_ * geo.group + g) * P * 2;
    const scalar_t* msk = mask + (np_ * geo.group + g) * P;
    acc_t acc = 0;
    for (int64_t p = 0; p < P; ++p) {
      acc_t h, w;
      geo.location<acc_t>(ho, wo, p, acc_t(off[2 * p]), acc_t(off[2 * p + 1]), h, w);
      Bilinear<acc_t> s;
      if (!bilinear_setup<acc_t>(h, w, geo.height, geo.width, s)) continue;
      const acc_t m = acc_t(msk[p]);
#pragma unroll
      for (int k = 0; k < 4; ++k) {
        if (s.weight[k] != acc_t(0)) acc += m * s.weight[k] * acc_t(image[s.pixel[k] * C]);
      }
    }
    out[idx] = scalar_t(acc);
  }
}

template <typename scalar_t, typename acc_t>
__global__ void dcnv3_backward_kernel(const scalar_t* __restrict__ input, const scalar_t* __restrict__ offset,
                                      const scalar_t* __restrict__ mask, const scalar_t* __restrict__ grad_out,
                                      acc_t* __restrict__ grad_input, acc_t* __restrict__ grad_offset,
                                      acc_t* __restrict__ grad_mask, DCNv3Geometry geo, int64_t total,
                                      bool use_shuffles) {
  const int64_t C = geo.channels(), Cg = geo.group_channels, P = geo.points;
  const int64_t pixels = geo.out_h * geo.out_w;
  const acc_t scale = acc_t(geo.offset_scale);
  // Every thread of a block runs the same iterations (the bound depends on `base` only), so all
  // lanes reach the shuffles together.
  for (int64_t base = blockIdx.x * int64_t(blockDim.x); base < total; base += int64_t(gridDim.x) * blockDim.x) {
    const int64_t idx = base + threadIdx.x;
    const bool active = idx < total;
    const int64_t safe = active ? idx : 0;
    const int64_t c = safe % Cg, g = (safe / Cg) % geo.group, np_ = safe / C;
    const int64_t pix = np_ % pixels, n = np_ / pixels;
    const int64_t ho = pix / geo.out_w, wo = pix % geo.out_w;
    const int64_t image_offset = n * geo.height * geo.width * C + g * Cg + c;
    const int64_t pg = np_ * geo.group + g;
    const acc_t go = active ? acc_t(grad_out[idx]) : acc_t(0);
    for (int64_t p = 0; p < P; ++p) {
      acc_t d_mask = 0, d_h = 0, d_w = 0;
      acc_t h, w;
      geo.location<acc_t>(ho, wo, p, acc_t(offset[(pg * P + p) * 2]), acc_t(offset[(pg * P + p) * 2 + 1]), h, w);
      Bilinear<acc_t> s;
      if (active && bilinear_setup<acc_t>(h, w, geo.height, geo.width, s)) {
        const acc_t m = acc_t(mask[pg * P + p]);
#pragma unroll
        for (int k = 0; k < 4; ++k) {
          if (s.weight[k] == acc_t(0) && s.dweight_dh[k] == acc_t(0) && s.dweight_dw[k] == acc_t(0)) continue;
          const int64_t at = image_offset + s.pixel[k] * C;
          const acc_t v = acc_t(input[at]);
          if (s.weight[k] != acc_t(0)) atomicAdd(grad_input + at, m * s.weight[k] * go);
          d_mask += s.weight[k] * v * go;
          d_h += s.dweight_dh[k] * v * go;
          d_w += s.dweight_dw[k] * v * go;
        }
        d_h *= m * scale;
        d_w *= m * scale;
      }
      if (use_shuffles) {
        d_mask = segment_sum(d_mask, int(Cg));
        d_h = segment_sum(d_h, int(Cg));
        d_w = segment_sum(d_w, int(Cg));
        if (active && c == 0) {
          grad_mask[pg * P + p] = d_mask;
          grad_offset[(pg * P + p) * 2] = d_w;
          grad_offset[(pg * P + p) * 2 + 1] = d_h;
        }
      } else if (active && (d_mask != acc_t(0) || d_h != acc_t(0) || d_w != acc_t(0))) {
        atomicAdd(grad_mask + pg * P + p, d_mask);
        atomicAdd(grad_offset + (pg * P + p) * 2, d_w);
        atomicAdd(grad_offset + (pg * P + p) * 2 + 1, d_h);
      }
    }
  }
}

}  // namespace

torch::Tensor dcnv3_forward_cuda(const torch::Tensor& input, const torch::Tensor& offset,
                                 const torch::Tensor& mask, const DCNv3Geometry& geo) {
  const c10::cuda::CUDAGuard guard(input.device());
  auto out = torch::empty({geo.batch, geo.out_h, geo.out_w, geo.channels()}, input.options());
  const int64_t total = out.numel();
  if (total == 0) return out;
  auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, input.scalar_type(), "dcnv3_forward_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    dcnv3_forward_kernel<scalar_t, acc_t><<<grid_blocks(total), kThreads, 0, stream>>>(
        input.const_data_ptr<scalar_t>(), offset.const_data_ptr<scalar_t>(), mask.const_data_ptr<scalar_t>(),
        out.mutable_data_ptr<scalar_t>(), geo, total);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
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
  const int64_t total = grad_output.numel();
  if (total > 0) {
    auto stream = c10::cuda::getCurrentCUDAStream();
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, input.scalar_type(), "dcnv3_backward_cuda", [&] {
      using acc_t = at::opmath_type<scalar_t>;
      dcnv3_backward_kernel<scalar_t, acc_t><<<grid_blocks(total), kThreads, 0, stream>>>(
          input.const_data_ptr<scalar_t>(), offset.const_data_ptr<scalar_t>(), mask.const_data_ptr<scalar_t>(),
          grad_output.const_data_ptr<scalar_t>(), grad_input.mutable_data_ptr<acc_t>(),
          grad_offset.mutable_data_ptr<acc_t>(), grad_mask.mutable_data_ptr<acc_t>(), geo, total,
          warp_segments(geo.group_channels));
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  }
  const auto dtype = input.scalar_type();
  return {grad_input.to(dtype), grad_offset.to(dtype), grad_mask.to(dtype)};
}

}  // namespace perception_ops
