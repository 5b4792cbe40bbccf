// Multi-scale deformable attention on CPU. Forward is parallel over (batch, query). Backward is
// parallel over (batch, head): each task owns one head's slice of grad_value, so no atomics.
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>

#include <vector>

#include "kernels.h"

namespace perception_ops {
namespace {

struct MSDAShape {
  int64_t batch, keys, heads, dim, queries, levels, points;
};

template <typename scalar_t>
void forward_kernel(const scalar_t* value, const int64_t* shapes, const int64_t* starts, const scalar_t* loc,
                    const scalar_t* attn, scalar_t* out, const MSDAShape& sh) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t M = sh.heads, D = sh.dim, L = sh.levels, P = sh.points;
  at::parallel_for(0, sh.batch * sh.queries, 16, [&](int64_t begin, int64_t end) {
    std::vector<acc_t> acc(D);
    for (int64_t nq = begin; nq < end; ++nq) {
      const int64_t n = nq / sh.queries;
      for (int64_t m = 0; m < M; ++m) {
        std::fill(acc.begin(), acc.end(), acc_t(0));
        const int64_t sample0 = (nq * M + m) * L * P;  // index of (n, q, m, 0, 0)
        for (int64_t l = 0; l < L; ++l) {
          const int64_t height = shapes[2 * l], width = shapes[2 * l + 1];
          const scalar_t* level = value + ((n * sh.keys + starts[l]) * M + m) * D;
          for (int64_t p = 0; p < P; ++p) {
            const int64_t s_idx = sample0 + l * P + p;
            acc_t h, w;
            msda_pixel<acc_t>(loc + 2 * s_idx, height, width, h, w);
            Bilinear<acc_t> s;
            if (!bilinear_setup<acc_t>(h, w, height, width, s)) continue;
            const acc_t a = acc_t(attn[s_idx]);
            for (int k = 0; k < 4; ++k) {
              const acc_t coeff = a * s.weight[k];
              if (coeff == acc_t(0)) continue;
              const scalar_t* v = level + s.pixel[k] * M * D;
              for (int64_t d = 0; d < D; ++d) acc[d] += coeff * acc_t(v[d]);
            }
          }
        }
        scalar_t* o = out + (nq * M + m) * D;
        for (int64_t d = 0; d < D; ++d) o[d] = scalar_t(acc[d]);
      }
    }
  });
}

template <typename scalar_t>
void backward_kernel(const scalar_t* value, const int64_t* shapes, const int64_t* starts, const scalar_t* loc,
                     const scalar_t* attn, const scalar_t* grad_out, scalar_t* grad_value, scalar_t* grad_loc,
                     scalar_t* grad_attn, const MSDAShape& sh) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t M = sh.heads, D = sh.dim, L = sh.levels, P = sh.points;
  at::parallel_for(0, sh.batch * M, 1, [&](int64_t begin, int64_t end) {
    for (int64_t task = begin; task < end; ++task) {
      const int64_t n = task / M, m = task % M;
      for (int64_t q = 0; q < sh.queries; ++q) {
        const int64_t nq = n * sh.queries + q;
        const scalar_t* go = grad_out + (nq * M + m) * D;
        const int64_t sample0 = (nq * M + m) * L * P;
        for (int64_t l = 0; l < L; ++l) {
          const int64_t height = shapes[2 * l], width = shapes[2 * l + 1];
          const int64_t level_offset = ((n * sh.keys + starts[l]) * M + m) * D;
          for (int64_t p = 0; p < P; ++p) {
            const int64_t s_idx = sample0 + l * P + p;
            acc_t h, w;
            msda_pixel<acc_t>(loc + 2 * s_idx, height, width, h, w);
            Bilinear<acc_t> s;
            if (!bilinear_setup<acc_t>(h, w, height, width, s)) continue;
            const acc_t a = acc_t(attn[s_idx]);
            acc_t d_attn = 0, d_h = 0, d_w = 0;
            for (int k = 0; k < 4; ++k) {
              if (s.weight[k] == acc_t(0) && s.dweight_dh[k] == acc_t(0) && s.dweight_dw[k] == acc_t(0)) continue;
              const scalar_t* v = value + level_offset + s.pixel[k] * M * D;
              scalar_t* gv = grad_value + level_offset + s.pixel[k] * M * D;
              const acc_t coeff = a * s.weight[k];
              acc_t dot = 0;
              for (int64_t d = 0; d < D; ++d) {
                dot += acc_t(v[d]) * acc_t(go[d]);
                gv[d] = scalar_t(acc_t(gv[d]) + coeff * acc_t(go[d]));
              }
              d_attn += s.weight[k] * dot;
              d_h += s.dweight_dh[k] * dot;
              d_w += s.dweight_dw[k] * dot;
            }
            grad_attn[s_idx] = scalar_t(d_attn);
            grad_loc[2 * s_idx] = scalar_t(a * d_w * acc_t(width));
            grad_loc[2 * s_idx + 1] = scalar_t(a * d_h * acc_t(height));
          }
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
  AT_DISPATCH_FLOATING_TYPES(value.scalar_type(), "ms_deform_attn_forward_cpu", [&] {
    forward_kernel<scalar_t>(value.const_data_ptr<scalar_t>(), spatial_shapes.const_data_ptr<int64_t>(),
                             level_start_index.const_data_ptr<int64_t>(),
                             sampling_locations.const_data_ptr<scalar_t>(),
                             attention_weights.const_data_ptr<scalar_t>(), out.mutable_data_ptr<scalar_t>(), sh);
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
  AT_DISPATCH_FLOATING_TYPES(value.scalar_type(), "ms_deform_attn_backward_cpu", [&] {
    backward_kernel<scalar_t>(value.const_data_ptr<scalar_t>(), spatial_shapes.const_data_ptr<int64_t>(),
                              level_start_index.const_data_ptr<int64_t>(),
                              sampling_locations.const_data_ptr<scalar_t>(),
                              attention_weights.const_data_ptr<scalar_t>(), grad_output.const_data_ptr<scalar_t>(),
                              grad_value.mutable_data_ptr<scalar_t>(), grad_loc.mutable_data_ptr<scalar_t>(),
                              grad_attn.mutable_data_ptr<scalar_t>(), sh);
  });
  return {grad_value, grad_loc, grad_attn};
}

}  // namespace perception_ops
