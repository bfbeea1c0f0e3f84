// Half tiles (host): a map kernel that loads or stores float16 at its own elements converts
// them a tile at a time (fusejit/halftiles.py): the inputs widened into float tiles before the
// tile's loop, the outputs narrowed from float tiles after it, 16 elements an instruction
// with F16C (vcvtph2ps, vcvtps2ph: to nearest even, overflow to infinity, subnormals kept
// both ways, a NaN quiet with its payload's top bits).  Narrowing gives fj_to_half's bits
// for every float; widening fj_half_to_float's for every float16 but the signalling NaNs,
// which vcvtph2ps quiets, as XLA's conversion does (the integer code keeps them signalling;
// a NaN's payload is no value either way).  GCC 12 vectorises no _Float16 conversion
// without AVX512-FP16, and the integer code, vectorised, took three times as long in a
// float16 `x * 2 + 1` (1024 x 1000 on one Zen 4 core: 678 against 194 us).
// The vector types are the compiler's own (as fj_stream_store's: no <immintrin.h>).
#pragma once

#if FJ_HALF_TILES
#if defined(__AVX512F__)
typedef float fj_half_tile_floats __attribute__((vector_size(64)));
typedef short fj_half_tile_halves __attribute__((vector_size(32)));
#define FJ_HALF_TILE_LANES 16
#define FJ_HALF_WIDEN(h) __builtin_ia32_vcvtph2ps512_mask((h), fj_half_tile_floats{}, (unsigned short)0xffff, 4)
#define FJ_HALF_NARROW(f) __builtin_ia32_vcvtps2ph512_mask((f), 0, fj_half_tile_halves{}, (unsigned short)0xffff)
#elif defined(__F16C__)
typedef float fj_half_tile_floats __attribute__((vector_size(32)));
typedef short fj_half_tile_halves __attribute__((vector_size(16)));
#define FJ_HALF_TILE_LANES 8
#define FJ_HALF_WIDEN(h) __builtin_ia32_vcvtph2ps256((h))
#define FJ_HALF_NARROW(f) __builtin_ia32_vcvtps2ph256((f), 0)
#else  // no vector conversions: every element by the integer code (these types unused)
typedef float fj_half_tile_floats;
typedef short fj_half_tile_halves;
#define FJ_HALF_TILE_LANES 1
#define FJ_HALF_WIDEN(h) 0.0f
#define FJ_HALF_NARROW(f) (short)0
#endif

// dst[0 .. count) = the conversion of src[0 .. count): FJ_HALF_TILE_LANES elements at a
// time by `vector` (from a VFrom holding that many sources to a VTo of their results), the
// rest one by one by `scalar`.
template <class VFrom, class VTo, class From, class To, class Vector, class Scalar>
static inline void fj_convert_tile(const From* FJ_RESTRICT src, To* FJ_RESTRICT dst, long count, Vector vector,
                                   Scalar scalar) {
  long k = 0;
  for (; FJ_HALF_TILE_LANES > 1 && k + FJ_HALF_TILE_LANES <= count; k += FJ_HALF_TILE_LANES) {
    VFrom from;
    memcpy(&from, src + k, sizeof(from));
    const VTo to = vector(from);
    memcpy(dst + k, &to, sizeof(to));
  }
  for (; k < count; ++k) dst[k] = scalar(src[k]);
}

// The float16 values src[0 .. count) widened (exactly) into dst.
static inline void fj_widen_tile(const fj_f16* FJ_RESTRICT src, float* FJ_RESTRICT dst, long count) {
  fj_convert_tile<fj_half_tile_halves, fj_half_tile_floats>(
      src, dst, count, [](fj_half_tile_halves h) { return FJ_HALF_WIDEN(h); },
      [](fj_f16 h) { return fj_half_to_float(h); });
}

// The floats src[0 .. count) rounded to float16 into dst (to nearest even: the immediate 0
// names that rounding, whatever MXCSR says).
static inline void fj_narrow_tile(const float* FJ_RESTRICT src, fj_f16* FJ_RESTRICT dst, long count) {
  fj_convert_tile<fj_half_tile_floats, fj_half_tile_halves>(
      src, dst, count, [](fj_half_tile_floats f) { return FJ_HALF_NARROW(f); },
      [](float f) { return fj_to_half(f, fj_f16()); });
}
// Half vectors: a map whose body is arithmetic (+ - * / of float temporaries and float
// literals, roundings to float16 between them) and one-argument float functions computes
// FJ_HALF_TILE_LANES elements at a time in one pass, each input widened and each output
// narrowed in registers (fusejit/halftiles.py), instead of through float tiles: three stores
// an element fewer.  The last vector of a tile loads and stores only its `count` elements
// (the other lanes compute from zeros, unstored).
static inline fj_half_tile_floats fj_half_load(const fj_f16* FJ_RESTRICT src, int count) {
  fj_half_tile_halves h = {};
  if (count == FJ_HALF_TILE_LANES) {
    memcpy(&h, src, sizeof(h));
  } else {
    memcpy(&h, src, count * sizeof(fj_f16));
  }
  return FJ_HALF_WIDEN(h);
}
static inline void fj_half_store(fj_f16* FJ_RESTRICT dst, fj_half_tile_floats f, int count) {
  const fj_half_tile_halves h = FJ_HALF_NARROW(f);
  if (count == FJ_HALF_TILE_LANES) {
    memcpy(dst, &h, sizeof(h));
  } else {
    memcpy(dst, &h, count * sizeof(fj_f16));
  }
}
// The floats rounded to float16 and back (fj_round_to_half's bits, FJ_HALF_TILE_LANES at once).
static inline fj_half_tile_floats fj_half_round(fj_half_tile_floats f) { return FJ_HALF_WIDEN(FJ_HALF_NARROW(f)); }
// f of each lane (a float function of one float: fj_tanh, fj_exp, ...), which GCC vectorises
// as it does the element loop.
template <class F>
static inline fj_half_tile_floats fj_half_each(fj_half_tile_floats v, F f) {
  float lanes[FJ_HALF_TILE_LANES];
  memcpy(lanes, &v, sizeof(v));
#pragma omp simd
  for (int k = 0; k < FJ_HALF_TILE_LANES; ++k) lanes[k] = f(lanes[k]);
  memcpy(&v, lanes, sizeof(v));
  return v;
}
#endif  // FJ_HALF_TILES
