// Helpers with JAX/XLA semantics where C's differ, shared by every target.
#pragma once

// ---- type traits (NVRTC has no <type_traits> or <limits>) ----
template <class T> struct fj_traits;
#define FJ_INT_TRAITS(T, U, W, SIGNED, BITS, LOWEST, HIGHEST)        \
  template <> struct fj_traits<T> {                                   \
    typedef U unsigned_t;                                             \
    typedef W wide_unsigned_t;                                        \
    static constexpr bool is_float = false;                           \
    static constexpr bool is_bool = false;                            \
    static constexpr bool is_signed = SIGNED;                         \
    static constexpr int bits = BITS;                                 \
    static __device__ __forceinline__ T lowest() { return LOWEST; }   \
    static __device__ __forceinline__ T highest() { return HIGHEST; } \
  };
FJ_INT_TRAITS(int8_t, uint8_t, unsigned int, true, 8, (int8_t)-128, (int8_t)127)
FJ_INT_TRAITS(int16_t, uint16_t, unsigned int, true, 16, (int16_t)-32768, (int16_t)32767)
FJ_INT_TRAITS(int32_t, uint32_t, unsigned int, true, 32, (-2147483647 - 1), 2147483647)
FJ_INT_TRAITS(int64_t, uint64_t, unsigned long long, true, 64, (-9223372036854775807LL - 1), 9223372036854775807LL)
FJ_INT_TRAITS(uint8_t, uint8_t, unsigned int, false, 8, (uint8_t)0, (uint8_t)255)
FJ_INT_TRAITS(uint16_t, uint16_t, unsigned int, false, 16, (uint16_t)0, (uint16_t)65535)
FJ_INT_TRAITS(uint32_t, uint32_t, unsigned int, false, 32, 0U, 4294967295U)
FJ_INT_TRAITS(uint64_t, uint64_t, unsigned long long, false, 64, 0ULL, 18446744073709551615ULL)
#undef FJ_INT_TRAITS
template <> struct fj_traits<bool> {
  static constexpr bool is_float = false;
  static constexpr bool is_bool = true;
};
template <> struct fj_traits<float> {
  static constexpr bool is_float = true;
  static constexpr bool is_bool = false;
};
template <> struct fj_traits<double> {
  static constexpr bool is_float = true;
  static constexpr bool is_bool = false;
};

