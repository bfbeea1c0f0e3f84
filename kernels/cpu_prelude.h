// CUDA spellings on the CPU, shared by the host fast mode and the emulation.
#pragma once
#include <stdint.h>
#include <string.h>

#include "cpu_math.h"

struct dim3 {
  unsigned int x, y, z;
  constexpr dim3(unsigned int x_ = 1, unsigned int y_ = 1, unsigned int z_ = 1) : x(x_), y(y_), z(z_) {}
};
// Each OS thread sees its own block coordinates (threadIdx and blockDim: the launch headers).
static thread_local dim3 blockIdx(0), gridDim(1);

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __restrict__ __restrict
#define FJ_DEVICE static inline
#define FJ_RESTRICT __restrict
// Around a kernel too small for vector loops to pay (fusejit/codegen.py, SMALL_KERNEL_ELEMENTS):
// GCC compiles it at -O1, in half the time.  Every option that decides a computed value
// (-ffp-contract=off, no -ffast-math) stays as the command line has it.
#if defined(__GNUC__) && !defined(__clang__)
#define FJ_SMALL_KERNEL_BEGIN _Pragma("GCC push_options") _Pragma("GCC optimize(\"O1\")")
#define FJ_SMALL_KERNEL_END _Pragma("GCC pop_options")
#else
#define FJ_SMALL_KERNEL_BEGIN
#define FJ_SMALL_KERNEL_END
#endif

static inline float fj_inf_f() { return __builtin_inff(); }
static inline float fj_nan_f() { return __builtin_nanf(""); }
static inline double fj_inf() { return __builtin_inf(); }
static inline double fj_nan() { return __builtin_nan(""); }
static inline int fj_popc32(unsigned int x) { return __builtin_popcount(x); }
static inline int fj_popc64(unsigned long long x) { return __builtin_popcountll(x); }
static inline int fj_clz32(unsigned int x) { return x ? __builtin_clz(x) : 32; }
static inline int fj_clz64(unsigned long long x) { return x ? __builtin_clzll(x) : 64; }
static inline float fj_rsqrt(float x) { return 1.0f / sqrtf(x); }
static inline double fj_rsqrt(double x) { return 1.0 / sqrt(x); }
// lgamma() writes the global signgam: a data race across threads.  lgamma_r does not.
static inline float fj_lgamma(float x) { int sign; return lgammaf_r(x, &sign); }
static inline double fj_lgamma(double x) { int sign; return lgamma_r(x, &sign); }

// ---- float32 math the C++ compiler can vectorise ----
// exp, exp2, log, tanh, sinh, cosh, log1p, expm1, erf, erfc, erfinv, the logistic function,
// atan, atan2, asin, acos, asinh, acosh and atanh of a float, within one ULP of the exact
// result (tests/test_elementwise.py, bench/ulp_sweep.py), with the C library's results for
// NaN, +-inf, zero and overflow: exp, exp2, expm1, tanh, the logistic function, log and log1p
// in float arithmetic, the others in double and rounded once.  Straight-line code (selects,
// bit operations, no calls), so GCC vectorises the loops that use them, which it cannot do
// with the C library's scalar expf/tanhf/erff/atan2f.  The float64 versions are the C
// library's.  CUDA's prelude maps the same names to CUDA's functions.
#define FJ_MATH static inline __attribute__((always_inline))  // inlined, or the loop has a call
FJ_MATH double fj_bits_to_double(unsigned long long b) { double d; memcpy(&d, &b, 8); return d; }
FJ_MATH unsigned long long fj_double_bits(double d) { unsigned long long b; memcpy(&b, &d, 8); return b; }
// Integer <-> double in the operations every x86-64 vector unit has: AVX2 has no vector
// conversion between 64-bit integers and doubles (AVX-512DQ's vcvtqq2pd), nor a 64-bit
// arithmetic shift, and one of them in a loop keeps GCC from vectorising it at all.
// 2^n for an integer n in [-1022, 1023] held in a double: n + 1023 is the exponent field, read
// off the low bits of n + 1023 + 1.5 2^52 (exact).
FJ_MATH double fj_exp2_of_integer(double n) {
  return fj_bits_to_double(fj_double_bits(n + (0x1.8p52 + 1023.0)) << 52);
}
// (double)v, rounded once: v = hi 2^32 + lo, each part exact in a double (hi read off
// 2^84 + 2^63 + hi 2^32, lo off 2^52 + lo), the sum rounded once.
FJ_MATH double fj_int64_to_double(int64_t v) {
#if defined(__AVX512DQ__)
  return (double)v;
#else
  const uint64_t u = (uint64_t)v;
  const double hi = fj_bits_to_double((u >> 32) ^ 0x4530000080000000ULL) - (0x1p84 + 0x1p63);
  const double lo = fj_bits_to_double((u & 0xffffffffULL) | 0x4330000000000000ULL) - 0x1p52;
  return hi + lo;
#endif
}

// 1/n! for n = 0 .. 12: the Taylor coefficients of e^r.
static constexpr double fj_inverse_factorials[] = {
    1.0, 1.0, 1.0 / 2.0, 1.0 / 6.0, 1.0 / 24.0, 1.0 / 120.0, 1.0 / 720.0, 1.0 / 5040.0,
    1.0 / 40320.0, 1.0 / 362880.0, 1.0 / 3628800.0, 1.0 / 39916800.0, 1.0 / 479001600.0};
