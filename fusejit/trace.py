"""Trace: a Python function -> jaxpr (JAX's own tracer) -> fusejit's Graph.

Nested pjit/jit/custom_jvp/custom_vjp calls are inlined and dead equations dropped.
"""
from __future__ import annotations

import numpy as np

import jax

from . import expand, halves, jaxcompat, keys, reciprocal
from .errors import UnsupportedError
from .ir import Eqn, Graph, Literal, Var
from .simplify import simplify

# Primitives whose output is their input's value (stop_gradient matters only to autodiff).
IDENTITIES = {"stop_gradient", "copy", "copy_p", "optimization_barrier"}
# Primitives that are another under a second name: add_any is the sum autodiff forms where a
# gradient reaches one value along two paths.
ALIASES = {"add_any": "add"}

SUPPORTED_DTYPES = {np.dtype(t) for t in (
    np.float32, np.float64, np.bool_, np.int8, np.int16, np.int32, np.int64,
    np.uint8, np.uint16, np.uint32, np.uint64)} | halves.HALF
SUPPORTED_TEXT = "float16, bfloat16, float32, float64, int8..int64, uint8..uint64, bool"


def check_dtype(dtype, what: str, source: str = "", primitive: str | None = None) -> np.dtype:
    try:
        dtype = np.dtype(dtype)
    except TypeError:  # an extended dtype, such as a PRNG key's
        raise UnsupportedError(
            f"fusejit does not support dtype {dtype} ({what}); supported: {SUPPORTED_TEXT}",
            primitive=primitive, source=source) from None
    if dtype not in SUPPORTED_DTYPES:
        raise UnsupportedError(
            f"fusejit does not support dtype {dtype.name} ({what}); supported: {SUPPORTED_TEXT}",
            primitive=primitive, source=source)
    return dtype


def _var(aval, what, source="", primitive=None) -> Var:
    aval = keys.physical_aval(aval)  # a PRNG key is held as its data
    return Var(tuple(int(d) for d in aval.shape),
               check_dtype(aval.dtype, what, source, primitive),
               bool(getattr(aval, "weak_type", False)))


def graph_from_jaxpr(closed, source: str = "") -> Graph:
    """Lower a ClosedJaxpr to a Graph, inlining nested calls and lowering control-flow bodies
    to Graphs of their own; dead equations are dropped (inputs are kept: a signature).
    `source` is the user's line for equations that carry none (a loop body's, inside a jnp
    function).  float16 and bfloat16 values are then held in float32 (fusejit/halves.py),
    divisions written as jax.jit computes them (fusejit/reciprocal.py), and the graph
    simplified as XLA's simplifier does (fusejit/simplify.py)."""
    graph = halves.widen(lower_jaxpr(closed, source))
    return eliminate_dead_code(simplify(reciprocal.as_jax_divides(graph)))


