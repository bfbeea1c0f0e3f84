"""fusejit: a JIT for JAX programs that runs them as fused CUDA kernels through CuPy,
and proves every result against jax.jit.

    import fusejit

    @fusejit.jit
    def f(x):
        return jnp.sin(x) + jnp.cos(x)

Pipeline: trace (jax.make_jaxpr) -> IR (ir.py) -> fusion (fusion.py) -> codegen (codegen.py,
kernels/) -> backend (backends/: cuda | host | emulate) -> launch (launch.py); check.py diffs
against jax.jit.  On the host, a new function's first calls run in the interpreter
(interpret.py, with ufuncs.py's precompiled elementwise loops) while its kernels compile in
the background (tiered.py).
"""
from ._version import __version__
from .api import Jitted, jit
from .backends import init
from .check import CheckReport, check
from .errors import (CompileError, DeviceMemoryError, FusejitError, MismatchError, ToolchainError,
                     UnsupportedError)
from .trace import make_graph
from . import cache, launch

fusejit = jit

__all__ = ["jit", "fusejit", "init", "check", "make_graph", "Jitted", "CheckReport", "FusejitError",
           "UnsupportedError", "CompileError", "MismatchError", "ToolchainError", "DeviceMemoryError",
           "cache", "__version__"]