// e^x for x in [-745, 709] (NaN propagates): e^x = 2^k e^r, |r| <= ln(2)/2, e^r by its Taylor
// series to r^DEGREE (relative error below 1e-15 at 12, 6e-9 at 7).
template <int DEGREE = 12> FJ_MATH double fj_exp_core(double x) {
  static_assert(DEGREE >= 1 && DEGREE <= 12, "fj_inverse_factorials holds 1/0! .. 1/12!");
  const double shifter = 0x1.8p52;  // adding it rounds to an integer in the low bits
  const double kd = x * 0x1.71547652b82fep0 + shifter;
  const double k = kd - shifter;
  const double r = (x - k * 0x1.62e42fefa3800p-1) - k * 0x1.ef35793c76730p-45;
  double p = fj_inverse_factorials[DEGREE];
#pragma GCC unroll 12
  for (int n = DEGREE - 1; n >= 0; --n) p = p * r + fj_inverse_factorials[n];
  // 2^k in two factors, so that k from -1075 to 1024 stays representable.
  const double k1 = __builtin_floor(k * 0.5);
  return p * fj_exp2_of_integer(k1) * fj_exp2_of_integer(k - k1);
}

// log(x) for x > 0 finite and normal: x = m 2^e with m in [sqrt(1/2), sqrt(2)), log m = 2
// atanh(f), f = (m - 1) / (m + 1), |f| <= 0.1716, by its series to f^11 (relative error below
// 5e-11: for a float result, whose half ULP is at least 3e-8).  The logarithm of the float
// inverse hyperbolic functions (of 1 or more) and of erfinv (of 2^-24 or more).
FJ_MATH double fj_log_core(double x) {
  const unsigned long long b = fj_double_bits(x);
  // the exponent field as a double, off the low bits of 2^52 + field (exact)
  const double e0 = fj_bits_to_double((b >> 52 & 0x7ff) | 0x4330000000000000ULL) - (0x1p52 + 1023.0);
  const double m0 = fj_bits_to_double((b & 0x000fffffffffffffULL) | 0x3ff0000000000000ULL);
  const bool big = m0 > 1.4142135623730951;
  const double m = big ? m0 * 0.5 : m0;
  const double e = big ? e0 + 1.0 : e0;
  const double f = (m - 1.0) / (m + 1.0);
  const double s = f * f;
  double p = 1.0 / 11.0;
  p = __builtin_fma(p, s, 1.0 / 9.0);
  p = __builtin_fma(p, s, 1.0 / 7.0);
  p = __builtin_fma(p, s, 1.0 / 5.0);
  p = __builtin_fma(p, s, 1.0 / 3.0);
  p = __builtin_fma(p, s, 1.0);
  return __builtin_fma(e, 0x1.62e42fefa3800p-1, __builtin_fma(2.0 * f, p, e * 0x1.ef35793c76730p-45));
}

// Every value is computed unconditionally and then selected: a ternary whose arm divides or
// converts is control flow the vectoriser keeps (an arm may raise a floating-point flag).

