"""The host C++ compiler: found once, invoked with a numbered-source error on failure."""
from __future__ import annotations

import functools
import os
import shutil
import subprocess

from ..errors import CompileError, ToolchainError, numbered


@functools.lru_cache(maxsize=None)
def compiler() -> tuple[str, str]:
    """(path, version line) of the C++ compiler: $FUSEJIT_CXX, $CXX, g++, c++."""
    for name in (os.environ.get("FUSEJIT_CXX"), os.environ.get("CXX"), "g++", "c++"):
        if name and shutil.which(name):
            path = shutil.which(name)
            out = subprocess.run([path, "--version"], capture_output=True, text=True)
            return path, (out.stdout.splitlines() or ["unknown"])[0]
    raise ToolchainError(
        "no C++ compiler found for fusejit's host backend: install g++ (Debian/Ubuntu: "
        "'apt-get install g++') or set FUSEJIT_CXX; with a GPU, use backend='cuda'")


@functools.lru_cache(maxsize=None)
def is_gnu() -> bool:
    """Whether the C++ compiler is GCC (whose driver links OpenMP's runtime for -fopenmp also
    with -nostdlib; clang's does not)."""
    path, _ = compiler()
    out = subprocess.run([path, "--version"], capture_output=True, text=True)
    return "Free Software Foundation" in out.stdout and "clang" not in out.stdout.lower()


def compile_files(sources: list[str], output: str, flags: list[str], module_source: str,
                  libs: list[str] = ()) -> None:
    """Compile (and link) `sources` into `output`; `libs` (-l options) follow the sources."""
    path, _ = compiler()
    cmd = [path, *flags, *sources, *libs, "-o", output]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise CompileError(
            f"the host C++ compiler failed on a fusejit module ({' '.join(cmd)}):\n{proc.stderr}\n"
            f"--- source ---\n{numbered(module_source)}", source=module_source, log=proc.stderr)
