"""The GPU-faithful emulation itself (fusejit/backends/emulate.py, kernels/emu_launch.h), on
hand-written CUDA: barriers and warp shuffles across partial warps, and a clear error, not a
crash or a hang, for what a real GPU would do wrong or refuse."""
import jax.numpy as jnp
import numpy as np
import pytest

from fusejit.backends import emulate
from fusejit.launch import Arg, Launch

# Each block's threads write their value, then the block's sum, read back three ways: through
# shared memory after __syncthreads, __shfl_down_sync within each warp, and __shfl_xor_sync
# within groups of `width` lanes; `bad` picks a deliberate mistake.
SOURCE = r"""
#include "fusejit.h"
extern "C" __global__ void k(const float* in, float* out, const int n, const int bad) {
  __shared__ float cell[1024];
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  const float v = i < n ? in[i] : 0.0f;
  cell[threadIdx.x] = v;
  if (bad == 1 && threadIdx.x == 0) return;  // a thread that skips the barrier: a hang on a GPU
  __syncthreads();
  float block_sum = 0.0f;
  for (unsigned t = 0; t < blockDim.x; ++t) block_sum += cell[t];
  float down = v;
  for (int d = 16; d > 0; d /= 2) down += __shfl_down_sync(0xffffffffu, down, d);
  float xor8 = v;
  for (int m = 4; m > 0; m /= 2) xor8 += __shfl_xor_sync(0xffffffffu, xor8, m, 8);
  const float lane0 = __shfl_sync(0xffffffffu, v, 0);
  if (i < n) {
    out[4 * i + 0] = block_sum;
    out[4 * i + 1] = down;
    out[4 * i + 2] = xor8;
    out[4 * i + 3] = lane0;
  }
  if (bad == 2 && i == n - 1) out[4 * n] = 1.0f;     // one past the end
  if (bad == 3 && i == 0) ((float*)in)[0] = 7.0f;    // a write to an input
  __syncthreads();
}
#if defined(FUSEJIT_EMULATE)
#include <sched.h>
// Each thread writes the CPU it runs on.
extern "C" __global__ void cpus(int* out) {
  out[blockIdx.x * blockDim.x + threadIdx.x] = sched_getcpu();
  __syncthreads();
}
extern "C" void k_launch(unsigned int grid, unsigned int block, void** args) {
  FJ_HOST_LAUNCH(grid, block, k(*(const float**)args[0], *(float**)args[1], *(int*)args[2], *(int*)args[3]));
}
extern "C" void cpus_launch(unsigned int grid, unsigned int block, void** args) {
  FJ_HOST_LAUNCH(grid, block, cpus(*(int**)args[0]));
}
struct fj_kernel_entry {
  const char* name;
  void (*launch)(unsigned int, unsigned int, void**);
};
extern "C" const fj_kernel_entry fj_kernel_table[] = {{"k", k_launch}, {"cpus", cpus_launch}, {0, 0}};
#endif
"""


def expected(x: np.ndarray, block: int) -> np.ndarray:
    """What a GPU computes (lanes past a partial warp's end read their own value)."""
    n = len(x)
    padded = np.zeros(-(-n // block) * block, np.float32)
    padded[:n] = x
    out = np.zeros((n, 4), np.float32)
    for i in range(n):
        b, t = divmod(i, block)
        lane, base = t % 32, i - t % 32
        warp_end = min(b * block + block, base + 32)  # the warp's lanes that exist
        block_sum = np.float32(0)
        for v in padded[b * block:(b + 1) * block]:
            block_sum += v
        lanes = padded[base:warp_end]
        down = [np.float32(v) for v in lanes]
        for d in (16, 8, 4, 2, 1):
            down = [down[j] + (down[j + d] if j + d < len(lanes) else down[j]) for j in range(len(lanes))]
        xor8 = [np.float32(v) for v in lanes]
        for m in (4, 2, 1):
            xor8 = [xor8[j] + (xor8[j ^ m] if (j ^ m) < len(lanes) else xor8[j]) for j in range(len(lanes))]
        out[i] = block_sum, down[lane], xor8[lane], lanes[0]
    return out


@pytest.fixture(scope="module")
def module():
    backend = emulate.EmulateBackend()
    return backend, backend.compile(SOURCE, ["k", "cpus"])


def launch(module, x, block, bad=0):
    backend, compiled = module
    out = np.zeros(4 * len(x), np.float32)
    grid = -(-len(x) // block)
    step = Launch("k", grid, block, (Arg(0), Arg(1), Arg(None, np.dtype(np.int32), len(x)),
                                     Arg(None, np.dtype(np.int32), bad)), len(x), (1,))
    backend.launch(compiled, step, [x, out, np.int32(len(x)), np.int32(bad)])
    return out.reshape(len(x), 4)


@pytest.mark.parametrize("n, block", [(1, 1), (100, 100), (250, 96), (70, 64), (33, 1024)])
def test_barriers_and_shuffles_across_partial_warps(module, n, block):
    x = np.random.default_rng(n + block).integers(-50, 50, n).astype(np.float32)  # exact sums
    np.testing.assert_array_equal(launch(module, x, block), expected(x, block))


def test_a_thread_that_skips_a_barrier_is_reported_not_waited_on(module, monkeypatch):
    monkeypatch.setattr(emulate, "TIMEOUT_S", 5)
    with pytest.raises(emulate.EmulationError, match="did not finish.*__syncthreads not reached by every thread"):
        launch(module, np.ones(64, np.float32), 64, bad=1)


def test_a_write_past_the_end_is_an_address_sanitizer_report(module):
    with pytest.raises(emulate.EmulationError, match="AddressSanitizer.*heap-buffer-overflow"):
        launch(module, np.ones(40, np.float32), 32, bad=2)


def test_a_write_to_an_input_is_reported(module):
    with pytest.raises(emulate.EmulationError, match="wrote to its input argument 0"):
        launch(module, np.ones(40, np.float32), 32, bad=3)


def test_a_block_larger_than_a_gpu_allows_is_refused(module):
    with pytest.raises(emulate.EmulationError, match="a block of 2000 threads"):
        launch(module, np.ones(40, np.float32), 2000)


def test_a_launch_runs_its_threads_on_one_cpu(module):
    """kernels/emu_main.cpp keeps every thread of a launch on the CPU it started on."""
    backend, compiled = module
    out = np.full(3 * 256, -1, np.int32)
    backend.launch(compiled, Launch("cpus", 3, 256, (Arg(0),), out.size, (0,)), [out])
    assert out.min() >= 0 and len(set(out.tolist())) == 1, sorted(set(out.tolist()))


def test_the_host_paths_address_sanitizer_harness_reports_a_read_past_the_end(tmp_path):
    """helpers.run_host_under_asan (which runs the host-only paths that the emulation compiles
    out) fails on a kernel that reads past an input: here an input one row shorter than the
    program was compiled for."""
    import fusejit
    from helpers import run_host_under_asan
    x = np.random.default_rng(0).standard_normal((37, 129)).astype(np.float32)
    compiled = fusejit.jit(lambda x: jnp.tanh(x) * 2 + x.sum(axis=1, keepdims=True), backend="host").lower(x)
    run_host_under_asan(compiled, (x,), tmp_path)
    with pytest.raises(AssertionError, match="AddressSanitizer.*heap-buffer-overflow"):
        run_host_under_asan(compiled, (x[:-1],), tmp_path)
