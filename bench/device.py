"""Where the benchmark runs: the CPU (fusejit's host backend, NumPy baseline) or the GPU
(fusejit's cuda backend, CuPy baseline), with the matching synchronisation, the copy
bandwidth measurement and a description of the machine for the report.
"""
from __future__ import annotations

import os
import platform
import time

import numpy as np

MIB = 1 << 20


class DeviceError(Exception):
    """The requested device or backend cannot be used here."""


class Device:
    """The CPU: arrays are NumPy arrays, nothing to synchronise."""

    kind = "cpu"
    backend = "host"
    eager_name = "numpy"

    @property
    def xp(self):
        return np

    def to_device(self, arr: np.ndarray):
        return np.ascontiguousarray(arr)

    def to_host(self, arr) -> np.ndarray:
        return np.asarray(arr)

    def sync(self, _out=None) -> None:
        """Wait until all work issued so far is done (nothing to wait for on the CPU)."""

    def name(self) -> str:
        try:
            with open("/proc/cpuinfo") as f:
                for line in f:
                    if line.startswith("model name"):
                        return line.split(":", 1)[1].strip()
        except OSError:
            pass
        return platform.processor() or platform.machine()

    def cores(self) -> int:
        if hasattr(os, "sched_getaffinity"):
            return len(os.sched_getaffinity(0))
        return os.cpu_count() or 1

    def copy_seconds(self, nbytes: int, reps: int) -> float:
        """Median seconds of one np.copyto of `nbytes` (after one untimed warm-up copy)."""
        src = np.random.default_rng(0).random(nbytes // 8)
        dst = np.empty_like(src)
        np.copyto(dst, src)  # warm-up: first touch of dst's pages
        times = []
        for _ in range(reps):
            t0 = time.perf_counter()
            np.copyto(dst, src)
            times.append(time.perf_counter() - t0)
        return float(np.median(times))

    def copy_bandwidth(self, nbytes: int = 256 * MIB, reps: int = 7) -> float:
        """Bytes per second of a large copy, counting bytes read plus bytes written (2 * nbytes)."""
        return 2 * nbytes / self.copy_seconds(nbytes, reps)

    def describe(self) -> dict:
        import jax
        import fusejit
        return {
            "kind": self.kind,
            "name": self.name(),
            "cores": self.cores(),
            "blas": blas_kernels(),
            "fusejit_backend": self.backend,
            "eager_baseline": self.eager_name,
            "jax_platform": jax.devices()[0].platform,
            "versions": {"fusejit": fusejit.__version__, "jax": jax.__version__,
                         "numpy": np.__version__, "python": platform.python_version()},
        }


class GpuDevice(Device):
    """The current CUDA device through CuPy: fusejit and the eager baseline work on CuPy arrays."""

    kind = "gpu"
    backend = "cuda"
    eager_name = "cupy"

    def __init__(self):
        import cupy
        self.cp = cupy

    @property
    def xp(self):
        return self.cp

    def to_device(self, arr: np.ndarray):
        return self.cp.asarray(np.ascontiguousarray(arr))

    def to_host(self, arr) -> np.ndarray:
        return self.cp.asnumpy(arr) if isinstance(arr, self.cp.ndarray) else np.asarray(arr)

    def sync(self, _out=None) -> None:
        self.cp.cuda.get_current_stream().synchronize()

    def name(self) -> str:
        props = self.cp.cuda.runtime.getDeviceProperties(self.cp.cuda.Device().id)
        name = props["name"]
        return name.decode() if isinstance(name, bytes) else str(name)

    def copy_seconds(self, nbytes: int, reps: int) -> float:
        """Median seconds of one device-to-device cupy.copyto, timed with CUDA events."""
        cp = self.cp
        src = cp.random.random(nbytes // 8)
        dst = cp.empty_like(src)
        cp.copyto(dst, src)
        self.sync()
        start, end = cp.cuda.Event(), cp.cuda.Event()
        times = []
        for _ in range(reps):
            start.record()
            cp.copyto(dst, src)
            end.record()
            end.synchronize()
            times.append(cp.cuda.get_elapsed_time(start, end) / 1e3)
        return float(np.median(times))

    def describe(self) -> dict:
        info = super().describe()
        info["versions"]["cupy"] = self.cp.__version__
        props = self.cp.cuda.runtime.getDeviceProperties(self.cp.cuda.Device().id)
        info["multiprocessors"] = int(props["multiProcessorCount"])
        return info


def blas_kernels() -> str:
    """The kernels NumPy's OpenBLAS chose for this processor ("Haswell", "SkylakeX", ...), or ""
    where NumPy's BLAS is another library.  OpenBLAS picks them by processor model and falls
    back to older ones on a model it does not know (AMD's family 26 gets Haswell's AVX2
    kernels, though the AVX-512 ones are 1.7x faster there); OPENBLAS_CORETYPE overrides it."""
    import ctypes
    try:
        with open("/proc/self/maps") as f:
            paths = {line.split()[-1] for line in f if "openblas" in line and ".so" in line}
    except OSError:
        return ""
    for path in sorted(paths):
        library = ctypes.CDLL(path)
        for symbol in ("scipy_openblas_get_corename64_", "scipy_openblas_get_corename", "openblas_get_corename"):
            function = getattr(library, symbol, None)
            if function is not None:
                function.restype = ctypes.c_char_p
                return function().decode()
    return ""


def make(backend: str | None) -> Device:
    """The Device for `--backend` (None: the GPU when fusejit sees one, else the CPU)."""
    import fusejit
    if backend is None:
        backend = "cuda" if fusejit.backends.gpu_available() else "host"
    if backend == "host":
        return Device()
    if backend == "cuda":
        if not fusejit.backends.gpu_available():
            raise DeviceError("--backend cuda needs a GPU that CuPy can use; none found")
        return GpuDevice()
    raise DeviceError(f"unknown backend {backend!r} (choose host or cuda)")
