// fusejit kernel prelude: one header, three targets.
//   NVRTC (__CUDACC__)    -> the real CUDA built-ins.
//   FUSEJIT_EMULATE       -> GPU-faithful emulation on the CPU: one OS thread per CUDA thread,
//                            __syncthreads and warp shuffles on barriers.
//   otherwise             -> host fast mode: one OS thread per block, contiguous chunks, OpenMP.
// Generated kernels include only this file; the kernel text is identical for all three.
#pragma once
#if defined(__CUDACC__)
#include "cuda_prelude.h"
#else
#include "cpu_prelude.h"
#if defined(FUSEJIT_EMULATE)
#include "emu_launch.h"
#else
#include "host_launch.h"
#endif
#endif
#include "common.h"
#include "half_tiles.h"
#include "special.h"
#include "block_reduce.h"
