// DCNv3 on CPU. Forward is parallel over output pixels. Backward is parallel over (batch, group):
// each task owns one channel slice of grad_input, so the scatter needs no atomics and the result
// is deterministic.
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>

#include <vector>

#include "kernels.h"

namespace perception_ops {
namespace {

template <typename scalar_t>
void forward_kernel(const scalar_t* input, const scalar_t* offset, const scalar_t* mask, scalar_t* out,
                    const DCNv3Geometry& geo) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t C = geo.channels(), Cg = geo.group_channels, P = geo.points;
  const int64_t pixels = geo.out_h * geo.out_w;
  at::parallel_for(0, geo.batch * pixels, 16, [&](int64_t begin, int64_t end) {
    std::vector<acc_t> acc(Cg);
    for (int64_t idx = begin; idx < end; ++idx) {
      const int64_t n = idx / pixels, ho = (idx % pixels) / geo.out_w, wo = idx % geo.out_w;
      const scalar_t* image = input + n * geo.height * geo.width * C;
      for (int64_t g = 0; g < geo.group; ++g) {
        std::fill(acc.begin(), acc.end(), acc_t(0));
        const scalar_t* off = offset + (idx * geo.group + g) * P * 2;
        const scalar_t* msk = mask + (idx * geo.group + g) * P;
        for (int64_t p = 0; p < P; ++p) {
          acc_t h, w;
          geo.location<acc_t>(ho, wo, p, acc_t(off[2 * p]), acc_t(off[2 * p + 1]), h, w);
          Bilinear<acc_t> s;
          if (!bilinear_setup<acc_t>(h, w, geo.height, geo.width, s)) continue;
          const acc_t m = acc_t(msk[p]);
          for (int k = 0; k < 4; ++k) {
            const acc_t coeff = m * s.weight[k];
            if (coeff == acc_t(0)) continue;
            const scalar_t* v = image + s.pixel[k] * C + g * Cg;
            for (int64_t c = 0; c < Cg; ++c) acc[c] += coeff * acc_t(v[c]);
          }
        }
        scalar_t* o = out + idx * C + g * Cg;
        for (int64_t c = 0; c < Cg; ++c) o[c] = scalar_t(acc[c]);
      }
    }
  });
}

template <typename scalar_t>
void backward_kernel(const scalar_t* input, const scalar_t* offset, const scalar_t* mask,
                     const scalar_t* grad_out, scalar_t* grad_input, scalar_t* grad_offset,
                     scalar_t* grad_mask, const DCNv3Geometry& geo) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t C = geo.channels(), Cg = geo.group_channels, P = geo.points;
  const int64_t pixels = geo.out_h * geo.out_w;
  const acc_t scale = acc_t(geo.offset_scale);
  at::parallel_for(0, geo.batch * geo.group, 1, [&](int64_t begin, int64_t end) {
    for (int64_t task = begin; task < end; ++task) {
      const int64_t n = task / geo.group, g = task % geo.group;
      const int64_t image_offset = n * geo.height * geo.width * C + g * Cg;
      const scalar_t* image = input + image_offset;
      scalar_t* grad_image = grad_input + image_offset;
      for (int64_t pix = 0; pix < pixels; ++pix) {
        const int64_t idx = n * pixels + pix, ho = pix / geo.out_w, wo = pix % geo.out_w;
        const scalar_t* go = grad_out + idx * C + g * Cg;
        const int64_t pg = idx * geo.group + g;
        for (int64_t p = 0; p < P; ++p) {
          acc_t h, w;
          geo.location<acc_t>(ho, wo, p, acc_t(offset[(pg * P + p) * 2]), acc_t(offset[(pg * P + p) * 2 + 1]), h, w);
          Bilinear<acc_t> s;
          if (!bilinear_setup<acc_t>(h, w, geo.height, geo.width, s)) continue;
          const acc_t m = acc_t(mask[pg * P + p]);
          acc_t d_mask = 0, d_h = 0, d_w = 0;
          for (int k = 0; k < 4; ++k) {
            if (s.weight[k] == acc_t(0) && s.dweight_dh[k] == acc_t(0) && s.dweight_dw[k] == acc_t(0)) continue;
            const scalar_t* v = image + s.pixel[k] * C;
            scalar_t* gv = grad_image + s.pixel[k] * C;
            const acc_t coeff = m * s.weight[k];
            acc_t dot = 0;
            for (int64_t c = 0; c < Cg; ++c) {
              dot += acc_t(v[c]) * acc_t(go[c]);
              gv[c] = scalar_t(acc_t(gv[c]) + coeff * acc_t(go[c]));
            }
            d_mask += s.weight[k] * dot;
            d_h += s.dweight_dh[k] * dot;
            d_w += s.dweight_dw[k] * dot;
          }
          grad_mask[pg * P + p] = scalar_t(d_mask);
          grad_offset[(pg * P + p) * 2] = scalar_t(m * d_w * scale);
          grad_offset[(pg * P + p) * 2 + 1] = scalar_t(m * d_h * scale);
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
    forward_kernel<scalar_t>(input.const_data_ptr<scalar_t>(), offset.const_data_ptr<scalar_t>(),
                             mask.const_data_ptr<scalar_t>(), out.mutable_data_ptr<scalar_t>(), geo);
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
    backward_kernel<scalar_t>(input.const_data_ptr<scalar_t>(), offset.const_data_ptr<scalar_t>(),
                              mask.const_data_ptr<scalar_t>(), grad_output.const_data_ptr<scalar_t>(),
                              grad_input.mutable_data_ptr<scalar_t>(), grad_offset.mutable_data_ptr<scalar_t>(),
                              grad_mask.mutable_data_ptr<scalar_t>(), geo);
  });
  return {grad_input, grad_offset, grad_mask};
}

}  // namespace perception_ops