// exp of a float in float arithmetic (twice the vector lanes of double): e^x = 2^k e^r with
// |r| <= ln(2)/2 from a two-part ln 2, e^r = 1 + r (1 + r q(r)) with q of degree 4 fitted to
// minimise the relative error on that interval (4e-9, a sixteenth of an ULP), and 2^k in two
// factors so results down to the denormals are rounded once.  Explicit fused multiply-adds
// (each rounded once, as IEEE defines them: -ffp-contract=off forms none of its own).  Within
// one ULP of the exact result for every float (checked exhaustively against the C library's
// double exp).
FJ_MATH float fj_bits_to_float(unsigned int b) { float f; memcpy(&f, &b, 4); return f; }
FJ_MATH unsigned int fj_float_bits(float f) { unsigned int b; memcpy(&b, &f, 4); return b; }
// e^r for |r| <= ln(2)/2: 1 + r (1 + r q(r)), q of degree 4 fitted to minimise the relative
// error on that interval (4e-9, a sixteenth of an ULP); its coefficients, highest first.
static constexpr float fj_exp_coefficients[] = {0x1.6a244cp-10f, 0x1.1239d4p-7f, 0x1.5558f2p-5f, 0x1.555492p-3f, 0x1.fffffcp-2f};
FJ_MATH float fj_exp_poly(float r) {
  float q = fj_exp_coefficients[0];
#pragma GCC unroll 8
  for (int n = 1; n < 5; ++n) q = __builtin_fmaf(q, r, fj_exp_coefficients[n]);
  return __builtin_fmaf(__builtin_fmaf(q, r, 1.0f), r, 1.0f);
}
// fj_exp_poly(2h), bit for bit, with the doubling folded into the coefficients (the one of
// h^n in q h scaled by 2^(n+1), so every product and sum is the original's scaled exactly):
// one multiplication fewer where the argument is halved anyway.
FJ_MATH float fj_exp_poly_of_half(float h) {
  float q = fj_exp_coefficients[0] * 32.0f;
#pragma GCC unroll 8
  for (int n = 1; n < 5; ++n) q = __builtin_fmaf(q, h, fj_exp_coefficients[n] * (float)(32 >> n));
  return __builtin_fmaf(__builtin_fmaf(q, h, 1.0f), h + h, 1.0f);
}
static constexpr float fj_exp_shifter = 0x1.8p23f;  // adding it rounds to an integer in the low bits
// Below -104, e^x rounds to 0: those lanes compute e^0 and are cleared by their bits, since
// a product whose result underflows is slow on some processors (a masked softmax's -1e9
// entries took a row kernel from 465 to 587 us), and the lanes of a vector are computed
// together.  (A float select `zero ? 0.0f : e` there kept GCC from vectorising softplus.)
// Clamps are one select each, in sequence, or fj_zero_if of a select: GCC vectorises a
// select nested in another (`zero ? 0.0f : (x > 89.0f ? 89.0f : x)`) as a compare and a blend
// per case and carries the cases into each later use of the value (fj_exp took 36
// instructions a vector of 8 instead of 28, and 1M floats on one Zen 3 core 588 us instead
// of 508; the results are the same bits).
FJ_MATH float fj_zero_if(bool zero, float v) { return fj_bits_to_float(fj_float_bits(v) & (zero ? 0u : 0xffffffffu)); }
// e^x = 2^k e^r, k from -150 to 128: 2^k in two factors, so that results down to the
// denormals are rounded once, 2^(k+64) times 2^-64 below 0 and 2^(k-1) times 2 above.  The
// first factor's exponent (k+64+127 or k-1+127, from 41 to 254) rides in the shifter: kf's
// low bits shifted into place are its bits.
static constexpr float fj_exp_shifter_below = 0x1.8p23f + 127.0f + 64.0f;
static constexpr float fj_exp_shifter_above = 0x1.8p23f + 127.0f - 1.0f;
// e^r times the first factor, exactly (a normal float): the shifter names the factor.
FJ_MATH float fj_exp_first_factor(float c, float shifter) {
  const float kf = __builtin_fmaf(c, 0x1.715476p0f, shifter);
  const float k = kf - shifter;
  const float p = fj_exp_poly(__builtin_fmaf(-k, 0x1.7f7d1cp-20f, __builtin_fmaf(-k, 0x1.62e400p-1f, c)));
  return p * fj_bits_to_float(fj_float_bits(kf) << 23);
}
FJ_MATH float fj_exp(float x) {
  const bool zero = x < -104.0f;
  const float c = fj_zero_if(zero, x > 89.0f ? 89.0f : x);  // NaN passes
  const bool below = c < 0.0f;
  // (a select of the two shifters made GCC compute everything twice)
  const float shifter = fj_exp_shifter_above + fj_zero_if(!below, 65.0f);
  return fj_zero_if(zero, fj_exp_first_factor(c, shifter) * (below ? 0x1p-64f : 2.0f));
}
// e^x for x <= 0 or NaN (a softmax's x - max(x): fusejit/ranges.py proves the sign): fj_exp's
// results, bit for bit, without its overflow clamp and its choice of factors.
FJ_MATH float fj_exp_nonpositive(float x) {
  const bool zero = x < -104.0f;
  const float c = zero ? 0.0f : x;  // NaN passes
  return fj_zero_if(zero, fj_exp_first_factor(c, fj_exp_shifter_below) * 0x1p-64f);
}
// log of a float: x = 2^k m with m in [sqrt(1/2), sqrt(2)) from x's bits offset by those of
// sqrt(1/2) (the exponent field steps where the mantissa passes sqrt(2)), f = m - 1 exactly,
// log m = f + f^2 Q(f) with Q of degree 9 in float arithmetic (bench/fits.py: relative error
// of f^2 Q to log m below 2^-28), and k ln 2 + f + f^2 Q summed in double and rounded once.
// f^2 Q is at most a fifth of |log m| and 0.07, so its float roundings stay below a quarter
// ULP of the result: within one ULP of the exact result for every float (checked
// exhaustively), in a third of the instructions of a double-precision series.
static constexpr float fj_log_coefficients[] = {  // bench/fits.py
    0x1.12254cp-4f, -0x1.d7a0aep-4f, 0x1.e4420cp-4f, -0x1.fd148ep-4f, 0x1.23788ep-3f, -0x1.55577ap-3f,
    0x1.99a12cp-3f, -0x1.00000ep-2f, 0x1.55554ep-2f, -0x1.000000p-1f};