def lower_jaxpr(closed, source: str = "") -> Graph:
    """graph_from_jaxpr's lowering, before divisions are rewritten."""
    eqns: list[Eqn] = []
    consts: list[tuple[Var, np.ndarray]] = []

    def lower(jaxpr, in_atoms, const_values, outer_source="", synthetic=False):
        """`synthetic`: a jaxpr fusejit traced itself (an expansion), whose equations' frames
        are fusejit's: all of them take `outer_source`."""
        env: dict = {}

        def read(atom):
            if jaxcompat.is_literal(atom):
                value = jaxcompat.literal_value(atom)
                dtype = check_dtype(atom.aval.dtype, "literal")
                arr = np.asarray(value, dtype=dtype)
                if arr.shape != ():
                    var = _var(atom.aval, "constant")
                    consts.append((var, arr))
                    return var
                return Literal(arr[()], dtype)
            return env[atom]

        for cv, value in zip(jaxpr.constvars, const_values):
            arr = np.asarray(value)
            var = _var(cv.aval, "captured constant")
            consts.append((var, arr.astype(var.dtype, copy=False)))
            env[cv] = var
        for v, a in zip(jaxpr.invars, in_atoms):
            env[v] = a
        for eqn in jaxpr.eqns:
            # Equations of a cached inner jaxpr (jnp functions are nested jits) carry no user
            # frame: they take the user's line from the call that inlined them.
            source = outer_source if synthetic else (jaxcompat.source_of(eqn) or outer_source)
            body, expanded = jaxcompat.call_body(eqn), False
            if body is None:
                body = expansion(eqn)
                expanded = body is not None
            if body is not None:
                inner, inner_consts, invars = body
                outs = lower(inner, [read(a) for a in invars], inner_consts, source, synthetic or expanded)
                for v, o in zip(eqn.outvars, outs):
                    if not jaxcompat.is_dropvar(v):
                        env[v] = o
                continue
            ins = [read(a) for a in eqn.invars]
            name = eqn.primitive.name
            if name in IDENTITIES or name in keys.KEY_IDENTITIES:  # the value itself: no kernel copies it
                env[eqn.outvars[0]] = ins[0]
                continue
            if name == "platform_index":  # a cond's platform-specific branch: the default one
                env[eqn.outvars[0]] = Literal(np.int32(jaxcompat.default_platform_branch(eqn)), np.dtype(np.int32))
                continue
            outs = tuple(_var(v.aval, f"output of {name}", source, name) for v in eqn.outvars)
            params = lower_control(eqn, source) if name in jaxcompat.CONTROL else dict(eqn.params)
            if name in jaxcompat.CALLBACKS:
                jaxcompat.remember_callback(eqn)
            eqns.append(Eqn(ALIASES.get(name, name), tuple(ins), outs, params, source))
            for v, o in zip(eqn.outvars, outs):
                if not jaxcompat.is_dropvar(v):
                    env[v] = o
        return [read(a) for a in jaxpr.outvars]

    inputs = tuple(_var(v.aval, "input", source) for v in closed.jaxpr.invars)
    outputs = lower(closed.jaxpr, inputs, closed.consts, source)
    return eliminate_dead_code(Graph(inputs, tuple(consts), tuple(eqns), tuple(outputs)))


def expansion(eqn):
    """(jaxpr, consts, invars) that computes `eqn` from primitives fusejit runs, traced by
    fusejit: a while loop with an array predicate, a PRNG primitive on key data, a primitive
    whose JAX lowering is a Python function (expand.py), a primitive moving keys; or None."""
    name = eqn.primitive.name
    if name in jaxcompat.CALLBACKS or name in jaxcompat.CONTROL and name != "while":
        return None
    if name in IDENTITIES or name in keys.KEY_IDENTITIES:
        return None
    return (jaxcompat.batched_while(eqn) or keys.random_body(eqn) or expand.expansion(eqn)
            or (None if name in jaxcompat.CONTROL else keys.key_body(eqn)))


def lower_control(eqn, source: str = "") -> dict:
    """A control-flow equation's params with its bodies lowered to Graphs (jaxcompat names);
    `source` is the equation's user line, for body equations that carry none."""
    params = jaxcompat.control_params(eqn)
    for key in ("body", "cond"):
        if key in params:
            params[key] = lower_jaxpr(params[key], source)
    if "branches" in params:
        params["branches"] = tuple(lower_jaxpr(b, source) for b in params["branches"])
    return params


def effectful(eqn: Eqn) -> bool:
    """Whether the equation is kept for its effect whatever its results are: a debug print or
    an io_callback, or a loop or branch whose body has one."""
    if eqn.primitive in jaxcompat.EFFECTFUL:
        return True
    bodies = [eqn.params.get("body"), eqn.params.get("cond"), *eqn.params.get("branches", ())]
    return any(isinstance(b, Graph) and any(effectful(e) for e in b.eqns) for b in bodies)


def eliminate_dead_code(graph: Graph) -> Graph:
    live = {id(a) for a in graph.outputs if isinstance(a, Var)}
    kept = []
    for eqn in reversed(graph.eqns):
        if any(id(o) in live for o in eqn.outputs) or effectful(eqn):
            kept.append(eqn)
            live.update(id(a) for a in eqn.inputs if isinstance(a, Var))
    consts = tuple((v, c) for v, c in graph.consts if id(v) in live)
    return Graph(graph.inputs, consts, tuple(reversed(kept)), graph.outputs)


def make_graph(fun, *, static_argnums=()):
    """Like jax.make_jaxpr: `fusejit.make_graph(f)(*args)` returns f's Graph (printable)."""
    def wrapped(*args, **kwargs):
        closed = jax.make_jaxpr(fun, static_argnums=static_argnums)(*args, **kwargs)
        return graph_from_jaxpr(closed)
    return wrapped
