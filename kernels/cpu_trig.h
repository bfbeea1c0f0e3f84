// sin, cos and tan of a float, computed in double precision and rounded once: within one
// ULP of the exact result for every float (all of them checked: python -m bench.ulp_sweep),
// in practice correctly rounded; NaN for +-inf and NaN.  Straight-line code, so GCC
// vectorises the loops that use them, which it cannot do with the C library's scalar
// sinf/cosf.  Included by cpu_prelude.h.
#pragma once

// (2^E 2/pi) mod 4 in units of 2^-94 (2 integer bits, 94 fraction bits), as three 32-bit words,
// most significant first, for E = -24 .. 104, row E + 24: a float a >= 0.5 is M 2^E with M its
// 24-bit significand, and its row is its exponent field less 126.  tests/test_elementwise.py
// recomputes every row from pi with Python integers.
#define FJ_TWO_OVER_PI_ROWS 129
static const uint32_t fj_two_over_pi_w0[FJ_TWO_OVER_PI_ROWS] = {
    0x00000028, 0x00000051, 0x000000a2, 0x00000145, 0x0000028b, 0x00000517, 0x00000a2f, 0x0000145f,
    0x000028be, 0x0000517c, 0x0000a2f9, 0x000145f3, 0x00028be6, 0x000517cc, 0x000a2f98, 0x00145f30,
    0x0028be60, 0x00517cc1, 0x00a2f983, 0x0145f306, 0x028be60d, 0x0517cc1b, 0x0a2f9836, 0x145f306d,
    0x28be60db, 0x517cc1b7, 0xa2f9836e, 0x45f306dc, 0x8be60db9, 0x17cc1b72, 0x2f9836e4, 0x5f306dc9,
    0xbe60db93, 0x7cc1b727, 0xf9836e4e, 0xf306dc9c, 0xe60db939, 0xcc1b7272, 0x9836e4e4, 0x306dc9c8,
    0x60db9391, 0xc1b72722, 0x836e4e44, 0x06dc9c88, 0x0db93910, 0x1b727220, 0x36e4e441, 0x6dc9c882,
    0xdb939105, 0xb727220a, 0x6e4e4415, 0xdc9c882a, 0xb9391054, 0x727220a9, 0xe4e44152, 0xc9c882a5,
    0x9391054a, 0x27220a94, 0x4e441529, 0x9c882a53, 0x391054a7, 0x7220a94f, 0xe441529f, 0xc882a53f,
    0x91054a7f, 0x220a94fe, 0x441529fc, 0x882a53f8, 0x1054a7f0, 0x20a94fe1, 0x41529fc2, 0x82a53f84,
    0x054a7f09, 0x0a94fe13, 0x1529fc27, 0x2a53f84e, 0x54a7f09d, 0xa94fe13a, 0x529fc275, 0xa53f84ea,
    0x4a7f09d5, 0x94fe13ab, 0x29fc2757, 0x53f84eaf, 0xa7f09d5f, 0x4fe13abe, 0x9fc2757d, 0x3f84eafa,
    0x7f09d5f4, 0xfe13abe8, 0xfc2757d1, 0xf84eafa3, 0xf09d5f47, 0xe13abe8f, 0xc2757d1f, 0x84eafa3e,
    0x09d5f47d, 0x13abe8fa, 0x2757d1f5, 0x4eafa3ea, 0x9d5f47d4, 0x3abe8fa9, 0x757d1f53, 0xeafa3ea6,
    0xd5f47d4d, 0xabe8fa9a, 0x57d1f534, 0xafa3ea69, 0x5f47d4d3, 0xbe8fa9a6, 0x7d1f534d, 0xfa3ea69b,
    0xf47d4d37, 0xe8fa9a6e, 0xd1f534dd, 0xa3ea69bb, 0x47d4d377, 0x8fa9a6ee, 0x1f534ddc, 0x3ea69bb8,
    0x7d4d3770, 0xfa9a6ee0, 0xf534ddc0, 0xea69bb81, 0xd4d37703, 0xa9a6ee06, 0x534ddc0d, 0xa69bb81b,
    0x4d377036,
};
static const uint32_t fj_two_over_pi_w1[FJ_TWO_OVER_PI_ROWS] = {
    0xbe60db93, 0x7cc1b727, 0xf9836e4e, 0xf306dc9c, 0xe60db939, 0xcc1b7272, 0x9836e4e4, 0x306dc9c8,
    0x60db9391, 0xc1b72722, 0x836e4e44, 0x06dc9c88, 0x0db93910, 0x1b727220, 0x36e4e441, 0x6dc9c882,
    0xdb939105, 0xb727220a, 0x6e4e4415, 0xdc9c882a, 0xb9391054, 0x727220a9, 0xe4e44152, 0xc9c882a5,
    0x9391054a, 0x27220a94, 0x4e441529, 0x9c882a53, 0x391054a7, 0x7220a94f, 0xe441529f, 0xc882a53f,
    0x91054a7f, 0x220a94fe, 0x441529fc, 0x882a53f8, 0x1054a7f0, 0x20a94fe1, 0x41529fc2, 0x82a53f84,
    0x054a7f09, 0x0a94fe13, 0x1529fc27, 0x2a53f84e, 0x54a7f09d, 0xa94fe13a, 0x529fc275, 0xa53f84ea,
    0x4a7f09d5, 0x94fe13ab, 0x29fc2757, 0x53f84eaf, 0xa7f09d5f, 0x4fe13abe, 0x9fc2757d, 0x3f84eafa,
    0x7f09d5f4, 0xfe13abe8, 0xfc2757d1, 0xf84eafa3, 0xf09d5f47, 0xe13abe8f, 0xc2757d1f, 0x84eafa3e,
    0x09d5f47d, 0x13abe8fa, 0x2757d1f5, 0x4eafa3ea, 0x9d5f47d4, 0x3abe8fa9, 0x757d1f53, 0xeafa3ea6,
    0xd5f47d4d, 0xabe8fa9a, 0x57d1f534, 0xafa3ea69, 0x5f47d4d3, 0xbe8fa9a6, 0x7d1f534d, 0xfa3ea69b,
    0xf47d4d37, 0xe8fa9a6e, 0xd1f534dd, 0xa3ea69bb, 0x47d4d377, 0x8fa9a6ee, 0x1f534ddc, 0x3ea69bb8,
    0x7d4d3770, 0xfa9a6ee0, 0xf534ddc0, 0xea69bb81, 0xd4d37703, 0xa9a6ee06, 0x534ddc0d, 0xa69bb81b,
    0x4d377036, 0x9a6ee06d, 0x34ddc0db, 0x69bb81b6, 0xd377036d, 0xa6ee06db, 0x4ddc0db6, 0x9bb81b6c,
    0x377036d8, 0x6ee06db1, 0xddc0db62, 0xbb81b6c5, 0x77036d8a, 0xee06db14, 0xdc0db629, 0xb81b6c52,
    0x7036d8a5, 0xe06db14a, 0xc0db6295, 0x81b6c52b, 0x036d8a56, 0x06db14ac, 0x0db62959, 0x1b6c52b3,
    0x36d8a566, 0x6db14acc, 0xdb629599, 0xb6c52b32, 0x6d8a5664, 0xdb14acc9, 0xb6295993, 0x6c52b327,
    0xd8a5664f,
};
static const uint32_t fj_two_over_pi_w2[FJ_TWO_OVER_PI_ROWS] = {
    0x91054a7f, 0x220a94fe, 0x441529fc, 0x882a53f8, 0x1054a7f0, 0x20a94fe1, 0x41529fc2, 0x82a53f84,
    0x054a7f09, 0x0a94fe13, 0x1529fc27, 0x2a53f84e, 0x54a7f09d, 0xa94fe13a, 0x529fc275, 0xa53f84ea,
    0x4a7f09d5, 0x94fe13ab, 0x29fc2757, 0x53f84eaf, 0xa7f09d5f, 0x4fe13abe, 0x9fc2757d, 0x3f84eafa,
    0x7f09d5f4, 0xfe13abe8, 0xfc2757d1, 0xf84eafa3, 0xf09d5f47, 0xe13abe8f, 0xc2757d1f, 0x84eafa3e,
    0x09d5f47d, 0x13abe8fa, 0x2757d1f5, 0x4eafa3ea, 0x9d5f47d4, 0x3abe8fa9, 0x757d1f53, 0xeafa3ea6,
    0xd5f47d4d, 0xabe8fa9a, 0x57d1f534, 0xafa3ea69, 0x5f47d4d3, 0xbe8fa9a6, 0x7d1f534d, 0xfa3ea69b,
    0xf47d4d37, 0xe8fa9a6e, 0xd1f534dd, 0xa3ea69bb, 0x47d4d377, 0x8fa9a6ee, 0x1f534ddc, 0x3ea69bb8,
    0x7d4d3770, 0xfa9a6ee0, 0xf534ddc0, 0xea69bb81, 0xd4d37703, 0xa9a6ee06, 0x534ddc0d, 0xa69bb81b,
    0x4d377036, 0x9a6ee06d, 0x34ddc0db, 0x69bb81b6, 0xd377036d, 0xa6ee06db, 0x4ddc0db6, 0x9bb81b6c,
    0x377036d8, 0x6ee06db1, 0xddc0db62, 0xbb81b6c5, 0x77036d8a, 0xee06db14, 0xdc0db629, 0xb81b6c52,
    0x7036d8a5, 0xe06db14a, 0xc0db6295, 0x81b6c52b, 0x036d8a56, 0x06db14ac, 0x0db62959, 0x1b6c52b3,
    0x36d8a566, 0x6db14acc, 0xdb629599, 0xb6c52b32, 0x6d8a5664, 0xdb14acc9, 0xb6295993, 0x6c52b327,
    0xd8a5664f, 0xb14acc9e, 0x6295993c, 0xc52b3278, 0x8a5664f1, 0x14acc9e2, 0x295993c4, 0x52b32788,
    0xa5664f10, 0x4acc9e21, 0x95993c43, 0x2b327887, 0x5664f10e, 0xacc9e21c, 0x5993c439, 0xb3278872,
    0x664f10e4, 0xcc9e21c8, 0x993c4390, 0x32788720, 0x64f10e41, 0xc9e21c82, 0x93c43904, 0x27887208,
    0x4f10e410, 0x9e21c820, 0x3c439041, 0x78872083, 0xf10e4107, 0xe21c820f, 0xc439041f, 0x8872083f,
    0x10e4107f,
};