// ---- integer arithmetic wraps modulo 2**bits (signed overflow is undefined in C) ----
template <class T> FJ_DEVICE T fj_add(T a, T b) {
  typedef typename fj_traits<T>::wide_unsigned_t W;
  return (T)((W)a + (W)b);
}
template <class T> FJ_DEVICE T fj_sub(T a, T b) {
  typedef typename fj_traits<T>::wide_unsigned_t W;
  return (T)((W)a - (W)b);
}
template <class T> FJ_DEVICE T fj_mul(T a, T b) {
  typedef typename fj_traits<T>::wide_unsigned_t W;
  return (T)((W)a * (W)b);
}
template <class T> FJ_DEVICE T fj_neg(T a) {
  typedef typename fj_traits<T>::wide_unsigned_t W;
  return (T)((W)0 - (W)a);
}
template <class T> FJ_DEVICE T fj_abs(T a) {
  if constexpr (fj_traits<T>::is_signed) {
    return a < 0 ? fj_neg(a) : a;
  } else {
    return a;
  }
}
// XLA: x / 0 == -1 (all bits set), MIN / -1 == MIN; x % 0 == x, MIN % -1 == 0.
template <class T> FJ_DEVICE T fj_div(T a, T b) {
  if (b == (T)0) return (T)-1;
  if constexpr (fj_traits<T>::is_signed) {
    if (a == fj_traits<T>::lowest() && b == (T)-1) return a;
  }
  return (T)(a / b);
}
template <class T> FJ_DEVICE T fj_rem(T a, T b) {
  if (b == (T)0) return a;
  if constexpr (fj_traits<T>::is_signed) {
    if (a == fj_traits<T>::lowest() && b == (T)-1) return (T)0;
  }
  return (T)(a % b);
}
// XLA: shifting by >= the bit width (or a negative amount) gives 0, or the sign for >>arith.
template <class T> FJ_DEVICE T fj_shift_left(T a, T b) {
  typedef typename fj_traits<T>::unsigned_t U;
  typedef typename fj_traits<T>::wide_unsigned_t W;
  if ((U)b >= (U)fj_traits<T>::bits) return (T)0;
  return (T)(U)((W)(U)a << (W)(U)b);
}
template <class T> FJ_DEVICE T fj_shift_right_logical(T a, T b) {
  typedef typename fj_traits<T>::unsigned_t U;
  if ((U)b >= (U)fj_traits<T>::bits) return (T)0;
  return (T)(U)((U)a >> (U)b);
}
// Arithmetic shift replicates the top bit, for unsigned types too (XLA shifts the bit pattern).
template <class T> FJ_DEVICE T fj_shift_right_arithmetic(T a, T b) {
  typedef typename fj_traits<T>::unsigned_t U;
  const bool negative = ((U)a >> (fj_traits<T>::bits - 1)) != 0;
  if ((U)b >= (U)fj_traits<T>::bits) return negative ? (T)-1 : (T)0;
  const U shifted = (U)((U)a >> (U)b);
  const U fill = negative && b != 0 ? (U)~(U)((U)~(U)0 >> (U)b) : (U)0;
  return (T)(U)(shifted | fill);
}
template <class T> FJ_DEVICE T fj_popcount(T a) {
  typedef typename fj_traits<T>::unsigned_t U;
  if constexpr (fj_traits<T>::bits == 64) {
    return (T)fj_popc64((unsigned long long)(U)a);
  } else {
    return (T)fj_popc32((unsigned int)(U)a);
  }
}
template <class T> FJ_DEVICE T fj_clz(T a) {
  typedef typename fj_traits<T>::unsigned_t U;
  if constexpr (fj_traits<T>::bits == 64) {
    return (T)fj_clz64((unsigned long long)(U)a);
  } else {
    return (T)(fj_clz32((unsigned int)(U)a) - (32 - fj_traits<T>::bits));
  }
}

// Terms a float32 partial sums before it is added into its float64 lane, for a sum of terms
// known to be non-negative (fusejit/accumulators.py, Reduction.blocked): nothing cancels, so each
// partial is within FJ_SUM_BLOCK - 1 float32 roundings of its exact value, and a conversion per
// FJ_SUM_BLOCK elements instead of one each keeps such a sum (a 2-norm) at the memory's pace.
#define FJ_SUM_BLOCK 8

// The accumulators a thread of a row reduction keeps for a row of `row` elements, its team
// being `team` threads on the GPU: FJ_LANES, or for a short row the largest power of two at
// most half the thread's share of it (at least one), so that a short row does not pay for
// initialising and combining lanes it never fills (a row of 10 on the host: 4 lanes, not 16).
FJ_DEVICE constexpr int fj_row_lanes(int row, int team) {
  const int share = (row + FJ_ROW_THREADS(team) - 1) / FJ_ROW_THREADS(team);
  int lanes = FJ_LANES;
  while (lanes > 1 && 2 * lanes > share) lanes /= 2;
  return lanes;
}

// bitcast_convert_type between types of one size.
template <class To, class From> FJ_DEVICE To fj_bitcast(From x) {
  static_assert(sizeof(To) == sizeof(From), "bitcast between types of different sizes");
  To y;
  memcpy(&y, &x, sizeof(To));
  return y;
}

// select_n of two floats: `c ? a : b`.  Where FJ_SELECT_BITS is 1 (the host) a float is
// selected by its bits, which keeps both arms unconditional: GCC otherwise loads an arm's
// operand only in the lanes that select it, a masked load that it made a gather in a row
// reduction's loop (a masked, scaled softmax over rows of 128 ran half as fast).
template <class T> FJ_DEVICE T fj_select(bool c, T a, T b) {
#if FJ_SELECT_BITS
  if constexpr (fj_traits<T>::is_float && sizeof(T) == 4) {
    const uint32_t mask = 0u - (uint32_t)c;
    return fj_bitcast<T>((fj_bitcast<uint32_t>(a) & mask) | (fj_bitcast<uint32_t>(b) & ~mask));
  } else if constexpr (fj_traits<T>::is_float) {
    const uint64_t mask = 0ull - (uint64_t)c;
    return fj_bitcast<T>((fj_bitcast<uint64_t>(a) & mask) | (fj_bitcast<uint64_t>(b) & ~mask));
  }
#endif
  return c ? a : b;
}

