"""The one place that reads jaxpr details which differ between JAX versions."""
from __future__ import annotations

import functools
import linecache

import jax
import numpy as np
from jax.extend import core as jex_core

# Call-like equations whose body is inlined: primitive name -> the param holding the body.
CALL_PARAMS = {
    "pjit": ("jaxpr",),
    "jit": ("jaxpr",),
    "closed_call": ("call_jaxpr",),
    "core_call": ("call_jaxpr",),
    "custom_jvp_call": ("call_jaxpr", "fun_jaxpr"),
    "custom_vjp_call": ("call_jaxpr", "fun_jaxpr"),
    "custom_vjp_call_jaxpr": ("fun_jaxpr", "call_jaxpr"),
    "remat": ("jaxpr",),
    "checkpoint": ("jaxpr",),
    "custom_lin": (),
}


def is_literal(atom) -> bool:
    return isinstance(atom, jex_core.Literal)


def is_dropvar(atom) -> bool:
    return type(atom).__name__ == "DropVar"


def call_body(eqn):
    """(jaxpr, consts) of a call-like equation, or None if it is not one."""
    names = CALL_PARAMS.get(eqn.primitive.name)
    if names is None:
        return None
    for name in names:
        body = eqn.params.get(name)
        if body is None:
            continue
        if hasattr(body, "jaxpr") and hasattr(body, "consts"):  # ClosedJaxpr
            return body.jaxpr, list(body.consts)
        return body, []
    return None


def source_of(eqn) -> str:
    """'file:line (function)' of the user's code that created the equation, plus the line itself."""
    try:
        from jax._src import source_info_util
        summary = source_info_util.summarize(eqn.source_info)
    except Exception:  # private API moved: the message loses its location, nothing else
        return ""
    frame = None
    try:
        frame = source_info_util.user_frame(eqn.source_info.traceback)
    except Exception:
        frame = None
    if frame is not None:
        text = linecache.getline(frame.file_name, frame.start_line).strip()
        if text:
            return f"{summary}: {text}"
    return summary


def literal_value(atom):
    return atom.val


def x64_enabled() -> bool:
    return bool(jax.config.jax_enable_x64)


def canonical_dtype(dtype) -> np.dtype:
    return _canonical(np.dtype(dtype), x64_enabled())


@functools.lru_cache(maxsize=None)
def _canonical(dtype: np.dtype, x64: bool) -> np.dtype:
    return np.dtype(jax.dtypes.canonicalize_dtype(dtype))
