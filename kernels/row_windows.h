// Row windows (host): the max, min, argmax or argmin of a row group (FJ_ROW_GROUP rows of L
// elements, 4-byte elements read straight from an input) without gathers.  The group's
// FJ_ROW_GROUP * L elements are L contiguous vectors; each step combines every position with
// the one S further on (a shift across two neighbouring vectors), so after the steps
// S = 1, 2, 4, ... and a last overlapping one, every position holds the extreme of the L
// elements from it on, and row g's result is the one at position g * L (fj_window_pick).
//
// Windows overlap, which max, min, argmax and argmin allow: for values without NaN, the
// left window's pick stands on a tie, and it is the row's first such element, so the results
// are those of the element-by-element loop (the last of equal values for max and min, the
// first index for argmax and argmin: fj_max, fj_arg_better).  A group with a NaN takes the
// gathering path instead (fj_flat_has_nan), as does the block's partial last group.  Where
// the host's 16-lane shuffles are slow (FJ_ROW_WINDOWS 0), the rows are turned into columns
// instead (fj_columns_of_eight).  fusejit/rowgroups.py decides which kernels take this path.
#pragma once
#include "vector_shuffle.h"

template <class T> struct fj_window_vector {
  typedef T type __attribute__((vector_size(FJ_ROW_GROUP * sizeof(T))));
};
template <class T> using fj_wvec = typename fj_window_vector<T>::type;
typedef fj_wvec<int> fj_wmask;

// Lanes [S, S + FJ_ROW_GROUP) of the concatenation of a and b (0 <= S <= FJ_ROW_GROUP).
template <int S, class V>
static inline V fj_window_shift(V a, V b) {
  static_assert(sizeof(a[0]) == 4 && FJ_ROW_GROUP == 16, "row windows: 16 lanes of 4 bytes");
  return fj_shuffle<S + 0, S + 1, S + 2, S + 3, S + 4, S + 5, S + 6, S + 7, S + 8, S + 9, S + 10, S + 11, S + 12,
                    S + 13, S + 14, S + 15>(a, b);
}

// One step: each position's window combined with the window S positions on (the right one,
// of later elements).  A right window past the group's end reads the last vector again:
// positions whose windows reach past the end are never picked.
template <int S, int L, bool Max, bool Arg, class V>
static inline void fj_window_step(V* v, fj_wmask* at) {
  for (int k = 0; k < L; ++k) {
    const int next = k + 1 < L ? k + 1 : k;
    const V right = fj_window_shift<S>(v[k], v[next]);
    const fj_wmask take = Max ? right > v[k] : right < v[k];
    if constexpr (Arg) {
      at[k] = take ? fj_window_shift<S>(at[k], at[next]) : at[k];
      v[k] = take ? right : v[k];
    } else {
      // ties take the right (later) value, as fj_max and fj_min do
      v[k] = (Max ? v[k] > right : v[k] < right) ? v[k] : right;
    }
  }
}

// Windows of 1 to windows of L at every position: doubling steps, then one overlapping step.
template <int L, bool Max, bool Arg, class V>
static inline void fj_window_extend(V* v, fj_wmask* at) {
  static_assert(L >= 2 && L <= 32, "row windows: rows of 2 to 32 elements");
  constexpr int P = L >= 16 ? 16 : L >= 8 ? 8 : L >= 4 ? 4 : 2;  // the largest power of two <= L
  fj_window_step<1, L, Max, Arg>(v, at);
  if constexpr (P >= 4) fj_window_step<2, L, Max, Arg>(v, at);
  if constexpr (P >= 8) fj_window_step<4, L, Max, Arg>(v, at);
  if constexpr (P >= 16) fj_window_step<8, L, Max, Arg>(v, at);
  if constexpr (L > P) fj_window_step<L - P, L, Max, Arg>(v, at);
}

