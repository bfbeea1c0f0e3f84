"""The cuda backend: NVRTC compiles the module to a cubin for the current device's
architecture (the same call the test suite makes without a GPU), CuPy loads it with
RawModule and launches it on the current device and stream.

Everything up to `launch` (argument list with explicit dtypes, grid and block sizes,
output allocation) is the plan shared with the host backend; the final call is the
one line in `launch`.
"""
from __future__ import annotations

import re
import threading

import numpy as np

from .. import cache, config, nvrtc
from ..errors import ToolchainError
from ..launch import DeviceInfo, cuda_device_info


def _cupy():
    import cupy
    return cupy


def is_jax_array(x) -> bool:
    return type(x).__module__.startswith(("jax", "jaxlib"))


def _release(version: str) -> tuple[int, ...]:
    """A version string's leading release numbers: '14.0.0rc1' -> (14, 0, 0)."""
    return tuple(int(part) for part in re.match(r"\d+(?:\.\d+)*", version).group().split("."))


def missing_dtypes(cupy_version: str, numpy_version: str) -> frozenset:
    """Array dtypes CuPy cannot hold, which the backend's kernels (computing on them as the
    host's do) can then take neither in nor out: bfloat16 before CuPy 14, whose arrays hold
    ml_dtypes.bfloat16 with NumPy 2.1.2 or later (CuPy's upgrade guide)."""
    if _release(cupy_version) >= (14,) and _release(numpy_version) >= (2, 1, 2):
        return frozenset()
    return frozenset({"bfloat16"})


class CudaBackend:
    name = "cuda"
    suffix = ".cubin"
    # Until an instance knows its CuPy (`missing_dtypes` above), the dtypes no CuPy before 14 holds.
    missing_dtypes = frozenset({"bfloat16"})

    def __init__(self):
        from . import gpu_available
        if not gpu_available():
            raise ToolchainError(
                "backend 'cuda' needs CuPy and a CUDA GPU; none was found (install fusejit[cuda12] or "
                "fusejit[cuda13] on a machine with an NVIDIA GPU and driver, or use backend='host')")
        self.cp = _cupy()
        self.missing_dtypes = missing_dtypes(self.cp.__version__, np.__version__)
        self.modules: dict = {}
        self.lock = threading.Lock()

    # ---- device ----
    def start(self) -> None:
        """Ready the backend for its first launch: the CUDA context, and the device's properties."""
        self.device_info()

    def device_info(self) -> DeviceInfo:
        dev = self.cp.cuda.Device()
        cc = dev.compute_capability
        sms = self.cp.cuda.runtime.getDeviceProperties(dev.id)["multiProcessorCount"]
        return cuda_device_info(f"sm_{cc}", int(sms))

    @property
    def lib(self):
        """The array library of library calls: CuPy (cuBLAS, cuSOLVER)."""
        from ..library import cuda_lib
        return cuda_lib()

    # ---- arrays ----
    def asarray(self, x, dtype):
        cp = self.cp
        if isinstance(x, cp.ndarray):
            arr = x
        elif is_jax_array(x) and any(d.platform == "gpu" for d in x.devices()):
            arr = cp.from_dlpack(x)  # zero copy
        else:
            arr = cp.asarray(np.asarray(x))
        return cp.asarray(arr, dtype=dtype, order="C")  # 0-d stays 0-d

    def empty(self, shape, dtype):
        return self.cp.empty(shape, dtype)

    def allocator(self, shape, dtype):
        return self.cp.empty

    def zeros(self, shape, dtype):
        return self.cp.zeros(shape, dtype)

    def copy(self, x):
        return x.copy()

    def copyto(self, dst, src):
        self.cp.copyto(dst, src)

    def item(self, x):
        """A 0-d array's value on the host: one device-to-host copy, which waits for the stream."""
        return x.item()

    def full(self, shape, value, dtype):
        return self.cp.full(shape, value, dtype)

    def to_host(self, x) -> np.ndarray:
        """A device array's values as a NumPy array (a callback's inputs)."""
        return self.cp.asnumpy(x)

    def upload(self, arr: np.ndarray):
        return self.cp.asarray(arr)

    # ---- loops replayed (graphs.py) ----
    def graph_key(self):
        """Captured loops are kept per device and stream: calls on one stream are ordered."""
        return self.cp.cuda.Device().id, self.cp.cuda.get_current_stream().ptr

    relocates = False  # a graph reads the buffers it was captured on: each call copies its inputs in

    def capture(self, fn, staged=()):
        """A CUDA graph of every launch `fn` makes (recorded on a capturing stream, not run);
        `replay()` launches it on the caller's current stream."""
        cp = self.cp
        stream = cp.cuda.Stream(non_blocking=True)
        with stream:
            stream.begin_capture()
            try:
                fn()
            finally:
                graph = stream.end_capture()
        return lambda: graph.launch(cp.cuda.get_current_stream())

    # ---- compile ----
    def compile(self, source: str, names):
        arch = self.device_info().arch
        device = self.cp.cuda.Device().id
        key = cache.make_key(self.name, source, arch, nvrtc.version(), tuple(nvrtc.options(arch)))
        with self.lock:
            if (key, device) in self.modules:
                cache.stats["memory_hits"] += 1
                return self.modules[(key, device)]
            if config.env_flag("FUSEJIT_DUMP_SOURCE") or config.debug_level() >= 4:
                config.debug(0, f"cuda module source ({arch}):\n{source}")
            path = cache.lookup(self.name, key, self.suffix)
            if path is None:
                def build(out):
                    with open(out, "wb") as f:
                        f.write(nvrtc.compile_source(source, arch, "cubin"))
                path = cache.store(self.name, key, self.suffix, build)
            module = self.cp.RawModule(path=path)
            functions = {name: module.get_function(name) for name in names}
            self.modules[(key, device)] = functions
            return functions

    # ---- the final call ----
    def bind(self, module, launch):
        """`call(env)` launching `launch`: buffers from env's slots, scalars as typed NumPy
        scalars (CuPy would pass a Python int as long long)."""
        fn, grid, block = module[launch.kernel], (launch.grid,), (launch.block,)
        slots = [a.slot for a in launch.args]
        fixed = [None if a.slot is not None else a.resolve(None) for a in launch.args]

        def call(env):
            fn(grid, block, tuple(env[s] if s is not None else v for s, v in zip(slots, fixed)))
        return call