// ---- total order (eq_to, lt_to, le_to): -NaN < -inf < ... < -0 < +0 < ... < +inf < +NaN ----
// A float's bits as a signed integer, negatives with their magnitude bits flipped, order as
// that total order does (NaNs by their payload); integers compare as themselves.
FJ_DEVICE int32_t fj_total_key(float x) {
  const int32_t b = fj_bitcast<int32_t>(x);
  return b < 0 ? b ^ 0x7fffffff : b;
}
FJ_DEVICE int64_t fj_total_key(double x) {
  const int64_t b = fj_bitcast<int64_t>(x);
  return b < 0 ? b ^ 0x7fffffffffffffffLL : b;
}
template <class T> FJ_DEVICE T fj_total_key(T x) { return x; }
// The value whose total-order key is `key` (fj_total_key's inverse), of the type of `like`.
FJ_DEVICE float fj_total_value(int32_t key, float /* like */) {
  return fj_bitcast<float>(key < 0 ? key ^ 0x7fffffff : key);
}
FJ_DEVICE double fj_total_value(int64_t key, double /* like */) {
  return fj_bitcast<double>(key < 0 ? key ^ 0x7fffffffffffffffLL : key);
}
template <class T> FJ_DEVICE T fj_total_value(T key, T /* like */) { return key; }

// top_k: (key, place) joins the K largest keys so far, kept in descending order, when fewer
// than K are kept or it ranks strictly above the last; it moves up past strictly smaller keys
// only, so equal keys keep the order they came in (their places in the row).
template <int K, class Key> FJ_DEVICE void fj_top_k_insert(Key* keys, int* places, int& count, Key key, int place) {
  if (count < K || key > keys[K - 1]) {
    int j = count < K ? count++ : K - 1;
    for (; j > 0 && keys[j - 1] < key; --j) {
      keys[j] = keys[j - 1];
      places[j] = places[j - 1];
    }
    keys[j] = key;
    places[j] = place;
  }
}
template <class T> FJ_DEVICE bool fj_eq_to(T a, T b) { return fj_total_key(a) == fj_total_key(b); }
template <class T> FJ_DEVICE bool fj_lt_to(T a, T b) { return fj_total_key(a) < fj_total_key(b); }
template <class T> FJ_DEVICE bool fj_le_to(T a, T b) { return fj_total_key(a) <= fj_total_key(b); }

// ---- max/min: NaN propagates, as in XLA ----
template <class T> FJ_DEVICE T fj_max(T a, T b) { return a > b ? a : b; }
template <class T> FJ_DEVICE T fj_min(T a, T b) { return a < b ? a : b; }
FJ_DEVICE bool fj_max(bool a, bool b) { return a || b; }
FJ_DEVICE bool fj_min(bool a, bool b) { return a && b; }
// (Selects between computed values, not nested conditions: vectorisable on the host.)
// fj_max_acc and fj_min_acc: for a reduction's accumulators (block_reduce.h).
FJ_DEVICE float fj_max_acc(float a, float b) {
  const float larger = a > b ? a : b;  // b where b is NaN (the comparison is false)
  return a != a ? a : larger;
}
FJ_DEVICE float fj_min_acc(float a, float b) {
  const float smaller = a < b ? a : b;  // b where b is NaN (the comparison is false)
  return a != a ? a : smaller;
}
FJ_DEVICE double fj_max_acc(double a, double b) {
  const double larger = a > b ? a : b;  // b where b is NaN (the comparison is false)
  return a != a ? a : larger;
}
FJ_DEVICE double fj_min_acc(double a, double b) {
  const double smaller = a < b ? a : b;  // b where b is NaN (the comparison is false)
  return a != a ? a : smaller;
}
template <class T> FJ_DEVICE T fj_max_acc(T a, T b) { return fj_max(a, b); }
template <class T> FJ_DEVICE T fj_min_acc(T a, T b) { return fj_min(a, b); }
// An elementwise max or min: the NaN arm a select of bits on the host (fj_select).  With a
// plain select GCC moved a comparison of the result (jnp.hypot's max == 0) into both arms, a
// select of bools it does not vectorise: hypot ran element by element, 40x slower.
FJ_DEVICE float fj_max(float a, float b) { return fj_select(a != a, a, a > b ? a : b); }
FJ_DEVICE float fj_min(float a, float b) { return fj_select(a != a, a, a < b ? a : b); }
FJ_DEVICE double fj_max(double a, double b) { return fj_select(a != a, a, a > b ? a : b); }
FJ_DEVICE double fj_min(double a, double b) { return fj_select(a != a, a, a < b ? a : b); }