// Lane g: the element at position g * L + C of the group, from pairs of neighbouring vectors.
#define FJ_WINDOW_LANE(g, J) (((g) * L + C) / 32 == J ? ((g) * L + C) % 32 : 0)
#define FJ_WINDOW_TAKE(g, J) (((g) * L + C) / 32 == J ? -1 : 0)
#define FJ_WINDOW_LANES(F, J) F(0, J), F(1, J), F(2, J), F(3, J), F(4, J), F(5, J), F(6, J), F(7, J), \
  F(8, J), F(9, J), F(10, J), F(11, J), F(12, J), F(13, J), F(14, J), F(15, J)
template <int L, int C, int J, class V>
static inline V fj_window_pair(const V* v) {
  return fj_shuffle<FJ_WINDOW_LANES(FJ_WINDOW_LANE, J)>(v[2 * J], v[2 * J + 1 < L ? 2 * J + 1 : 2 * J]);
}
template <int L, int C, int J, class V>
static inline V fj_window_pick_from(const V* v, V picked) {
  if constexpr (2 * J >= L) {
    return picked;
  } else {
    const fj_wmask take = fj_wmask{FJ_WINDOW_LANES(FJ_WINDOW_TAKE, J)};
    return fj_window_pick_from<L, C, J + 1>(v, take ? fj_window_pair<L, C, J>(v) : picked);
  }
}
template <int L, class V, int C = 0>
static inline V fj_window_pick(const V* v) {
  return fj_window_pick_from<L, C, 1>(v, fj_window_pair<L, C, 0>(v));
}

// The group's rows' max (Max) or min: res[g] for row g.
template <int L, bool Max, class T>
static inline void fj_window_extreme(T* res, const fj_wvec<T>* x) {
  fj_wvec<T> v[L];
  for (int k = 0; k < L; ++k) v[k] = x[k];
  fj_window_extend<L, Max, false>(v, (fj_wmask*)0);
  const fj_wvec<T> picked = fj_window_pick<L>(v);
  memcpy(res, &picked, sizeof(picked));
}

// The group's rows' argmax (Max) or argmin: res[g], the position in row g (T: the elements').
template <int L, bool Max, class T, class I>
static inline void fj_window_arg(I* res, const fj_wvec<T>* x) {
  fj_wvec<T> v[L];
  fj_wmask at[L];
  for (int k = 0; k < L; ++k) {
    v[k] = x[k];
    for (int l = 0; l < FJ_ROW_GROUP; ++l) at[k][l] = FJ_ROW_GROUP * k + l;  // positions in the group
  }
  fj_window_extend<L, Max, true>(v, at);
  const fj_wmask picked = fj_window_pick<L>(at);
  for (int g = 0; g < FJ_ROW_GROUP; ++g) res[g] = (I)(picked[g] - g * L);
}

// ---- flat groups (rowgroups.flat_path): a group's values kept in its rows' own order, as L
// vectors of FJ_ROW_GROUP lanes (position e = g * L + r), instead of position by position.

// Whether the group's flat values hold a NaN (max and min windows overlap, and the chains
// below drop a NaN: a group with one takes the gathering code).
template <int L, class T>
static inline bool fj_flat_has_nan(const T* flat) {
  int any = 0;
#pragma omp simd reduction(|:any)
  for (int e = 0; e < FJ_ROW_GROUP * L; ++e) any |= flat[e] != flat[e];
  return any != 0;
}

// ---- columns (FJ_ROW_WINDOWS 0: hosts whose 16-lane shuffles go element by element): a
// group's rows turned into columns, 8 rows at a time, with 32-byte loads and shuffles within
// 16-byte halves, which AVX2 does in one instruction each; then a max, min, argmax or argmin
// is one vertical chain over the columns, lane j row j's.

// Eight lanes of 4 bytes (one AVX register) and their comparison masks.
template <class T> struct fj_column_vector {
  typedef T type __attribute__((vector_size(32)));
  typedef __typeof__((type){} < (type){}) mask;
};

