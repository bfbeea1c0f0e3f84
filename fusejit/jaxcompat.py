"""The one place that reads jaxpr details which differ between JAX versions."""
from __future__ import annotations

import functools
import linecache
import os
import sys

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
    "remat2": ("jaxpr",),  # jax.checkpoint: recomputation matters only to autodiff
    "custom_lin": (),
}


def name_traced_function(wrapper, fun, args, kwargs, static_argnums, static_argnames) -> None:
    """Errors raised while JAX traces `wrapper` (fusejit's function of the flat dynamic
    arguments, which calls `fun`) name `fun`, its source line and its arguments (`x`,
    `params['w']`) as jax.jit's errors do, not the wrapper and `flat[0]`: JAX's debug info
    for `fun` on these arguments (static ones included, as jax.jit takes them), attached to
    the wrapper.  A JAX without that hook leaves the wrapper's names."""
    try:
        from jax._src import api_util
        hook = api_util.save_wrapped_fun_debug_info
        info = api_util.debug_info("jit", fun, args, kwargs, static_argnums=static_argnums,
                                   static_argnames=static_argnames)
    except (ImportError, AttributeError):
        return
    hook(wrapper, info)


def is_literal(atom) -> bool:
    return isinstance(atom, jex_core.Literal)


def is_dropvar(atom) -> bool:
    return type(atom).__name__ == "DropVar"


def call_body(eqn):
    """(jaxpr, consts, invars) of a call-like equation whose body is inlined, or None.

    custom_linear_solve inlines its `solve` jaxpr on the solve consts and the right-hand
    side: that is its value (the matvec and transposes only matter to autodiff)."""
    name = eqn.primitive.name
    if name == "custom_linear_solve":
        lengths = eqn.params["const_lengths"]
        start = lengths.matvec + lengths.vecmat
        invars = list(eqn.invars[start:start + lengths.solve]) + list(eqn.invars[sum(lengths):])
        jaxpr, consts = _open(eqn.params["jaxprs"].solve)
        return jaxpr, consts, invars
    names = CALL_PARAMS.get(name)
    if names is None:
        return None
    for param in names:
        body = eqn.params.get(param)
        if body is not None:
            jaxpr, consts = _open(body)
            return jaxpr, consts, list(eqn.invars)
    return None


def traced_body(fun, eqn, avals=None):
    """(jaxpr, consts, invars) of `fun` traced by jax.make_jaxpr on the equation's operands
    (on `avals` instead: a key's data), for the lowering to put in the equation's place."""
    avals = [v.aval for v in eqn.invars] if avals is None else avals
    closed = jax.make_jaxpr(fun)(*(jax.ShapeDtypeStruct(a.shape, a.dtype, weak_type=getattr(a, "weak_type", False))
                                   for a in avals))
    return closed.jaxpr, list(closed.consts), list(eqn.invars)


def batched_while(eqn):
    """(jaxpr, consts, invars) of a while loop with a scalar predicate that computes what a
    `while` equation with an array predicate does, or None for a scalar predicate.

    vmap of a while_loop (or of a fori_loop with a batched bound) leaves the predicate
    batched: XLA runs such a loop while any element's predicate holds, and each iteration
    updates only the carry rows whose predicate holds (rows are the predicate's leading
    dimensions).  JAX traces that loop here, so fusejit lowers it as any other."""
    if eqn.primitive.name != "while":
        return None
    p = eqn.params
    cond, body = p["cond_jaxpr"], p["body_jaxpr"]
    pred_aval = cond.out_avals[0]
    if not pred_aval.shape:
        return None
    nc, nb = int(p["cond_nconsts"]), int(p["body_nconsts"])
    rows = tuple(range(len(pred_aval.shape)))
    cond_fun, body_fun = jex_core.jaxpr_as_fun(cond), jex_core.jaxpr_as_fun(body)

    def loop(*args):
        cond_consts, body_consts, carry = args[:nc], args[nc:nc + nb], args[nc + nb:]

        def step(c):
            pred = cond_fun(*cond_consts, *c)[0]
            new = body_fun(*body_consts, *c)
            return tuple(jax.lax.select(jax.lax.broadcast_in_dim(pred, x.shape, rows), n, x)
                         for n, x in zip(new, c))

        return jax.lax.while_loop(lambda c: jax.numpy.any(cond_fun(*cond_consts, *c)[0]), step, tuple(carry))

    return traced_body(loop, eqn)