static constexpr unsigned int fj_sqrt_half_bits = 0x3f3504f3u;
// k ln 2 + log(1 + f) for f = m - 1, plus `extra` (a small correction), rounded once: k
// ln2_hi is exact (ln2_hi has 16 significant bits, |k| <= 152), its sum with f is split into
// a float and its exact rounding error (Fast2Sum: |k ln2_hi| >= |f| unless k = 0), and the
// small terms are added to the error before the one rounding of the result.
FJ_MATH float fj_log_tail(float kf, float f, float extra) {
  float q = fj_log_coefficients[0];
#pragma GCC unroll 10
  for (int n = 1; n < 10; ++n) q = __builtin_fmaf(q, f, fj_log_coefficients[n]);
  const float t = (f * f) * q;
  const float a = kf * 0x1.62e400p-1f;  // ln2_hi, exact products
  const float hi = a + f;
  const float lo = (a - hi) + f;
  return hi + (__builtin_fmaf(kf, 0x1.7f7d1cp-20f, t + extra) + lo);  // ln2_lo = ln 2 - ln2_hi
}
// For x positive, finite and normal: k (the bits offset by those of sqrt(1/2): fj_log_k) and
// f = m - 1 (fj_log_f).
FJ_MATH unsigned int fj_log_offset(float x) { return fj_float_bits(x) - fj_sqrt_half_bits; }
FJ_MATH int fj_log_k(unsigned int offset) { return (int)offset >> 23; }  // floor: below sqrt(1/2), k < 0
FJ_MATH float fj_log_f(float x, unsigned int offset) {
  return fj_bits_to_float(fj_float_bits(x) - (offset & 0xff800000u)) - 1.0f;
}
FJ_MATH float fj_log(float x) {
  // (Other x compute garbage, selected away: a select of the operand kept GCC from
  // vectorising the loop.)
  const bool tiny = x < 0x1p-126f;  // a denormal, scaled to a normal float
  const float a = tiny ? x * 0x1p25f : x;
  const unsigned int offset = fj_log_offset(a);
  const float r = fj_log_tail((float)(fj_log_k(offset) - (tiny ? 25 : 0)), fj_log_f(a, offset), 0.0f);
  const float above = x == fj_inf_f() ? x : fj_nan_f();
  const float special = x == 0.0f ? -fj_inf_f() : above;
  return x > 0.0f && x < fj_inf_f() ? r : special;
}
// tanh in float arithmetic: below 0.625, tanh(a) = a + a^3 Q(a^2), Q of degree 4 fitted to
// minimise the relative error (1e-8); above, 1 - 2 / (e^2a + 1).  A relative error in e^2a
// reaches that result multiplied by 2e / (e^2 - 1), at most 0.62, so e^2a is reduced with a
// one-part ln 2 (an error of k times 2e-9 in r): e^2a = 2^k e^2h, h = a - k ln(2) / 2.  2^k
// (k from 1 to 29) is added to e^2h's exponent field as an integer, exactly: kf's low bits
// shifted into place are k's.  Within one ULP of the exact result for every float (checked
// exhaustively).  A loop of it is bound by its arithmetic (a million floats: 0.39 ms on one
// Zen 4 core, a copy 0.09), hence the folded doubling and the integer scaling.
FJ_MATH float fj_tanh(float x) {
  const float a = fabsf(x);
  const float s = a * a;
  float q = -0x1.7b47f8p-8f;
  q = __builtin_fmaf(q, s, 0x1.5355a2p-6f);
  q = __builtin_fmaf(q, s, -0x1.b86994p-5f);
  q = __builtin_fmaf(q, s, 0x1.110876p-3f);
  q = __builtin_fmaf(q, s, -0x1.555538p-2f);
  const float small = __builtin_fmaf(a, s * q, a);
  const float c = a > 10.0f ? 10.0f : a;  // tanh(10) rounds to 1; NaN passes
  const float kf = __builtin_fmaf(c, 0x1.715476p1f, fj_exp_shifter);
  const float k = kf - fj_exp_shifter;
  const float h = __builtin_fmaf(-k, 0x1.62e430p-2f, c);
  const float e = fj_bits_to_float(fj_float_bits(fj_exp_poly_of_half(h)) + (fj_float_bits(kf) << 23));
  const float big = 1.0f - 2.0f / (e + 1.0f);
  return copysignf(a >= 0.625f ? big : small, x);  // NaN: small (big's integer scaling may not keep a NaN)
}
// log1p of a float: u = 1 + x rounded, c = 1 + x - u exactly (Fast2Sum, the larger of 1 and
// x first), log(1 + x) = log u + c / u (the next term is below 2^-48), fj_log's tail adding
// c / u in double.  u >= 2^-24 is normal.
FJ_MATH float fj_log1p(float x) {
  const bool positive = x > -1.0f && x < fj_inf_f();  // (other x compute garbage, selected away)
  const float u = 1.0f + x;
  const float small = (1.0f - u) + x, large = (x - u) + 1.0f;
  const float c = fabsf(x) <= 1.0f ? small : large;
  const unsigned int offset = fj_log_offset(u);
  const float r = fj_log_tail((float)fj_log_k(offset), fj_log_f(u, offset), c / u);
  const float above = x == fj_inf_f() ? x : fj_nan_f();
  const float special = x == -1.0f ? -fj_inf_f() : above;
  const float result = positive ? r : special;
  return fabsf(x) < 0x1p-25f ? x : result;
}
// e^x - 1 of a float in float arithmetic: e^x = 2^k e^r as in fj_exp, e^r - 1 = r + t, t = r^2
// w(r) with w of degree 5 fitted to minimise its relative error (bench/fits.py: 1e-8 with float
// coefficients; t is at most a fifth of r + t), carried as a pair (m_hi + m_lo = r + t
// exactly).  For k = 0 the result is r + t rounded once; otherwise 2 h (1 + m) - 1 with h =
// 2^(k-1) (which stays a float up to the overflow) by exact sums: h + h m_hi by Fast2Sum, its
// double minus 1 by TwoSum, their rounding errors and 2 h m_lo added before the one rounding
// of the result.  Below -18 the result rounds to -1, past 89 to inf; below 2^-25 in magnitude
// it is x itself (+-0 and denormals too).  Within one ULP of the exact result for every float
// (checked exhaustively); NaN propagates.
static constexpr float fj_expm1_coefficients[] = {  // bench/fits.py
    0x1.a0465ap-13f, 0x1.6d42fcp-10f, 0x1.111166p-7f, 0x1.5554eap-5f, 0x1.555556p-3f, 0x1.000000p-1f};