// Lane j of column C of 8 rows of L < 4 elements held in L vectors: position p = j L + C of
// the rows' 8 L elements, from the first two vectors (p < 16) or the last two (p >= 16).
#define FJ_COLUMN_POSITION(j) ((j) * L + C)
#define FJ_COLUMN_LANES(F) F(0), F(1), F(2), F(3), F(4), F(5), F(6), F(7)
#define FJ_COLUMN_FIRST(j) (FJ_COLUMN_POSITION(j) < 16 ? FJ_COLUMN_POSITION(j) : 0)
#define FJ_COLUMN_LAST(j) (FJ_COLUMN_POSITION(j) >= 8 ? FJ_COLUMN_POSITION(j) - 8 : 0)
#define FJ_COLUMN_FROM_LAST(j) (FJ_COLUMN_POSITION(j) >= 16 ? -1 : 0)
template <int L, int C, class V, class M>
static inline V fj_short_column(const V* v) {
  const V first = fj_shuffle<FJ_COLUMN_LANES(FJ_COLUMN_FIRST)>(v[0], v[1]);
  if constexpr (L == 2) {
    return first;
  } else {
    const V last = fj_shuffle<FJ_COLUMN_LANES(FJ_COLUMN_LAST)>(v[1], v[2]);
    return M{FJ_COLUMN_LANES(FJ_COLUMN_FROM_LAST)} ? last : first;
  }
}
#undef FJ_COLUMN_FROM_LAST
#undef FJ_COLUMN_LAST
#undef FJ_COLUMN_FIRST
#undef FJ_COLUMN_LANES
#undef FJ_COLUMN_POSITION

// The columns of 8 rows of L elements (row j at src + j * L): col[c], lane j row j's element
// c.  Rows of 2 and 3: the rows' L vectors, each column two-vector shuffles of them (and a
// blend).  Rows of 4 or more, four columns at a time: lanes 0-3 of r[j] are row j's elements
// c0 .. c0 + 3 and lanes 4-7 row j + 4's, each from a 32-byte load (the second one starting 4
// elements early, so neither reads before row 0 or past row 7's end) and a blend; then a 4 x
// 4 transpose in each 16-byte half (vunpcklps, vunpckhps, vunpcklpd, vunpckhpd).  Where 4 does
// not divide L, the last four columns overlap the ones before, and only the new ones are kept.
template <int L, class T, class V = typename fj_column_vector<T>::type>
static inline void fj_columns_of_eight(V* col, const T* src) {
  static_assert(sizeof(T) == 4 && L >= 2, "columns: rows of 2 or more 4-byte elements");
  typedef typename fj_column_vector<T>::mask M;
  if constexpr (L < 4) {
    // One load a vector (GCC copied the whole array through 16-byte stores, which each
    // 32-byte load then waited on: 3 times as slow).
    V v[L];
    for (int k = 0; k < L; ++k) memcpy(&v[k], src + 8 * k, sizeof(V));
    col[0] = fj_short_column<L, 0, V, M>(v);
    col[1] = fj_short_column<L, 1, V, M>(v);
    if constexpr (L == 3) col[2] = fj_short_column<L, 2, V, M>(v);
  } else {
    for (int b = 0; b < (L + 3) / 4; ++b) {
      const int c0 = 4 * b + 4 <= L ? 4 * b : L - 4;
      V r[4];
      for (int j = 0; j < 4; ++j) {
        V low, high;
        memcpy(&low, src + j * L + c0, sizeof(low));
        memcpy(&high, src + (j + 4) * L + c0 - 4, sizeof(high));
        r[j] = fj_shuffle<0, 1, 2, 3, 12, 13, 14, 15>(low, high);
      }
      const V t0 = fj_shuffle<0, 8, 1, 9, 4, 12, 5, 13>(r[0], r[1]);
      const V t1 = fj_shuffle<2, 10, 3, 11, 6, 14, 7, 15>(r[0], r[1]);
      const V t2 = fj_shuffle<0, 8, 1, 9, 4, 12, 5, 13>(r[2], r[3]);
      const V t3 = fj_shuffle<2, 10, 3, 11, 6, 14, 7, 15>(r[2], r[3]);
      const V c[4] = {fj_shuffle<0, 1, 8, 9, 4, 5, 12, 13>(t0, t2),
                      fj_shuffle<2, 3, 10, 11, 6, 7, 14, 15>(t0, t2),
                      fj_shuffle<0, 1, 8, 9, 4, 5, 12, 13>(t1, t3),
                      fj_shuffle<2, 3, 10, 11, 6, 7, 14, 15>(t1, t3)};
      for (int k = 0; k < 4; ++k) {
        if (c0 + k >= 4 * b) col[c0 + k] = c[k];
      }
    }
  }
}

