// Special functions of JAX's that XLA expands (lax.zeta, lax.polygamma, lax.bessel_i1e) and
// lax.reduce_precision.  Each is computed in double precision; a float32 result is that
// value rounded once.  The special values (poles, domain errors, infinities) are XLA's.
#pragma once

// Hurwitz zeta, the sum over k >= 0 of (q + k)^-x, by Euler-Maclaurin summation: the first
// ten terms directly, then, from a = q + 10, the integral a^(1-x) / (x - 1), half the term at
// a, and twelve corrections B_2j / (2j)! x (x+1) ... (x+2j-2) a^(1-x-2j), nested in 1/a^2.
// x = 1 is +inf; at a pole (q an integer <= 0) the result is +inf for an even integer x and
// NaN otherwise; q <= 0 with x not an integer, or x < 1, is NaN.
FJ_DEVICE double fj_zeta(double x, double q) {
  if (x == 1.0) return fj_inf();
  const bool q_not_positive = q <= 0.0;
  const bool x_integer = floor(x) == x;
  if (q_not_positive && floor(q) == q) return x_integer && fmod(x, 2.0) == 0.0 ? fj_inf() : fj_nan();
  if ((q_not_positive && !x_integer) || x < 1.0) return fj_nan();
  double sum = 0.0;
  double a = q;
  FJ_UNROLL
  for (int k = 0; k < 10; ++k) {
    sum += pow(a, -x);
    a += 1.0;
  }
  // B_2j / (2j)! for j = 1 .. 12 (B_2j the Bernoulli numbers), correctly rounded
  const double bernoulli[12] = {
      0.08333333333333333, -0.001388888888888889, 3.306878306878307e-05, -8.267195767195768e-07,
      2.08767569878681e-08, -5.284190138687493e-10, 1.3382536530684679e-11, -3.3896802963225827e-13,
      8.586062056277845e-15, -2.174868698558062e-16, 5.5090028283602295e-18, -1.3954464685812522e-19};
  const double inv_a2 = 1.0 / (a * a);
  double nested = bernoulli[11];
  FJ_UNROLL
  for (int j = 11; j >= 1; --j) {
    const double rise = (x + (double)(2 * j - 1)) * (x + (double)(2 * j));
    nested = bernoulli[j - 1] + rise * inv_a2 * nested;
  }
  const double tail = pow(a, -x);
  return sum + tail * a / (x - 1.0) + tail * (0.5 + x / a * nested);
}
FJ_DEVICE float fj_zeta(float x, float q) { return (float)fj_zeta((double)x, (double)q); }

// polygamma(n, x), the n-th derivative of digamma: digamma for n = 0, else
// (-1)^(n+1) n! zeta(n + 1, x), n! as exp(lgamma(n + 1)); NaN unless n is a natural number.
FJ_DEVICE double fj_polygamma(double n, double x) {
  if (floor(n) != n || n < 0.0) return fj_nan();
  if (n == 0.0) return fj_digamma(x);
  const double sign = fmod(n, 2.0) == 0.0 ? -1.0 : 1.0;
  return sign * exp(fj_lgamma(n + 1.0)) * fj_zeta(n + 1.0, x);
}
FJ_DEVICE float fj_polygamma(float n, float x) { return (float)fj_polygamma((double)n, (double)x); }

// e^-|x| I1(x), the exponentially scaled modified Bessel function of order one (odd in x).
// Below |x| = 25, the power series of I1, the sum over k of (x/2)^(2k+1) / (k! (k+1)!) (terms
// of one sign), times e^-|x|.  From 25 on, the asymptotic series
//   e^-|x| I1(|x|) ~ (2 pi |x|)^(-1/2) (1 - 3 / (8|x|) - 15 / (2! (8|x|)^2) - ...),
// term k = term k-1 * ((2k-1)^2 - 4) / (8 k |x|), summed while the terms shrink: the least of
// them is below 1e-20 there.
FJ_DEVICE double fj_bessel_i1e(double x) {
  const double ax = fabs(x);
  if (ax != ax) return x;
  double value;
  if (ax < 25.0) {
    const double half = 0.5 * ax;
    const double half2 = half * half;
    double term = half;
    double sum = half;
    for (int k = 1; k < 120 && term > 1e-17 * sum; ++k) {
      term *= half2 / ((double)k * (double)(k + 1));
      sum += term;
    }
    value = sum * exp(-ax);
  } else {
    const double inv = 1.0 / (8.0 * ax);
    double term = 1.0;
    double sum = 1.0;
    for (int k = 1; k < 100; ++k) {
      const double odd = (double)(2 * k - 1);
      const double next = term * (odd * odd - 4.0) * inv / (double)k;
      if (fabs(next) >= fabs(term) || fabs(next) < 1e-18 * fabs(sum)) break;
      term = next;
      sum += term;
    }
    value = sum / sqrt(2.0 * 3.14159265358979323846 * ax);
  }
  return copysign(value, x);
}
FJ_DEVICE float fj_bessel_i1e(float x) { return (float)fj_bessel_i1e((double)x); }

// reduce_precision: x rounded to `mantissa_bits` bits of mantissa (to nearest, ties to even),
// then to `exponent_bits` bits of exponent: past the reduced format's largest exponent an
// infinity, at or below its smallest normal exponent a zero, of x's sign.  A NaN stays a NaN
// (with no mantissa bit left too, as in XLA).  U: the unsigned integer of F's size; EXP and
// MANT: F's exponent and mantissa bits.
template <class F, class U, int EXP, int MANT>
FJ_DEVICE F fj_reduce_precision_bits(F x, int exponent_bits, int mantissa_bits) {
  U bits = fj_bitcast<U>(x);
  if (mantissa_bits < MANT) {
    const int shift = MANT - mantissa_bits;
    const U last_kept = (U)1 << shift;
    const U kept_lowest_bit = (bits >> shift) & (U)1;
    bits = (bits + (last_kept / 2 - 1) + kept_lowest_bit) & ~(last_kept - 1);
  }
  if (exponent_bits < EXP) {
    const U sign = (U)1 << (EXP + MANT);
    const U exponent_mask = (((U)1 << EXP) - 1) << MANT;
    const U bias = ((U)1 << (EXP - 1)) - 1;
    const U reduced_bias = ((U)1 << (exponent_bits - 1)) - 1;
    const U exponent = bits & exponent_mask;
    const U signed_zero = bits & sign;
    if (exponent > ((bias + reduced_bias) << MANT)) {
      bits = signed_zero | exponent_mask;
    } else if (exponent <= ((bias - reduced_bias) << MANT)) {
      bits = signed_zero;
    }
  }
  const F result = fj_bitcast<F>(bits);
  return x != x ? x : result;
}
FJ_DEVICE float fj_reduce_precision(float x, int exponent_bits, int mantissa_bits) {
  return fj_reduce_precision_bits<float, uint32_t, 8, 23>(x, exponent_bits, mantissa_bits);
}
FJ_DEVICE double fj_reduce_precision(double x, int exponent_bits, int mantissa_bits) {
  return fj_reduce_precision_bits<double, uint64_t, 11, 52>(x, exponent_bits, mantissa_bits);
}