FJ_MATH float fj_expm1(float x) {
  const float high = x > 89.0f ? 89.0f : x;  // NaN passes
  const float c = x < -18.0f ? -18.0f : high;
  const float kf = __builtin_fmaf(c, 0x1.715476p0f, fj_exp_shifter_above);  // carries k - 1 + 127
  const float k = kf - fj_exp_shifter_above;
  const float r = __builtin_fmaf(-k, 0x1.7f7d1cp-20f, __builtin_fmaf(-k, 0x1.62e400p-1f, c));
  float w = fj_expm1_coefficients[0];
#pragma GCC unroll 8
  for (int n = 1; n < 6; ++n) w = __builtin_fmaf(w, r, fj_expm1_coefficients[n]);
  const float t = (r * r) * w;
  const float m_hi = r + t;
  const float m_lo = (r - m_hi) + t;  // |r| >= |t|
  const float h = fj_bits_to_float(fj_float_bits(kf) << 23);  // 2^(k-1)
  const float b = h * m_hi;  // exact: |m_hi| < 1/2
  const float s = h + b;
  const float s_lo = (h - s) + b;  // |h| >= |b|
  const float d = 2.0f * s;  // inf past the float range
  const float e = d - 1.0f;
  const float back = e - d;  // TwoSum of d and -1
  const float e_lo = (d - (e - back)) + (-1.0f - back);
  const float general = e + ((e_lo + 2.0f * s_lo) + 2.0f * (h * m_lo));
  const float beyond = d == fj_inf_f() ? d : general;
  const float result = k == 0.0f ? m_hi : beyond;
  return fabsf(x) < 0x1p-25f ? x : result;
}
// The logistic function of a float in float arithmetic: with a = |x| and t = e^-a = 2^-k p,
// 1 / (1 + t) for x >= 0 and 2^-k p / (1 + t) for x < 0.  e^r = 1 + m, m = r + r^2 w(r), w of
// degree 5 fitted to minimise the absolute error of r^2 w on |r| <= ln(2)/2 (1.2e-9); p and
// 1 + t are carried as pairs of floats (the low part the exact rounding error of the high),
// and the quotient is one division and a correction from the exact residual, so only m's
// rounding and the last one remain.  2^-k in two factors (k up to 150: results down to the
// denormals, rounded once).  Within one ULP of the exact result for every float (checked
// exhaustively); NaN propagates.
static constexpr float fj_logistic_coefficients[] = {  // bench/fits.py
    0x1.a18978p-13f, 0x1.6d9968p-10f, 0x1.1110a0p-7f, 0x1.55547cp-5f, 0x1.555556p-3f, 0x1.000000p-1f};
FJ_MATH float fj_logistic(float x) {
  const float a0 = fabsf(x);
  const float a = a0 > 104.0f ? 104.0f : a0;  // e^-104 rounds to 0; NaN passes
  const float kf = __builtin_fmaf(a, 0x1.715476p0f, fj_exp_shifter);
  const float k = kf - fj_exp_shifter;  // e^-a = 2^-k e^r, r = k ln 2 - a
  const float r = __builtin_fmaf(k, 0x1.7f7d1cp-20f, __builtin_fmaf(k, 0x1.62e400p-1f, -a));
  float w = fj_logistic_coefficients[0];
#pragma GCC unroll 8
  for (int n = 1; n < 6; ++n) w = __builtin_fmaf(w, r, fj_logistic_coefficients[n]);
  const float m = __builtin_fmaf(r * r, w, r);
  const float p_hi = 1.0f + m;
  const float p_lo = (1.0f - p_hi) + m;
  const int ki = (int)(fj_float_bits(kf) - fj_float_bits(fj_exp_shifter));
  const int kc = ki > 100 ? 100 : ki;  // 2^-k = 2^-kc 2^-(k - kc), both normal
  const float scale = fj_bits_to_float((unsigned int)(127 - kc) << 23);
  // Below -104 the result rounds to 0: `rest` is 0 there, not a product that underflows
  // (slow on some processors, as in fj_exp).
  const float rest = fj_bits_to_float(x < -104.0f ? 0u : (unsigned int)(127 - (ki - kc)) << 23);
  const float d_hi = __builtin_fmaf(p_hi, scale, 1.0f);  // 1 + t
  const float d_lo = __builtin_fmaf(p_lo, scale, __builtin_fmaf(p_hi, scale, 1.0f - d_hi));
  const bool negative = x < 0.0f;
  const float n_hi = negative ? p_hi : 1.0f;
  const float n_lo = negative ? p_lo : 0.0f;
  const float reciprocal = 1.0f / d_hi;
  const float q0 = n_hi * reciprocal;
  const float residual = __builtin_fmaf(-q0, d_hi, n_hi) + __builtin_fmaf(-q0, d_lo, n_lo);
  const float q = __builtin_fmaf(residual, reciprocal, q0);
  return negative ? (q * scale) * rest : q;
}
// The inverse hyperbolic functions of a float, in double precision and rounded once, by
// formulas that keep their digits (a log of 1 + z with z computed without cancellation,
// the first terms of the series below 2^-12), vectorisable where the C library's are scalar
// calls (asinhf took 16 ns an element here).
FJ_MATH float fj_asinh(float x) {
  const double a = fabs((double)x);
  const double z = a + a * a / (1.0 + __builtin_sqrt(1.0 + a * a));
  const double r = a < 0x1p-12 ? a * (1.0 - a * a * (1.0 / 6.0)) : fj_log_core(1.0 + (a > 0x1p100 ? 2.0 * a : z));
  const float y = copysignf((float)r, x);
  return fabsf(x) <= 3.40282346638528859812e+38f ? y : x;  // +-inf and NaN are themselves
}
FJ_MATH float fj_acosh(float x) {
  const double t = (double)x - 1.0;  // exact
  const double z = t + __builtin_sqrt(t * (t + 2.0));
  const float r = (float)fj_log_core(1.0 + (t >= 0.0 && t < 0x1p100 ? z : 2.0 * t + 2.0));
  return x >= 1.0f && x < fj_inf_f() ? r : (x == fj_inf_f() ? x : fj_nan_f());
}
FJ_MATH float fj_atanh(float x) {
  const double a = fabs((double)x);
  const double b = a < 1.0 ? a : 0.5;
  const double r = b < 0x1p-12 ? b * (1.0 + b * b * (1.0 / 3.0)) : 0.5 * fj_log_core(1.0 + 2.0 * b / (1.0 - b));
  const float y = copysignf((float)r, x);
  return fabsf(x) < 1.0f ? y : (fabsf(x) == 1.0f ? copysignf(fj_inf_f(), x) : fj_nan_f());
}

