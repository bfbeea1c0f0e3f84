"""NVRTC: compile a module's CUDA source to a cubin or PTX.  Needs the NVRTC library
(PyPI: nvidia-cuda-nvrtc-cu12 with cupy-cuda12x), not a GPU."""
from __future__ import annotations

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


def compile_source(source: str, arch: str, output: str = "cubin") -> bytes:
    """Compile to a cubin (output='cubin') or PTX text (output='ptx') for e.g. arch='sm_90'."""
    nvrtc = _nvrtc()
    version()
    prog = nvrtc.createProgram(source, "fusejit_module.cu", [], [])
    try:
        try:
            nvrtc.compileProgram(prog, options(arch, "sm" if output == "cubin" else "compute"))
        except nvrtc.NVRTCError as e:
            log = nvrtc.getProgramLog(prog)
            raise CompileError(f"NVRTC failed to compile a fusejit module for {arch}:\n{log}\n"
                               f"--- source ---\n{numbered(source)}", source=source, log=log) from e
        return nvrtc.getCUBIN(prog) if output == "cubin" else nvrtc.getPTX(prog)
    finally:
        nvrtc.destroyProgram(prog)
