"""Environment variables, read when used (so tests can set them), in one place.

FUSEJIT_BACKEND       cuda | host | emulate: override the default backend.
FUSEJIT_CACHE_DIR     where compiled kernels are kept (default: ~/.cache/fusejit).
FUSEJIT_CACHE=0       disable the on-disk cache.
FUSEJIT_CACHE_MAX_BYTES  cap on the on-disk cache; least recently used entries go first.
FUSEJIT_CHECK=1       diff every call against jax.jit and raise MismatchError on a failure.
FUSEJIT_DEBUG=N       1: launches, 2: graphs, 3: fusion groups, 4: kernel source.
FUSEJIT_DUMP_SOURCE=1 print each kernel's source when it compiles.
FUSEJIT_INDEX64=1     use 64-bit indexing in every kernel (normally only for arrays of 2**31+ elements).
FUSEJIT_CXX           the host C++ compiler (default: $CXX, else g++, else c++).
FUSEJIT_KERNELS_DIR   use this copy of kernels/ (templates and preludes) instead of the installed one.
FUSEJIT_SCAN          auto | unroll | loop: how scans run (the `scan=` argument of fusejit.jit wins).
"""
from __future__ import annotations

import os
import sys


def env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() not in ("", "0", "false", "no", "off")


def debug_level() -> int:
    value = os.environ.get("FUSEJIT_DEBUG", "0").strip() or "0"
    try:
        return int(value)
    except ValueError:
        return 1 if env_flag("FUSEJIT_DEBUG") else 0


def debug(level: int, message: str) -> None:
    """Print `message` to stderr when FUSEJIT_DEBUG >= level."""
    if debug_level() >= level:
        print(f"[fusejit] {message}", file=sys.stderr, flush=True)


def cache_dir() -> str:
    path = os.environ.get("FUSEJIT_CACHE_DIR")
    if path:
        return path
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "fusejit")


def backend_override() -> str | None:
    return os.environ.get("FUSEJIT_BACKEND") or None


def scan_strategy() -> str:
    return os.environ.get("FUSEJIT_SCAN", "").strip() or "auto"
