"""The emulate backend: GPU-faithful execution of the exact CUDA source on the CPU.

The module is built with -DFUSEJIT_EMULATE (one OS thread per CUDA thread, barriers for
__syncthreads and warp shuffles; see kernels/emu_launch.h) and AddressSanitizer plus
UndefinedBehaviorSanitizer, linked with kernels/emu_main.cpp into an executable.  Each
launch runs that executable with the real grid and block sizes of a GPU (launch.EMULATED_GPU)
on exactly sized copies of the buffers, each as far from a 64-byte boundary as the original,
its threads all on the CPU it started on (kernels/emu_main.cpp); any sanitizer report, hang or
write to an input buffer is an error.
"""
from __future__ import annotations

import os
import subprocess
import tempfile

import numpy as np

from .. import cache
from ..errors import FusejitError
from ..launch import EMULATED_GPU, DeviceInfo
from ..templates import kernels_dir
from . import cxx
from .cpu_arrays import CpuArrays
from .host import HOST_LINK_FLAGS, HostBackend

EMULATE_FLAGS = ["-std=c++20", "-O0", "-g", "-pipe", "-pthread", "-DFUSEJIT_EMULATE",
                 "-fsanitize=address,undefined", "-fno-sanitize-recover=all", "-fno-omit-frame-pointer",
                 # gold, where the host backend links with it: half the default linker's time
                 *(f for f in HOST_LINK_FLAGS if f == "-fuse-ld=gold")]
TIMEOUT_S = 300

_SCALAR_CODES = {"int32": "i32", "int64": "i64", "uint32": "u32", "uint64": "u64",
                 "float32": "f32", "float64": "f64"}


class EmulationError(FusejitError):
    """The emulated kernel failed: a sanitizer report, a hang, or a write to an input."""


class EmulatedModule:
    def __init__(self, path: str):
        self.path = path


class EmulateBackend(HostBackend):
    name = "emulate"
    flags = EMULATE_FLAGS
    libs = []  # an executable, linked by the compiler driver as usual
    suffix = ".exe"
    # Its launches run the emulation driver, which records nothing: a loop's replay runs the
    # captured function again, on the loop's buffers (fusejit/graphs.py).
    relocates = False
    capture = CpuArrays.capture
    copyto = CpuArrays.copyto

    def start(self) -> None:
        """Nothing to ready: each launch runs a program of its own."""

    def device_info(self) -> DeviceInfo:
        return DeviceInfo("emulate", EMULATED_GPU.arch, EMULATED_GPU.multiprocessors, EMULATED_GPU.block,
                          EMULATED_GPU.blocks_per_unit)

    def driver_object(self) -> str:
        """kernels/emu_main.cpp compiled once (and cached like a kernel) for linking with each module."""
        main = os.path.join(kernels_dir(), "emu_main.cpp")
        with open(main) as f:
            text = f.read()
        key = self.compile_key(text)
        path = cache.lookup(self.name, key, ".o")
        if path is None:
            path = cache.store(self.name, key, ".o", lambda out: cxx.compile_files(
                ["-c", main], out, [*self.flags, "-I", kernels_dir()], text))
        return path

    def build(self, source: str, output: str, kernels: int = 1) -> None:
        driver = self.driver_object()
        with tempfile.TemporaryDirectory(prefix="fusejit-src-") as tmp:
            src = os.path.join(tmp, "module.cu")
            with open(src, "w") as f:
                f.write(source)
            cxx.compile_files(["-x", "c++", src, "-x", "none", driver], output,
                              [*self.flags, *self.include_flags()], source)

    def load(self, path: str, names):
        return EmulatedModule(path)

    def bind(self, module, launch):
        return lambda env: self.launch(module, launch, [a.resolve(env) for a in launch.args])

    def launch(self, module, launch, args) -> None:
        outputs = {k for k, a in enumerate(launch.args) if a.slot in launch.outputs}
        with tempfile.TemporaryDirectory(prefix="fusejit-emu-") as tmp:
            argv, files = [], {}
            for k, a in enumerate(args):
                if isinstance(a, np.ndarray):
                    path = os.path.join(tmp, f"arg{k}.bin")
                    a.tofile(path)
                    files[k] = path
                    argv.append(f"b:{path}:{a.nbytes}:{a.ctypes.data % 64}")
                else:
                    argv.append(f"{_SCALAR_CODES[a.dtype.name]}:{float(a)!r}" if a.dtype.kind == "f"
                                else f"{_SCALAR_CODES[a.dtype.name]}:{int(a)}")
            env = dict(os.environ, ASAN_OPTIONS="detect_leaks=0:abort_on_error=0",
                       UBSAN_OPTIONS="print_stacktrace=1")
            cmd = [module.path, launch.kernel, str(launch.grid), str(launch.block), *argv]
            try:
                proc = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT_S, env=env)
            except subprocess.TimeoutExpired as e:
                raise EmulationError(
                    f"emulated kernel {launch.kernel} did not finish in {TIMEOUT_S} s (grid={launch.grid}, "
                    f"block={launch.block}): a deadlock, such as a __syncthreads not reached by every thread")\
                    from e
            if proc.returncode != 0 or "runtime error" in proc.stderr or "Sanitizer" in proc.stderr:
                raise EmulationError(
                    f"emulated kernel {launch.kernel} failed (exit {proc.returncode}, grid={launch.grid}, "
                    f"block={launch.block}):\n{proc.stderr[-6000:]}")
            for k, path in files.items():
                a = args[k]
                back = np.fromfile(path, dtype=a.dtype).reshape(a.shape)
                if k in outputs:
                    np.copyto(a, back)
                elif back.tobytes() != a.tobytes():
                    raise EmulationError(f"emulated kernel {launch.kernel} wrote to its input argument {k}")
