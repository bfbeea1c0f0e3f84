"""Reuse of large host buffers.

A fresh NumPy array of many megabytes is fresh memory from the kernel: the first write to
each page faults and zeroes it, which costs more than a fused kernel's whole pass over it
(a 128 MiB output: about 60 ms of faults against 15 ms of work).  The host backends
allocate large outputs and intermediates from this pool instead: a buffer whose last array
is gone goes back to the pool and serves the next request of the same size, already
mapped.  The arrays are plain NumPy arrays; their memory belongs to an owner object that
every view keeps alive (NumPy records it as the base), so a buffer returns only when no
array uses it.  The pool keeps at most FUSEJIT_POOL_BYTES (default 1 GiB) of free buffers.

A new buffer is a private anonymous mapping of its own, not a NumPy array: NumPy asks the
kernel for huge pages on large arrays (madvise MADV_HUGEPAGE), and on the development
machine, a virtual machine, the first write to a fresh 160 MB NumPy array took 20 ms where
huge pages an earlier array had freed were at hand, and 0.9 to 1.5 s where they came from
memory the machine had not used before (with no compaction counted in /proc/vmstat),
against a steady 55 to 120 ms with ordinary pages: the first call of a program with large
outputs, in a new process.  A buffer is reused once it is mapped, so later calls do not
see its page size.
"""
from __future__ import annotations

import errno
import math
import mmap
import threading

import numpy as np

from .. import config

MIN_BYTES = 1 << 20  # smaller arrays come from NumPy directly (its allocator reuses them)


class _Owner:
    """Exposes a pooled buffer as an array; returns the buffer when the last view is gone."""

    def __init__(self, pool: "BufferPool", block: np.ndarray, shape, dtype: np.dtype):
        self.pool = pool
        self.block = block
        self.__array_interface__ = {"data": (block.__array_interface__["data"][0], False), "shape": tuple(shape),
                                    "typestr": dtype.str, "version": 3}

    def __del__(self):
        self.pool.give_back(self.block)


class BufferPool:
    def __init__(self):
        self.free: dict[int, list] = {}
        self.free_bytes = 0
        self.lock = threading.Lock()

    def empty(self, shape, dtype) -> np.ndarray:
        if not isinstance(dtype, np.dtype):  # (the plan's dtypes already are)
            dtype = np.dtype(dtype)
        nbytes = math.prod(shape) * dtype.itemsize
        if nbytes < MIN_BYTES:
            return np.empty(shape, dtype)
        with self.lock:
            blocks = self.free.get(nbytes)
            block = blocks.pop() if blocks else None
            if block is not None:
                self.free_bytes -= nbytes
        if block is None:
            block = fresh(nbytes)
        array = np.asarray(_Owner(self, block, shape, dtype))
        # (the interface's typestr of bfloat16 is a void type: the view gives the dtype back)
        return array if array.dtype == dtype else array.view(dtype)

    def allocator(self, shape, dtype):
        """`empty`, or np.empty for a buffer too small to pool."""
        return np.empty if math.prod(shape) * np.dtype(dtype).itemsize < MIN_BYTES else self.empty

    def give_back(self, block: np.ndarray) -> None:
        with self.lock:
            if self.free_bytes + block.nbytes <= capacity():
                self.free.setdefault(block.nbytes, []).append(block)
                self.free_bytes += block.nbytes

    def clear(self) -> None:
        with self.lock:
            self.free.clear()
            self.free_bytes = 0


def fresh(nbytes: int) -> np.ndarray:
    """A new block: a private anonymous mapping, without NumPy's huge page advice (see the
    module's doc); unmapped when the last array on it is gone.  A mapping the system refuses
    (ENOMEM: more than it will commit, or than the address space holds) is a MemoryError, as
    NumPy's own allocations are, which the call turns into its DeviceMemoryError."""
    try:
        block = mmap.mmap(-1, nbytes, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    except OSError as e:
        if e.errno != errno.ENOMEM:
            raise
        raise MemoryError(f"could not map {nbytes:,} bytes ({e.strerror})") from e
    return np.frombuffer(block, np.uint8)


def capacity() -> int:
    value = config.env("FUSEJIT_POOL_BYTES").strip()
    return int(value) if value else 1 << 30


pool = BufferPool()
