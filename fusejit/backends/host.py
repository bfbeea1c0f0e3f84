"""The host backend: the kernels' CUDA source compiled by the C++ compiler into a shared
library, loaded with ctypes, blocks spread over cores with OpenMP."""
from __future__ import annotations

import ctypes
import os
import platform
import tempfile
import threading

import numpy as np

from .. import cache, config
from ..launch import DeviceInfo
from ..templates import kernels_dir
from . import cxx
from .cpu_arrays import CpuArrays

HOST_FLAGS = ["-O3", "-std=c++17", "-fPIC", "-shared", "-fopenmp", "-fno-math-errno", "-x", "c++"]

_SCALAR_CTYPES = {
    np.dtype(np.int32): ctypes.c_int32, np.dtype(np.int64): ctypes.c_int64,
    np.dtype(np.uint32): ctypes.c_uint32, np.dtype(np.uint64): ctypes.c_uint64,
    np.dtype(np.float32): ctypes.c_float, np.dtype(np.float64): ctypes.c_double,
}


class HostModule:
    def __init__(self, path: str, names):
        self.lib = ctypes.CDLL(path)
        self.functions = {}
        self.prepared: dict = {}  # Launch -> PreparedLaunch
        for name in names:
            fn = getattr(self.lib, f"{name}_launch")
            fn.argtypes = [ctypes.c_uint, ctypes.c_uint, ctypes.c_void_p]
            fn.restype = None
            self.functions[name] = fn


class PreparedLaunch:
    """CUDA's kernelParams convention, built once per launch: an array of pointers, each to one
    argument's value.  A call only writes the buffer addresses; scalars are fixed by the plan.
    The lock keeps concurrent calls from overwriting the addresses while a kernel reads them."""

    def __init__(self, fn, args):
        self.fn = fn
        self.holders = []
        for a in args:
            if isinstance(a, np.ndarray):
                self.holders.append(ctypes.c_void_p(0))
            else:
                self.holders.append(_SCALAR_CTYPES[a.dtype](a))
        self.buffers = [(k, h) for k, (a, h) in enumerate(zip(args, self.holders)) if isinstance(a, np.ndarray)]
        self.params = (ctypes.c_void_p * max(len(self.holders), 1))(
            *[ctypes.addressof(h) for h in self.holders])
        self.lock = threading.Lock()

    def __call__(self, grid, block, args):
        with self.lock:
            for k, holder in self.buffers:
                array = args[k]
                if type(array) is not np.ndarray:  # a NumPy scalar's address is a temporary
                    raise TypeError(f"kernel argument {k} must be a NumPy array, not {type(array).__name__}")
                holder.value = array.__array_interface__["data"][0]
            self.fn(grid, block, self.params)


class HostBackend(CpuArrays):
    name = "host"
    flags = HOST_FLAGS
    suffix = ".so"

    def __init__(self):
        self.modules: dict[str, object] = {}
        self.lock = threading.Lock()

    def device_info(self) -> DeviceInfo:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        return DeviceInfo("host", platform.machine(), cores, block=1, blocks_per_unit=1, min_chunk=32768)

    def compile_key(self, source: str) -> str:
        path, version = cxx.compiler()
        return cache.make_key(self.name, source, os.path.basename(path), version, tuple(self.flags),
                              platform.machine())

    def compile(self, source: str, names):
        """Compile (or fetch from the caches) the module; returns a loaded module."""
        key = self.compile_key(source)
        with self.lock:
            if key in self.modules:
                cache.stats["memory_hits"] += 1
                return self.modules[key]
            if config.env_flag("FUSEJIT_DUMP_SOURCE") or config.debug_level() >= 4:
                config.debug(0, f"{self.name} module source:\n{source}")
            path = cache.lookup(self.name, key, self.suffix)
            if path is None:
                path = cache.store(self.name, key, self.suffix, lambda out: self.build(source, out))
            module = self.load(path, names)
            self.modules[key] = module
            return module

    def build(self, source: str, output: str) -> None:
        with tempfile.TemporaryDirectory(prefix="fusejit-src-") as tmp:
            src = os.path.join(tmp, "module.cu")
            with open(src, "w") as f:
                f.write(source)
            cxx.compile_files([src], output, [*self.flags, "-I", kernels_dir()], source)

    def load(self, path: str, names):
        return HostModule(path, names)

    def launch(self, module, launch, args) -> None:
        prepared = module.prepared.get(launch)
        if prepared is None:
            prepared = module.prepared.setdefault(launch, PreparedLaunch(module.functions[launch.kernel], args))
        prepared(launch.grid, launch.block, args)
