// Small CUDA helpers shared by the DCNv3 and MSDA kernels.
#pragma once
#include <ATen/OpMathType.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include <algorithm>

namespace perception_ops {

constexpr int kThreads = 256;

inline int64_t grid_blocks(int64_t total) {
  // A grid-stride loop covers the rest; capping keeps the launch legal for any size.
  return std::max<int64_t>(1, std::min<int64_t>((total + kThreads - 1) / kThreads, 65535LL * 8));
}

// Sum over aligned segments of `width` lanes (width a power of two <= 32); every lane of the warp
// must call it. The result is valid in every lane of the segment.
template <typename T>
__device__ __forceinline__ T segment_sum(T v, int width) {
  for (int delta = width >> 1; delta > 0; delta >>= 1) v += __shfl_xor_sync(0xffffffffu, v, delta);
  return v;
}

// True when each group of `channels` threads fits in, and is aligned with, one warp, so that the
// per-channel partial gradients can be reduced with shuffles instead of atomics.
inline bool warp_segments(int64_t channels) { return channels <= 32 && (channels & (channels - 1)) == 0; }

}  // namespace perception_ops
