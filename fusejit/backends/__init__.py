"""Backends: where a compiled program runs.

  cuda     NVRTC-compiled cubins launched through CuPy (the default when CuPy finds a GPU).
  host     the same source compiled by the host C++ compiler, blocks spread over cores (the
           default otherwise).
  emulate  the same source run GPU-faithfully on the CPU (one OS thread per CUDA thread) under
           AddressSanitizer; slow, for verification.

Each backend supplies array conversion, allocation, compilation and the final launch call;
everything before the call (the launch plan) is shared, see launch.py.
"""
from __future__ import annotations

import functools
import os
import sys
import threading

from .. import config
from ..errors import FusejitError

NAMES = ("cuda", "host", "emulate")


def nvidia_driver_present() -> bool:
    """An NVIDIA driver is loaded (Linux) or may be (elsewhere): only then is CuPy imported,
    which costs a tenth of a second."""
    if sys.platform.startswith("linux"):
        return os.path.exists("/proc/driver/nvidia/version") or os.path.exists("/dev/nvidiactl")
    return True


@functools.lru_cache(maxsize=None)
def gpu_available() -> bool:
    if not nvidia_driver_present():
        return False
    try:
        import cupy
    except ImportError:
        return False
    try:
        return bool(cupy.is_available())
    except Exception:  # cupy reports a missing driver or device in several ways; all mean no GPU
        return False


def default_name() -> str:
    return "cuda" if gpu_available() else "host"


def resolve_name(name: str | None) -> str:
    name = name or config.backend_override() or default_name()
    if name not in NAMES:
        raise FusejitError(f"unknown fusejit backend {name!r}; choose one of {', '.join(NAMES)}")
    return name


_instances: dict = {}
_creating = threading.Lock()


def get(name: str | None = None):
    """The backend `name` (default: FUSEJIT_BACKEND, else cuda with a GPU, else host), created
    and started (`start()`: what its first launch would otherwise pay) on first use."""
    name = resolve_name(name)
    if name in _instances:
        return _instances[name]
    with _creating:
        if name in _instances:
            return _instances[name]
        if name == "cuda":
            from .cuda import CudaBackend as cls
        elif name == "host":
            from .host import HostBackend as cls
        else:
            from .emulate import EmulateBackend as cls
        backend = cls()
        backend.start()
        _instances[name] = backend
        return backend


def init(backend: str | None = None) -> str:
    """Create and start a backend now, as `jax.devices()` starts jax's, instead of in the first
    call that needs it: the host backend loads its launch extension, starts its worker threads
    and loads the interpreter's elementwise library (building it, once per machine, takes
    seconds), the cuda backend its CUDA context.  Returns the backend's name."""
    instance = get(backend)
    from .. import tiered, ufuncs
    if instance.name == "host" and tiered.enabled():
        ufuncs.start(instance).exception()  # waits; a failed build is a warning (ufuncs.ready), not an error
        ufuncs.ready(instance)
    return instance.name
