"""The host backend: the kernels' CUDA source compiled by the C++ compiler into a shared
library, loaded with ctypes, blocks spread over cores with OpenMP."""
from __future__ import annotations

import concurrent.futures
import ctypes
import functools
import glob
import importlib.util
import operator
import os
import platform
import shutil
import sys
import sysconfig
import tempfile
import threading

import numpy as np

from .. import cache, config
from ..errors import FusejitError
from ..launch import DeviceInfo
from ..templates import kernels_dir
from . import cxx
from .cpu_arrays import CpuArrays

# Flags that change no computed value (no -ffast-math): -march=native, the vector width of this
# CPU (the cache key names the CPU); -ffp-contract=off, no fused multiply-adds, so every
# operation rounds as IEEE says; -fno-math-errno and -fno-trapping-math, errno and
# floating-point traps (which no kernel reads or enables) need not be kept, so the vectoriser
# may evaluate comparisons and selects unconditionally; -fno-exceptions, kernels throw
# nothing (and need no C++ runtime to unwind through).  -pipe hands the assembly to the
# assembler through a pipe instead of a temporary file (a few milliseconds off each compile).
HOST_FLAGS = ["-O3", "-std=c++17", "-fPIC", "-fopenmp", "-fno-exceptions", "-fno-math-errno", "-fno-trapping-math",
              "-march=native", "-mprefer-vector-width=512", "-ffp-contract=off", "-pipe"]
# Linking: with GCC, a shared library against exactly the libraries a kernel calls (OpenMP's
# runtime, which -fopenmp names, the C math library, the C library), without the C++ runtime
# and start files the driver adds by default, which take most of a small module's link; a
# symbol nothing defines fails the link instead of the load.  Other compilers link as their
# driver does by default.  gold links in two thirds of the time of the default linker.
HOST_LINK_FLAGS = ["-shared", "-nostdlib", "-Wl,--no-undefined"]
HOST_LIBS = ["-lm", "-lc"]
if shutil.which("ld.gold"):
    HOST_LINK_FLAGS.insert(1, "-fuse-ld=gold")


# After a parallel region OpenMP's worker threads spin, waiting for the next one: 300,000
# rounds by default in GCC's runtime (a fraction of a millisecond).  Between a program's
# kernels run library calls whose BLAS threads want the same cores, and a product that takes
# 1 ms alone took 3.6 ms beside the spinning workers (jax.grad of a small MLP on 2 cores:
# 17 ms, 4.4 ms with 1,000 rounds; kernels launched back to back still find the workers
# awake).  After a call the default spin also burned about 8 ms of CPU that jax's threads,
# or anything else, could have used.  Set before the runtime loads, unless the user chose a wait policy; GCC's runtime
# reads it once per process, so it has no effect where another library loaded it first.
OPENMP_SPIN_ROUNDS = "1000"
if "OMP_WAIT_POLICY" not in os.environ and "GOMP_SPINCOUNT" not in os.environ:
    os.environ["GOMP_SPINCOUNT"] = OPENMP_SPIN_ROUNDS

MAX_DEFAULT_JOBS = 16  # a compiler process takes tens of megabytes


