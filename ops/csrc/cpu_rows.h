// Row bodies of the DCNv3 CPU kernels (dcnv3_cpu.cpp); docs/ops.md, "CPU layout".
//
// The CUDA kernels run one thread per chunk (chunks.h), and every lane of a group repeats its
// samples' setup. On CPU a row, the samples of one output pixel (every group's in the forward, one
// group's in the backward), is set up first, in one branch-free pass over structure-of-arrays
// tables that the compiler vectorises; the channel loops then only read the tables. The
// arithmetic is that of sampling.h (dcnv3_sample and bilinear_setup), element by element, and the
// float64 tests compare it with the reference like every other kernel.
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "sampling.h"

namespace perception_ops {
namespace cpu {

// The window's regular-grid displacements (dx, dy) in point order, repeated `copies` times so that
// sample q = g * points + p of a pixel finds its point's at index q.
template <typename acc_t>
struct WindowTable {
  std::vector<acc_t> dx, dy;
  WindowTable(const DCNv3Geometry& geo, int64_t copies) {
    WindowWalker point(geo);
    for (int64_t p = 0; p < geo.points; ++p, point.next()) {
      dx.push_back(acc_t(point.dx()));
      dy.push_back(acc_t(point.dy()));
    }
    for (int64_t c = 1; c < copies; ++c) {
      for (int64_t p = 0; p < geo.points; ++p) {
        dx.push_back(dx[p]);
        dy.push_back(dy[p]);
      }
    }
  }
};

// A row's samples, structure-of-arrays so that the passes filling them vectorise: each sample's
// location (h, w), or (kNowhere, kNowhere) when it reads nothing, and corner k of sample q at
// k * capacity + q: its pixel index (0 outside the map), its weight and, for the backward, the
// weight's derivatives along h and w (all zero outside the map).
template <typename acc_t>
struct CornerTable {
  static constexpr acc_t kNowhere = acc_t(-2);  // rows -2 and -1, columns -2 and -1: all outside
  int64_t capacity;
  std::vector<acc_t> h, w;
  std::vector<int32_t> pixel;
  std::vector<acc_t> weight, dweight_dh, dweight_dw;
  explicit CornerTable(int64_t capacity_)
      : capacity(capacity_),
        h(capacity_),
        w(capacity_),
        pixel(4 * capacity_),
        weight(4 * capacity_),
        dweight_dh(4 * capacity_),
        dweight_dw(4 * capacity_) {}
  bool valid(int64_t q) const { return h[q] != kNowhere; }
};

// exp(x) for the fused softmax. float: a branch-free polynomial that the compiler vectorises
// (std::exp is a library call), within 2 ulp of std::exp: x = n ln2 + r with |r| <= ln2 / 2, so
// exp(x) = 2^n exp(r), exp(r) by its Taylor polynomial of degree 7 (error below 6e-9, relative);
// exp(x) = 0 below -87 (where float would underflow) and NaN stays NaN. double: std::exp.
template <typename acc_t>
inline acc_t softmax_exp(acc_t x) {
  return std::exp(x);
}

template <>
inline float softmax_exp<float>(float x) {
  const float clamped = x > 88.f ? 88.f : (x < -87.f ? -87.f : x);
  const float rounded = std::floor(clamped * 1.44269504088896341f + 0.5f);
  const float n = rounded == rounded ? rounded : 0.f;  // NaN: keep the int conversion defined
  // ln 2 in two parts, the first exact in 16 bits, so that n * first part is exact.
  const float r = (clamped - n * 0.693145751953125f) - n * 1.42860682030941723e-6f;
  float p = 1.f / 5040.f;
  p = p * r + 1.f / 720.f;
  p = p * r + 1.f / 120.f;
  p = p * r + 1.f / 24.f;
  p = p * r + 1.f / 6.f;
  p = p * r + 0.5f;
  p = p * r + 1.f;
  p = p * r + 1.f;
  const int32_t bits = (int32_t(n) + 127) << 23;  // 2^n, n in [-126, 127]
  float power;
  std::memcpy(&power, &bits, sizeof(power));
  return x < -87.f ? 0.f : p * power;
}

// The weights of one pixel's points, `groups` groups of `points`: the mask itself, or its softmax
// over each group's points, exp(logit - max) / sum as MaskWeights in chunks.h. `scratch` holds
// groups * points values.
template <typename acc_t, typename scalar_t>
void point_weights(const scalar_t* __restrict mask, int64_t groups, int64_t points, bool softmax,
                   acc_t* __restrict out, acc_t* __restrict scratch) {
  const int64_t count = groups * points;
  if (!softmax) {
    for (int64_t q = 0; q < count; ++q) out[q] = acc_t(mask[q]);
    return;
  }
  for (int64_t g = 0; g < groups; ++g) {  // each group's max, repeated for each of its points
    const scalar_t* logits = mask + g * points;
    acc_t max = acc_t(logits[0]);
    for (int64_t p = 1; p < points; ++p) max = acc_t(logits[p]) > max ? acc_t(logits[p]) : max;
    for (int64_t p = 0; p < points; ++p) scratch[g * points + p] = max;
  }
  for (int64_t q = 0; q < count; ++q) out[q] = softmax_exp(acc_t(mask[q]) - scratch[q]);
  for (int64_t g = 0; g < groups; ++g) {
    acc_t* e = out + g * points;
    acc_t sum = 0;
    for (int64_t p = 0; p < points; ++p) sum += e[p];
    const acc_t inv_sum = acc_t(1) / sum;
    for (int64_t p = 0; p < points; ++p) e[p] *= inv_sum;
  }
}

// Where a row's samples read: sample q at the window centre plus (dx[q] + offset x,
// dy[q] + offset y) * scale, the offsets interleaved (x, y) as in the op's layout (dcnv3_sample).
// A sample reads something only when -1 < h < rows and -1 < w < cols (false for NaN and inf).
template <typename acc_t, typename scalar_t>
void locate_samples(CornerTable<acc_t>& table, int64_t count, const acc_t* __restrict dx,
                    const acc_t* __restrict dy, const scalar_t* __restrict offset, acc_t centre_h, acc_t centre_w,
                    acc_t scale, int32_t rows, int32_t cols) {
  acc_t* __restrict h_out = table.h.data();
  acc_t* __restrict w_out = table.w.data();
  for (int64_t q = 0; q < count; ++q) {
    const acc_t w = centre_w + (dx[q] + acc_t(offset[2 * q])) * scale;
    const acc_t h = centre_h + (dy[q] + acc_t(offset[2 * q + 1])) * scale;
    // Bitwise & rather than &&: no branches, so that the loop vectorises.
    const bool valid = (h > acc_t(-1)) & (w > acc_t(-1)) & (h < acc_t(rows)) & (w < acc_t(cols));
    h_out[q] = valid ? h : CornerTable<acc_t>::kNowhere;
    w_out[q] = valid ? w : CornerTable<acc_t>::kNowhere;
  }
}

// The bilinear corners of the located samples (bilinear_setup): the forward's table holds the
// weights times the point weights `coeff`, the backward's the bilinear weights and their
// derivatives. Branch-free, with the corner tests on integers, so that the loop vectorises (which
// also needs -fno-trapping-math, ops/_extension.py).
template <bool Backward, typename acc_t>
void find_corners_into(int64_t count, const acc_t* __restrict hs, const acc_t* __restrict ws,
                       const acc_t* __restrict coeff, int32_t rows, int32_t cols, int32_t* __restrict p0,
                       int32_t* __restrict p1, int32_t* __restrict p2, int32_t* __restrict p3, acc_t* __restrict w0,
                       acc_t* __restrict w1, acc_t* __restrict w2, acc_t* __restrict w3, acc_t* __restrict h0,
                       acc_t* __restrict h1, acc_t* __restrict h2, acc_t* __restrict h3, acc_t* __restrict v0,
                       acc_t* __restrict v1, acc_t* __restrict v2, acc_t* __restrict v3) {
  for (int64_t q = 0; q < count; ++q) {
    const acc_t h = hs[q], w = ws[q];
    const acc_t floor_h = std::floor(h), floor_w = std::floor(w);
    const acc_t lh = h - floor_h, lw = w - floor_w, hh = acc_t(1) - lh, hw = acc_t(1) - lw;
    const int32_t y0 = int32_t(floor_h), x0 = int32_t(floor_w), at = y0 * cols + x0;
    const bool top = (y0 >= 0) & (y0 < rows), bottom = (y0 >= -1) & (y0 + 1 < rows);
    const bool left = (x0 >= 0) & (x0 < cols), right = (x0 >= -1) & (x0 + 1 < cols);
    const bool in0 = top & left, in1 = top & right, in2 = bottom & left, in3 = bottom & right;
    p0[q] = in0 ? at : 0;
    p1[q] = in1 ? at + 1 : 0;
    p2[q] = in2 ? at + cols : 0;
    p3[q] = in3 ? at + cols + 1 : 0;
    const acc_t c = Backward ? acc_t(1) : coeff[q];
    w0[q] = in0 ? c * (hh * hw) : acc_t(0);
    w1[q] = in1 ? c * (hh * lw) : acc_t(0);
    w2[q] = in2 ? c * (lh * hw) : acc_t(0);
    w3[q] = in3 ? c * (lh * lw) : acc_t(0);
    if constexpr (Backward) {
      h0[q] = in0 ? -hw : acc_t(0);
      h1[q] = in1 ? -lw : acc_t(0);
      h2[q] = in2 ? hw : acc_t(0);
      h3[q] = in3 ? lw : acc_t(0);
      v0[q] = in0 ? -hh : acc_t(0);
      v1[q] = in1 ? hh : acc_t(0);
      v2[q] = in2 ? -lh : acc_t(0);
      v3[q] = in3 ? lh : acc_t(0);
    }
  }
}

// The table's arrays as distinct restrict parameters: the compiler then knows that the corners'
// stores never overlap, which it needs to vectorise the loop.
template <bool Backward, typename acc_t>
void find_corners(CornerTable<acc_t>& table, int64_t count, const acc_t* coeff, int32_t rows, int32_t cols) {
  const int64_t c = table.capacity;
  int32_t* p = table.pixel.data();
  acc_t *w = table.weight.data(), *h = table.dweight_dh.data(), *v = table.dweight_dw.data();
  find_corners_into<Backward>(count, table.h.data(), table.w.data(), coeff, rows, cols, p, p + c, p + 2 * c,
                              p + 3 * c, w, w + c, w + 2 * c, w + 3 * c, h, h + c, h + 2 * c, h + 3 * c, v, v + c,
                              v + 2 * c, v + 3 * c);
}

// Forward of one chunk: acc = sum over the samples first .. first + points - 1 of the forward table
// of weight * (the chunk's channels at each corner); base points at the chunk in pixel 0. A zero
// weight adds nothing, so a non-finite value at pixel 0 never leaks into a sample that does not
// read it.
template <int VEC, typename acc_t, typename scalar_t>
void gather_chunk_cpu(const CornerTable<acc_t>& table, int64_t first, int64_t points, const scalar_t* base,
                      int64_t stride, acc_t (&acc)[VEC]) {
  acc_t sum[VEC];  // local, so that the compiler keeps it in registers whatever it inlines
  for (int i = 0; i < VEC; ++i) sum[i] = acc_t(0);
  const int64_t cap = table.capacity;
  const int32_t* pixel = table.pixel.data();
  const acc_t* weight = table.weight.data();
  for (int64_t q = first; q < first + points; ++q) {
    for (int k = 0; k < 4; ++k) {
      const acc_t wk = weight[k * cap + q];
      if (wk == acc_t(0)) continue;
      const scalar_t* v = base + int64_t(pixel[k * cap + q]) * stride;
      for (int i = 0; i < VEC; ++i) sum[i] += wk * acc_t(v[i]);
    }
  }
  for (int i = 0; i < VEC; ++i) acc[i] = sum[i];
}

// <v, g>. The OpenMP simd reduction lets the compiler sum in vector registers (without it a sum
// must be a serial chain of scalar adds).
template <int VEC, typename acc_t, typename scalar_t>
inline acc_t dot_chunk(const scalar_t* v, const acc_t (&g)[VEC]) {
  acc_t dot = 0;
#pragma omp simd reduction(+ : dot)
  for (int i = 0; i < VEC; ++i) dot += acc_t(v[i]) * g[i];
  return dot;
}

// Backward of one chunk of one (pixel, group) over its `points` samples (backward table): adds
// coeff * weight * grad to each corner's input gradient and, per sample, the chunk's share of the
// gradients of its point weight and of its location (before coeff * scale) to d_mask, d_h, d_w.
template <int VEC, typename acc_t, typename scalar_t>
void backward_chunk_cpu(const CornerTable<acc_t>& table, int64_t points, const acc_t* coeff, const scalar_t* input,
                        scalar_t* grad_input, int64_t stride, const acc_t (&grad_in)[VEC], acc_t* d_mask, acc_t* d_h,
                        acc_t* d_w) {
  // Local copies: the stores into grad_input could otherwise alias (for the compiler) grad and the
  // table, and force them to be reloaded after every corner.
  acc_t grad[VEC];
  for (int i = 0; i < VEC; ++i) grad[i] = grad_in[i];
  const int64_t cap = table.capacity;
  const int32_t* pixel = table.pixel.data();
  const acc_t *weight = table.weight.data(), *along_h = table.dweight_dh.data(), *along_w = table.dweight_dw.data();
  for (int64_t p = 0; p < points; ++p) {
    acc_t sum_mask = 0, sum_h = 0, sum_w = 0;
    const acc_t m = coeff[p];
    for (int k = 0; k < 4; ++k) {
      const int64_t e = k * cap + p;
      const acc_t wk = weight[e], hk = along_h[e], vk = along_w[e];
      if (wk == acc_t(0) && hk == acc_t(0) && vk == acc_t(0)) continue;  // outside the map
      const int64_t at = int64_t(pixel[e]) * stride;
      const acc_t dot = dot_chunk<VEC>(input + at, grad);
      sum_mask += wk * dot;
      sum_h += hk * dot;
      sum_w += vk * dot;
      const acc_t c = m * wk;
      if (c == acc_t(0)) continue;
      scalar_t* out = grad_input + at;
      acc_t sum[VEC];
      for (int i = 0; i < VEC; ++i) sum[i] = acc_t(out[i]) + c * grad[i];
      for (int i = 0; i < VEC; ++i) out[i] = scalar_t(sum[i]);
    }
    d_mask[p] += sum_mask;
    d_h[p] += sum_h;
    d_w[p] += sum_w;
  }
}

// Writes a (pixel, group)'s gradients of its point weights (turned into those of the logits when
// the softmax is fused: s_p (g_p - sum_q s_q g_q)) and of its offsets (x, y), which move a sample
// by coeff * scale pixels each; a sample that reads nothing gets zeros.
template <typename acc_t, typename scalar_t>
void write_row_gradients(const CornerTable<acc_t>& table, int64_t points, const acc_t* coeff, bool softmax,
                         acc_t scale, acc_t* d_mask, const acc_t* d_h, const acc_t* d_w, scalar_t* grad_mask,
                         scalar_t* grad_offset) {
  for (int64_t p = 0; p < points; ++p) {
    const bool valid = table.valid(p);
    grad_offset[2 * p] = scalar_t(valid ? d_w[p] * (coeff[p] * scale) : acc_t(0));
    grad_offset[2 * p + 1] = scalar_t(valid ? d_h[p] * (coeff[p] * scale) : acc_t(0));
  }
  if (softmax) {
    acc_t dot = 0;
    for (int64_t p = 0; p < points; ++p) dot += coeff[p] * d_mask[p];
    for (int64_t p = 0; p < points; ++p) d_mask[p] = coeff[p] * (d_mask[p] - dot);
  }
  for (int64_t p = 0; p < points; ++p) grad_mask[p] = scalar_t(d_mask[p]);
}

}  // namespace cpu
}  // namespace perception_ops
