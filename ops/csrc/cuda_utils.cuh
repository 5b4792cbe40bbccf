// CUDA plumbing shared by the DCNv3 and MSDA kernels: launch shape, the chunk width for a dtype,
// the atomic scatter of input gradients and the cross-lane reduction of per-sample gradients.
#pragma once
#include <ATen/OpMathType.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include <algorithm>
#include <cstdint>
#include <initializer_list>
#include <type_traits>

#include "chunks.h"

namespace perception_ops {

constexpr int kThreads = 256;

inline int64_t grid_blocks(int64_t total) {
  // A grid-stride loop covers the rest; capping keeps the launch legal for any size.
  return std::max<int64_t>(1, std::min<int64_t>((total + kThreads - 1) / kThreads, 65535LL * 8));
}

// Channels per thread. The kernels are instruction-bound rather than bandwidth-bound (Nsight
// Compute, docs/ops.md): every lane of a group repeats the per-sample work (location, bilinear
// weights, mask), so fewer, wider lanes do less of it. Forward: 8 channels (two 16-byte loads in
// fp32, one in fp16/bf16; 2 in fp64, whose wider chunks spill registers).
template <typename scalar_t>
constexpr int forward_chunk_width() {
  return sizeof(scalar_t) >= 8 ? 2 : 8;
}

// Backward: 16 bytes of the accumulator type, so that each lane adds one float4 (two doubles) of
// input gradient per corner and a warp's atomics cover contiguous memory: the backward is bound by
// L2 atomic throughput, and a half-type lane owning 8 channels would split every 32-byte sector
// between two atomic instructions.
template <typename acc_t>
constexpr int backward_chunk_width() {
  return 16 / int(sizeof(acc_t));
}

// The widest chunk (in elements, at most max_vec) that every pointer's alignment allows for vector
// accesses; views with a storage offset may be less aligned than fresh allocations.
template <typename scalar_t>
int aligned_chunk_cap(int max_vec, std::initializer_list<const void*> pointers) {
  int cap = max_vec;
  for (const void* p : pointers) {
    while (cap > 1 && reinterpret_cast<uintptr_t>(p) % (cap * sizeof(scalar_t)) != 0) cap /= 2;
  }
  return cap;
}

// Thread index -> (row, group, lane): the chunk `lane` of group `group` of row `row`, where a row is
// one (batch, output pixel) of DCNv3 or one (batch, query) of MSDA and a group a DCNv3 group or an
// MSDA head. Consecutive threads are consecutive lanes of a group, then consecutive groups.
struct ChunkThread {
  int64_t row, group;
  int lane;
  __device__ __forceinline__ ChunkThread(int64_t idx, int64_t groups, int lanes)
      : row(idx / lanes / groups), group((idx / lanes) % groups), lane(int(idx % lanes)) {}
};

// True when the lanes of a group form an aligned power-of-two segment of a warp, so that their
// per-sample gradients can be summed with shuffles instead of atomics.
inline bool lanes_fit_warp(int64_t lanes) { return lanes <= 32 && (lanes & (lanes - 1)) == 0; }

// Sum over aligned segments of `width` lanes (width a power of two <= 32); every lane of the warp
// must call it. The result is valid in every lane of the segment.
template <typename T>
__device__ __forceinline__ T segment_sum(T v, int width) {
  for (int delta = width >> 1; delta > 0; delta >>= 1) v += __shfl_xor_sync(0xffffffffu, v, delta);
  return v;
}

// Hopper adds float2/float4 in one atomic: a quarter of the atomic instructions for fp32 chunks.
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
constexpr bool kVectorAtomics = true;
#else
constexpr bool kVectorAtomics = false;
#endif

// Atomic adds of a chunk's input gradient into an accumulation buffer (fp32 for half types).
template <typename acc_t>
struct AtomicScatter {
  acc_t* grad;
  template <int VEC>
  __device__ __forceinline__ void operator()(int64_t at, const acc_t (&values)[VEC]) const {
    constexpr bool vector_float = kVectorAtomics && std::is_same_v<acc_t, float>;
    if constexpr (vector_float && VEC % 4 == 0) {
#pragma unroll
      for (int i = 0; i < VEC; i += 4)
        atomicAdd(reinterpret_cast<float4*>(grad + at + i),
                  make_float4(values[i], values[i + 1], values[i + 2], values[i + 3]));
    } else if constexpr (vector_float && VEC % 2 == 0) {
#pragma unroll
      for (int i = 0; i < VEC; i += 2)
        atomicAdd(reinterpret_cast<float2*>(grad + at + i), make_float2(values[i], values[i + 1]));
    } else {
#pragma unroll
      for (int i = 0; i < VEC; ++i) atomicAdd(grad + at + i, values[i]);
    }
  }
};

// Sums the lanes' shares of a sample's gradients and writes them once: with shuffles when the
// lanes of a group fit a warp segment, else with atomics into zeroed buffers.
template <typename acc_t>
struct LaneCommit {
  acc_t* grad_weight;
  acc_t* grad_xy;
  int lanes;
  int lane;
  bool shuffle;
  bool active;
  __device__ __forceinline__ void operator()(int64_t sample, acc_t d_weight, acc_t d_x, acc_t d_y) const {
    if (shuffle) {
      d_weight = segment_sum(d_weight, lanes);
      d_x = segment_sum(d_x, lanes);
      d_y = segment_sum(d_y, lanes);
      if (active && lane == 0) {
        grad_weight[sample] = d_weight;
        grad_xy[2 * sample] = d_x;
        grad_xy[2 * sample + 1] = d_y;
      }
    } else if (active && (d_weight != acc_t(0) || d_x != acc_t(0) || d_y != acc_t(0))) {
      atomicAdd(grad_weight + sample, d_weight);
      atomicAdd(grad_xy + 2 * sample, d_x);
      atomicAdd(grad_xy + 2 * sample + 1, d_y);
    }
  }
};

}  // namespace perception_ops