def usable_cores() -> int:
    """The cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def compile_jobs() -> int:
    """Compiler processes one module may run at once: FUSEJIT_COMPILE_JOBS, else the cores
    this process may use, at most MAX_DEFAULT_JOBS."""
    value = config.env("FUSEJIT_COMPILE_JOBS").strip()
    if not value:
        return min(usable_cores(), MAX_DEFAULT_JOBS)
    if not value.isdigit() or int(value) < 1:
        raise FusejitError(f"FUSEJIT_COMPILE_JOBS must be a positive integer, not {value!r}")
    return int(value)


def part_ranges(source: str, kernels: int, jobs: int) -> list[tuple[int, int]]:
    """The module's kernels as at most `jobs` contiguous ranges [begin, end) of about equal
    source text (the compile time follows it), each to compile on its own; one range when
    the module has one kernel."""
    marks = [source.find(f"#if FJ_IN_PART({k})\n") for k in range(kernels)]
    if kernels <= 1 or jobs <= 1 or min(marks) < 0:
        return [(0, kernels)]
    ends = [*marks[1:], source.find("\n#if defined(FUSEJIT_EMULATE)", marks[-1])]
    sizes = [end - start for start, end in zip(marks, ends)]
    parts, total = min(jobs, kernels), sum(sizes)
    ranges, begin, done = [], 0, 0
    for k, size in enumerate(sizes):
        done += size
        left_kernels, left_parts = kernels - k - 1, parts - len(ranges) - 1
        # Close the range at its share of the text, or when each part left needs a kernel.
        if left_parts > 0 and (done >= total * (len(ranges) + 1) / parts or left_kernels == left_parts):
            ranges.append((begin, k + 1))
            begin = k + 1
    ranges.append((begin, kernels))
    return ranges


def link_flags() -> tuple[list[str], list[str]]:
    """(flags, libraries) that link a host module with this C++ compiler."""
    if cxx.is_gnu():
        return HOST_LINK_FLAGS, HOST_LIBS
    return [f for f in HOST_LINK_FLAGS if f in ("-shared", "-fuse-ld=gold")], []


@functools.lru_cache(maxsize=None)
def cpu_identity() -> str:
    """The CPU that -march=native compiles for: model and feature flags (part of the cache key)."""
    try:
        with open("/proc/cpuinfo") as f:
            lines = [line for line in f.read().splitlines()
                     if line.startswith(("model name", "flags", "Features", "CPU part", "CPU implementer"))]
        return "\n".join(dict.fromkeys(lines))
    except OSError:
        return platform.processor() or platform.machine()

_SCALAR_CTYPES = {
    np.dtype(np.int32): ctypes.c_int32, np.dtype(np.int64): ctypes.c_int64,
    np.dtype(np.uint32): ctypes.c_uint32, np.dtype(np.uint64): ctypes.c_uint64,
    np.dtype(np.float32): ctypes.c_float, np.dtype(np.float64): ctypes.c_double,
}


def _array_data_offset() -> int | None:
    """Where a NumPy array object keeps its data pointer (PyArrayObject's first field, after
    the object header), checked on live arrays; None when this interpreter lays it out some
    other way, and calls then ask NumPy for each address."""
    offset = ctypes.sizeof(ctypes.c_ssize_t) + ctypes.sizeof(ctypes.c_void_p)
    for probe in (np.empty(3, np.float32), np.zeros((2, 2)), np.empty((), np.int8)):
        if ctypes.c_void_p.from_address(id(probe) + offset).value != probe.__array_interface__["data"][0]:
            return None
    return offset


DATA_OFFSET = _array_data_offset()
# Outputs per block of a column reduction: FJ_COLUMNS of kernels/host_launch.h.  Each block's
# rows are long contiguous runs, which the prefetchers follow.
HOST_COLUMNS = 4096
FIRST_COST_NS_PER_ELEMENT = 0.1  # a copy's rate on one core: the estimate of a launch not yet run
DIRECT_MAX_PARAMS = 256  # FJ_MAX_PARAMS of kernels/host_call.c; kernels with more go through ctypes


@functools.lru_cache(maxsize=None)
def host_extension():
    """The CPython extension kernels/host_call.c (`call` launches a module's launcher;
    `start_threads` starts the OpenMP workers), built once per machine and Python into the
    toolchain directory; None where this Python has no headers to build it with, or arrays of
    an unknown layout (launches then go through ctypes)."""
    include = sysconfig.get_paths().get("include")
    if DATA_OFFSET is None or not include or not os.path.exists(os.path.join(include, "Python.h")):
        config.debug(1, "host launches go through ctypes: no Python.h to build kernels/host_call.c")
        return None
    source = os.path.join(kernels_dir(), "host_call.c")
    with open(source) as f:
        text = f.read()
    path, version = cxx.compiler()
    key = cache.make_key("host_call", text, os.path.basename(path), version, sys.version, include, platform.machine())
    root = config.toolchain_dir()
    built = cache.lookup("host", key, ".so", root)
    if built is None:
        built = cache.store("host", key, ".so", lambda out: cxx.compile_files(
            ["-x", "c", source], out, ["-O2", "-shared", "-fPIC", "-fopenmp", "-I", include], text), root)
    spec = importlib.util.spec_from_file_location("fusejit_host_call", built)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.set_array_type(np.ndarray)
    return module


class HostModule:
    def __init__(self, path: str, names):
        self.lib = ctypes.CDLL(path)
        self.functions = {}
        for name in names:
            fn = getattr(self.lib, f"{name}_launch_arrays")
            fn.restype = None  # called with ctypes objects only (PreparedLaunch): no conversions
            self.functions[name] = fn


class _Recording(threading.local):
    """The launches and copies of a loop being captured on this thread (HostBackend.capture),
    as kernels/host_call.c's `record` returns them; None when none is."""
    entries = None


_recording = _Recording()


