// Host fast mode: one OS thread per block (OpenMP), each block a contiguous chunk of the
// iteration space, so the compiler can vectorise the loop.  threadIdx is always 0 here:
// block-cooperative code is exercised by the emulation instead.
#pragma once

#define FJ_GRID_LOOP_FROM(idx_t, i, start, n)                                      \
  const idx_t fj_chunk_##i = (((n) - (start) + (idx_t)gridDim.x - 1) / (idx_t)gridDim.x + 15) / 16 * 16; \
  const idx_t fj_begin_##i = (start) + (idx_t)blockIdx.x * fj_chunk_##i;           \
  const idx_t fj_end_##i = fj_begin_##i + fj_chunk_##i < (n) ? fj_begin_##i + fj_chunk_##i : (n); \
  for (idx_t i = fj_begin_##i; i < fj_end_##i; ++i)
#define FJ_GRID_LOOP(idx_t, i, n) FJ_GRID_LOOP_FROM(idx_t, i, 0, n)

// No vector path: each block's contiguous chunk is one loop the compiler vectorises itself.
#define FJ_VECTOR_LOADS 0

// Tile loop: the block's contiguous chunk FJ_TILE elements at a time (the last tile shorter):
// a loop over a tile's lanes is vectorised.
#define FJ_TILE 16
#define FJ_TILE_LOOP(idx_t, i0, width, n)                                          \
  const idx_t fj_tchunk_##i0 = (((n) + (idx_t)gridDim.x - 1) / (idx_t)gridDim.x + 15) / 16 * 16; \
  const idx_t fj_tbegin_##i0 = (idx_t)blockIdx.x * fj_tchunk_##i0;                 \
  const idx_t fj_tend_##i0 = fj_tbegin_##i0 + fj_tchunk_##i0 < (n) ? fj_tbegin_##i0 + fj_tchunk_##i0 : (n); \
  for (idx_t i0 = fj_tbegin_##i0; i0 < fj_tend_##i0; i0 += FJ_TILE)                \
    if (const int width = (int)(fj_tend_##i0 - i0 < FJ_TILE ? fj_tend_##i0 - i0 : FJ_TILE); true)

// Rows loop: a contiguous chunk of rows per block, each row a loop over its columns (marked
// for vectorisation: the compiler would otherwise vectorise across rows, with gathers).
#define FJ_ROWS_LOOP_FROM(idx_t, row, col, start, n, inner)                        \
  const idx_t fj_nrows_##row = (n) / (inner);                                      \
  const idx_t fj_row0_##row = (start) / (inner);                                   \
  const idx_t fj_rchunk_##row = (fj_nrows_##row - fj_row0_##row + (idx_t)gridDim.x - 1) / (idx_t)gridDim.x; \
  const idx_t fj_rbegin_##row = fj_row0_##row + (idx_t)blockIdx.x * fj_rchunk_##row; \
  const idx_t fj_rend_##row = fj_rbegin_##row + fj_rchunk_##row < fj_nrows_##row ? \
                               fj_rbegin_##row + fj_rchunk_##row : fj_nrows_##row; \
  for (idx_t row = fj_rbegin_##row; row < fj_rend_##row; ++row)                    \
    _Pragma("omp simd") for (idx_t col = 0; col < (inner); ++col)
#define FJ_ROWS_LOOP(idx_t, row, col, n, inner) FJ_ROWS_LOOP_FROM(idx_t, row, col, 0, n, inner)

// Rows of a block-cooperative kernel: a contiguous chunk of rows per block.
#define FJ_BLOCK_LOOP(idx_t, i, n)                                                 \
  const idx_t fj_rows_##i = ((n) + (idx_t)gridDim.x - 1) / (idx_t)gridDim.x;       \
  const idx_t fj_row0_##i = (idx_t)blockIdx.x * fj_rows_##i;                       \
  const idx_t fj_row1_##i = fj_row0_##i + fj_rows_##i < (n) ? fj_row0_##i + fj_rows_##i : (n); \
  for (idx_t i = fj_row0_##i; i < fj_row1_##i; ++i)

// A block is one thread: known at compile time, so team sizes, lanes and strides fold away.
static constexpr dim3 threadIdx(0), blockDim(1);
// A thread's elements per step of a reduction loop: one vector of accumulators.  The loop
// over them stays a loop (not unrolled into scalar statements), which GCC vectorises.
#define FJ_LANES 16
#define FJ_UNROLL _Pragma("GCC unroll 1")

// Rows of a row-team kernel: one team of one thread per block, a contiguous chunk of rows.
#define FJ_TEAM_LOOP(idx_t, row0, n, teams) FJ_BLOCK_LOOP(idx_t, row0, n)

// A block is one thread: shared memory is per OS thread, barriers and shuffles are trivial.
#define __shared__ static thread_local
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

// Column reductions: a tile of 512 outputs per block (one thread, one slice), so each row of
// the tile is a long contiguous run.
#define FJ_COLUMNS 512
#define FJ_COLUMN_SLICES 1