// sign: NaN stays NaN and +-0 stays +-0 for floats.
template <class T> FJ_DEVICE T fj_sign(T x) {
  if constexpr (fj_traits<T>::is_float) {
    return x > (T)0 ? (T)1 : (x < (T)0 ? (T)-1 : x);
  } else if constexpr (fj_traits<T>::is_signed) {
    return (T)((x > (T)0) - (x < (T)0));
  } else {
    return (T)(x > (T)0);
  }
}

FJ_DEVICE bool fj_is_finite(float x) { return fabsf(x) <= 3.40282346638528859812e+38f; }
FJ_DEVICE bool fj_is_finite(double x) { return fabs(x) <= 1.79769313486231570815e+308; }

// ---- float16 and bfloat16: storage types ----
// fusejit computes float16 and bfloat16 values in float32 and rounds each result back
// (fusejit/halves.py rewrites the graph so): a kernel meets these types only where it loads
// or stores them and in the conversions below, which round as XLA does (to nearest even,
// overflow to infinity, float16's subnormals kept, NaN kept quiet with its sign).  Each is an
// enum over its 16 bits, the same on every target (no cuda_fp16.h, no compiler extension): a
// type of its own for the conversions to dispatch on, loaded and stored as a scalar (a
// struct's copies kept GCC from vectorising the loops that use it).
enum class fj_f16 : uint16_t {};
enum class fj_bf16 : uint16_t {};
template <class T> struct fj_is_half { static constexpr bool value = false; };
template <> struct fj_is_half<fj_f16> { static constexpr bool value = true; };
template <> struct fj_is_half<fj_bf16> { static constexpr bool value = true; };
// A literal: the value's bits.
template <class H> FJ_DEVICE H fj_half_bits(uint32_t bits) { return (H)(uint16_t)bits; }

