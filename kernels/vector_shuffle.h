// Two-source shuffles of the host's vector-extension types: fj_shuffle<I...>(a, b) is the
// vector whose lane l is lane I_l of the concatenation of a and b (I_l < 2 N for N lanes),
// the compiler's own builtin (__builtin_shuffle, __builtin_shufflevector).  GCC without
// AVX-512 lowers a constant shuffle of 64-byte vectors (16 floats) element by element
// through memory, about 40 instructions; fj_shuffle_in_halves is shuffles of the four 32-byte
// halves instead, each output half one two-source shuffle of the two halves it reads (a
// vblendps and a vpermilps for a transpose round), or two and a blend where it reads three
// or four (a.T + 1 over 1024 x 1000 float32 on two Zen 3 cores: 0.83 ms against 0.41).
// Included by row_windows.h and transpose_tiles.h.
#pragma once

// (-DFJ_SHUFFLE_HALVES=1 takes the halves on any GCC with AVX: tests/test_shapes.py.)
#ifndef FJ_SHUFFLE_HALVES
#if defined(__GNUC__) && !defined(__clang__) && !defined(__AVX512F__)
#define FJ_SHUFFLE_HALVES 1
#else
#define FJ_SHUFFLE_HALVES 0
#endif
#endif

#if FJ_SHUFFLE_HALVES
// A shuffle's lane indices as a type (P below): lane l reads at[l].
template <int... I> struct fj_lanes {
  static constexpr int at[sizeof...(I)] = {I...};
  static constexpr int count = sizeof...(I);
};

// The source halves (0 .. 3: a's low and high, b's low and high) output half H of P reads:
// the lowest, the highest, and whether any other lies between.
template <class P, int H> struct fj_half_sources {
  static constexpr int n = P::count / 2;
  static constexpr int lowest() {
    int s = 3;
    for (int l = 0; l < n; ++l) s = P::at[H * n + l] / n < s ? P::at[H * n + l] / n : s;
    return s;
  }
  static constexpr int highest() {
    int s = 0;
    for (int l = 0; l < n; ++l) s = P::at[H * n + l] / n > s ? P::at[H * n + l] / n : s;
    return s;
  }
  static constexpr bool middle() {
    for (int l = 0; l < n; ++l) {
      const int s = P::at[H * n + l] / n;
      if (s != lowest() && s != highest()) return true;
    }
    return false;
  }
  // Lane l's index into the concatenation of halves `first` and `second`, or 0 if it reads
  // neither (a lane the blend takes from the other shuffle).
  static constexpr int index(int l, int first, int second) {
    const int s = P::at[H * n + l] / n, k = P::at[H * n + l] % n;
    return s == first ? k : s == second ? n + k : 0;
  }
  static constexpr int from_low_pair(int l) { return P::at[H * n + l] / n < 2 ? -1 : 0; }
};

template <class M, class F> static inline M fj_lane_mask(F f) {
  constexpr int n = sizeof(M) / sizeof(M{}[0]);
  static_assert(n == 4 || n == 8, "vector shuffles: halves of 4 or 8 lanes");
  if constexpr (n == 8) {
    return M{f(0), f(1), f(2), f(3), f(4), f(5), f(6), f(7)};
  } else {
    return M{f(0), f(1), f(2), f(3)};
  }
}

template <class P, int H, class Half>
static inline Half fj_shuffle_half(const Half* c) {
  typedef fj_half_sources<P, H> S;
  typedef __typeof__(c[0] < c[0]) M;
  constexpr int lo = S::lowest(), hi = S::highest();
  if constexpr (!S::middle()) {
    return __builtin_shuffle(c[lo], c[hi], fj_lane_mask<M>([](int l) { return S::index(l, lo, hi); }));
  } else {
    const Half low = __builtin_shuffle(c[0], c[1], fj_lane_mask<M>([](int l) { return S::index(l, 0, 1); }));
    const Half high = __builtin_shuffle(c[2], c[3], fj_lane_mask<M>([](int l) { return S::index(l, 2, 3); }));
    return fj_lane_mask<M>([](int l) { return S::from_low_pair(l); }) ? low : high;
  }
}
#endif

template <int... I, class V>
static inline V fj_shuffle(V a, V b) {
  static_assert(sizeof...(I) == sizeof(V) / sizeof(a[0]), "vector shuffles: one index a lane");
#if defined(__clang__)
  return __builtin_shufflevector(a, b, I...);
#else
  return __builtin_shuffle(a, b, __typeof__(a < b){I...});
#endif
}

// fj_shuffle of vectors an array holds (the transposed tiles'): as 32-byte halves where
// FJ_SHUFFLE_HALVES.  (The row windows keep theirs in registers, where the copies between the
// halves and the whole cost more than they save, and a module took seven times as long to
// compile: they take fj_shuffle, and GCC without AVX-512 does not take them at all.)
template <int... I, class V>
static inline V fj_shuffle_in_halves(V a, V b) {
#if FJ_SHUFFLE_HALVES
  if constexpr (sizeof(V) == 64) {
    typedef __typeof__(a[0]) E;
    typedef E Half __attribute__((vector_size(32)));
    Half c[4];
    memcpy(&c[0], &a, sizeof(a));
    memcpy(&c[2], &b, sizeof(b));
    const Half out[2] = {fj_shuffle_half<fj_lanes<I...>, 0>(c), fj_shuffle_half<fj_lanes<I...>, 1>(c)};
    V result;
    memcpy(&result, out, sizeof(result));
    return result;
  }
#endif
  return fj_shuffle<I...>(a, b);
}
