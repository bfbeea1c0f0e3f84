// GPU-faithful emulation: the kernel runs with its real grid and block sizes, one OS thread
// per CUDA thread.  Blocks run one after another (so `__shared__` as `static` is right);
// __syncthreads is a barrier over the block, a warp shuffle goes through per-warp slots and
// one warp barrier (fj_emu_shuffle).  Built with AddressSanitizer and UBSan by the test suite.
// POSIX threads and barriers, not <thread> and <barrier>: the C++ headers took 2 of the
// 2.5 s of an empty module's compile (and 70 of the 73 MB of its precompiled header).
#pragma once
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#include "gpu_loops.h"

#define __shared__ static

// Each OS thread is one CUDA thread of the block.
static thread_local dim3 threadIdx(0), blockDim(1);
// A thread's elements per step of a reduction loop, as on the GPU (cuda_prelude.h).
#define FJ_LANES 4
#define FJ_SPLIT_LANES FJ_LANES
#define FJ_ROW_THREADS(team) (team)
#define FJ_UNROLL
#define FJ_SIMD
#define FJ_SELECT_BITS 0

#define FJ_EMU_MAX_THREADS 1024  // a CUDA block's limit
static inline void fj_emu_check(int error, const char* what) {
  if (error != 0) {
    fprintf(stderr, "fusejit emulation: %s failed (error %d)\n", what, error);
    abort();
  }
}

struct fj_emu_block {
  pthread_barrier_t all;
  pthread_barrier_t warps[FJ_EMU_MAX_THREADS / 32];
  // One 8-byte slot per lane, twice: consecutive shuffles alternate between the two (below).
  unsigned long long warp_slots[2][FJ_EMU_MAX_THREADS];
  unsigned nwarps;
  void start(unsigned threads) {
    nwarps = (threads + 31) / 32;
    fj_emu_check(pthread_barrier_init(&all, nullptr, threads), "pthread_barrier_init");
    for (unsigned w = 0; w < nwarps; ++w) {
      const unsigned width = threads - w * 32 < 32 ? threads - w * 32 : 32;
      fj_emu_check(pthread_barrier_init(&warps[w], nullptr, width), "pthread_barrier_init");
    }
  }
  void finish() {
    pthread_barrier_destroy(&all);
    for (unsigned w = 0; w < nwarps; ++w) pthread_barrier_destroy(&warps[w]);
  }
};
static fj_emu_block fj_emu_state;

static inline void fj_emu_wait(pthread_barrier_t* barrier) {
  const int done = pthread_barrier_wait(barrier);
  if (done != 0 && done != PTHREAD_BARRIER_SERIAL_THREAD) fj_emu_check(done, "pthread_barrier_wait");
}
static inline void __syncthreads() { fj_emu_wait(&fj_emu_state.all); }
static inline void __syncwarp(unsigned mask = 0xffffffffu) {
  (void)mask;
  fj_emu_wait(&fj_emu_state.warps[threadIdx.x / 32]);
}

// A shuffle: each lane writes its value to its slot, waits for the warp, reads its source's.
// One barrier a shuffle: consecutive shuffles use the two slot arrays in turn (every lane of the
// warp takes part in every shuffle, as CUDA requires, so the lanes agree on the turn).  A lane
// that writes a slot again, two shuffles later, has passed the barrier of the shuffle between,
// which every lane reaches only after it has read this one.
static thread_local unsigned fj_emu_shuffles;  // this thread's shuffles so far
template <class T>
static inline T fj_emu_shuffle(T value, unsigned source_lane, unsigned width) {
  static_assert(sizeof(T) <= 8, "shuffle of a value wider than 8 bytes");
  const unsigned lane = threadIdx.x % 32;
  const unsigned base = threadIdx.x - lane;
  unsigned long long* slots = fj_emu_state.warp_slots[fj_emu_shuffles++ % 2] + base;
  memcpy(&slots[lane], &value, sizeof(T));
  fj_emu_wait(&fj_emu_state.warps[threadIdx.x / 32]);
  T result = value;
  const unsigned warp_width = blockDim.x - base < 32 ? blockDim.x - base : 32;
  if (source_lane < warp_width && source_lane / width == lane / width) memcpy(&result, &slots[source_lane], sizeof(T));
  return result;
}
template <class T>
static inline T __shfl_down_sync(unsigned mask, T value, unsigned delta, int width = 32) {
  (void)mask;
  return fj_emu_shuffle(value, threadIdx.x % 32 + delta, (unsigned)width);
}
template <class T>
static inline T __shfl_xor_sync(unsigned mask, T value, int lane_mask, int width = 32) {
  (void)mask;
  return fj_emu_shuffle(value, (threadIdx.x % 32) ^ (unsigned)lane_mask, (unsigned)width);
}
template <class T>
static inline T __shfl_sync(unsigned mask, T value, int src_lane, int width = 32) {
  (void)mask;
  const unsigned lane = threadIdx.x % 32;
  return fj_emu_shuffle(value, lane / width * width + (unsigned)src_lane % width, (unsigned)width);
}

// One OS thread: CUDA thread `thread` of every block in turn, with a block-wide barrier
// between blocks.
template <class F>
struct fj_emu_thread {
  const F* body;
  unsigned grid, block, thread;
  static void* run(void* self) {
    const fj_emu_thread& t = *(const fj_emu_thread*)self;
    gridDim = dim3(t.grid);
    blockDim = dim3(t.block);
    threadIdx = dim3(t.thread);
    for (unsigned b = 0; b < t.grid; ++b) {
      blockIdx = dim3(b);
      (*t.body)();
      fj_emu_wait(&fj_emu_state.all);
    }
    return nullptr;
  }
};

// Runs `body` for every thread of every block: one OS thread per CUDA thread of a block,
// the same threads walking the blocks in order.
template <class F>
static inline void fj_emu_run(unsigned grid, unsigned block, const F& body) {
  if (block == 0 || block > FJ_EMU_MAX_THREADS) {
    fprintf(stderr, "fusejit emulation: a block of %u threads (1 to %d)\n", block, FJ_EMU_MAX_THREADS);
    abort();
  }
  fj_emu_state.start(block);
  static fj_emu_thread<F> threads[FJ_EMU_MAX_THREADS];
  static pthread_t handles[FJ_EMU_MAX_THREADS];
  for (unsigned t = 0; t < block; ++t) {
    threads[t] = fj_emu_thread<F>{&body, grid, block, t};
    fj_emu_check(pthread_create(&handles[t], nullptr, fj_emu_thread<F>::run, &threads[t]), "pthread_create");
  }
  for (unsigned t = 0; t < block; ++t) fj_emu_check(pthread_join(handles[t], nullptr), "pthread_join");
  fj_emu_state.finish();
}

#define FJ_HOST_LAUNCH(grid, block, call) fj_emu_run((unsigned)(grid), (unsigned)(block), [&] { call; })