// The rows' max (Max) or min of flat values without NaN (an input's rows from the group's
// first, or a pass's values in the rows' order): res[g] for row g.  With FJ_ROW_WINDOWS,
// fj_window_extreme's windows; else the columns' chain, which takes the later of equal values
// as fj_max does (m > x ? m : x, one vmaxps): the max of 1M float32 on one Zen 3 core in rows
// of 2, 4, 10 and 16, 206, 73, 84 and 95 us, where one scalar chain a row took 350, 213, 161
// and 382 (rows of 3: 244 against 255), and the gathering code 517 for rows of 10.
template <int L, bool Max, class T>
static inline void fj_flat_extreme(T* res, const T* flat) {
#if FJ_ROW_WINDOWS
  fj_wvec<T> x[L];
  memcpy(x, flat, sizeof(x));
  fj_window_extreme<L, Max>(res, x);
#else
  typedef typename fj_column_vector<T>::type V;
  for (int h = 0; h < FJ_ROW_GROUP / 8; ++h) {
    V col[L];
    fj_columns_of_eight<L>(col, flat + 8 * h * L);
    V m = col[0];
    for (int c = 1; c < L; ++c) m = Max ? (m > col[c] ? m : col[c]) : (m < col[c] ? m : col[c]);
    memcpy(res + 8 * h, &m, sizeof(m));
  }
#endif
}

// The rows' argmax (Max) or argmin of flat values without NaN: res[g], the first position of
// row g's extreme.  With FJ_ROW_WINDOWS, fj_window_arg's windows; else the columns' chain
// (a strict comparison keeps the first position), or for rows of 2 and 3 one scalar chain a
// row (the argmax of 1M float32 on one Zen 3 core: rows of 10 129 us, against about 700
// gathering; rows of 2 and 3 about 225 us, against 880 gathering, and 226 and 267 by columns).
template <int L, bool Max, class T, class I>
static inline void fj_flat_arg(I* res, const T* flat) {
#if FJ_ROW_WINDOWS
  fj_wvec<T> x[L];
  memcpy(x, flat, sizeof(x));
  fj_window_arg<L, Max, T>(res, x);
#else
  if constexpr (L >= 4) {
    typedef typename fj_column_vector<T>::type V;
    typedef typename fj_column_vector<T>::mask M;
    for (int h = 0; h < FJ_ROW_GROUP / 8; ++h) {
      V col[L];
      fj_columns_of_eight<L>(col, flat + 8 * h * L);
      V m = col[0];
      M at = M{};
      for (int c = 1; c < L; ++c) {
        const M take = Max ? col[c] > m : col[c] < m;
        m = take ? col[c] : m;
        at = take ? M{} + c : at;
      }
      for (int g = 0; g < 8; ++g) res[8 * h + g] = (I)at[g];
    }
  } else {
    for (int g = 0; g < FJ_ROW_GROUP; ++g) {
      const T* row = flat + g * L;
      T m = row[0];
      I at = 0;
      for (int r = 1; r < L; ++r) {
        const bool take = Max ? row[r] > m : row[r] < m;
        m = take ? row[r] : m;
        at = take ? (I)r : at;
      }
      res[g] = at;
    }
  }
#endif
}

