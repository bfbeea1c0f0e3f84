"""The host C++ compiler: found once, invoked with a numbered-source error on failure."""
from __future__ import annotations

import functools
import hashlib
import os
import shutil
import subprocess

from .. import cache, config
from ..errors import CompileError, ToolchainError, numbered


@functools.lru_cache(maxsize=None)
def compiler() -> tuple[str, str]:
    """(path, version line) of the C++ compiler: $FUSEJIT_CXX, $CXX, g++, c++."""
    for name in (os.environ.get("FUSEJIT_CXX"), os.environ.get("CXX"), "g++", "c++"):
        if name and shutil.which(name):
            path = shutil.which(name)
            return path, (version_text(path).splitlines() or ["unknown"])[0]
    raise ToolchainError(
        "no C++ compiler found for fusejit's host backend: install g++ (Debian/Ubuntu: "
        "'apt-get install g++') or set FUSEJIT_CXX; with a GPU, use backend='cuda'")


@functools.lru_cache(maxsize=None)
def version_text(path: str) -> str:
    """What `path --version` prints, remembered in the toolchain directory per compiler binary
    (its resolved path, inode, size and modification time): a process whose kernels are all
    cached on disk starts no compiler, not even to ask its version."""
    real = os.path.realpath(path)
    st = os.stat(real)
    key = hashlib.sha256(f"{real}\0{st.st_ino}\0{st.st_size}\0{st.st_mtime_ns}".encode()).hexdigest()[:40]
    memo = os.path.join(config.toolchain_dir(), "compilers", f"{key}.txt")
    try:
        with open(memo) as f:
            return f.read()
    except OSError:
        pass
    out = subprocess.run([path, "--version"], capture_output=True, text=True)
    if out.returncode == 0 and out.stdout:
        try:
            os.makedirs(os.path.dirname(memo), exist_ok=True)
            cache.write_text(memo, out.stdout)
        except OSError:  # a read-only toolchain directory: asked again next time
            pass
    return out.stdout


@functools.lru_cache(maxsize=None)
def is_gnu() -> bool:
    """Whether the C++ compiler is GCC (whose driver links OpenMP's runtime for -fopenmp also
    with -nostdlib; clang's does not)."""
    text = version_text(compiler()[0])
    return "Free Software Foundation" in text and "clang" not in text.lower()


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