// Exact widenings.
FJ_DEVICE float fj_half_to_float(fj_bf16 h) { return fj_bitcast<float>((uint32_t)h << 16); }
#if defined(__CUDA_ARCH__)
// On the GPU each float16 conversion is one cvt instruction (the PTX ISA's: to nearest even,
// overflow to infinity, subnormals kept both ways, a NaN out canonical, as XLA's GPU code,
// which uses the same instructions, has it), where the integer code below took about 30
// instructions an element both ways and kept a float16 map kernel bound by its arithmetic
// rather than its memory traffic.
FJ_DEVICE float fj_half_to_float(fj_f16 h) {
  float f;
  asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"((uint16_t)h));
  return f;
}
FJ_DEVICE fj_f16 fj_to_half(float x, fj_f16 /* type */) {
  uint16_t h;
  asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(x));
  return (fj_f16)h;
}
FJ_DEVICE float fj_round_to_half(float x, fj_f16 type) { return fj_half_to_float(fj_to_half(x, type)); }
#else
FJ_DEVICE float fj_half_to_float(fj_f16 h) {
  const uint32_t bits = (uint32_t)h;
  const uint32_t sign = (bits & 0x8000u) << 16;
  const uint32_t exponent = (bits >> 10) & 0x1fu;
  const uint32_t mantissa = bits & 0x3ffu;
  const uint32_t normal = ((exponent + 112u) << 23) | (mantissa << 13);  // bias 15 -> 127
  const uint32_t special = 0x7f800000u | (mantissa << 13);  // infinity, NaN
  const uint32_t subnormal = fj_bitcast<uint32_t>((float)mantissa * 0x1p-24f);  // exact
  const uint32_t magnitude = exponent == 31u ? special : (exponent == 0u ? subnormal : normal);
  return fj_bitcast<float>(sign | magnitude);
}
// float16's rounding in the float unit: |x| + c, with c = 2^(e + 13) (e: x's exponent, at
// least -14, the smallest normal float16's), rounds |x| to a multiple of c's ULP, 2^(e - 10),
// float16's spacing there (2^-24 among its subnormals), to nearest even; |x| is below
// 2^(e+1), so the sum stays in c's binade, and c is at least 1/2, so nothing is denormal.
// The bits of c, from |x|'s bits a (beyond float16's range c is garbage, and unused).
FJ_DEVICE uint32_t fj_f16_rounder(uint32_t a) {
  const uint32_t e = a & 0x7f800000u;
  return (e > (113u << 23) ? e : (113u << 23)) + (13u << 23);
}
// float -> float16: the bits of |x| + c less c's count |x| in float16's spacing: its mantissa
// with the leading 1 (none among the subnormals), which the float16 exponent e + 14 (c's
// exponent field less 126, shifted into place) completes; a sum that rounds up to the next
// power of two carries into the exponent as the float16 bits must.  From 65520 up the
// result is infinity; a NaN keeps its sign and its payload's top bits, quiet.
FJ_DEVICE fj_f16 fj_to_half(float x, fj_f16 /* type */) {
  const uint32_t b = fj_bitcast<uint32_t>(x);
  const uint32_t a = b & 0x7fffffffu;
  const float m = fj_bitcast<float>(a);
  const uint32_t c = fj_f16_rounder(a);
  const uint32_t finite = (c >> 13) - (126u << 10) + (fj_bitcast<uint32_t>(m + fj_bitcast<float>(c)) - c);
  const uint32_t quiet_nan = 0x7e00u | ((a >> 13) & 0x3ffu);
  const uint32_t magnitude = a > 0x7f800000u ? quiet_nan : (m >= 65520.0f ? 0x7c00u : finite);
  return fj_half_bits<fj_f16>(((b >> 16) & 0x8000u) | magnitude);
}
// A float32 value rounded to float16 and widened again (fusejit/halves.py rounds each
// half-type result so: round_to_half), in float32's own bits: |x| + c - c (fj_f16_rounder),
// from 65520 up infinity.  A NaN comes back quiet with its payload's last 13 bits cleared (a
// float16's NaN widened).  Bit for bit the round trip of the integer conversions (checked
// over every float), in under half its time.
FJ_DEVICE float fj_round_to_half(float x, fj_f16 /* type */) {
  const uint32_t b = fj_bitcast<uint32_t>(x);
  const uint32_t a = b & 0x7fffffffu;
  const float m = fj_bitcast<float>(a);
  const float c = fj_bitcast<float>(fj_f16_rounder(a));
  const float r = (m + c) - c;
  const uint32_t magnitude = m >= 65520.0f ? 0x7f800000u : fj_bitcast<uint32_t>(r) & 0xffffe000u;
  return fj_bitcast<float>((b & 0x80000000u) | magnitude);
}
#endif