// Sums of disjoint windows of 2^k positions: `level[k]` holds at each position the sum of the
// 2^k values from it on, each level the one below plus itself shifted by its width.
template <int S, int L, class V>
static inline void fj_flat_double(V* out, const V* in) {
  for (int k = 0; k < L; ++k) out[k] = in[k] + fj_window_shift<S>(in[k], in[k + 1 < L ? k + 1 : k]);
}

// Row g's sum: the windows of L's binary digits, largest first, added in that order (rows of
// 10: ((x0 + x1) + (x2 + x3)) + ((x4 + x5) + (x6 + x7)), then + (x8 + x9)).
template <int L, int C, int P, class V>
static inline V fj_flat_add_parts(const V (*level)[L], V sum) {
  if constexpr (P == 0) {
    return sum;
  } else if constexpr (((L - C) & P) != 0 && C + P <= L) {
    constexpr int K = P == 1 ? 0 : P == 2 ? 1 : P == 4 ? 2 : P == 8 ? 3 : 4;
    return fj_flat_add_parts<L, C + P, P / 2>(level, sum + fj_window_pick<L, V, C>(level[K]));
  } else {
    return fj_flat_add_parts<L, C, P / 2>(level, sum);
  }
}
template <int L, class T>
static inline void fj_flat_sum(T* res, const T* flat) {
  static_assert(L >= 2 && L <= 16, "flat groups: rows of 2 to 16 elements");
  typedef fj_wvec<T> V;
  V level[5][L];
  memcpy(level[0], flat, sizeof(level[0]));
  if constexpr (L >= 2) fj_flat_double<1, L>(level[1], level[0]);
  if constexpr (L >= 4) fj_flat_double<2, L>(level[2], level[1]);
  if constexpr (L >= 8) fj_flat_double<4, L>(level[3], level[2]);
  if constexpr (L >= 16) fj_flat_double<8, L>(level[4], level[3]);
  constexpr int P = L >= 16 ? 16 : L >= 8 ? 8 : L >= 4 ? 4 : 2;
  constexpr int K = P == 2 ? 1 : P == 4 ? 2 : P == 8 ? 3 : 4;
  const V sum = fj_flat_add_parts<L, P, P / 2>(level, fj_window_pick<L, V, 0>(level[K]));
  memcpy(res, &sum, sizeof(sum));
}