// a mod pi/2 for a finite float a >= 0.5: returns r in [-pi/4, pi/4] and sets the quadrant n
// (a = n pi/2 + r modulo 2 pi).  a 2/pi mod 4 = M (2^E 2/pi mod 4) mod 4, M an integer: the
// significand times the row, less the product's low 32 bits, modulo 2^64, in units of 2^-62
// (absolute error below 2^-61; python -m bench.ulp_sweep checks every float, those nearest a
// multiple of pi/2 among them).
FJ_MATH double fj_reduce_half_pi(float a, unsigned& quadrant) {
  const uint32_t bits = fj_float_bits(a);
  const int row0 = (int)(bits >> 23) - 126;
  const int row = row0 < 0 ? 0 : (row0 > FJ_TWO_OVER_PI_ROWS - 1 ? FJ_TWO_OVER_PI_ROWS - 1 : row0);
  const uint64_t m = (bits & 0x7fffffu) | 0x800000u;
  const uint64_t w0 = fj_two_over_pi_w0[row];
  const uint64_t w1 = fj_two_over_pi_w1[row];
  const uint64_t w2 = fj_two_over_pi_w2[row];
  const uint64_t turns = ((m * w0) << 32) + m * w1 + ((m * w2) >> 32);
  const uint64_t n = (turns + (1ull << 61)) >> 62;  // the nearest quadrant
  const int64_t rest = (int64_t)(turns - (n << 62));
  quadrant = (unsigned)n;
  return fj_int64_to_double(rest) * 0x1.921fb54442d18p-62;  // pi/2 2^-62
}
// |x| mod pi/2 as (r, quadrant); |x| below 0.78125 (< pi/4) is its own remainder.
FJ_MATH double fj_trig_reduce(float x, unsigned& quadrant) {
  const float a = fabsf(x);
  unsigned n;
  const double reduced = fj_reduce_half_pi(a, n);
  const bool small = a < 0.78125f;
  quadrant = small ? 0u : n;
  return small ? (double)a : reduced;
}
// sin and cos of r in [-pi/4, pi/4] by their Taylor series to r^13 and r^14 (relative error
// below 3e-14), in explicit fused multiply-adds.
FJ_MATH double fj_sin_poly(double r) {
  const double z = r * r;
  double p = 1.0 / 6227020800.0;
  p = __builtin_fma(p, z, -1.0 / 39916800.0);
  p = __builtin_fma(p, z, 1.0 / 362880.0);
  p = __builtin_fma(p, z, -1.0 / 5040.0);
  p = __builtin_fma(p, z, 1.0 / 120.0);
  p = __builtin_fma(p, z, -1.0 / 6.0);
  return __builtin_fma(r * z, p, r);
}
FJ_MATH double fj_cos_poly(double r) {
  const double z = r * r;
  double p = -1.0 / 87178291200.0;
  p = __builtin_fma(p, z, 1.0 / 479001600.0);
  p = __builtin_fma(p, z, -1.0 / 3628800.0);
  p = __builtin_fma(p, z, 1.0 / 40320.0);
  p = __builtin_fma(p, z, -1.0 / 720.0);
  p = __builtin_fma(p, z, 1.0 / 24.0);
  return __builtin_fma(z * z, p, __builtin_fma(-0.5, z, 1.0));
}
// In quadrant q, sin x = sin r, cos r, -sin r, -cos r and cos x = cos r, -sin r, -cos r, sin r;
// sin and tan are odd.  Infinities and NaN give NaN (x - x).
FJ_MATH float fj_sin(float x) {
  unsigned q;
  const double r = fj_trig_reduce(x, q);
  const double v = (q & 1u) ? fj_cos_poly(r) : fj_sin_poly(r);
  const float f = (float)((q & 2u) ? -v : v);
  return fabsf(x) <= 0x1.fffffep127f ? copysignf(1.0f, x) * f : x - x;
}
FJ_MATH float fj_cos(float x) {
  unsigned q;
  const double r = fj_trig_reduce(x, q);
  const double v = (q & 1u) ? fj_sin_poly(r) : fj_cos_poly(r);
  const float f = (float)(((q + 1u) & 2u) ? -v : v);
  return fabsf(x) <= 0x1.fffffep127f ? f : x - x;
}
FJ_MATH float fj_tan(float x) {
  unsigned q;
  const double r = fj_trig_reduce(x, q);
  const double s = fj_sin_poly(r), c = fj_cos_poly(r);
  const float f = (float)((q & 1u) ? -c / s : s / c);
  return fabsf(x) <= 0x1.fffffep127f ? copysignf(1.0f, x) * f : x - x;
}
static inline double fj_sin(double x) { return sin(x); }
static inline double fj_cos(double x) { return cos(x); }
static inline double fj_tan(double x) { return tan(x); }