class PreparedLaunch:
    """One launch bound to its kernel: CUDA's kernelParams convention (an array of pointers,
    each to one argument's value) built once.  A call writes only the buffer addresses, read
    from the environment's slots; scalars are fixed by the plan.  The lock keeps concurrent
    calls from overwriting the addresses while a kernel reads them."""

    def __init__(self, fn, launch):
        self.fn = fn
        self.grid, self.block = ctypes.c_uint(launch.grid), ctypes.c_uint(launch.block)
        holders, self.buffers = [], []
        for a in launch.args:
            if a.slot is not None:
                # The launcher reads a buffer's address `data_offset` bytes into the object its
                # holder points at: the array object itself, or (offset 0, arrays of an
                # unknown layout) a cell that holds the address.
                holders.append(ctypes.c_void_p(0))
                cell = ctypes.c_void_p(0) if DATA_OFFSET is None else None
                if cell is not None:
                    holders[-1].value = ctypes.addressof(cell)
                self.buffers.append((holders[-1], cell, a.slot))
            else:
                holders.append(_SCALAR_CTYPES[a.dtype](a.value))
        self.holders = holders
        self.params = (ctypes.c_void_p * max(len(holders), 1))(*[ctypes.addressof(h) for h in holders])
        self.offset = ctypes.c_longlong(DATA_OFFSET or 0)
        self.lock = threading.Lock()
        # The direct call (kernels/host_call.c): a template of the parameters, NULL where a
        # buffer goes, filled on the call's own stack from the arrays passed after it.
        extension = host_extension() if len(holders) <= DIRECT_MAX_PARAMS else None
        self.call = extension.call if extension is not None else None
        if self.call is not None:
            self.template = (ctypes.c_void_p * max(len(holders), 1))(
                *[None if a.slot is not None else ctypes.addressof(h) for a, h in zip(launch.args, holders)])
            # The launch's cost on one thread (ns) and when it last returned, kept by the
            # extension, which runs the blocks on the calling thread when waking the workers
            # would cost more than they save (kernels/host_call.c).  The first estimate errs
            # low, so a launch the workers sleep through is measured on one thread first.
            self.state = (ctypes.c_longlong * 2)(int(launch.n * FIRST_COST_NS_PER_ELEMENT), 0)
            self.direct = (ctypes.cast(fn, ctypes.c_void_p).value, launch.grid, launch.block,
                           ctypes.addressof(self.template), len(holders), DATA_OFFSET,
                           ctypes.addressof(self.state))
            slots = [slot for _, _, slot in self.buffers]
            self.arrays = (lambda env: ()) if not slots else (
                (lambda env, s=slots[0]: (env[s],)) if len(slots) == 1 else operator.itemgetter(*slots))

    def __call__(self, env):
        if self.call is not None:  # no shared state: no lock
            entries = _recording.entries
            if entries is not None:
                entries.append(host_extension().record(*self.direct, *self.arrays(env)))
                return None
            return self.call(*self.direct, *self.arrays(env))
        if _recording.entries is not None:
            raise RuntimeError("a launch through ctypes cannot be recorded for replay")
        with self.lock:
            for holder, cell, slot in self.buffers:
                array = env[slot]
                if type(array) is not np.ndarray:  # a NumPy scalar's address is a temporary
                    raise TypeError(f"kernel argument in slot {slot} must be a NumPy array, not {type(array).__name__}")
                # The array stays alive in env for the call; without a known layout, NumPy says
                # where its data is.
                if cell is None:
                    holder.value = id(array)
                else:
                    cell.value = array.__array_interface__["data"][0]
            self.fn(self.grid, self.block, self.params, self.offset)


