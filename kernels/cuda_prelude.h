// Declarations for NVRTC: no system headers are available, so fixed-width types are spelled here.
#pragma once
typedef signed char int8_t;
typedef short int16_t;
typedef int int32_t;
typedef long long int64_t;
typedef unsigned char uint8_t;
typedef unsigned short uint16_t;
typedef unsigned int uint32_t;
typedef unsigned long long uint64_t;

#define FJ_DEVICE __device__ __forceinline__
#define FJ_RESTRICT __restrict__
#define FJ_SMALL_KERNEL_BEGIN  // the host's compile options for small kernels (cpu_prelude.h)
#define FJ_SMALL_KERNEL_END

#include "gpu_loops.h"

// A thread's elements per step of a reduction loop: independent accumulators in registers.
#define FJ_LANES 4
// The same for a reduction whose rows are split across blocks (reduce_split.cu.in).
#define FJ_SPLIT_LANES FJ_LANES
// Threads of a row team: `team` of them.
#define FJ_ROW_THREADS(team) (team)
#define FJ_UNROLL _Pragma("unroll")
#define FJ_SIMD
#define FJ_SELECT_BITS 0

FJ_DEVICE float fj_inf_f() { return __int_as_float(0x7f800000); }
FJ_DEVICE float fj_nan_f() { return __int_as_float(0x7fc00000); }
FJ_DEVICE double fj_inf() { return __longlong_as_double(0x7ff0000000000000LL); }
FJ_DEVICE double fj_nan() { return __longlong_as_double(0x7ff8000000000000LL); }
FJ_DEVICE int fj_popc32(unsigned int x) { return __popc(x); }
FJ_DEVICE int fj_popc64(unsigned long long x) { return __popcll(x); }
FJ_DEVICE int fj_clz32(unsigned int x) { return __clz(x); }
FJ_DEVICE int fj_clz64(unsigned long long x) { return __clzll(x); }
FJ_DEVICE float fj_rsqrt(float x) { return rsqrtf(x); }
FJ_DEVICE double fj_rsqrt(double x) { return rsqrt(x); }
FJ_DEVICE float fj_erfinv(float x) { return erfinvf(x); }
FJ_DEVICE double fj_erfinv(double x) { return erfinv(x); }
FJ_DEVICE float fj_lgamma(float x) { return lgammaf(x); }
FJ_DEVICE float fj_exp(float x) { return expf(x); }
FJ_DEVICE float fj_exp_nonpositive(float x) { return expf(x); }
FJ_DEVICE double fj_exp(double x) { return exp(x); }
FJ_DEVICE double fj_exp_nonpositive(double x) { return exp(x); }
FJ_DEVICE float fj_log(float x) { return logf(x); }
FJ_DEVICE double fj_log(double x) { return log(x); }
FJ_DEVICE float fj_tanh(float x) { return tanhf(x); }
FJ_DEVICE float fj_erf(float x) { return erff(x); }
FJ_DEVICE double fj_erf(double x) { return erf(x); }
FJ_DEVICE float fj_erfc(float x) { return erfcf(x); }
FJ_DEVICE double fj_erfc(double x) { return erfc(x); }
FJ_DEVICE double fj_tanh(double x) { return tanh(x); }
FJ_DEVICE float fj_asinh(float x) { return asinhf(x); }
FJ_DEVICE double fj_asinh(double x) { return asinh(x); }
FJ_DEVICE float fj_acosh(float x) { return acoshf(x); }
FJ_DEVICE double fj_acosh(double x) { return acosh(x); }
FJ_DEVICE float fj_atanh(float x) { return atanhf(x); }
FJ_DEVICE double fj_atanh(double x) { return atanh(x); }
FJ_DEVICE float fj_log1p(float x) { return log1pf(x); }
FJ_DEVICE double fj_log1p(double x) { return log1p(x); }
FJ_DEVICE float fj_expm1(float x) { return expm1f(x); }
FJ_DEVICE double fj_expm1(double x) { return expm1(x); }
FJ_DEVICE float fj_exp2(float x) { return exp2f(x); }
FJ_DEVICE double fj_exp2(double x) { return exp2(x); }
FJ_DEVICE float fj_sinh(float x) { return sinhf(x); }
FJ_DEVICE double fj_sinh(double x) { return sinh(x); }
FJ_DEVICE float fj_cosh(float x) { return coshf(x); }
FJ_DEVICE double fj_cosh(double x) { return cosh(x); }
FJ_DEVICE float fj_atan2(float y, float x) { return atan2f(y, x); }
FJ_DEVICE double fj_atan2(double y, double x) { return atan2(y, x); }
FJ_DEVICE float fj_atan(float x) { return atanf(x); }
FJ_DEVICE double fj_atan(double x) { return atan(x); }
FJ_DEVICE float fj_asin(float x) { return asinf(x); }
FJ_DEVICE double fj_asin(double x) { return asin(x); }
FJ_DEVICE float fj_acos(float x) { return acosf(x); }
FJ_DEVICE double fj_acos(double x) { return acos(x); }
FJ_DEVICE float fj_logistic(float x) { return 1.0f / (1.0f + expf(-x)); }
FJ_DEVICE double fj_logistic(double x) { return 1.0 / (1.0 + exp(-x)); }
FJ_DEVICE double fj_lgamma(double x) { return lgamma(x); }
FJ_DEVICE float fj_sin(float x) { return sinf(x); }
FJ_DEVICE double fj_sin(double x) { return sin(x); }
FJ_DEVICE float fj_cos(float x) { return cosf(x); }
FJ_DEVICE double fj_cos(double x) { return cos(x); }
FJ_DEVICE float fj_tan(float x) { return tanf(x); }
FJ_DEVICE double fj_tan(double x) { return tan(x); }

// A split reduction's ticket: the partial written before is visible to the block that draws
// the last ticket, which then reads the partials past the (incoherent) L1 cache.
FJ_DEVICE bool fj_take_ticket(unsigned int* ticket, unsigned int count) {
  __threadfence();
  const bool last = atomicAdd(ticket, 1u) == count - 1u;
  if (last) __threadfence();
  return last;
}
template <class T> FJ_DEVICE T fj_load_cg(const T* p) { return __ldcg(p); }