// Rows folded along themselves (fj_flat_rows: rows of 16 or more, and sums in float64): each
// row's L values, N at a time, folded into one vector of N partials of the accumulator type A
// (N = FJ_FOLD_BYTES / sizeof(A), at least 8); the row's last L % N elements are the vector
// from them on, or, where that would read past the group, the vector that ends with them, the
// other lanes set to the identity, so `flat` may be an input's rows.  Then the group's 16
// vectors of partials are folded together, pairs of rows at a time, into vectors of the
// rows' results (lane g: row g), each row's partials combined as a halving fold (lane l with
// l + N / 2, then l + N / 4, ...).  Kind: 0 sum, 1 max, 2 min (NaN propagates: a row with a NaN has NaN as
// its max and min, as fj_max_acc and fj_min_acc give; a group without NaN takes plain
// maxima and minima, Kind 3 and 4).  A: T, or double for float32 sums
// (accumulators.accumulator_dtype).
template <class A> struct fj_flat_acc {
  static constexpr int lanes = FJ_FOLD_BYTES / sizeof(A) > 8 ? FJ_FOLD_BYTES / sizeof(A) : 8;
  typedef A vec __attribute__((vector_size(lanes * sizeof(A))));
  typedef __typeof__((vec){} < (vec){}) mask;  // lanes of integers of A's size
};
// Kind 3 and 4: max and min of values without NaN (one instruction each, vmaxps, vminps).
template <int Kind, class V>
static inline V fj_flat_op(V a, V b) {
  if constexpr (Kind == 0) {
    return a + b;
  } else if constexpr (Kind >= 3) {
    return Kind == 3 ? (a > b ? a : b) : (a < b ? a : b);
  } else {
    const V kept = Kind == 1 ? (a > b ? a : b) : (a < b ? a : b);  // b where b is NaN
    return a != a ? a : kept;
  }
}
// N elements of T from `at` as a vector of A (GCC splits __builtin_convertvector of 8 floats
// to doubles into four instructions; AVX-512 converts them in one).
template <class A, class T>
static inline typename fj_flat_acc<A>::vec fj_flat_load(const T* at) {
  typedef T in_vec __attribute__((vector_size(fj_flat_acc<A>::lanes * sizeof(T))));
  in_vec x;
  memcpy(&x, at, sizeof(x));
#if defined(__AVX512F__) && !defined(__clang__)
  if constexpr (sizeof(A) == 8 && sizeof(T) == 4 && (T)0.5 != 0) {
    return __builtin_ia32_cvtps2pd512_mask(x, typename fj_flat_acc<A>::vec{}, (unsigned char)0xff, 4);
  }
#endif
  return __builtin_convertvector(x, typename fj_flat_acc<A>::vec);
}
template <int L, int Kind, bool Inside, class A, class T>
static inline typename fj_flat_acc<A>::vec fj_flat_row_partials(const T* row) {
  typedef fj_flat_acc<A> acc_t;
  constexpr int N = acc_t::lanes;
  constexpr A ident = Kind == 0 ? (A)0 : Kind % 2 == 1 ? -__builtin_inf() : __builtin_inf();
  typename acc_t::vec acc = typename acc_t::vec{} + ident;
  for (int q = 0; q < L / N; ++q) acc = fj_flat_op<Kind>(acc, fj_flat_load<A>(row + N * q));
  if constexpr (L % N != 0) {
    // The row's last L % N elements: the vector from them on, or where that would read past
    // the group, the vector that ends with them (the lanes before them set to the identity).
    constexpr int first = Inside ? 0 : N - L % N;
    const T* from = Inside ? row + N * (L / N) : row + L - N;
    typename acc_t::mask tail;
    for (int l = 0; l < N; ++l) tail[l] = l >= first && l < first + L % N ? -1 : 0;
    acc = fj_flat_op<Kind>(acc, tail ? fj_flat_load<A>(from) : typename acc_t::vec{} + ident);
  }
  return acc;
}
template <int L, int Kind, class A, int G, class T, class V>
static inline void fj_flat_rows_from(V* part, const T* flat) {
  if constexpr (G < FJ_ROW_GROUP) {
    constexpr int N = fj_flat_acc<A>::lanes;
    constexpr bool inside = G * L + (L + N - 1) / N * N <= FJ_ROW_GROUP * L;
    static_assert(inside || G * L + L >= N, "flat groups: a row's last vector starts inside the group");
    part[G] = fj_flat_row_partials<L, Kind, inside, A>(flat + G * L);
    fj_flat_rows_from<L, Kind, A, G + 1>(part, flat);
  }
}
// Two vectors of partials, each holding 2 * W lanes for each of its rows, combined into one
// holding W lanes for each row of both: a's rows first.
#define FJ_HALVE_LANE(l, H) ((l) / W * 2 * W + (l) % W + H * W)
#define FJ_LANES8(F, H) F(0, H), F(1, H), F(2, H), F(3, H), F(4, H), F(5, H), F(6, H), F(7, H)
#define FJ_LANES16(F, H) FJ_LANES8(F, H), F(8, H), F(9, H), F(10, H), F(11, H), F(12, H), F(13, H), F(14, H), F(15, H)
template <int W, int Kind, class V>
static inline V fj_flat_halve(V a, V b) {
  constexpr int N = sizeof(V) / sizeof(a[0]);
  static_assert(N == 8 || N == 16, "flat groups: vectors of 8 or 16 lanes");
  V low, high;
  if constexpr (N == 16) {
    low = fj_shuffle<FJ_LANES16(FJ_HALVE_LANE, 0)>(a, b);
    high = fj_shuffle<FJ_LANES16(FJ_HALVE_LANE, 1)>(a, b);
  } else {
    low = fj_shuffle<FJ_LANES8(FJ_HALVE_LANE, 0)>(a, b);
    high = fj_shuffle<FJ_LANES8(FJ_HALVE_LANE, 1)>(a, b);
  }
  return fj_flat_op<Kind>(low, high);
}
// The vectors of partials halved W = N / 2, N / 4, ..., 1 lanes a row at a time: `count`
// vectors of 16 / count rows each in, count / 2 out.
template <int W, int Kind, class V>
static inline void fj_flat_halves(V* part, int count) {
  if constexpr (W >= 1) {
    for (int g = 0; g < count / 2; ++g) part[g] = fj_flat_halve<W, Kind>(part[2 * g], part[2 * g + 1]);
    fj_flat_halves<W / 2, Kind>(part, count / 2);
  }
}
#undef FJ_LANES16
#undef FJ_LANES8
#undef FJ_HALVE_LANE
template <int L, int Kind, class A, class T>
static inline void fj_flat_rows(T* res, const T* flat) {
  if constexpr (Kind == 1 || Kind == 2) {
    if (!fj_flat_has_nan<L>(flat)) return fj_flat_rows<L, Kind + 2, A>(res, flat);  // most groups
  }
  typedef fj_flat_acc<A> acc_t;
  constexpr int N = acc_t::lanes;
  static_assert(sizeof(T) == 4 && FJ_ROW_GROUP == 16 && L >= 2, "flat groups: 16 rows of 4-byte elements");
  typename acc_t::vec part[16];
  fj_flat_rows_from<L, Kind, A, 0>(part, flat);
  fj_flat_halves<N / 2, Kind>(part, 16);  // 16 / N vectors of N rows' results left
  typedef T out_vec __attribute__((vector_size(N * sizeof(T))));
  for (int j = 0; j < 16 / N; ++j) {  // vector j: rows N * j on
    const out_vec rows = __builtin_convertvector(part[j], out_vec);
    memcpy(res + N * j, &rows, sizeof(rows));
  }
}

