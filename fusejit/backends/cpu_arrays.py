"""Array handling shared by the CPU backends (host and emulate): NumPy in, NumPy out."""
from __future__ import annotations

import functools

import numpy as np

from .pool import pool


def to_numpy(x, dtype) -> np.ndarray:
    """A C-contiguous, aligned NumPy array of `dtype` holding x (NumPy, JAX, CuPy array or
    Python scalar).  A view at an address that is no multiple of its element size (a float32
    view of bytes from an odd offset) is copied: a kernel's loads assume aligned elements.

    The result may share memory with x: kernels never write their inputs."""
    if type(x) is np.ndarray and x.dtype == dtype:
        flags = x.flags
        if flags.c_contiguous and flags.aligned:
            return x
    if type(x).__module__.startswith("cupy"):
        x = x.get()
    arr = np.asarray(x, dtype=dtype, order="C")  # (np.ascontiguousarray would make 0-d arrays 1-d)
    return arr if arr.flags.aligned else arr.copy()


class CpuArrays:
    array_type = np.ndarray  # the arrays kernels take as they are, when C-contiguous and aligned

    @functools.cached_property
    def lib(self):
        """The array library of library calls: NumPy and SciPy."""
        from ..library import host_lib
        return host_lib()

    def asarray(self, x, dtype):
        return to_numpy(x, dtype)

    def empty(self, shape, dtype):
        return pool.empty(shape, dtype)

    def allocator(self, shape, dtype):
        """The function a call allocates a buffer of this size with: `empty` or a cheaper one."""
        return pool.allocator(shape, dtype)

    def zeros(self, shape, dtype):
        return np.zeros(shape, dtype)

    def copy(self, x):
        return np.array(x, copy=True)

    def copyto(self, dst, src):
        np.copyto(dst, src)

    def item(self, x):
        """A 0-d array's value on the host (a loop predicate, a branch index)."""
        return x.item()

    def full(self, shape, value, dtype):
        return np.full(shape, value, dtype)

    def to_host(self, x) -> np.ndarray:
        """The array itself: it is on the host already (a callback's inputs)."""
        return x

    def upload(self, arr: np.ndarray):
        return np.asarray(arr, order="C")

    # ---- loops replayed (graphs.py): the CPU runs the captured function itself ----
    def graph_key(self):
        return None

    relocates = False  # a replay runs on the buffers it was captured on (fusejit/graphs.py)

    def capture(self, fn, staged=()):
        return fn
