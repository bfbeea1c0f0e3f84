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
FUSEJIT_TOOLCHAIN_DIR where the precompiled preludes go (default: ~/.cache/fusejit-toolchain).
FUSEJIT_POOL_BYTES    the most memory the host backends keep in freed large buffers for reuse.
FUSEJIT_STREAM_BYTES  host map kernels moving this many bytes per call write with non-temporal
                      stores (default: half the last-level cache).
FUSEJIT_GRAPHS        0 | 1: host loops replay their captured launches (default: on for cuda and host).
FUSEJIT_TIERED=0      on the host, every first call waits for the compiler instead of running in
                      the interpreter while the kernels compile (tiered.py; default: on).
"""
from __future__ import annotations

import dataclasses
import os
import sys


# os.environ encodes the key and decodes the value on every read (about a microsecond); the
# per-call reads go to its underlying bytes mapping with keys encoded once.
_RAW = getattr(os.environ, "_data", None)
_KEYS: dict[str, bytes] = {}


def env(name: str) -> str:
    """The variable's value, or '' when unset (read on every call: tests change them)."""
    if _RAW is None or os.name != "posix":
        return os.environ.get(name, "")
    key = _KEYS.get(name)
    if key is None:
        key = _KEYS[name] = os.fsencode(name)
    value = _RAW.get(key)
    return "" if value is None else os.fsdecode(value)


@dataclasses.dataclass(frozen=True)
class CallOptions:
    """The variables every call reads, decoded once per distinct set of raw values."""
    backend: str | None
    index64: bool
    scan: str
    check: bool
    debug: int


_OPTION_NAMES = ("FUSEJIT_BACKEND", "FUSEJIT_INDEX64", "FUSEJIT_SCAN", "FUSEJIT_CHECK", "FUSEJIT_DEBUG")
_options: dict = {}
_POSIX = _RAW is not None and os.name == "posix"


def _raw_options(get=_RAW.get if _POSIX else os.environ.get,
                 keys=tuple(map(os.fsencode, _OPTION_NAMES)) if _POSIX else _OPTION_NAMES):
    """The options' raw values: a tuple written out, twice as quick as tuple(map(...)) (this
    runs on every call)."""
    backend, index64, scan, check, debug = keys
    return get(backend), get(index64), get(scan), get(check), get(debug)


def call_options() -> CallOptions:
    raw = _raw_options()
    options = _options.get(raw)
    if options is None:
        options = _options[raw] = CallOptions(backend_override(), env_flag("FUSEJIT_INDEX64"), scan_strategy(),
                                              env_flag("FUSEJIT_CHECK"), debug_level())
    return options


def env_flag(name: str) -> bool:
    return env(name).strip().lower() not in ("", "0", "false", "no", "off")


def debug_level() -> int:
    value = env("FUSEJIT_DEBUG").strip() or "0"
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


def toolchain_dir() -> str:
    """Where compiled preludes (precompiled headers) are kept: apart from the kernel cache, like
    an installation, so an empty kernel cache does not rebuild them."""
    path = os.environ.get("FUSEJIT_TOOLCHAIN_DIR")
    if path:
        return path
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "fusejit-toolchain")


def backend_override() -> str | None:
    return env("FUSEJIT_BACKEND") or None


def scan_strategy() -> str:
    return env("FUSEJIT_SCAN").strip() or "auto"