// Each position's row value: flat[e] = res[e / L], one permute of the rows' vector per vector.
#define FJ_SPREAD_LANE(l, J) ((16 * J + (l)) / L)
template <int L, int J, class T>
static inline void fj_flat_spread_from(T* flat, const fj_wvec<T>& rows) {
  if constexpr (J < L) {
    const fj_wvec<T> v = fj_shuffle<FJ_WINDOW_LANES(FJ_SPREAD_LANE, J)>(rows, rows);
    memcpy(flat + FJ_ROW_GROUP * J, &v, sizeof(v));
    fj_flat_spread_from<L, J + 1>(flat, rows);
  }
}
template <int L, class T>
static inline void fj_flat_spread(T* flat, const T* res) {
  static_assert(sizeof(T) == 4 && FJ_ROW_GROUP == 16, "flat groups: 16 lanes of 4 bytes");
#if FJ_FOLD_BYTES < 64
  // Without AVX-512 a 16-lane permute goes element by element: each row's value is broadcast
  // stores instead (rows of 8 and more: layer norm over rows of 64, 0.87 -> 0.32 ms on two
  // Zen 3 cores; rows of 3, 4 and 7, one core: softmax 2.8, 3.4 and 2.3 ms -> 1.3, 1.8 and 1.2).
  for (int g = 0; g < FJ_ROW_GROUP; ++g) {
    const T v = res[g];
    for (int r = 0; r < L; ++r) flat[g * L + r] = v;
  }
#else
  fj_wvec<T> rows;
  memcpy(&rows, res, sizeof(rows));
  fj_flat_spread_from<L, 0>(flat, rows);
#endif
}
#undef FJ_SPREAD_LANE
#undef FJ_WINDOW_LANES
#undef FJ_WINDOW_TAKE
#undef FJ_WINDOW_LANE
