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
  template <class T> __device__ __forceinline__ T operator()(T a, T b) const { return fj_max_acc(a, b); }
};
struct fj_op_min {
  template <class T> __device__ __forceinline__ T operator()(T a, T b) const { return fj_min_acc(a, b); }
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
// The lanes of this thread's warp that exist (the last warp of a block may be partial;
// in the host fast mode a block is one thread).
FJ_DEVICE unsigned fj_warp_width() {
  const unsigned warp_base = threadIdx.x - threadIdx.x % 32u;
  return blockDim.x - warp_base < 32u ? blockDim.x - warp_base : 32u;
}

// Tree reduction over the warp's lanes; lane 0 ends with the warp's result.
template <class T, class Op>
FJ_DEVICE T fj_warp_reduce(T v, unsigned width, Op op) {
  const unsigned lane = threadIdx.x % 32u;
  for (unsigned offset = 16u; offset > 0u; offset /= 2u) {
    const T other = __shfl_down_sync(0xffffffffu, v, offset);
    if (lane + offset < width) v = op(v, other);
  }
  return v;
}

template <class T, class Op>
FJ_DEVICE T fj_block_reduce(T v, T identity, T* smem, Op op) {
  const unsigned lane = threadIdx.x % 32u;
  const unsigned warp = threadIdx.x / 32u;
  v = fj_warp_reduce(v, fj_warp_width(), op);
  const unsigned warps = (blockDim.x + 31u) / 32u;
  if (warps > 1u) {
    if (lane == 0u) smem[warp] = v;
    __syncthreads();  // every warp's partial is in shared memory
    if (warp == 0u) {
      v = lane < warps ? smem[lane] : identity;
      v = fj_warp_reduce(v, 32u, op);
    }
    __syncthreads();  // shared memory is free for the next row
  }
  return v;
}

// argmax/argmin: (value, index) pairs.  A NaN wins over any number (JAX returns the first
// NaN's index); ties go to the smaller index, so the first occurrence wins.
// Without branches (bitwise operations on the comparisons, selects), so the host compiler
// vectorises a row's lanes of (value, index) pairs as it does a max's.
template <bool Max, class T, class I>
FJ_DEVICE bool fj_arg_better(T va, I ia, T vb, I ib) {
  const bool nan_a = va != va, nan_b = vb != vb;
  const bool wins = Max ? va > vb : va < vb;
  const bool first = ia < ib;
  return (nan_a & (!nan_b | first)) | (!nan_a & !nan_b & (wins | ((va == vb) & first)));
}

template <bool Max, class T, class I>
FJ_DEVICE void fj_arg_combine(T& v, I& i, T other_v, I other_i) {
  const bool take = fj_arg_better<Max>(other_v, other_i, v, i);
  v = take ? other_v : v;
  i = take ? other_i : i;
}

// A thread's lanes of accumulators (a power of two of them) folded into lane 0: each lane
// with the one `W` above it, W halving, the lower lane first.  Every level is a loop of
// constant length that the host's compiler makes a few vector operations in registers (a
// fold in lane order was a chain of dependent scalar ones); the GPU's lanes are registers.
template <int W, class T, class Op> FJ_DEVICE void fj_fold_lanes(T* lanes, Op op) {
  if constexpr (W >= 8) {  // whole vectors: marked for the vectoriser
    FJ_SIMD
    for (int l = 0; l < W; ++l) lanes[l] = op(lanes[l], lanes[l + W]);
    fj_fold_lanes<W / 2>(lanes, op);
  } else if constexpr (W > 0) {  // (marking these made a sum over rows of 10 4x slower)
    for (int l = 0; l < W; ++l) lanes[l] = op(lanes[l], lanes[l + W]);
    fj_fold_lanes<W / 2>(lanes, op);
  }
}
template <int N, class T, class Op> FJ_DEVICE T fj_fold(T (&lanes)[N], Op op) {
  static_assert((N & (N - 1)) == 0, "a power of two of lanes");
  fj_fold_lanes<N / 2>(lanes, op);
  return lanes[0];
}
// The same for argmax/argmin's (value, index) lanes; fj_arg_combine picks the lower index of
// equal values, so the order of the fold does not change the result.
template <int W, bool Max, class T, class I> FJ_DEVICE void fj_fold_arg_lanes(T* values, I* indices) {
  if constexpr (W >= 8) {
    FJ_SIMD
    for (int l = 0; l < W; ++l) fj_arg_combine<Max>(values[l], indices[l], values[l + W], indices[l + W]);
    fj_fold_arg_lanes<W / 2, Max>(values, indices);
  } else if constexpr (W > 0) {
    for (int l = 0; l < W; ++l) fj_arg_combine<Max>(values[l], indices[l], values[l + W], indices[l + W]);
    fj_fold_arg_lanes<W / 2, Max>(values, indices);
  }
}
template <bool Max, int N, class T, class I> FJ_DEVICE void fj_fold_arg(T (&values)[N], I (&indices)[N]) {
  static_assert((N & (N - 1)) == 0, "a power of two of lanes");
  fj_fold_arg_lanes<N / 2, Max>(values, indices);
}

template <bool Max, class T, class I>
FJ_DEVICE void fj_warp_argreduce(T& v, I& i, unsigned width) {
  const unsigned lane = threadIdx.x % 32u;
  for (unsigned offset = 16u; offset > 0u; offset /= 2u) {
    const T other_v = __shfl_down_sync(0xffffffffu, v, offset);
    const I other_i = __shfl_down_sync(0xffffffffu, i, offset);
    if (lane + offset < width) fj_arg_combine<Max>(v, i, other_v, other_i);
  }
}

// Block-wide argmax/argmin, the pair version of fj_block_reduce; the result is in thread 0.
template <bool Max, class T, class I>
FJ_DEVICE void fj_block_argreduce(T& v, I& i, T identity_v, I identity_i, T* smem_v, I* smem_i) {
  const unsigned lane = threadIdx.x % 32u;
  const unsigned warp = threadIdx.x / 32u;
  fj_warp_argreduce<Max>(v, i, fj_warp_width());
  const unsigned warps = (blockDim.x + 31u) / 32u;
  if (warps > 1u) {
    if (lane == 0u) {
      smem_v[warp] = v;
      smem_i[warp] = i;
    }
    __syncthreads();  // every warp's partial is in shared memory
    if (warp == 0u) {
      v = lane < warps ? smem_v[lane] : identity_v;
      i = lane < warps ? smem_i[lane] : identity_i;
      fj_warp_argreduce<Max>(v, i, 32u);
    }
    __syncthreads();  // shared memory is free for the next row
  }
}

// All-reduce over a team of W threads: every thread of the team ends with the same bits.
// W up to 32: aligned lanes of a warp, a butterfly of xor shuffles in which both partners
// combine (lower lane, upper lane) in that order.  W larger: the team is the whole block,
// reduced through shared memory (`smem`, 33 slots) and broadcast from slot 32.
// In the host fast mode a team is one thread.
template <unsigned W, class T, class Op>
FJ_DEVICE T fj_team_allreduce(T v, T identity, T* smem, Op op) {
  if constexpr (W <= 32u) {
    const unsigned team = blockDim.x < W ? blockDim.x : W;
    for (unsigned offset = team / 2u; offset > 0u; offset /= 2u) {
      const T other = __shfl_xor_sync(0xffffffffu, v, offset);
      v = (threadIdx.x & offset) ? op(other, v) : op(v, other);
    }
    return v;
  } else {
    v = fj_block_reduce(v, identity, smem, op);
    if (threadIdx.x == 0u) smem[32] = v;
    __syncthreads();  // the block's result is in shared memory
    v = smem[32];
    __syncthreads();  // every thread has read it
    return v;
  }
}

// The (value, index) version of fj_team_allreduce, for argmax/argmin.
template <unsigned W, bool Max, class T, class I>
FJ_DEVICE void fj_team_argallreduce(T& v, I& i, T identity_v, I identity_i, T* smem_v, I* smem_i) {
  if constexpr (W <= 32u) {
    const unsigned team = blockDim.x < W ? blockDim.x : W;
    for (unsigned offset = team / 2u; offset > 0u; offset /= 2u) {
      const T other_v = __shfl_xor_sync(0xffffffffu, v, offset);
      const I other_i = __shfl_xor_sync(0xffffffffu, i, offset);
      fj_arg_combine<Max>(v, i, other_v, other_i);
    }
  } else {
    fj_block_argreduce<Max>(v, i, identity_v, identity_i, smem_v, smem_i);
    if (threadIdx.x == 0u) {
      smem_v[32] = v;
      smem_i[32] = i;
    }
    __syncthreads();  // the block's result is in shared memory
    v = smem_v[32];
    i = smem_i[32];
    __syncthreads();  // every thread has read it
  }
}

// log(exp(a) + exp(b)) without overflow; -inf is the identity, NaN propagates.
struct fj_op_logaddexp {
  template <class T> __device__ __forceinline__ T operator()(T a, T b) const {
    const T hi = fj_max(a, b);
    if (hi != hi) return hi;
    const T lo = a < b ? a : b;
    if (lo == -hi && hi < (T)0 && !fj_is_finite(hi)) return hi;  // both -inf
    if (!fj_is_finite(hi)) return hi;                              // +inf
    return hi + log1p(exp(lo - hi));
  }
};