// A polynomial in u by Horner's rule, one fused multiply-add a coefficient, the highest
// first; unrolled, so the loop that calls it stays one vectorisable loop.
template <int N> FJ_MATH double fj_horner(double u, const double (&coefficients)[N]) {
  double p = coefficients[0];
#pragma GCC unroll 32
  for (int k = 1; k < N; ++k) p = __builtin_fma(p, u, coefficients[k]);
  return p;
}
// erf(a) for |a| <= 3.9 in double precision: a P(a^2), P of degree 16 fitted (by Chebyshev
// least squares, in u = a^2 / 7.605 - 1; bench/fits.py) to erf(a) / a, relative error below
// 6e-9 (a fifth of half a float ULP: the result rounds to within one ULP).
static constexpr double fj_erf_coefficients[] = {
    0.00030760792599092586, -0.0008378645101641494, 0.000713638160994479,
    -0.0010760440657992367, 0.0038304144594704225, -0.007666676861176773, 0.011989266668410709,
    -0.019153847571048314, 0.029861671722362936, -0.04292999638326289, 0.05772635830069866,
    -0.07377415947884702, 0.09069168236026637, -0.109534843033668, 0.13469008492640483,
    -0.1810110244358894, 0.3625839802337914};
FJ_MATH double fj_erf_poly(double a) {
  return a * fj_horner(__builtin_fma(a * a, 2.0 / 15.21, -1.0), fj_erf_coefficients);
}
// erf of a float: fj_erf_poly rounded once, +-1 from |x| = 3.9 on (a float's erf rounds to 1
// from 3.8325 on).  Within one ULP of the exact result (checked over every float); NaN
// propagates.  One polynomial, no branch: vectorised where the C library's erff is a call.
FJ_MATH float fj_erf(float x) {
  const float inside = (float)fj_erf_poly(fabsf(x) < 3.9f ? (double)x : 0.0);
  const float outside = x != x ? x : copysignf(1.0f, x);
  return fabsf(x) < 3.9f ? inside : outside;
}
// erfc of a float, in double precision and rounded once: erfcx(|x|) e^-x^2, erfcx(y) =
// e^(y^2) erfc(y) being a polynomial of degree 10 in s = 1 / (1 + 0.4 y) fitted (by Chebyshev
// least squares; bench/fits.py) on 0 <= y <= 10.1 (relative error below 2.2e-9), and 2 minus
// that for a negative x; past 10.1 the result is 0 (or 2), below half the least float.  One
// polynomial and one exponential for every x, their errors together below 1e-8, a third of
// half an ULP, so the result rounds to within one ULP of the exact one (checked over every
// float); NaN propagates.
static constexpr double fj_erfcx_coefficients[] = {
    -4.207001464383526e-06, 4.874986441890899e-06, 6.291081886649832e-05,
    -7.878647665681164e-05, -0.0009368968146067943, 8.140644124605739e-05, 0.01738690862450318,
    0.08129299872408118, 0.21577396578541985, 0.3909042632060013, 0.2955125623560968};