class HostBackend(CpuArrays):
    name = "host"
    suffix = ".so"

    @property
    def flags(self) -> list[str]:
        return [*HOST_FLAGS, *link_flags()[0], "-x", "c++"]

    @property
    def libs(self) -> list[str]:
        return link_flags()[1]

    def __init__(self):
        self.modules: dict[str, object] = {}
        self.lock = threading.Lock()

    def start(self) -> None:
        """Ready the backend for its first launch: load the launch extension and start the
        worker threads (their creation would otherwise fall in the first kernel's launch)."""
        extension = host_extension()
        if extension is not None:
            config.debug(1, f"host backend: {extension.start_threads()} worker thread(s)")
        from .. import tiered, ufuncs
        if tiered.enabled():  # the interpreter's elementwise library: loaded, or built once per machine
            ufuncs.start(self)

    # ---- loops replayed from their recorded launches (fusejit/graphs.py) ----
    @property
    def relocates(self) -> bool:
        """Whether a replay reads the call's own inputs in place (`replay(arrays)`), where a
        CUDA graph reads the buffers it was captured on, which each call copies its inputs into."""
        return host_extension() is not None

    def capture(self, fn, staged=()):
        """The host's graph: `fn`'s launches and copies recorded, not run (kernels/host_call.c),
        and `replay(arrays)`, which runs them in one call, its addresses in `staged` (the loop's
        inputs when it was captured) moved into `arrays`."""
        extension = host_extension()
        _recording.entries = entries = []
        try:
            fn()
        finally:
            _recording.entries = None
        blob = b"".join(entries)
        starts = tuple(a.ctypes.data for a in staged)
        sizes = tuple(a.nbytes for a in staged)
        replay = extension.replay
        return lambda arrays: replay(blob, DATA_OFFSET, starts, sizes, *arrays)

    def copyto(self, dst, src):
        if _recording.entries is None:
            np.copyto(dst, src)
            return
        if (dst.shape != src.shape or dst.dtype != src.dtype or not dst.flags.c_contiguous
                or not src.flags.c_contiguous):
            raise RuntimeError("a copy between arrays of different layouts cannot be recorded for replay")
        _recording.entries.append(host_extension().record_copy(dst.ctypes.data, src.ctypes.data, dst.nbytes))

    def device_info(self) -> DeviceInfo:
        return DeviceInfo("host", platform.machine(), usable_cores(), block=1, blocks_per_unit=1, min_chunk=32768,
                          columns=HOST_COLUMNS)

    def compile_key(self, source: str) -> str:
        path, version = cxx.compiler()
        return cache.make_key(self.name, source, os.path.basename(path), version, tuple(self.flags), tuple(self.libs),
                              platform.machine(), cpu_identity() if "-march=native" in self.flags else "")

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
                path = cache.store(self.name, key, self.suffix, lambda out: self.build(source, out, len(names)))
            module = self.load(path, names)
            self.modules[key] = module
            return module

    def is_cached(self, source: str) -> bool:
        """Whether compile(source) would only load the module (from memory or disk)."""
        key = self.compile_key(source)
        return key in self.modules or (cache.enabled() and os.path.exists(cache.entry_path(self.name, key, self.suffix)))

    def build(self, source: str, output: str, kernels: int = 1) -> None:
        """Compile and link the module.  A module of several kernels compiles in parts (see
        kernels/module_parts.cu.in), one compiler per part in parallel, up to
        FUSEJIT_COMPILE_JOBS (default: the cores this process may use) of them."""
        ranges = part_ranges(source, kernels, compile_jobs())
        with tempfile.TemporaryDirectory(prefix="fusejit-src-") as tmp:
            src = os.path.join(tmp, "module.cu")
            with open(src, "w") as f:
                f.write(source)
            if len(ranges) <= 1:
                cxx.compile_files([src], output, [*self.flags, *self.include_flags()], source, self.libs)
                return
            link, libs = link_flags()
            flags = [*(f for f in self.flags if f not in link), "-c", *self.include_flags()]
            objects = [os.path.join(tmp, f"part{p}.o") for p in range(len(ranges))]
            with concurrent.futures.ThreadPoolExecutor(len(ranges)) as pool:
                list(pool.map(lambda p: cxx.compile_files(
                    [src], objects[p], [*flags, f"-DFJ_PART_BEGIN={ranges[p][0]}", f"-DFJ_PART_END={ranges[p][1]}"],
                    source), range(len(ranges))))
            cxx.compile_files(objects, output, ["-fopenmp", *link], source, libs)

    def include_flags(self) -> list[str]:
        """-I for kernels/, after a directory holding fusejit.h precompiled for these flags
        (GCC takes the .gch when it is valid, else reads the header as usual)."""
        pch = self.precompiled_header()
        return (["-I", pch] if pch else []) + ["-I", kernels_dir()]

    @functools.lru_cache(maxsize=None)
    def precompiled_header(self) -> str | None:
        """A directory with fusejit.h.gch, fusejit.h precompiled for these flags and this
        kernels/ (in the toolchain directory, built once per machine): it saves parsing the
        preludes in every compile."""
        header = os.path.join(kernels_dir(), "fusejit.h")
        with open(header) as f:
            text = f.read()
        key = self.compile_key("precompiled fusejit.h")
        root = config.toolchain_dir()
        path = cache.lookup(self.name, key, ".gch", root)
        if path is None:  # the module's flags, less linking and the source language
            flags = [f for f in self.flags if f not in (*HOST_LINK_FLAGS, "-x", "c++")]
            path = cache.store(self.name, key, ".gch", lambda out: cxx.compile_files(
                ["-x", "c++-header", header], out, [*flags, "-I", kernels_dir()], text), root)
            for stale in glob.glob(os.path.join(os.path.dirname(path), "pch-*")):
                if not os.path.exists(os.path.join(stale, "fusejit.h.gch")):  # its .gch was pruned
                    shutil.rmtree(stale, ignore_errors=True)
        directory = os.path.join(os.path.dirname(path), f"pch-{key}")
        link = os.path.join(directory, "fusejit.h.gch")
        for _ in range(3):  # another process may make the link, or sweep the directory, meanwhile
            try:
                os.makedirs(directory, exist_ok=True)
                if not os.path.lexists(link):
                    os.symlink(path, link)
                break
            except (FileExistsError, FileNotFoundError):
                continue
        return directory

    def load(self, path: str, names):
        return HostModule(path, names)

    def bind(self, module, launch):
        """`call(env)` launching `launch` with its buffers taken from the slots of env."""
        return PreparedLaunch(module.functions[launch.kernel], launch)
