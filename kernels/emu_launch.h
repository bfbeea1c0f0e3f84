// GPU-faithful emulation: the kernel runs with its real grid and block sizes, one OS thread
// per CUDA thread.  Blocks run one after another (so `__shared__` as `static` is right);
// __syncthreads is a barrier over the block, warp shuffles go through a per-warp slot array
// between two warp barriers.  Built with AddressSanitizer and UBSan by the test suite.
#pragma once
#include <barrier>
#include <functional>
#include <memory>
#include <thread>
#include <vector>

#include "gpu_loops.h"

#define __shared__ static

// Each OS thread is one CUDA thread of the block.
static thread_local dim3 threadIdx(0), blockDim(1);
// A thread's elements per step of a reduction loop, as on the GPU (cuda_prelude.h).
#define FJ_LANES 4
#define FJ_ROW_THREADS(team) (team)
#define FJ_UNROLL
#define FJ_SIMD
#define FJ_SELECT_BITS 0

struct fj_emu_block {
  explicit fj_emu_block(unsigned threads)
      : all(threads), warp_slots((threads + 31) / 32 * 32) {
    for (unsigned w = 0; w < (threads + 31) / 32; ++w) {
      const unsigned width = threads - w * 32 < 32 ? threads - w * 32 : 32;
      warps.emplace_back(new std::barrier<>(width));
    }
  }
  std::barrier<> all;
  std::vector<std::unique_ptr<std::barrier<>>> warps;
  std::vector<unsigned long long> warp_slots;  // one 8-byte slot per lane
};
static fj_emu_block* fj_emu_current = nullptr;

static inline void __syncthreads() { fj_emu_current->all.arrive_and_wait(); }
static inline void __syncwarp(unsigned mask = 0xffffffffu) {
  (void)mask;
  fj_emu_current->warps[threadIdx.x / 32]->arrive_and_wait();
}

template <class T>
static inline T fj_emu_shuffle(T value, unsigned source_lane, unsigned width) {
  static_assert(sizeof(T) <= 8, "shuffle of a value wider than 8 bytes");
  const unsigned lane = threadIdx.x % 32;
  const unsigned base = threadIdx.x - lane;
  unsigned long long* slots = fj_emu_current->warp_slots.data() + base;
  std::barrier<>& bar = *fj_emu_current->warps[threadIdx.x / 32];
  memcpy(&slots[lane], &value, sizeof(T));
  bar.arrive_and_wait();
  T result = value;
  const unsigned warp_width = blockDim.x - base < 32 ? blockDim.x - base : 32;
  if (source_lane < warp_width && source_lane / width == lane / width) memcpy(&result, &slots[source_lane], sizeof(T));
  bar.arrive_and_wait();
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

// Runs `body` for every thread of every block.  One OS thread per CUDA thread of a block;
// the same threads walk the blocks in order, with a block-wide barrier between blocks.
static inline void fj_emu_run(unsigned grid, unsigned block, const std::function<void()>& body) {
  fj_emu_block state(block);
  fj_emu_current = &state;
  std::vector<std::thread> threads;
  threads.reserve(block);
  for (unsigned t = 0; t < block; ++t) {
    threads.emplace_back([&, t] {
      gridDim = dim3(grid);
      blockDim = dim3(block);
      threadIdx = dim3(t);
      for (unsigned b = 0; b < grid; ++b) {
        blockIdx = dim3(b);
        body();
        state.all.arrive_and_wait();
      }
    });
  }
  for (auto& th : threads) th.join();
  fj_emu_current = nullptr;
}

#define FJ_HOST_LAUNCH(grid, block, call) fj_emu_run((unsigned)(grid), (unsigned)(block), [&] { call; })
