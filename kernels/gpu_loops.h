// Work loops of the GPU and of the GPU-faithful emulation (the host fast mode has its own,
// in host_launch.h, that give each block a contiguous chunk).
#pragma once

// Grid-stride loop: thread t of the grid handles elements start + t, start + t + total_threads, ...
#define FJ_GRID_LOOP_FROM(idx_t, i, start, n) \
  for (idx_t i = (start) + (idx_t)blockIdx.x * (idx_t)blockDim.x + (idx_t)threadIdx.x; i < (n); \
       i += (idx_t)blockDim.x * (idx_t)gridDim.x)
#define FJ_GRID_LOOP(idx_t, i, n) FJ_GRID_LOOP_FROM(idx_t, i, 0, n)

// Vector loop: thread t of the grid takes elements [width * t, width * t + width), then the
// same a grid further on, for n a multiple of width: its loads and stores are 16-byte (or
// 8-byte) vectors.  Map kernels take this path when every vector pointer is aligned.
#define FJ_VECTOR_LOADS 1
#define FJ_VECTOR_LOOP(idx_t, i0, width, n) \
  for (idx_t i0 = ((idx_t)blockIdx.x * (idx_t)blockDim.x + (idx_t)threadIdx.x) * (idx_t)(width); i0 < (n); \
       i0 += (idx_t)blockDim.x * (idx_t)gridDim.x * (idx_t)(width))

// The stream path of map kernels is the host's (host_launch.h): GPU stores need no help.
#define FJ_STREAM_STORES 0
// So are the half tiles (half_tiles.h): a GPU converts float16 with one instruction an element.
#define FJ_HALF_TILES 0
// So are the pieces of clamped map kernels: a GPU thread's loads are one element each anyway.
#define FJ_COLUMN_PIECES 0
// And the row groups of short-row kernels: a GPU gives each row a team of threads instead.
#define FJ_ROW_GROUPS 0
// And the column values of map kernels over rows: a GPU thread computes few elements.
#define FJ_COLUMN_VALUES 0
// And the transposed tiles of map kernels: a warp's loads of a column are 32 lines anyway.
#define FJ_TRANSPOSE_TILES 0
// And the periodic rows of maps over short rows: a GPU thread's loads are one element each.
#define FJ_PERIODIC_ROWS 0
// And top_k's chunks: a GPU thread ranks one element at a time.
#define FJ_TOP_K_CHUNK 1
#define FJ_TOP_K_LANES(lane) for (int lane = 0; lane < FJ_TOP_K_CHUNK; ++lane)

// Block loop: block b of the grid handles rows b, b + gridDim.x, ... (all its threads together).
#define FJ_BLOCK_LOOP(idx_t, i, n) for (idx_t i = (idx_t)blockIdx.x; i < (n); i += (idx_t)gridDim.x)

// Team loop: a block of `teams` teams handles rows row0 .. row0 + teams - 1 at a time.
#define FJ_TEAM_LOOP(idx_t, row0, n, teams) \
  for (idx_t row0 = (idx_t)blockIdx.x * (idx_t)(teams); row0 < (n); row0 += (idx_t)gridDim.x * (idx_t)(teams))

// Tile loop: a thread takes `width` (here always 1) consecutive elements at a time,
// grid-stride like FJ_GRID_LOOP: every tile is full.
#define FJ_TILE_LANES(bytes) 1
#define FJ_TILE_LOOP(idx_t, i0, width, n, lanes) \
  for (idx_t i0 = (idx_t)blockIdx.x * (idx_t)blockDim.x + (idx_t)threadIdx.x; i0 < (n); \
       i0 += (idx_t)blockDim.x * (idx_t)gridDim.x) \
    if (const int width = 1; true)
#define FJ_TILE_FULL(width, lanes) ((void)(width), true)

// Column reductions: a tile of 32 outputs per block of 256 threads, in 8 slices; each thread
// keeps its column's partial in FJ_LANES registers, FJ_LANES rows' loads in flight.
#define FJ_COLUMNS 32
#define FJ_COLUMN_SLICES 8
#define FJ_COLUMN_REGISTERS 1

// Rows loop, in two parts so that the host can compute a row's own values once per row
// between them: FJ_ROW_SEGMENTS is the grid-stride loop of FJ_GRID_LOOP_FROM over elements
// start .. n - 1, each split into a row index and a column index (rows of `inner` elements:
// one division per element), the column named by FJ_ROW_COLUMNS; here the statements
// between the two run per element.
#define FJ_ROW_SEGMENTS(idx_t, row, start, n, inner) \
  for (idx_t fj_flat = (start) + (idx_t)blockIdx.x * (idx_t)blockDim.x + (idx_t)threadIdx.x; fj_flat < (n); \
       fj_flat += (idx_t)blockDim.x * (idx_t)gridDim.x) \
    if (const idx_t row = fj_flat / (inner), fj_col_##row = fj_flat - row * (inner); true)
#define FJ_ROW_COLUMNS(idx_t, col, row) if (const idx_t col = fj_col_##row; true)
