// Bilinear sampling math shared by every DCNv3 and MSDA kernel, CPU and CUDA alike, so that the
// two backends cannot drift apart. Convention: pixel centres at integer coordinates; a sample is
// read only when -1 < h < height and -1 < w < width (false for NaN/inf, which are never read);
// corners outside the map contribute zero (zero padding).
#pragma once
#include <cmath>
#include <cstdint>

#ifdef __CUDACC__
#define PO_HD __host__ __device__ __forceinline__
#else
#define PO_HD inline
#endif

namespace perception_ops {

// The four corners of one bilinear sample: pixel index (y * width + x) of each corner, its weight,
// and the weight's derivatives with respect to h and w (for the coordinate gradients). Pixel
// indices are 32-bit (maps of fewer than 2^31 pixels, checked by the callers): 64-bit integer math
// costs several instructions per operation on GPUs, and every lane of a group repeats this work.
template <typename acc_t>
struct Bilinear {
  int32_t pixel[4];
  acc_t weight[4];
  acc_t dweight_dh[4];
  acc_t dweight_dw[4];
};

// Fills `s` for a sample at (h, w) and returns false when the sample reads nothing.
template <typename acc_t>
PO_HD bool bilinear_setup(acc_t h, acc_t w, int64_t height, int64_t width, Bilinear<acc_t>& s) {
  if (!(h > acc_t(-1) && w > acc_t(-1) && h < acc_t(height) && w < acc_t(width))) return false;
  const int32_t h0 = static_cast<int32_t>(floor(h));
  const int32_t w0 = static_cast<int32_t>(floor(w));
  const int32_t rows = static_cast<int32_t>(height), cols = static_cast<int32_t>(width);
  const acc_t lh = h - acc_t(h0), lw = w - acc_t(w0);
  const acc_t hh = acc_t(1) - lh, hw = acc_t(1) - lw;
  const acc_t weight[4] = {hh * hw, hh * lw, lh * hw, lh * lw};
  const acc_t d_dh[4] = {-hw, -lw, hw, lw};
  const acc_t d_dw[4] = {-hh, hh, -lh, lh};
#pragma unroll
  for (int k = 0; k < 4; ++k) {
    const int32_t y = h0 + (k >> 1), x = w0 + (k & 1);
    const bool inside = y >= 0 && y < rows && x >= 0 && x < cols;
    s.pixel[k] = inside ? y * cols + x : 0;
    s.weight[k] = inside ? weight[k] : acc_t(0);
    s.dweight_dh[k] = inside ? d_dh[k] : acc_t(0);
    s.dweight_dw[k] = inside ? d_dw[k] : acc_t(0);
  }
  return true;
}

// Pixel coordinates (h, w) of a normalised MSDA sampling location xy = (x, y) on a level of
// height x width, with grid_sample(align_corners=False) meaning (pixel = loc * size - 0.5).
template <typename acc_t, typename scalar_t>
PO_HD void msda_pixel(const scalar_t* xy, int64_t height, int64_t width, acc_t& h, acc_t& w) {
  w = acc_t(xy[0]) * acc_t(width) - acc_t(0.5);
  h = acc_t(xy[1]) * acc_t(height) - acc_t(0.5);
}

// DCNv3 window geometry (official semantics): point p = i * kernel_h + j, i along width (outer),
// j along height (inner); offset_scale multiplies both the regular grid and the learned offset.
struct DCNv3Geometry {
  int64_t batch, height, width, out_h, out_w;
  int64_t kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w, dilation_h, dilation_w;
  int64_t group, group_channels, points;
  double offset_scale;
  bool remove_center;
  bool mask_softmax;  // mask holds logits; the kernels apply softmax over each group's points

  PO_HD int64_t channels() const { return group * group_channels; }
};

// The points of a DCNv3 window in the official order (p = i * kernel_h + j, i along width, j along
// height), the centre skipped with remove_center. Stepping through them replaces a division per
// point; (dx, dy) is the point's displacement from the window centre, before offset_scale.
struct WindowWalker {
  int32_t i = 0, j = 0;
  int32_t kernel_h, centre_i, centre_j, dilation_h, dilation_w, half_h, half_w;
  bool remove_center;
  PO_HD explicit WindowWalker(const DCNv3Geometry& geo)
      : kernel_h(int32_t(geo.kernel_h)),
        centre_i(int32_t(geo.kernel_w / 2)),
        centre_j(int32_t(geo.kernel_h / 2)),
        dilation_h(int32_t(geo.dilation_h)),
        dilation_w(int32_t(geo.dilation_w)),
        half_h(int32_t(geo.dilation_h * (geo.kernel_h - 1) / 2)),
        half_w(int32_t(geo.dilation_w * (geo.kernel_w - 1) / 2)),
        remove_center(geo.remove_center) {
    skip_centre();
  }
  PO_HD int32_t dx() const { return i * dilation_w - half_w; }
  PO_HD int32_t dy() const { return j * dilation_h - half_h; }
  PO_HD void next() {
    step();
    skip_centre();
  }

 private:
  PO_HD void step() {
    if (++j == kernel_h) {
      j = 0;
      ++i;
    }
  }
  PO_HD void skip_centre() {
    if (remove_center && i == centre_i && j == centre_j) step();
  }
};

}  // namespace perception_ops