FJ_MATH double fj_erfcx_poly(double y) {
  const double s = 1.0 / __builtin_fma(y, 0.4, 1.0);  // in [1 / 5.04, 1]; u in [-1, 1]
  return fj_horner(__builtin_fma(s, 2.495049504950495, -1.4950495049504948), fj_erfcx_coefficients);
}
FJ_MATH float fj_erfc(float x) {
  const double d = x;
  const double y = fabs(d);
  const double yc = y < 10.1 ? y : 10.1;  // NaN: 10.1, replaced below
  const double upper = fj_erfcx_poly(yc) * fj_exp_core<7>(-(yc * yc));  // yc^2 is exact
  const double inside = d < 0.0 ? 2.0 - upper : upper;
  const double far = d < 0.0 ? 2.0 : 0.0;
  const float result = (float)(y < 10.1 ? inside : far);
  return x != x ? x : result;
}
// atan2 of floats, in double precision and rounded once: with the larger magnitude h and the
// smaller l, atan(l / h), or pi/4 + atan((l - h) / (l + h)) past tan(pi/8) (l - h and l + h
// are exact in double there), so one division gives |t| <= tan(pi/8); atan(t) = t Q(t^2), Q
// of degree 5 fitted (bench/fits.py; relative error below 7e-10); then pi/2 minus that where
// |y| > |x|, pi minus that where x is negative (or -0), and y's sign.  Zeros and infinities
// as the C library: atan2(+-0, -0) = +-pi, atan2(+-inf, +-inf) = +-pi/4 or +-3pi/4.  Within
// one ULP of the exact result; NaN propagates.  Straight-line code where the C library's
// atan2f is a call per element.
static constexpr double fj_atan_coefficients[] = {
    -2.8006302130762223e-07, 4.324611290494804e-06, -6.979989451013176e-05,
    0.0012335813386146544, -0.025900195522379255, 0.9727918179462166};
// The angle in double precision (not rounded): for fj_atan2, fj_asin and fj_acos.
FJ_MATH double fj_atan2_core(double y, double x) {
  const double ay = fabs(y), ax = fabs(x);
  const bool steep = ay > ax;  // the angle from the y axis, subtracted from pi/2
  const double h = steep ? ay : ax, l = steep ? ax : ay;
  const bool infinite = ay == fj_inf() && ax == fj_inf();  // pi/4 from each axis
  const bool wide = infinite || l > 0.41421356237309503 * h;  // past tan(pi/8)
  const double num = infinite ? 0.0 : (wide ? l - h : l);
  const double den = infinite || h == 0.0 ? 1.0 : (wide ? l + h : h);  // 0 / 0: angle 0
  const double t = num / den;
  const double s = t * t;
  const double a = t * fj_horner(__builtin_fma(s, 6.0 + 4.0 * 1.4142135623730951, -1.0), fj_atan_coefficients);
  const double first = wide ? 0.78539816339744831 + a : a;  // [0, pi/4]
  const double octant = steep ? 1.5707963267948966 - first : first;  // [0, pi/2]
  const bool left = fj_double_bits(x) >> 63;  // x < 0 or x = -0
  return copysign(left ? 3.1415926535897931 - octant : octant, y);
}
FJ_MATH float fj_atan2(float y, float x) { return (float)fj_atan2_core(y, x); }
FJ_MATH float fj_atan(float x) { return (float)fj_atan2_core(x, 1.0); }
// asin and acos of a float as XLA writes them, in double precision (x^2 and 1 + x exact) and
// rounded once: asin x = 2 atan2(x, 1 + sqrt(1 - x^2)), acos x = 2 atan2(sqrt(1 - x^2), 1 + x)
// and pi at -1.  NaN outside [-1, 1].  Within one ULP of the exact result for every float.
FJ_MATH float fj_asin(float x) {
  const double d = x;
  return (float)(2.0 * fj_atan2_core(d, 1.0 + sqrt(1.0 - d * d)));
}
FJ_MATH float fj_acos(float x) {
  const double d = x;
  const double angle = 2.0 * fj_atan2_core(sqrt(1.0 - d * d), 1.0 + d);
  return (float)(d == -1.0 ? 3.1415926535897931 : angle);
}
// 2^x in float arithmetic as fj_exp computes e^x: k = x rounded to an integer by the shifter
// (which also carries the first factor's exponent), r = x - k exactly, 2^r = e^(r ln 2) by
// fj_exp_poly (r ln 2 rounded once: a tenth of an ULP), 2^k in two factors.  Below -150 the
// result rounds to 0, past 128 to inf; NaN propagates.  Within one ULP of the exact result
// for every float.
FJ_MATH float fj_exp2(float x) {
  const bool zero = x < -150.0f;
  const float c = fj_zero_if(zero, x > 129.0f ? 129.0f : x);  // NaN passes
  const bool below = c < 0.0f;
  const float shifter = fj_exp_shifter_above + fj_zero_if(!below, 65.0f);
  const float kf = c + shifter;
  const float p = fj_exp_poly((c - (kf - shifter)) * 0x1.62e430p-1f);
  return fj_zero_if(zero, p * fj_bits_to_float(fj_float_bits(kf) << 23) * (below ? 0x1p-64f : 2.0f));
}
// sinh and cosh of a float through fj_exp_core in double precision, rounded once: (e^a -+
// e^-a) / 2 with a = |x|, sinh below a = 1/32 by its series to a^7 (e^a - e^-a loses the
// digits there).  Infinities past the float range, NaN propagates.  Within one ULP of the
// exact result for every float.
FJ_MATH float fj_sinh(float x) {
  const double a = fabs((double)x);
  const double e = fj_exp_core(a > 100.0 ? 100.0 : a);  // NaN passes
  const double s = a * a;
  const double series = a * (1.0 + s * (1.0 / 6.0 + s * (1.0 / 120.0 + s * (1.0 / 5040.0))));
  return copysignf((float)(a < 0.03125 ? series : 0.5 * (e - 1.0 / e)), x);
}
FJ_MATH float fj_cosh(float x) {
  const double a = fabs((double)x);
  const double e = fj_exp_core<8>(a > 100.0 ? 100.0 : a);  // NaN passes
  return (float)(0.5 * (e + 1.0 / e));
}
static inline double fj_exp2(double x) { return exp2(x); }
static inline double fj_sinh(double x) { return sinh(x); }
static inline double fj_cosh(double x) { return cosh(x); }
static inline double fj_atan2(double y, double x) { return atan2(y, x); }
static inline double fj_atan(double x) { return atan(x); }
static inline double fj_asin(double x) { return asin(x); }
static inline double fj_acos(double x) { return acos(x); }
static inline double fj_exp(double x) { return exp(x); }
static inline double fj_exp_nonpositive(double x) { return exp(x); }
static inline double fj_log(double x) { return log(x); }
static inline double fj_tanh(double x) { return tanh(x); }
static inline double fj_log1p(double x) { return log1p(x); }
static inline double fj_expm1(double x) { return expm1(x); }
static inline double fj_logistic(double x) { return 1.0 / (1.0 + exp(-x)); }
static inline double fj_erf(double x) { return erf(x); }
static inline double fj_asinh(double x) { return asinh(x); }
static inline double fj_acosh(double x) { return acosh(x); }
static inline double fj_atanh(double x) { return atanh(x); }
static inline double fj_erfc(double x) { return erfc(x); }
#include "cpu_trig.h"

