// Half tiles (host): a map kernel that loads or stores float16 at its own elements converts
// them a tile at a time (fusejit/halftiles.py): the inputs widened into float tiles before the
// tile's loop, the outputs narrowed from float tiles after it, 16 elements an instruction
// with F16C (vcvtph2ps, vcvtps2ph: to nearest even, overflow to infinity, subnormals kept
// both ways, a NaN quiet with its payload's top bits).  Narrowing gives fj_to_half's bits
// for every float; widening fj_half_to_float's for every float16 but the signalling NaNs,
// which vcvtph2ps quiets, as XLA's conversion does (the integer code keeps them signalling;
// a NaN's payload is no value either way).  GCC 12 vectorises no _Float16
// conversion without AVX512-FP16, and the integer code, vectorised, took three times as
// long in a float16 `x * 2 + 1` (1024 x 1000 on one Zen 4 core: 678 against 194 us).
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
#else
#define FJ_HALF_TILE_LANES 1
#endif

// dst[0 .. count) = the float16 values src[0 .. count) widened (exactly).
static inline void fj_widen_tile(const fj_f16* FJ_RESTRICT src, float* FJ_RESTRICT dst, long count) {
  long k = 0;
#if FJ_HALF_TILE_LANES > 1
  for (; k + FJ_HALF_TILE_LANES <= count; k += FJ_HALF_TILE_LANES) {
    fj_half_tile_halves halves;
    memcpy(&halves, src + k, sizeof(halves));
    const fj_half_tile_floats floats = FJ_HALF_WIDEN(halves);
    memcpy(dst + k, &floats, sizeof(floats));
  }
#endif
  for (; k < count; ++k) dst[k] = fj_half_to_float(src[k]);
}

// dst[0 .. count) = the floats src[0 .. count) rounded to float16 (to nearest even; the
// immediate 0 names that rounding, whatever MXCSR says).
static inline void fj_narrow_tile(const float* FJ_RESTRICT src, fj_f16* FJ_RESTRICT dst, long count) {
  long k = 0;
#if FJ_HALF_TILE_LANES > 1
  for (; k + FJ_HALF_TILE_LANES <= count; k += FJ_HALF_TILE_LANES) {
    fj_half_tile_floats floats;
    memcpy(&floats, src + k, sizeof(floats));
    const fj_half_tile_halves halves = FJ_HALF_NARROW(floats);
    memcpy(dst + k, &halves, sizeof(halves));
  }
#endif
  for (; k < count; ++k) dst[k] = fj_to_half(src[k], fj_f16());
}
#endif  // FJ_HALF_TILES