# Callbacks into Python, run between kernels by JAX's own implementation of the primitive
# (fusejit.steps.HostCallback): debug_print (jax.debug.print), debug_callback, pure_callback,
# io_callback.  The first two have no results and are kept for their effect, as io_callback is.
CALLBACKS = ("debug_print", "debug_callback", "pure_callback", "io_callback")
EFFECTFUL = frozenset({"debug_print", "debug_callback", "io_callback"})
_callback_primitives: dict = {}


def remember_callback(eqn) -> None:
    """Keep the primitive object of a callback equation, to bind it when the step runs."""
    _callback_primitives[eqn.primitive.name] = eqn.primitive


def run_callback(name: str, params: dict, args) -> list:
    """Bind a callback primitive on host arrays outside any trace: JAX calls the user's function
    (and formats jax.debug.print's message) as it does under jax.jit.  PRNG keys arrive as
    their data, as under jax.jit.  Results as NumPy."""
    outs = _callback_primitives[name].bind(*args, **params)
    return [np.asarray(o) for o in outs]


def _open(body):
    """(jaxpr, consts) of a ClosedJaxpr or a Jaxpr."""
    if hasattr(body, "jaxpr") and hasattr(body, "consts"):
        return body.jaxpr, list(body.consts)
    return body, []


# Control flow: primitive -> the params fusejit reads, through `control_params`.
CONTROL = ("scan", "while", "cond")


def control_params(eqn) -> dict:
    """A control-flow equation's params under fusejit's names, its bodies as ClosedJaxprs:
      scan:  body, length, reverse, num_consts, num_carry, unroll
      while: cond, body, cond_nconsts, body_nconsts
      cond:  branches"""
    p = eqn.params
    name = eqn.primitive.name
    if name == "scan":
        unroll = p.get("unroll", 1)
        length = int(p["length"])
        unroll = length if unroll is True else max(1, int(unroll))
        return dict(body=p["jaxpr"], length=length, reverse=bool(p["reverse"]),
                    num_consts=int(p["num_consts"]), num_carry=int(p["num_carry"]), unroll=unroll)
    if name == "while":
        return dict(cond=p["cond_jaxpr"], body=p["body_jaxpr"], cond_nconsts=int(p["cond_nconsts"]),
                    body_nconsts=int(p["body_nconsts"]))
    if name == "cond":
        return dict(branches=tuple(p["branches"]))
    raise KeyError(name)


def _exclude_own_frames() -> None:
    """Tell JAX that fusejit's frames are not the user's (as libraries built on JAX do): an
    equation traced while fusejit calls the user's function, or a jnp function given to
    fusejit.jit directly, names the user's line instead of fusejit's."""
    try:
        from jax._src import source_info_util
        source_info_util.register_exclusion(os.path.dirname(os.path.abspath(__file__)) + os.sep)
    except (ImportError, AttributeError):  # private API moved: messages may name fusejit's lines
        pass


_exclude_own_frames()


def caller_line() -> str:
    """'file:line (function): text' of the innermost frame outside fusejit and JAX on the
    stack: the user's call of a fusejit function, the line an error names when the
    equation's own traceback holds no user frame (JAX keeps its innermost frames only)."""
    own = os.path.dirname(os.path.abspath(__file__)) + os.sep
    jax_dir = os.path.dirname(os.path.abspath(jax.__file__)) + os.sep
    frame = sys._getframe(1)
    while frame is not None and frame.f_code.co_filename.startswith((own, jax_dir)):
        frame = frame.f_back
    if frame is None:
        return ""
    name, line = frame.f_code.co_filename, frame.f_lineno
    text = linecache.getline(name, line).strip()
    return f"{name}:{line} ({frame.f_code.co_name})" + (f": {text}" if text else "")


def source_of(eqn) -> str:
    """'file:line (function)' of the user's code that created the equation, plus the line itself."""
    try:
        from jax._src import source_info_util
        summary = source_info_util.summarize(eqn.source_info)
        frame = source_info_util.user_frame(eqn.source_info.traceback)
    except (ImportError, AttributeError):  # private API moved: the message loses its location
        return ""
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


def default_platform_branch(eqn) -> int:
    """The branch a `platform_index` selects off TPU: the default (None) entry of `platforms`,
    else the one naming CUDA."""
    platforms = eqn.params["platforms"]
    for k, names in enumerate(platforms):
        if names is None:
            return k
    for k, names in enumerate(platforms):
        if any(n in ("cuda", "gpu") for n in names):
            return k
    return 0