// A split reduction's ticket (blocks run on several OS threads in the host fast mode): the
// partial written before is released with it, the last ticket acquires every other's.
static inline bool fj_take_ticket(unsigned int* ticket, unsigned int count) {
  return __atomic_fetch_add(ticket, 1u, __ATOMIC_ACQ_REL) == count - 1u;
}
template <class T> static inline T fj_load_cg(const T* p) { return *p; }
// Orders a thread's writes before its block's later ticket (a block of several threads in the
// emulation; one in the host fast mode).
static inline void __threadfence() { __atomic_thread_fence(__ATOMIC_SEQ_CST); }

// Inverse error function (CUDA has it built in; the C library does not).  A closed-form
// first guess, then Halley steps on erf (erfc near +-1, where erf loses the digits).
static inline double fj_erfinv(double y) {
  if (y != y || y < -1.0 || y > 1.0) return __builtin_nan("");
  if (y == 1.0) return __builtin_inf();
  if (y == -1.0) return -__builtin_inf();
  if (y == 0.0) return y;
  const double sign = y < 0 ? -1.0 : 1.0;
  const double ay = fabs(y);
  const double a = 0.147;
  const double two_over_pi_a = 2.0 / (3.14159265358979323846 * a);
  const double ln = log1p(-ay * ay);
  const double t = two_over_pi_a + 0.5 * ln;
  double x = sqrt(sqrt(t * t - ln / a) - t);
  const double two_over_sqrt_pi = 1.1283791670955126;
  for (int step = 0; step < 3; ++step) {
    const double f = ay > 0.5 ? (1.0 - ay) - erfc(x) : erf(x) - ay;
    const double df = two_over_sqrt_pi * exp(-x * x);
    if (df == 0.0) break;
    x -= f / (df + x * f);
  }
  return sign * x;
}
// erfinv of a float in double precision, rounded once: with s = sqrt(-log(1 - y^2)), at most
// sqrt(23 ln 2) < 4 below 1, erfinv(y) = y P(s), P of degree 20 in u = s / 2 - 1 fitted to
// minimise the relative error (bench/fits.py: below 4.8e-9, a sixth of half a float ULP), so
// the result rounds to within one ULP of the exact one (bench/ulp_sweep.py); 1 - y^2 is
// exact in double, its logarithm fj_log_core's.  One polynomial, no branch, no iteration:
// vectorised, where Halley steps on erf cost four times as much and the C library's erf,
// erfc and log1p were scalar calls.  +-inf at +-1, NaN outside [-1, 1]; +-0 stays itself.
static constexpr double fj_erfinv_coefficients[] = {
    0.018293152320715933, 0.005836189283556337, -0.11396108302208496, -0.03063317608572458,
    0.325221566669206, 0.06563336128287088, -0.5747332267998673, -0.06334583315405376,
    0.7254090385743177, -0.01218547060260925, -0.721658408984645, 0.14083223019710608,
    0.6049298252950396, -0.27706450517610537, -0.42523366455462747, 0.38746375536962785,
    0.21468713777107287, -0.5665957698755191, 0.45127192316777587, 1.8268376605649561,
    1.858779109083652};
FJ_MATH float fj_erfinv(float yf) {
  const double ay0 = fabs((double)yf);
  const bool inside = ay0 < 1.0;  // NaN: false
  const double ay = inside ? ay0 : 0.5;
  const double s = __builtin_sqrt(-fj_log_core((1.0 - ay) * (1.0 + ay)));
  const float r = (float)((double)yf * fj_horner(__builtin_fma(s, 0.5, -1.0), fj_erfinv_coefficients));
  return inside ? r : (ay0 == 1.0 ? copysignf(fj_inf_f(), yf) : fj_nan_f());
}
