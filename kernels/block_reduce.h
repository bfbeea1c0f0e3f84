// Reduction building blocks: combine operators and the block-wide reduction.
#pragma once

// Combine operators.  Integer sums and products wrap; max/min propagate NaN (common.h).
struct fj_op_sum {
  template <class T> __device__ __forceinline__ T operator()(T a, T b) const {
    if constexpr (fj_traits<T>::is_float) { return a + b; } else { return fj_add(a, b); }
  }
};
struct fj_op_prod {
  template <class T> __device__ __forceinline__ T operator()(T a, T b) const {
    if constexpr (fj_traits<T>::is_float) { return a * b; } else { return fj_mul(a, b); }
  }
};
struct fj_op_max {
  template <class T> __device__ __forceinline__ T operator()(T a, T b) const { return fj_max(a, b); }
};
struct fj_op_min {
  template <class T> __device__ __forceinline__ T operator()(T a, T b) const { return fj_min(a, b); }
};
struct fj_op_and {
  template <class T> __device__ __forceinline__ T operator()(T a, T b) const { return (T)(a & b); }
};
struct fj_op_or {
  template <class T> __device__ __forceinline__ T operator()(T a, T b) const { return (T)(a | b); }
};
struct fj_op_xor {
  template <class T> __device__ __forceinline__ T operator()(T a, T b) const { return (T)(a ^ b); }
};

// Block-wide reduction of one value per thread; the result is valid in thread 0.
// Warp shuffles first, then one partial per warp through shared memory (`smem`, 32 slots)
// and a last warp-shuffle pass in warp 0.  The order of combination is fixed, so a
// launch with the same grid and block sizes is bit-for-bit deterministic.
// In the host fast mode a block is one thread (blockDim.x == 1): nothing to combine.
template <class T, class Op>
FJ_DEVICE T fj_block_reduce(T v, T identity, T* smem, Op op) {
  const unsigned lane = threadIdx.x % 32u;
  const unsigned warp = threadIdx.x / 32u;
  const unsigned warp_base = threadIdx.x - lane;
  const unsigned width = blockDim.x - warp_base < 32u ? blockDim.x - warp_base : 32u;
  for (unsigned offset = 16u; offset > 0u; offset /= 2u) {
    const T other = __shfl_down_sync(0xffffffffu, v, offset);
    if (lane + offset < width) v = op(v, other);
  }
  const unsigned warps = (blockDim.x + 31u) / 32u;
  if (warps > 1u) {
    if (lane == 0u) smem[warp] = v;
    __syncthreads();  // every warp's partial is in shared memory
    if (warp == 0u) {
      v = lane < warps ? smem[lane] : identity;
      for (unsigned offset = 16u; offset > 0u; offset /= 2u) {
        const T other = __shfl_down_sync(0xffffffffu, v, offset);
        v = op(v, other);
      }
    }
    __syncthreads();  // shared memory is free for the next row
  }
  return v;
}
