// The loop of kernels/ufuncs.cpp.in: `n` elements, each operand read at stride 1 or 0 (one
// value), in parallel over the OpenMP threads when there are enough of them.  The loop is
// written once per stride pattern, so each one vectorises.
#pragma once

#define FJ_UF_PARALLEL 65536
// The threads a loop may use: fj_uf_threads when positive (the interpreter leaves a core to
// the compiler building the kernels meanwhile), else OpenMP's default.
extern "C" int omp_get_max_threads(void);
extern "C" int fj_uf_threads;  // defined in the library's first part
static inline int fj_uf_thread_count() { return fj_uf_threads > 0 ? fj_uf_threads : omp_get_max_threads(); }
// Chunks handed out as threads ask for them: a thread that shares its core takes fewer, and
// none waits for it at the end.
#define FJ_UF_SCHEDULE \
  "omp parallel for simd schedule(dynamic, 16384) num_threads(fj_uf_thread_count()) if (n >= FJ_UF_PARALLEL)"

#define FJ_UFUNC1(name, A, O, EXPR)                                                            \
  extern "C" void name(long long n, const void* a_, long long, const void*, long long,         \
                       void* o_) {                                                             \
    const A* FJ_RESTRICT a = (const A*)a_;                                                     \
    O* FJ_RESTRICT o = (O*)o_;                                                                 \
    _Pragma(FJ_UF_SCHEDULE)                 \
    for (long long i = 0; i < n; ++i) {                                                        \
      const A x = a[i];                                                                        \
      o[i] = EXPR;                                                                             \
    }                                                                                          \
  }

#define FJ_UF_LOOP2(XA, XB, EXPR)                                                              \
  _Pragma(FJ_UF_SCHEDULE)                   \
  for (long long i = 0; i < n; ++i) {                                                          \
    const auto x = XA;                                                                         \
    const auto y = XB;                                                                         \
    o[i] = EXPR;                                                                               \
  }

#define FJ_UFUNC2(name, A, B, O, EXPR)                                                         \
  extern "C" void name(long long n, const void* a_, long long sa, const void* b_, long long sb, \
                       void* o_) {                                                             \
    const A* FJ_RESTRICT a = (const A*)a_;                                                     \
    const B* FJ_RESTRICT b = (const B*)b_;                                                     \
    O* FJ_RESTRICT o = (O*)o_;                                                                 \
    if (sa && sb) {                                                                            \
      FJ_UF_LOOP2(a[i], b[i], EXPR)                                                            \
    } else if (sa) {                                                                           \
      const B b0 = b[0];                                                                       \
      FJ_UF_LOOP2(a[i], b0, EXPR)                                                              \
    } else if (sb) {                                                                           \
      const A a0 = a[0];                                                                       \
      FJ_UF_LOOP2(a0, b[i], EXPR)                                                              \
    } else {                                                                                   \
      const A a0 = a[0];                                                                       \
      const B b0 = b[0];                                                                       \
      FJ_UF_LOOP2(a0, b0, EXPR)                                                                \
    }                                                                                          \
  }

// Scatters of the library's host rules (fusejit/indexops.py): for each of `batches` windows
// in order, out[base[b] + offset] = EXPR(out[...], values[b * window + w]) over the window's
// `window` elements, the offsets 0, 1, ... (a contiguous window: one vectorised loop) or
// offsets[w]; a window whose base is negative is dropped.  One thread, in update order: what
// XLA's CPU scatter computes where positions repeat.
#define FJ_USCATTER(name, T, EXPR)                                                             \
  extern "C" void name(long long batches, long long window, const long long* base,            \
                       const long long* offsets, const void* values_, void* out_) {           \
    const T* FJ_RESTRICT values = (const T*)values_;                                           \
    T* FJ_RESTRICT out = (T*)out_;                                                             \
    for (long long b = 0; b < batches; ++b) {                                                  \
      if (base[b] < 0) continue;                                                               \
      T* FJ_RESTRICT o = out + base[b];                                                        \
      const T* FJ_RESTRICT v = values + b * window;                                            \
      if (offsets == 0) {                                                                      \
        _Pragma("omp simd")                                                                    \
        for (long long w = 0; w < window; ++w) {                                               \
          const T x = o[w];                                                                    \
          const T y = v[w];                                                                    \
          o[w] = EXPR;                                                                         \
        }                                                                                      \
      } else {                                                                                 \
        for (long long w = 0; w < window; ++w) {                                               \
          const T x = o[offsets[w]];                                                           \
          const T y = v[w];                                                                    \
          o[offsets[w]] = EXPR;                                                                \
        }                                                                                      \
      }                                                                                        \
    }                                                                                          \
  }
