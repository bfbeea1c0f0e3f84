// Transposed tiles (host): tile[r * 16 + c] = src[c * stride + r] for r < 16 and c < count
// (16, or fewer for the columns past the last whole tile; the other columns are zeros),
// elements of 4 or 8 bytes.  The loads are one cache line each, read whole and once (a tile
// of the operand whose rows are a power-of-two length apart shares one cache set: read
// element by element, a column at a time, its lines were evicted before the next column came
// to them); the transpose is four rounds of two-vector shuffles: in round S, vectors k and
// k + S (k & S == 0) exchange their lanes l + S and l (l & S == 0), so that after rounds 1,
// 2, 4 and 8 lane l of vector k holds what lane k of vector l held.  fusejit/transposes.py
// decides which map kernels take the path.
#pragma once
#include "vector_shuffle.h"
// Each load also prefetches the line FJ_TRANSPOSE_AHEAD elements further along its operand
// row (two tiles on, 128 or 256 bytes), which the same thread reads two tiles later: a tile's
// 16 rows are 16 streams, more than the hardware prefetchers follow (a.T + 1 over 63 x 16000
// float32 on two Zen 4 cores: 190 us without, 124 with, 130 at 64 elements ahead; 1024 x
// 1024: 232 against 214 us).  A prefetch past an array's end does not fault.
#define FJ_TRANSPOSE_AHEAD 32

template <int S, class V>
static inline void fj_transpose_round(V* v) {
  constexpr int N = sizeof(V) / sizeof(v[0][0]);
#define FJ_LOW(l, S) (((l) & S) == 0 ? (l) : N + (l) - S)
#define FJ_HIGH(l, S) (((l) & S) == 0 ? (l) + S : N + (l))
#define FJ_LANES8(F) F(0, S), F(1, S), F(2, S), F(3, S), F(4, S), F(5, S), F(6, S), F(7, S)
#define FJ_LANES16(F) FJ_LANES8(F), F(8, S), F(9, S), F(10, S), F(11, S), F(12, S), F(13, S), F(14, S), F(15, S)
  for (int k = 0; k < N; ++k) {
    if ((k & S) != 0) continue;
    const V a = v[k], b = v[k + S];
    if constexpr (N == 16) {
      v[k] = fj_shuffle_in_halves<FJ_LANES16(FJ_LOW)>(a, b);
      v[k + S] = fj_shuffle_in_halves<FJ_LANES16(FJ_HIGH)>(a, b);
    } else {
      v[k] = fj_shuffle_in_halves<FJ_LANES8(FJ_LOW)>(a, b);
      v[k + S] = fj_shuffle_in_halves<FJ_LANES8(FJ_HIGH)>(a, b);
    }
  }
#undef FJ_LANES16
#undef FJ_LANES8
#undef FJ_HIGH
#undef FJ_LOW
}

// Elements of 4 bytes: one 16 x 16 transpose of 16-lane vectors.  Of 8 bytes: four 8 x 8
// transposes of 8-lane vectors (each of the tile's loads is then two cache lines).
template <class T, class I>
static inline void fj_transpose16(T* tile, const T* src, I stride, int count = 16) {
  static_assert(sizeof(T) == 4 || sizeof(T) == 8, "transposed tiles: elements of 4 or 8 bytes");
  if constexpr (sizeof(T) == 4) {
    typedef int V __attribute__((vector_size(64)));
    V v[16];
    for (int k = 0; k < 16; ++k) {
      if (k < count) {
        memcpy(&v[k], src + (size_t)k * (size_t)stride, sizeof(V));
        __builtin_prefetch(src + (size_t)k * (size_t)stride + FJ_TRANSPOSE_AHEAD);
      } else {
        v[k] = V{};
      }
    }
    fj_transpose_round<1>(v);
    fj_transpose_round<2>(v);
    fj_transpose_round<4>(v);
    fj_transpose_round<8>(v);
    memcpy(tile, v, sizeof(v));
  } else {
    typedef long long V __attribute__((vector_size(64)));
    for (int rq = 0; rq < 2; ++rq) {
      for (int cq = 0; cq < 2; ++cq) {  // tile rows 8 rq on, columns 8 cq on
        V v[8];
        for (int k = 0; k < 8; ++k) {
          const T* at = src + (size_t)(8 * cq + k) * (size_t)stride + 8 * rq;
          if (8 * cq + k < count) {
            memcpy(&v[k], at, sizeof(V));
            __builtin_prefetch(at + FJ_TRANSPOSE_AHEAD);
          } else {
            v[k] = V{};
          }
        }
        fj_transpose_round<1>(v);
        fj_transpose_round<2>(v);
        fj_transpose_round<4>(v);
        for (int k = 0; k < 8; ++k) memcpy(tile + (8 * rq + k) * 16 + 8 * cq, &v[k], sizeof(V));
      }
    }
  }
}
