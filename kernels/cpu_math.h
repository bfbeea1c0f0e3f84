// The C library's math functions the kernels and the preludes call, declared here instead of
// through <math.h>: in C++ that header brings all of <cmath>, a parse that would cost every
// module's compile more than its kernels.  The compiler knows each of them as a builtin
// (sqrtf, fabs, floor, ... become instructions); the rest link to the C library.
#pragma once

extern "C" {
#define FJ_LIBM1(name) double name(double) noexcept; float name##f(float) noexcept;
#define FJ_LIBM2(name) double name(double, double) noexcept; float name##f(float, float) noexcept;
FJ_LIBM1(sin) FJ_LIBM1(cos) FJ_LIBM1(tan) FJ_LIBM1(asin) FJ_LIBM1(acos) FJ_LIBM1(atan)
FJ_LIBM1(sinh) FJ_LIBM1(cosh) FJ_LIBM1(tanh) FJ_LIBM1(asinh) FJ_LIBM1(acosh) FJ_LIBM1(atanh)
FJ_LIBM1(exp) FJ_LIBM1(exp2) FJ_LIBM1(expm1) FJ_LIBM1(log) FJ_LIBM1(log1p) FJ_LIBM1(log2)
FJ_LIBM1(log10) FJ_LIBM1(sqrt) FJ_LIBM1(cbrt) FJ_LIBM1(fabs) FJ_LIBM1(floor) FJ_LIBM1(ceil)
FJ_LIBM1(round) FJ_LIBM1(rint) FJ_LIBM1(trunc) FJ_LIBM1(erf) FJ_LIBM1(erfc) FJ_LIBM1(lgamma)
FJ_LIBM2(atan2) FJ_LIBM2(pow) FJ_LIBM2(fmod) FJ_LIBM2(nextafter) FJ_LIBM2(copysign)
FJ_LIBM2(fmax) FJ_LIBM2(fmin) FJ_LIBM2(hypot)
#undef FJ_LIBM1
#undef FJ_LIBM2
double lgamma_r(double, int*) noexcept;
float lgammaf_r(float, int*) noexcept;
}