#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
// bfloat16 as float16 above: cvt.rn.bf16.f32 (compute capability 8.0 and later).
FJ_DEVICE fj_bf16 fj_to_half(float x, fj_bf16 /* type */) {
  uint16_t h;
  asm("cvt.rn.bf16.f32 %0, %1;" : "=h"(h) : "f"(x));
  return (fj_bf16)h;
}
FJ_DEVICE float fj_round_to_half(float x, fj_bf16 type) { return fj_half_to_float(fj_to_half(x, type)); }
#else
// float -> bfloat16: the upper half of the bits, rounded to nearest even by adding just under
// half of the dropped part (plus the kept part's last bit); past the largest finite value
// that carries into infinity.
FJ_DEVICE fj_bf16 fj_to_half(float x, fj_bf16 /* type */) {
  const uint32_t b = fj_bitcast<uint32_t>(x);
  const uint32_t rounded = (b + 0x7fffu + ((b >> 16) & 1u)) >> 16;
  const uint32_t quiet_nan = (b >> 16) | 0x40u;
  return fj_half_bits<fj_bf16>((b & 0x7fffffffu) > 0x7f800000u ? quiet_nan : rounded);
}
// bfloat16's round trip in float32's own bits (the same bits as fj_to_half and
// fj_half_to_float, a third of their work).
FJ_DEVICE float fj_round_to_half(float x, fj_bf16 /* type */) {
  const uint32_t b = fj_bitcast<uint32_t>(x);
  const uint32_t rounded = (b + 0x7fffu + ((b >> 16) & 1u)) & 0xffff0000u;
  const uint32_t quiet_nan = (b & 0xffff0000u) | 0x00400000u;
  return fj_bitcast<float>((b & 0x7fffffffu) > 0x7f800000u ? quiet_nan : rounded);
}
#endif
// double -> float rounded to odd: toward zero, with the last bit set where that dropped
// anything.  Its 24 bits are two more than a half type's 11 need, so rounding it once more
// (fj_to_half) gives the double's correctly rounded half value: one rounding, as XLA's.
FJ_DEVICE float fj_round_to_odd(double x) {
  const float nearest = (float)x;
  const uint32_t b = fj_bitcast<uint32_t>(nearest);
  const uint32_t toward_zero = fabs((double)nearest) > fabs(x) ? b - 1u : b;
  return fj_bitcast<float>((double)nearest != x ? (toward_zero | 1u) : b);
}
template <class H, class From> FJ_DEVICE H fj_convert_to_half(From x) {
  if constexpr (fj_is_half<From>::value) {
    return fj_to_half(fj_half_to_float(x), H());  // float16 <-> bfloat16: exact to float first
  } else if constexpr (fj_traits<From>::is_bool) {
    return fj_to_half(x ? 1.0f : 0.0f, H());
  } else if constexpr (sizeof(From) == 4 && fj_traits<From>::is_float) {
    return fj_to_half(x, H());
  } else {  // double, and integers through double (exact up to 2^53)
    return fj_to_half(fj_round_to_odd((double)x), H());
  }
}

// convert_element_type: float -> integer saturates and sends NaN to 0; anything -> bool is x != 0.
template <class To, class From> FJ_DEVICE To fj_convert(From x) {
  if constexpr (fj_is_half<To>::value) {
    return fj_convert_to_half<To>(x);
  } else if constexpr (fj_is_half<From>::value) {
    return fj_convert<To>(fj_half_to_float(x));  // exact
  } else if constexpr (fj_traits<To>::is_bool) {
    return x != (From)0;
  } else if constexpr (fj_traits<From>::is_float && !fj_traits<To>::is_float) {
    const From lo = (From)fj_traits<To>::lowest(), hi = (From)fj_traits<To>::highest();
    if constexpr (sizeof(To) == 4) {
      // Without branches, which the host vectorises as a conversion, compares and bitwise
      // ops: the conversion only of a value in range (NaN and the rest convert 0), or'ed
      // with the bound's bits where x is past it.  (Selects of the bounds, as below, led GCC
      // to carry the constant cases through every later operation: `(x * 100).astype(int32)
      // % 7 * 3` took 50 instructions a vector of 8 instead of 36, 604 us instead of 440 for
      // 1M on one Zen 3 core; the same results for every float, int32 and uint32 alike.)
      typedef typename fj_traits<To>::unsigned_t U;
      const From inside = x > lo && x < hi ? x : (From)0;
      const U above = x >= hi ? ~(U)0 : (U)0;
      const U below = x <= lo ? ~(U)0 : (U)0;
      return (To)((U)(To)inside | (above & (U)fj_traits<To>::highest()) | (below & (U)fj_traits<To>::lowest()));
    } else if constexpr (sizeof(To) < 4) {
      // One select at a time, which the host vectorises as a conversion, compares and
      // blends (rather than branches: float32 to int32 took 191 us for 1M on one Zen 3 core
      // with branches and 143 with selects; for 1- and 2-byte integers the bitwise form above
      // takes a quarter longer).
      const From inside = x > lo && x < hi ? x : (From)0;
      const To high = x >= hi ? fj_traits<To>::highest() : (To)inside;
      return x <= lo ? fj_traits<To>::lowest() : high;
    } else {
      // 64-bit integers keep the branches: without AVX-512 their conversion is scalar either
      // way, and there the branches are quicker.
      if (x != x) return (To)0;
      if (x <= lo) return fj_traits<To>::lowest();
      if (x >= hi) return fj_traits<To>::highest();
      return (To)x;
    }
  } else {
    return (To)x;
  }
}

