// Host fast mode: one OS thread per block (OpenMP), each block a contiguous chunk of the
// iteration space, so the compiler can vectorise the loop.  threadIdx is always 0 here:
// block-cooperative code is exercised by the emulation instead.
#pragma once

// A map's elements are independent (each writes only its own outputs, through restrict
// pointers): `omp simd` lets GCC vectorise bodies whose branches it would otherwise not
// if-convert (the checks of fj_rem, a saturating fj_convert: an int32 `x % 7` of 1M floats
// took 1.7 ms element by element and 0.3 ms in vectors, as the rows loop already did).
#define FJ_GRID_LOOP_FROM(idx_t, i, start, n)                                      \
  FJ_BLOCK_CHUNK(idx_t, i, start, n)                                               \
  _Pragma("omp simd") for (idx_t i = fj_begin_##i; i < fj_end_##i; ++i)
// The same chunk without the simd promise (top_k: a row's insertions into its own list).
#define FJ_GRID_LOOP(idx_t, i, n)                                                  \
  FJ_BLOCK_CHUNK(idx_t, i, 0, n)                                                   \
  for (idx_t i = fj_begin_##i; i < fj_end_##i; ++i)

// Pieces: a map kernel whose clamped indices (pad, concatenate) change form at a few columns
// (or elements) loops over each piece of them with its own body, in which every clamp is the
// identity or a constant, so its loads are contiguous (fusejit/pieces.py).  The GPU and the
// emulation run the element loop (FJ_COLUMN_PIECES is 0 there).
#define FJ_COLUMN_PIECES 1
// The block's contiguous chunk (as FJ_GRID_LOOP_FROM's), and the loop over its part in [lo, hi).
#define FJ_BLOCK_CHUNK(idx_t, i, start, n)                                         \
  const idx_t fj_chunk_##i = (((n) - (start) + (idx_t)gridDim.x - 1) / (idx_t)gridDim.x + 15) / 16 * 16; \
  const idx_t fj_begin_##i = (start) + (idx_t)blockIdx.x * fj_chunk_##i;           \
  const idx_t fj_end_##i = fj_begin_##i + fj_chunk_##i < (n) ? fj_begin_##i + fj_chunk_##i : (n);
#define FJ_CHUNK_PIECE(idx_t, i, lo, hi)                                           \
  for (idx_t i = fj_begin_##i > (lo) ? fj_begin_##i : (lo); i < (fj_end_##i < (hi) ? fj_end_##i : (hi)); ++i)

// No vector path: each block's contiguous chunk is one loop the compiler vectorises itself.
#define FJ_VECTOR_LOADS 0

// Stream path: map kernels whose outputs are large compute each output into a tile on the
// stack, FJ_STREAM_TILE elements at a time, and copy the tile out with stores that bypass the
// cache: no line of an output is read before it is overwritten (fj_stream_store).
#define FJ_STREAM_STORES 1
#define FJ_STREAM_TILE 1024
// A tile array's length: FJ_STREAM_TILE and a cache line more, so that a kernel's tiles on the
// stack do not lie a multiple of 4 KiB apart, where a load from one after a store to the other
// at the same address modulo 4 KiB waits for that store (a float16 x * 2 + 1 over 1024 x 1000
// on two Zen 3 cores: 0.53x jax.jit with tiles of 1024 floats, 0.66-1.0x with these).
#define FJ_TILE_SPACE (FJ_STREAM_TILE + 64 / 4)
// Half tiles (half_tiles.h): float16 loads and stores converted a tile at a time, in the
// stream path's tiles and tile loops.
#define FJ_HALF_TILES 1
// The block's contiguous chunk (as FJ_GRID_LOOP_FROM's) in tiles: [i0, i0 + width).
#define FJ_STREAM_LOOP(idx_t, i0, width, n)                                        \
  const idx_t fj_schunk_##i0 = (((n) + (idx_t)gridDim.x - 1) / (idx_t)gridDim.x + 15) / 16 * 16; \
  const idx_t fj_sbegin_##i0 = (idx_t)blockIdx.x * fj_schunk_##i0;                 \
  const idx_t fj_send_##i0 = fj_sbegin_##i0 + fj_schunk_##i0 < (n) ? fj_sbegin_##i0 + fj_schunk_##i0 : (n); \
  for (idx_t i0 = fj_sbegin_##i0; i0 < fj_send_##i0; i0 += FJ_STREAM_TILE)         \
    if (const idx_t width = fj_send_##i0 - i0 < FJ_STREAM_TILE ? fj_send_##i0 - i0 : FJ_STREAM_TILE; true)
// The block's part of each row it overlaps (as FJ_ROW_SEGMENTS's), in tiles of columns:
// row `row`, columns [c0, c0 + width).
#define FJ_STREAM_ROWS_LOOP(idx_t, row, c0, width, n, inner)                       \
  FJ_ROW_SEGMENTS(idx_t, row, 0, n, inner)                                         \
    for (idx_t c0 = fj_lo_##row; c0 < fj_hi_##row; c0 += FJ_STREAM_TILE)           \
      if (const idx_t width = fj_hi_##row - c0 < FJ_STREAM_TILE ? fj_hi_##row - c0 : FJ_STREAM_TILE; true)

// Copy `count` elements from a tile to dst: whole cache lines with non-temporal stores (the
// line is written without being read first), the partial lines at either end with ordinary
// stores.  fj_stream_fence orders the block's non-temporal stores before its return.
// The vector types and non-temporal stores are the compiler's own builtins: <immintrin.h>
// would add a large parse to every module's compile.
#if defined(__AVX512F__) || defined(__AVX__) || defined(__SSE2__)
#if defined(__AVX512F__)
#define FJ_STREAM_BYTES 64
#elif defined(__AVX__)
#define FJ_STREAM_BYTES 32
#else
#define FJ_STREAM_BYTES 16
#endif
typedef long long fj_stream_v __attribute__((vector_size(FJ_STREAM_BYTES)));
static inline void fj_stream_vector(char* d, const char* s) {
  fj_stream_v v;
  memcpy(&v, s, FJ_STREAM_BYTES);  // an unaligned vector load
#if defined(__clang__)
  __builtin_nontemporal_store(v, (fj_stream_v*)d);
#elif defined(__AVX512F__)
  __builtin_ia32_movntdq512((fj_stream_v*)d, v);
#elif defined(__AVX__)
  __builtin_ia32_movntdq256((fj_stream_v*)d, v);
#else
  __builtin_ia32_movntdq((fj_stream_v*)d, v);
#endif
}
static inline void fj_stream_fence() { __builtin_ia32_sfence(); }
template <class T>
static inline void fj_stream_store(T* FJ_RESTRICT dst, const T* FJ_RESTRICT src, long count) {
  char* d = (char*)dst;
  const char* s = (const char*)src;
  const long bytes = count * (long)sizeof(T);
  long head = (long)((FJ_STREAM_BYTES - (uintptr_t)d % FJ_STREAM_BYTES) % FJ_STREAM_BYTES);
  head = head < bytes ? head : bytes;
  memcpy(d, s, (size_t)head);
  long k = head;
  for (; k + FJ_STREAM_BYTES <= bytes; k += FJ_STREAM_BYTES) fj_stream_vector(d + k, s + k);
  memcpy(d + k, s + k, (size_t)(bytes - k));
}
#else
static inline void fj_stream_fence() {}
template <class T>
static inline void fj_stream_store(T* FJ_RESTRICT dst, const T* FJ_RESTRICT src, long count) {
  memcpy(dst, src, (size_t)count * sizeof(T));
}
#endif

// Tile loop: the block's contiguous chunk `lanes` elements at a time (the last tile shorter).
// A device loop's full tiles (FJ_TILE_FULL) loop over their lanes a compile-time count of
// times, so those loops are vectorised into registers: several independent vectors whose
// chains hide each step's latency.  FJ_TILE_LANES: the lanes of a tile when each element
// keeps `bytes` of state in registers (a power of two from 16 to 128, the state of a tile at
// most 1 KB: half the vector registers).
constexpr int fj_tile_lanes(int bytes) {
  int lanes = 128;
  while (lanes > 16 && lanes * bytes > 1024) lanes /= 2;
  return lanes;
}
#define FJ_TILE_LANES(bytes) fj_tile_lanes(bytes)
#define FJ_TILE_LOOP(idx_t, i0, width, n, lanes)                                   \
  const idx_t fj_tchunk_##i0 = (((n) + (idx_t)gridDim.x - 1) / (idx_t)gridDim.x + (lanes) - 1) / (lanes) * (lanes); \
  const idx_t fj_tbegin_##i0 = (idx_t)blockIdx.x * fj_tchunk_##i0;                 \
  const idx_t fj_tend_##i0 = fj_tbegin_##i0 + fj_tchunk_##i0 < (n) ? fj_tbegin_##i0 + fj_tchunk_##i0 : (n); \
  for (idx_t i0 = fj_tbegin_##i0; i0 < fj_tend_##i0; i0 += (lanes))                \
    if (const int width = (int)(fj_tend_##i0 - i0 < (lanes) ? fj_tend_##i0 - i0 : (lanes)); true)
#define FJ_TILE_FULL(width, lanes) ((width) == (lanes))

// Whole rows per block (the pieces path's loop; the element loop takes FJ_ROW_SEGMENTS'
// even shares): a contiguous chunk of rows, each row a loop over its columns (marked
// for vectorisation: the compiler would otherwise vectorise across rows, with gathers).
#define FJ_ROWS_OF_BLOCK(idx_t, row, start, n, inner)                              \
  const idx_t fj_nrows_##row = (n) / (inner);                                      \
  const idx_t fj_row0_##row = (start) / (inner);                                   \
  const idx_t fj_rchunk_##row = (fj_nrows_##row - fj_row0_##row + (idx_t)gridDim.x - 1) / (idx_t)gridDim.x; \
  const idx_t fj_rbegin_##row = fj_row0_##row + (idx_t)blockIdx.x * fj_rchunk_##row; \
  const idx_t fj_rend_##row = fj_rbegin_##row + fj_rchunk_##row < fj_nrows_##row ? \
                               fj_rbegin_##row + fj_rchunk_##row : fj_nrows_##row; \
  for (idx_t row = fj_rbegin_##row; row < fj_rend_##row; ++row)
#define FJ_COLUMN_RANGE(idx_t, col, lo, hi) _Pragma("omp simd") for (idx_t col = (lo); col < (hi); ++col)
// The block's contiguous chunk of elements (FJ_BLOCK_CHUNK, as FJ_GRID_LOOP_FROM's) row by
// row: the part of row `row` in it is columns [fj_lo_##row, fj_hi_##row), whole rows but at
// the chunk's ends, so the blocks' work is even however few the rows (63 rows of 16000 on
// 64 cores, or 65 rows: whole rows per block would leave cores idle).
#define FJ_ROW_SEGMENTS(idx_t, row, start, n, inner)                               \
  FJ_BLOCK_CHUNK(idx_t, row, start, n)                                             \
  for (idx_t row = fj_begin_##row / (inner); row * (inner) < fj_end_##row; ++row)  \
    if (const idx_t fj_lo_##row = row * (inner) < fj_begin_##row ? fj_begin_##row - row * (inner) : 0, \
        fj_hi_##row = fj_end_##row - row * (inner) < (inner) ? fj_end_##row - row * (inner) : (inner); true)
#define FJ_ROW_COLUMNS(idx_t, col, row) FJ_COLUMN_RANGE(idx_t, col, fj_lo_##row, fj_hi_##row)

// Rows of a block-cooperative kernel: a contiguous chunk of rows per block.
#define FJ_BLOCK_LOOP(idx_t, i, n)                                                 \
  const idx_t fj_rows_##i = ((n) + (idx_t)gridDim.x - 1) / (idx_t)gridDim.x;       \
  const idx_t fj_row0_##i = (idx_t)blockIdx.x * fj_rows_##i;                       \
  const idx_t fj_row1_##i = fj_row0_##i + fj_rows_##i < (n) ? fj_row0_##i + fj_rows_##i : (n); \
  for (idx_t i = fj_row0_##i; i < fj_row1_##i; ++i)

// A block is one thread: known at compile time, so team sizes, lanes and strides fold away.
static constexpr dim3 threadIdx(0), blockDim(1);
// A thread's elements per step of a reduction loop: two vectors of float accumulators, four
// of double, so a short row's steps are not one chain of dependent additions (or max
// selects: a max over rows of 1024 floats took twice as long with 16).  The loop over them
// stays a loop (not unrolled into scalar statements), which GCC vectorises.
#define FJ_LANES 32
// The same for a reduction whose rows are split across blocks (reduce_split.cu.in), whose
// lanes GCC keeps in registers only when they are at most two steps of its vectors: four
// vectors of doubles without AVX-512 (the 2-norm of 10M float32 on two Zen 3 cores took
// 1.29 ms with 32 lanes in memory, 1.19-1.23 with 16 in registers).
#ifndef FJ_SPLIT_LANES
#if defined(__AVX512F__)
#define FJ_SPLIT_LANES 32
#else
#define FJ_SPLIT_LANES 16
#endif
#endif
// Threads of a row team (a team of `team` on the GPU): here one, the block's only thread.
#define FJ_ROW_THREADS(team) 1
#define FJ_UNROLL _Pragma("GCC unroll 1")
// A loop whose iterations are independent: vectorised on the host.
#define FJ_SIMD _Pragma("omp simd")
// select_n of floats by their bits (fj_select, common.h).
#define FJ_SELECT_BITS 1

// Rows of a row-team kernel: one team of one thread per block, a contiguous chunk of rows.
#define FJ_TEAM_LOOP(idx_t, row0, n, teams) FJ_BLOCK_LOOP(idx_t, row0, n)

// Row groups: a row kernel over short rows takes the block's rows FJ_ROW_GROUP at a time, one
// row per vector lane (fusejit/rowgroups.py); the GPU and the emulation keep a team per row
// (FJ_ROW_GROUPS is 0 there).  Every group has FJ_ROW_GROUP lanes, a constant the loops
// vectorise well with: in the block's last group, the lanes past its last row take that row
// again (FJ_GROUP_ROW), computing and storing the same values twice.
#define FJ_ROW_GROUPS 1
#define FJ_ROW_GROUP 16
#define FJ_ROW_GROUP_LOOP(idx_t, i0, n)                                            \
  FJ_BLOCK_CHUNK(idx_t, i0, 0, n)                                                  \
  for (idx_t i0 = fj_begin_##i0; i0 < fj_end_##i0; i0 += FJ_ROW_GROUP)
#define FJ_GROUP_ROW(idx_t, i0, g) (i0 + (idx_t)(g) < fj_end_##i0 ? i0 + (idx_t)(g) : fj_end_##i0 - 1)
// Whether the group at i0 has FJ_ROW_GROUP rows (every group but the block's last may not):
// its rows are i0 + g, and their stores contiguous.
#define FJ_GROUP_FULL(i0) (i0 + FJ_ROW_GROUP <= fj_end_##i0)
// Whether a full group takes the row windows and flat groups (row_windows.h) where it can:
// their shuffles of 16-lane vectors are one or two instructions with AVX-512 (or under
// clang, which lowers them to 32-byte halves itself); GCC without AVX-512 lowers each
// element by element, and there the gathering code, which the kernels always hold as the
// other branch, is quicker (the max of rows of 10, 1M float32, on two Zen 3 cores: 1.56 ms
// against 0.62).  Sums alone keep their flat groups everywhere (rows of 10: 0.15 ms against
// 0.36).  -DFJ_ROW_WINDOWS=0 or 1 decides it (tests/test_reductions.py runs both).
#ifndef FJ_ROW_WINDOWS
#if defined(__AVX512F__) || defined(__clang__)
#define FJ_ROW_WINDOWS 1
#else
#define FJ_ROW_WINDOWS 0
#endif
#endif
// The folded rows' vectors of partials (row_windows.h fj_flat_rows): 64 bytes with AVX-512,
// else 32, the registers' width, whose two-source shuffles of float32 GCC lowers to a few
// instructions (16 lanes of float32 without AVX-512 went element by element: softmax over
// rows of 33, 1M float32 on two Zen 3 cores, 2.5 -> 0.8 ms, a max 1.8 -> 0.1 ms, and the
// module's compile 3 times quicker).  float64 partials keep 8 lanes (64 bytes) either way:
// in 4 their sums took half as long again.  Below 64, flat groups also spread rows of 8 or
// more back to their elements by broadcast stores instead of 16-lane permutes (layer norm
// over rows of 64: 0.87 -> 0.32 ms).  -DFJ_FOLD_BYTES=32 or 64 decides it
// (tests/test_reductions.py runs both).
#ifndef FJ_FOLD_BYTES
#if defined(__AVX512F__)
#define FJ_FOLD_BYTES 64
#else
#define FJ_FOLD_BYTES 32
#endif
#endif
#define FJ_GROUP_LANES(g) _Pragma("omp simd") for (int g = 0; g < FJ_ROW_GROUP; ++g)

// top_k: a row's keys FJ_TOP_K_CHUNK at a time in one vectorised loop, which also finds
// whether any of them ranks above the k-th kept; the GPU and the emulation rank one element
// at a time (FJ_TOP_K_CHUNK is 1 there).
#define FJ_TOP_K_CHUNK 16
#define FJ_TOP_K_LANES(lane) _Pragma("omp simd reduction(|:above)") for (int lane = 0; lane < FJ_TOP_K_CHUNK; ++lane)

// A block is one thread: shared memory is the kernel call's own (automatic storage, at most
// 48 KB of stack: no thread-local lookup per access), barriers and shuffles are trivial.
#define __shared__
static inline void __syncthreads() {}
template <class T>
static inline T __shfl_down_sync(unsigned, T value, unsigned, int = 32) { return value; }
template <class T>
static inline T __shfl_xor_sync(unsigned, T value, int, int = 32) { return value; }
template <class T>
static inline T __shfl_sync(unsigned, T value, int, int = 32) { return value; }

#define FJ_HOST_LAUNCH(grid, block, call)                          \
  do {                                                             \
    const long fj_grid = (long)(grid);                             \
    _Pragma("omp parallel for schedule(static) if (fj_grid > 1)")  \
    for (long fj_b = 0; fj_b < fj_grid; ++fj_b) {                  \
      (void)(block); /* always 1 */                                \
      gridDim = dim3((unsigned)fj_grid);                           \
      blockIdx = dim3((unsigned)fj_b);                             \
      call;                                                        \
    }                                                              \
  } while (0)

// Column reductions: a tile of 4096 outputs per block (one thread, one slice), so each row of
// the tile is a long contiguous run (HOST_COLUMNS of fusejit/backends/host.py).
#define FJ_COLUMNS 4096
#define FJ_COLUMN_SLICES 1
#define FJ_COLUMN_REGISTERS 0  // a row of the tile at a time: partials in memory, a vector loop

// Row groups of rows read straight from an input: max, min, argmax, argmin without gathers.
#include "row_windows.h"

// Column values: a map kernel over rows computes what depends on the column alone (a batch
// norm's rsqrt of each column's variance) once per column, into arrays on the stack, before
// the rows (fusejit/columnvalues.py).  The GPU and the emulation compute it per element.
#define FJ_COLUMN_VALUES 1

// Transposed tiles: a map kernel that reads an operand transposed takes its output 16 x 16
// elements at a time, each transposed operand's tile moved through registers
// (fusejit/transposes.py).  The GPU and the emulation run the rows loop.
#define FJ_TRANSPOSE_TILES 1
#define FJ_TRANSPOSE_TILE 16
#include "transpose_tiles.h"

// Periodic rows: a flat map over rows of fewer than 16 elements reads what is broadcast along
// the rows from tables of one period, lcm(row, 16) elements (fusejit/periodic.py).
#define FJ_PERIODIC_ROWS 1
