"""NVRTC: compile a module's CUDA source to a cubin or PTX.  Needs the NVRTC library
(PyPI: nvidia-cuda-nvrtc-cu12 with cupy-cuda12x), not a GPU."""
from __future__ import annotations

import dataclasses
import re

from .errors import CompileError, ToolchainError, numbered
from .templates import kernels_dir

OPTIONS = ("-std=c++17",)


def _nvrtc():
    try:
        from cupy_backends.cuda.libs import nvrtc
    except ImportError as e:
        raise ToolchainError(
            "NVRTC is not available: install fusejit[cuda12] (cupy-cuda12x and nvidia-cuda-nvrtc-cu12) "
            f"or fusejit[cuda13] ({e})") from e
    return nvrtc


def version() -> tuple[int, int]:
    try:
        return tuple(_nvrtc().getVersion())
    except Exception as e:  # the library itself failed to load
        raise ToolchainError(f"NVRTC could not be loaded: {e}; install nvidia-cuda-nvrtc-cu12") from e


def options(arch: str, target: str = "sm") -> list[str]:
    number = arch.split("_")[-1]
    return [f"-arch={target}_{number}", *OPTIONS, f"--include-path={kernels_dir()}"]


def compile_source(source: str, arch: str, output: str = "cubin", extra: tuple = ()) -> bytes:
    """Compile to a cubin (output='cubin'), PTX text (output='ptx') or the compile log
    (output='log', with `extra` options such as the ptxas report) for e.g. arch='sm_90'."""
    nvrtc = _nvrtc()
    version()
    prog = nvrtc.createProgram(source, "fusejit_module.cu", [], [])
    try:
        try:
            nvrtc.compileProgram(prog, options(arch, "compute" if output == "ptx" else "sm") + list(extra))
        except nvrtc.NVRTCError as e:
            log = nvrtc.getProgramLog(prog)
            raise CompileError(f"NVRTC failed to compile a fusejit module for {arch}:\n{log}\n"
                               f"--- source ---\n{numbered(source)}", source=source, log=log) from e
        if output == "log":
            return nvrtc.getProgramLog(prog)
        return nvrtc.getCUBIN(prog) if output == "cubin" else nvrtc.getPTX(prog)
    finally:
        nvrtc.destroyProgram(prog)


@dataclasses.dataclass(frozen=True)
class Resources:
    """ptxas's report on one kernel: registers per thread, stack frame and spills (bytes)."""
    registers: int
    stack: int
    spill_stores: int
    spill_loads: int
    shared: int


def resource_usage(source: str, arch: str) -> dict[str, Resources]:
    """Each kernel's resources in the cubin for `arch`, from ptxas's verbose report."""
    log = compile_source(source, arch, "log", ("--ptxas-options=-v",))
    log = log.decode() if isinstance(log, bytes) else log
    usage = {}
    for name, block in re.findall(r"Function properties for (\w+)\n(.*?)(?=Function properties|\Z)", log, re.S):
        def number(pattern):
            m = re.search(pattern, block)
            return int(m.group(1)) if m else 0
        usage[name] = Resources(number(r"Used (\d+) registers"), number(r"(\d+) bytes stack frame"),
                                number(r"(\d+) bytes spill stores"), number(r"(\d+) bytes spill loads"),
                                number(r"(\d+) bytes smem"))
    return usage