// digamma: reflection below 1/2, recurrence up to 10, then the asymptotic series to x^-14
// (the first term left out is below 5e-17 there).
FJ_DEVICE double fj_digamma(double x) {
  if (x != x || x == -fj_inf()) return fj_nan();
  if (x <= 0.0 && floor(x) == x) return fj_nan();
  double result = 0.0;
  if (x < 0.5) {
    // tan has period pi: reduce x by the nearest integer first (exactly), so that pi * x is
    // not rounded at a large x, where each of its ULPs moves tan a long way near a pole.
    const double pi = 3.14159265358979323846;
    result -= pi / tan(pi * (x - rint(x)));
    x = 1.0 - x;
  }
  while (x < 10.0) {
    result -= 1.0 / x;
    x += 1.0;
  }
  const double inv = 1.0 / x;
  const double inv2 = inv * inv;
  double series = 1.0 / 12.0;
  series = inv2 * series - 691.0 / 32760.0;
  series = inv2 * series + 1.0 / 132.0;
  series = inv2 * series - 1.0 / 240.0;
  series = inv2 * series + 1.0 / 252.0;
  series = inv2 * series - 1.0 / 120.0;
  series = inv2 * series + 1.0 / 12.0;
  return result + log(x) - 0.5 * inv - inv2 * series;
}
FJ_DEVICE float fj_digamma(float x) { return (float)fj_digamma((double)x); }

// Index clamp for guarded loads (pad, concatenate): the load stays in bounds, a select
// then picks the pad value or the other operand.
// A vector of W consecutive elements, aligned to its size (W * sizeof(T) is at most 16 bytes):
// one load or store instruction on the GPU (ld.global.v4.f32, ld.global.v2.f64, ...).
template <class T, int W> struct alignas(sizeof(T) * W) fj_pack { T v[W]; };
template <int W, class T> FJ_DEVICE fj_pack<T, W> fj_load_pack(const T* p) {
  return *reinterpret_cast<const fj_pack<T, W>*>(p);
}
template <int W, class T> FJ_DEVICE void fj_store_pack(T* p, const fj_pack<T, W>& value) {
  *reinterpret_cast<fj_pack<T, W>*>(p) = value;
}
template <int BYTES, class T> FJ_DEVICE bool fj_aligned(const T* p) {
  return (reinterpret_cast<unsigned long long>(p) & (unsigned long long)(BYTES - 1)) == 0;
}

template <class T> FJ_DEVICE T fj_clamp_index(T x, T lo, T hi) { return x < lo ? lo : (x > hi ? hi : x); }

// A gather's or dynamic slice's window start read from data, clamped to [0, hi] (XLA clamps
// so that the window fits), and whether it fitted unclamped (FILL_OR_DROP).
template <class T> FJ_DEVICE long long fj_start_index(T s, long long hi) {
  if constexpr (fj_traits<T>::is_signed) {
    if (s < (T)0) return 0;
  }
  return (unsigned long long)s > (unsigned long long)hi ? hi : (long long)s;
}
template <class T> FJ_DEVICE bool fj_index_fits(T s, long long hi) {
  if constexpr (fj_traits<T>::is_signed) {
    if (s < (T)0) return false;
  }
  return hi >= 0 && (unsigned long long)s <= (unsigned long long)hi;
}
