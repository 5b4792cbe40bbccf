// DCNv3 on CPU, built from the row bodies in cpu_rows.h (docs/ops.md, "CPU layout"). Forward is
// parallel over output pixels. Backward is parallel over (batch, group): each task owns one
// channel slice of grad_input and every sample of its group, so it needs no atomics and the result
// is deterministic.
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <vector>

#include "chunks.h"
#include "cpu_rows.h"
#include "kernels.h"

namespace perception_ops {
namespace {

// Widest chunk on CPU: up to 32 channels keeps the accumulators in registers and lets the compiler
// vectorise the channel loop.
constexpr int kCpuMaxVec = 32;

// Output pixels in order, their batch index and window centre advanced without divisions.
template <typename acc_t>
struct PixelCursor {
  const DCNv3Geometry& geo;
  int64_t n, ho, wo;
  PixelCursor(const DCNv3Geometry& geo_, int64_t np_) : geo(geo_) {
    const int64_t pixels = geo.out_h * geo.out_w, pix = np_ % pixels;
    n = np_ / pixels;
    ho = pix / geo.out_w;
    wo = pix % geo.out_w;
  }
  // As DCNv3Site (chunks.h).
  acc_t centre_h() const { return acc_t(ho * geo.stride_h + geo.dilation_h * (geo.kernel_h - 1) / 2 - geo.pad_h); }
  acc_t centre_w() const { return acc_t(wo * geo.stride_w + geo.dilation_w * (geo.kernel_w - 1) / 2 - geo.pad_w); }
  void next() {
    if (++wo < geo.out_w) return;
    wo = 0;
    if (++ho < geo.out_h) return;
    ho = 0;
    ++n;
  }
};

// One pixel's samples of `groups` groups (the forward: every group; the backward: one), set up in
// the tables of `corners`.
template <bool Backward, typename acc_t, typename scalar_t>
struct RowSetup {
  const DCNv3Geometry& geo;
  int64_t groups, count;
  cpu::WindowTable<acc_t> window;
  cpu::CornerTable<acc_t> corners;
  std::vector<acc_t> coeff, scratch;  // the point weights; scratch for point_weights
  RowSetup(const DCNv3Geometry& geo_, int64_t groups_)
      : geo(geo_),
        groups(groups_),
        count(groups_ * geo_.points),
        window(geo_, groups_),
        corners(count),
        coeff(count),
        scratch(count) {}
  // offset and mask point at the row's first sample.
  void fill(const PixelCursor<acc_t>& pixel, const scalar_t* offset, const scalar_t* mask) {
    const int32_t rows = int32_t(geo.height), cols = int32_t(geo.width);
    cpu::point_weights(mask, groups, geo.points, geo.mask_softmax, coeff.data(), scratch.data());
    cpu::locate_samples(corners, count, window.dx.data(), window.dy.data(), offset, pixel.centre_h(),
                        pixel.centre_w(), acc_t(geo.offset_scale), rows, cols);
    cpu::find_corners<Backward>(corners, count, coeff.data(), rows, cols);
  }
};

template <typename scalar_t, int VEC>
void forward_kernel(const scalar_t* input, const scalar_t* offset, const scalar_t* mask, scalar_t* out,
                    const DCNv3Geometry& geo) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t C = geo.channels(), G = geo.group, P = geo.points, D = geo.group_channels;
  at::parallel_for(0, geo.batch * geo.out_h * geo.out_w, 16, [&](int64_t begin, int64_t end) {
    RowSetup<false, acc_t, scalar_t> row(geo, G);
    PixelCursor<acc_t> pixel(geo, begin);
    for (int64_t np_ = begin; np_ < end; ++np_, pixel.next()) {
      row.fill(pixel, offset + np_ * G * P * 2, mask + np_ * G * P);
      const scalar_t* image = input + pixel.n * geo.height * geo.width * C;
      for (int64_t g = 0; g < G; ++g) {
        for (int64_t c0 = 0; c0 < D; c0 += VEC) {
          acc_t acc[VEC];
          cpu::gather_chunk_cpu<VEC>(row.corners, g * P, P, image + g * D + c0, C, acc);
          store_chunk<scalar_t, acc_t, VEC>(out + np_ * C + g * D + c0, acc);
        }
      }
    }
  });
}

// Every gradient of one (batch, group) task's pixels.
template <typename scalar_t, int VEC>
void backward_task(const scalar_t* input, const scalar_t* offset, const scalar_t* mask, const scalar_t* grad_out,
                   scalar_t* grad_input, scalar_t* grad_offset, scalar_t* grad_mask, const DCNv3Geometry& geo,
                   int64_t n, int64_t g, RowSetup<true, at::opmath_type<scalar_t>, scalar_t>& row) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t C = geo.channels(), G = geo.group, P = geo.points, D = geo.group_channels;
  const int64_t pixels = geo.out_h * geo.out_w, image = n * geo.height * geo.width * C + g * D;
  if (pixels == 0) return;
  std::vector<acc_t> d_mask(P), d_h(P), d_w(P);
  PixelCursor<acc_t> pixel(geo, n * pixels);
  for (int64_t np_ = n * pixels; np_ < (n + 1) * pixels; ++np_, pixel.next()) {
    const int64_t sample0 = (np_ * G + g) * P;
    row.fill(pixel, offset + 2 * sample0, mask + sample0);
    std::fill(d_mask.begin(), d_mask.end(), acc_t(0));
    std::fill(d_h.begin(), d_h.end(), acc_t(0));
    std::fill(d_w.begin(), d_w.end(), acc_t(0));
    for (int64_t c0 = 0; c0 < D; c0 += VEC) {
      acc_t grad[VEC];
      load_chunk<scalar_t, acc_t, VEC>(grad_out + np_ * C + g * D + c0, grad);
      cpu::backward_chunk_cpu<VEC>(row.corners, P, row.coeff.data(), input + image + c0, grad_input + image + c0, C,
                                   grad, d_mask.data(), d_h.data(), d_w.data());
    }
    cpu::write_row_gradients(row.corners, P, row.coeff.data(), geo.mask_softmax, acc_t(geo.offset_scale),
                             d_mask.data(), d_h.data(), d_w.data(), grad_mask + sample0, grad_offset + 2 * sample0);
  }
}

template <typename scalar_t, int VEC>
void backward_kernel(const scalar_t* input, const scalar_t* offset, const scalar_t* mask,
                     const scalar_t* grad_out, scalar_t* grad_input, scalar_t* grad_offset,
                     scalar_t* grad_mask, const DCNv3Geometry& geo) {
  using acc_t = at::opmath_type<scalar_t>;
  at::parallel_for(0, geo.batch * geo.group, 1, [&](int64_t begin, int64_t end) {
    RowSetup<true, acc_t, scalar_t> row(geo, 1);
    for (int64_t task = begin; task < end; ++task) {
      backward_task<scalar_t, VEC>(input, offset, mask, grad_out, grad_input, grad_offset, grad_mask, geo,
                                   task / geo.group, task % geo.group, row);
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
  // Every element of these two is written by the task that owns its (pixel, group).
  auto grad_offset = torch::empty_like(offset);
  auto grad_mask = torch::empty_like(mask);
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
