// Per-chunk bodies of the DCNv3 and MSDA kernels, shared by the CPU loops and the CUDA threads.
//
// A chunk is VEC consecutive channels of one (output pixel, group) of DCNv3 or one (query, head)
// of MSDA. CUDA runs one thread per chunk, with VEC chosen per direction from the dtype
// (cuda_utils.cuh), and the lanes of a group sit side by side in a warp. The CPU loops over the
// chunks of a group with a wider VEC. Both call the functions below, so the CPU float64 tests check
// the arithmetic that the GPU runs. Only the thread indexing, the vector loads, the atomics and the
// cross-lane reduction are CUDA-only.
//
// Backward bodies report through two callables:
//   scatter(element_offset, values[VEC])   adds values to the input gradient at that offset;
//   commit(sample, d_weight, d_x, d_y)      receives this chunk's share of the gradient of one
//                                           sample's weight (mask or attention) and location.
// commit is called for every sample, valid or not, in the same order in every chunk, so a CUDA
// implementation can reduce across the lanes of a group with shuffles.
#pragma once
#include <type_traits>

#include "sampling.h"

namespace perception_ops {

// VEC elements of scalar_t, aligned so that a CUDA thread moves them in one instruction.
template <typename scalar_t, int VEC>
struct alignas(sizeof(scalar_t) * VEC) Pack {
  scalar_t v[VEC];
};

template <typename scalar_t, typename acc_t, int VEC>
PO_HD void load_chunk(const scalar_t* p, acc_t (&out)[VEC]) {
#ifdef __CUDA_ARCH__
  const Pack<scalar_t, VEC> pack = *reinterpret_cast<const Pack<scalar_t, VEC>*>(p);
#pragma unroll
  for (int i = 0; i < VEC; ++i) out[i] = acc_t(pack.v[i]);
#else
  for (int i = 0; i < VEC; ++i) out[i] = acc_t(p[i]);
#endif
}

template <typename scalar_t, typename acc_t, int VEC>
PO_HD void store_chunk(scalar_t* p, const acc_t (&in)[VEC]) {
#ifdef __CUDA_ARCH__
  Pack<scalar_t, VEC> pack;
#pragma unroll
  for (int i = 0; i < VEC; ++i) pack.v[i] = scalar_t(in[i]);
  *reinterpret_cast<Pack<scalar_t, VEC>*>(p) = pack;
#else
  for (int i = 0; i < VEC; ++i) p[i] = scalar_t(in[i]);
#endif
}

// acc += coeff * (bilinear sample `s` of the chunk), corner k read at base + s.pixel[k] * stride.
// The four corner loads come first and unconditionally (a corner outside the map has pixel 0 and
// weight 0, so its address is valid), so that they are in flight together instead of one after
// another behind a branch; only the adds are skipped for zero weights, so that a non-finite value
// at pixel 0 never leaks into a sample that does not read it.
template <typename scalar_t, typename acc_t, int VEC>
PO_HD void gather_chunk(const scalar_t* base, int32_t stride, const Bilinear<acc_t>& s, acc_t coeff,
                        acc_t (&acc)[VEC]) {
  acc_t v[4][VEC];
#pragma unroll
  for (int k = 0; k < 4; ++k) load_chunk<scalar_t, acc_t, VEC>(base + int64_t(s.pixel[k]) * stride, v[k]);
#pragma unroll
  for (int k = 0; k < 4; ++k) {
    const acc_t wk = coeff * s.weight[k];
    if (wk == acc_t(0)) continue;
#pragma unroll
    for (int i = 0; i < VEC; ++i) acc[i] += wk * v[k][i];
  }
}

// Backward of gather_chunk for one sample: scatters coeff * weight_k * grad to every corner and
// adds to d_weight, d_h and d_w the dot products <v_k, grad> weighted by the bilinear weights and
// by their derivatives along h and w. `base_offset` is base's element offset in the input tensor.
template <typename scalar_t, typename acc_t, int VEC, typename Scatter>
PO_HD void gather_chunk_backward(const scalar_t* input, int64_t base_offset, int32_t stride,
                                 const Bilinear<acc_t>& s, acc_t coeff, const acc_t (&grad)[VEC], Scatter& scatter,
                                 acc_t& d_weight, acc_t& d_h, acc_t& d_w) {
  // Loads first, as in gather_chunk, so that the four are in flight together.
  acc_t v[4][VEC];
#pragma unroll
  for (int k = 0; k < 4; ++k) {
    load_chunk<scalar_t, acc_t, VEC>(input + base_offset + int64_t(s.pixel[k]) * stride, v[k]);
  }
#pragma unroll
  for (int k = 0; k < 4; ++k) {
    if (s.weight[k] == acc_t(0) && s.dweight_dh[k] == acc_t(0) && s.dweight_dw[k] == acc_t(0)) continue;
    acc_t dot = 0;
#pragma unroll
    for (int i = 0; i < VEC; ++i) dot += v[k][i] * grad[i];
    d_weight += s.weight[k] * dot;
    d_h += s.dweight_dh[k] * dot;
    d_w += s.dweight_dw[k] * dot;
    const acc_t wk = coeff * s.weight[k];
    if (wk == acc_t(0)) continue;
    acc_t add[VEC];
#pragma unroll
    for (int i = 0; i < VEC; ++i) add[i] = wk * grad[i];
    scatter(base_offset + int64_t(s.pixel[k]) * stride, add);
  }
}

// ---- DCNv3 ------------------------------------------------------------------------------------

template <typename acc_t>
PO_HD acc_t exp_of(acc_t x) {
#ifdef __CUDA_ARCH__
  return exp(x);  // CUDA's float and double overloads
#else
  return std::exp(x);
#endif
}

// The weight of each point of one (pixel, group): the mask value itself, or with the softmax fused
// in, exp(logit - max) / sum over the group's points, with max and sum computed once per chunk.
template <typename acc_t>
struct MaskWeights {
  acc_t max = acc_t(0), inv_sum = acc_t(1);
  bool softmax;
  template <typename scalar_t>
  PO_HD MaskWeights(const scalar_t* logits, int64_t points, bool softmax_) : softmax(softmax_) {
    if (!softmax) return;
    max = acc_t(logits[0]);
    for (int64_t p = 1; p < points; ++p) max = acc_t(logits[p]) > max ? acc_t(logits[p]) : max;
    acc_t sum = 0;
    for (int64_t p = 0; p < points; ++p) sum += exp_of(acc_t(logits[p]) - max);
    inv_sum = acc_t(1) / sum;
  }
  template <typename scalar_t>
  PO_HD acc_t operator()(const scalar_t* logits, int64_t p) const {
    return softmax ? exp_of(acc_t(logits[p]) - max) * inv_sum : acc_t(logits[p]);
  }
};

// Backward of the fused softmax over one (pixel, group) row, in place: turns the gradients g of the
// point weights s into those of the logits, s_p * (g_p - sum_q s_q g_q).
template <typename acc_t, typename scalar_t, typename grad_t>
PO_HD void mask_softmax_backward(const scalar_t* logits, grad_t* grad, int64_t points) {
  const MaskWeights<acc_t> weights(logits, points, true);
  acc_t dot = 0;
  for (int64_t p = 0; p < points; ++p) dot += weights(logits, p) * acc_t(grad[p]);
  for (int64_t p = 0; p < points; ++p) grad[p] = grad_t(weights(logits, p) * (acc_t(grad[p]) - dot));
}
// `np_` indexes (batch, output pixel); channels c0 .. c0 + VEC - 1 of group g.

// Batch index of `np_` and the centre of its sampling window in input pixels, computed once per
// chunk: 64-bit division is slow on GPUs, so it stays out of the per-sample loop.
template <typename acc_t>
struct DCNv3Site {
  int64_t n;
  acc_t centre_h, centre_w;
  PO_HD DCNv3Site(const DCNv3Geometry& geo, int64_t np_) {
    const int64_t pixels = geo.out_h * geo.out_w, pix = np_ % pixels;
    n = np_ / pixels;
    const int64_t ho = pix / geo.out_w, wo = pix % geo.out_w;
    centre_h = acc_t(ho * geo.stride_h + geo.dilation_h * (geo.kernel_h - 1) / 2 - geo.pad_h);
    centre_w = acc_t(wo * geo.stride_w + geo.dilation_w * (geo.kernel_w - 1) / 2 - geo.pad_w);
  }
};

// Bilinear sample of the current window point (official semantics: offset_scale multiplies both the
// regular grid displacement and the learned offset); false, with `s` untouched, when it reads nothing.
template <typename acc_t, typename scalar_t>
PO_HD bool dcnv3_sample(const DCNv3Geometry& geo, const DCNv3Site<acc_t>& site, const WindowWalker& point,
                        const scalar_t* offset, int64_t sample, acc_t scale, Bilinear<acc_t>& s) {
  const acc_t w = site.centre_w + (acc_t(point.dx()) + acc_t(offset[2 * sample])) * scale;
  const acc_t h = site.centre_h + (acc_t(point.dy()) + acc_t(offset[2 * sample + 1])) * scale;
  return bilinear_setup<acc_t>(h, w, geo.height, geo.width, s);
}

// Points unrolled per iteration in the forward gather: enough to overlap loads, few enough that a
// wide chunk's corner values still fit in registers.
template <int VEC>
constexpr int forward_unroll() {
  return VEC >= 8 ? 2 : 3;
}

template <typename scalar_t, typename acc_t, int VEC>
PO_HD void dcnv3_forward_chunk(const DCNv3Geometry& geo, const scalar_t* input, const scalar_t* offset,
                               const scalar_t* mask, int64_t np_, int64_t g, int64_t c0, acc_t (&acc)[VEC]) {
  const DCNv3Site<acc_t> site(geo, np_);
  const int64_t C = geo.channels();
  const scalar_t* base = input + site.n * geo.height * geo.width * C + g * geo.group_channels + c0;
  const int64_t sample0 = (np_ * geo.group + g) * geo.points;
  const acc_t scale = acc_t(geo.offset_scale);
  const MaskWeights<acc_t> weights(mask + sample0, geo.points, geo.mask_softmax);
#pragma unroll
  for (int i = 0; i < VEC; ++i) acc[i] = acc_t(0);
  // No branch on the sample's validity: an invalid sample keeps the all-zero Bilinear (pixel 0,
  // zero weights) and adds nothing, so the unrolled iterations can overlap their loads.
  WindowWalker point(geo);
#pragma unroll forward_unroll<VEC>()
  for (int64_t p = 0; p < geo.points; ++p, point.next()) {
    Bilinear<acc_t> s{};
    dcnv3_sample<acc_t>(geo, site, point, offset, sample0 + p, scale, s);
    gather_chunk<scalar_t, acc_t, VEC>(base, int32_t(C), s, weights(mask + sample0, p), acc);
  }
}

template <typename scalar_t, typename acc_t, int VEC, typename Scatter, typename Commit>
PO_HD void dcnv3_backward_chunk(const DCNv3Geometry& geo, const scalar_t* input, const scalar_t* offset,
                                const scalar_t* mask, const acc_t (&grad)[VEC], int64_t np_, int64_t g, int64_t c0,
                                bool active, Scatter& scatter, Commit& commit) {
  const DCNv3Site<acc_t> site(geo, np_);
  const int64_t C = geo.channels();
  const int64_t base_offset = site.n * geo.height * geo.width * C + g * geo.group_channels + c0;
  const int64_t sample0 = (np_ * geo.group + g) * geo.points;
  const acc_t scale = acc_t(geo.offset_scale);
  // With the softmax fused, d_mask is the gradient of the point weight; the caller converts it to
  // that of the logit with mask_softmax_backward once every chunk has committed.
  const MaskWeights<acc_t> weights(mask + sample0, geo.points, geo.mask_softmax && active);
  WindowWalker point(geo);
  for (int64_t p = 0; p < geo.points; ++p, point.next()) {
    acc_t d_mask = 0, d_h = 0, d_w = 0;
    Bilinear<acc_t> s;
    if (active && dcnv3_sample<acc_t>(geo, site, point, offset, sample0 + p, scale, s)) {
      const acc_t m = weights(mask + sample0, p);
      gather_chunk_backward<scalar_t, acc_t, VEC>(input, base_offset, int32_t(C), s, m, grad, scatter, d_mask, d_h,
                                                  d_w);
      d_h *= m * scale;
      d_w *= m * scale;
    }
    commit(sample0 + p, d_mask, d_w, d_h);
  }
}

// ---- Multi-scale deformable attention ---------------------------------------------------------
// `nq` indexes (batch, query); channels c0 .. c0 + VEC - 1 of head m.

struct MSDAShape {
  int64_t batch, keys, heads, dim, queries, levels, points;
};

// False for levels whose (start, H, W) would read outside value, so bad tables cannot corrupt memory.
PO_HD bool level_fits(int64_t start, int64_t height, int64_t width, int64_t keys) {
  // The pixel count bound keeps Bilinear's 32-bit pixel indices exact (a level that large would
  // need a value tensor of hundreds of GB).
  return start >= 0 && height > 0 && width > 0 && height * width < (int64_t(1) << 31) &&
         start + height * width <= keys;
}

template <typename scalar_t, typename acc_t, int VEC>
PO_HD void msda_forward_chunk(const MSDAShape& sh, const scalar_t* value, const int64_t* shapes,
                              const int64_t* starts, const scalar_t* loc, const scalar_t* attn, int64_t nq,
                              int64_t m, int64_t c0, acc_t (&acc)[VEC]) {
  const int64_t M = sh.heads, D = sh.dim, P = sh.points, n = nq / sh.queries;
  const int64_t sample0 = (nq * M + m) * sh.levels * P;
#pragma unroll
  for (int i = 0; i < VEC; ++i) acc[i] = acc_t(0);
  for (int64_t l = 0; l < sh.levels; ++l) {
    const int64_t height = shapes[2 * l], width = shapes[2 * l + 1];
    if (!level_fits(starts[l], height, width, sh.keys)) continue;
    const scalar_t* base = value + ((n * sh.keys + starts[l]) * M + m) * D + c0;
    // Branch-free samples, as in the DCNv3 forward.
#pragma unroll forward_unroll<VEC>()
    for (int64_t p = 0; p < P; ++p) {
      const int64_t sample = sample0 + l * P + p;
      acc_t h, w;
      msda_pixel<acc_t>(loc + 2 * sample, height, width, h, w);
      Bilinear<acc_t> s{};
      bilinear_setup<acc_t>(h, w, height, width, s);
      gather_chunk<scalar_t, acc_t, VEC>(base, int32_t(M * D), s, acc_t(attn[sample]), acc);
    }
  }
}

template <typename scalar_t, typename acc_t, int VEC, typename Scatter, typename Commit>
PO_HD void msda_backward_chunk(const MSDAShape& sh, const scalar_t* value, const int64_t* shapes,
                               const int64_t* starts, const scalar_t* loc, const scalar_t* attn,
                               const acc_t (&grad)[VEC], int64_t nq, int64_t m, int64_t c0, bool active,
                               Scatter& scatter, Commit& commit) {
  const int64_t M = sh.heads, D = sh.dim, P = sh.points, n = nq / sh.queries;
  const int64_t sample0 = (nq * M + m) * sh.levels * P;
  for (int64_t l = 0; l < sh.levels; ++l) {
    const int64_t height = shapes[2 * l], width = shapes[2 * l + 1];
    const bool fits = active && level_fits(starts[l], height, width, sh.keys);
    const int64_t base_offset = ((n * sh.keys + starts[l]) * M + m) * D + c0;
    for (int64_t p = 0; p < P; ++p) {
      const int64_t sample = sample0 + l * P + p;
      acc_t d_attn = 0, d_h = 0, d_w = 0;
      acc_t h, w;
      msda_pixel<acc_t>(loc + 2 * sample, height, width, h, w);
      Bilinear<acc_t> s;
      if (fits && bilinear_setup<acc_t>(h, w, height, width, s)) {
        const acc_t a = acc_t(attn[sample]);
        gather_chunk_backward<scalar_t, acc_t, VEC>(value, base_offset, int32_t(M * D), s, a, grad, scatter, d_attn,
                                                    d_h, d_w);
        d_w *= a * acc_t(width);
        d_h *= a * acc_t(height);
      }
      commit(sample, d_attn, d_w, d_h);
    }
  }
}

// ---- CPU-side plumbing ------------------------------------------------------------------------

// Plain adds into a gradient buffer, for loops in which one task owns every chunk it touches.
template <typename scalar_t>
struct AddScatter {
  scalar_t* grad;
  template <typename acc_t, int VEC>
  void operator()(int64_t at, const acc_t (&values)[VEC]) const {
    for (int i = 0; i < VEC; ++i) grad[at + i] = scalar_t(acc_t(grad[at + i]) + values[i]);
  }
};

// Sums the chunks' shares of each sample's gradients (the CPU counterpart of the lane reduction).
template <typename scalar_t>
struct AddCommit {
  scalar_t* grad_weight;
  scalar_t* grad_xy;
  template <typename acc_t>
  void operator()(int64_t sample, acc_t d_weight, acc_t d_x, acc_t d_y) const {
    grad_weight[sample] = scalar_t(acc_t(grad_weight[sample]) + d_weight);
    grad_xy[2 * sample] = scalar_t(acc_t(grad_xy[2 * sample]) + d_x);
    grad_xy[2 * sample + 1] = scalar_t(acc_t(grad_xy[2 * sample + 1]) + d_y);
  }
};

// Calls f(std::integral_constant<int, VEC>{}) with the largest VEC in {32, 16, 8, 4, 2, 1} that is at
// most MaxVec and `cap` and divides `channels`. Chosen from the shape alone: no tuning table that
// can miss.
template <int MaxVec, int VEC = 32, typename F>
void dispatch_chunk_width(int64_t channels, int cap, F&& f) {
  if constexpr (VEC == 1) {
    f(std::integral_constant<int, 1>{});
  } else if constexpr (VEC > MaxVec) {
    dispatch_chunk_width<MaxVec, VEC / 2>(channels, cap, f);
  } else {
    if (channels % VEC == 0 && VEC <= cap) {
      f(std::integral_constant<int, VEC>{});
    } else {
      dispatch_chunk_width<MaxVec, VEC / 2>(channels, cap, f);
    }
  }
}

}  // namespace perception_ops
