// CUDA spellings on the CPU, shared by the host fast mode and the emulation.
#pragma once
#include <math.h>
#include <stdint.h>
#include <string.h>
#include <cmath>

struct dim3 {
  unsigned int x, y, z;
  dim3(unsigned int x_ = 1, unsigned int y_ = 1, unsigned int z_ = 1) : x(x_), y(y_), z(z_) {}
};
// Each OS thread sees its own CUDA coordinates.
static thread_local dim3 threadIdx(0), blockIdx(0), blockDim(1), gridDim(1);

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __restrict__ __restrict
#define FJ_DEVICE static inline
#define FJ_RESTRICT __restrict

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

// A split reduction's ticket (blocks run on several OS threads in the host fast mode): the
// partial written before is released with it, the last ticket acquires every other's.
static inline bool fj_take_ticket(unsigned int* ticket, unsigned int count) {
  return __atomic_fetch_add(ticket, 1u, __ATOMIC_ACQ_REL) == count - 1u;
}
template <class T> static inline T fj_load_cg(const T* p) { return *p; }

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
  const double two_over_pi_a = 2.0 / (M_PI * a);
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
static inline float fj_erfinv(float y) { return (float)fj_erfinv((double)y); }
