"""The library layer's evaluator for the tests (tests/test_library.py, test_library_linalg.py):
a jnp/lax function traced with jax.make_jaxpr and evaluated with each primitive that has a
LIBRARY row computed by its rule (host_lib(), NumPy inputs, the equation's own params) and
every other primitive by JAX, every rule's output contract (count, shape, dtype,
C-contiguity) asserted on the way; the result diffed against jax.jit of the same function."""
from __future__ import annotations

import collections

import jax
import numpy as np
from jax.extend import core as jcore

from fusejit import library
from fusejit.check import diff_arrays


def _read(env, v):
    if isinstance(v, jcore.Literal):
        return np.asarray(v.val, dtype=v.aval.dtype)
    return env[v]


def _library_eqn(lib, eqn, ins):
    name = eqn.primitive.name
    out_avals = [(v.aval.shape, v.aval.dtype) for v in eqn.outvars]
    arrays = [lib.xp.asarray(np.asarray(x, order="C")) for x in ins]
    assert [(a.shape, a.dtype) for a in arrays] == [(v.aval.shape, v.aval.dtype) for v in eqn.invars]
    assert all(a.flags.c_contiguous for a in arrays)
    outs = library.call(name, lib, eqn.params, out_avals, *arrays)
    assert isinstance(outs, list) and len(outs) == len(out_avals), f"{name}: {len(outs)} outputs for {len(out_avals)}"
    for i, (o, (shape, dtype)) in enumerate(zip(outs, out_avals)):
        assert isinstance(o, lib.xp.ndarray), f"{name} output {i} is a {type(o)}"
        assert o.shape == tuple(shape) and o.dtype == dtype, \
            f"{name} output {i} is {o.dtype}{list(o.shape)}; the equation says {np.dtype(dtype)}{list(shape)}"
        assert o.flags.c_contiguous, f"{name} output {i} is not C-contiguous"
    return [o if lib.name == "numpy" else o.get() for o in outs]


def evaluate(closed, args, used, lib):
    jaxpr = closed.jaxpr
    env = dict(zip(jaxpr.constvars, closed.consts))
    env.update(zip(jaxpr.invars, args))
    for eqn in jaxpr.eqns:
        ins = [_read(env, v) for v in eqn.invars]
        name = eqn.primitive.name
        if name in library.LIBRARY:
            outs = _library_eqn(lib, eqn, ins)
            used[name] += 1
        elif name in ("jit", "pjit"):
            outs = evaluate(eqn.params["jaxpr"], ins, used, lib)
        elif name == "custom_jvp_call":
            outs = evaluate(eqn.params["call_jaxpr"], ins, used, lib)
        elif name == "custom_linear_solve":
            # The forward value: the `solve` jaxpr applied to its constants and the right-hand side.
            n = eqn.params["const_lengths"]
            start = n.matvec + n.vecmat
            outs = evaluate(eqn.params["jaxprs"].solve, [*ins[start:start + n.solve], *ins[sum(n):]], used, lib)
        else:
            out = eqn.primitive.bind(*ins, **eqn.params)
            outs = out if eqn.primitive.multiple_results else [out]
        env.update(zip(eqn.outvars, outs))
    return [np.asarray(_read(env, v)) for v in jaxpr.outvars]


def run_with_library(f, *args, lib=None):
    """f's outputs computed with the library rules, and a Counter of the rules that ran."""
    used = collections.Counter()
    outs = evaluate(jax.make_jaxpr(f)(*args), jax.tree_util.tree_leaves(args), used, lib or library.host_lib())
    return outs, used


def check(f, *args, expect, compare=None, lib=None, rtol=None, atol=None):
    """Assert that f with the library rules equals jax.jit(f) and that every primitive in
    `expect` went through the library; compare(want, got) replaces the plain diff. Returns
    (want, got) as lists of NumPy arrays."""
    got, used = run_with_library(f, *args, lib=lib)
    missing = set(expect) - set(used)
    assert not missing, f"{missing} never reached the library (it ran: {dict(used)})"
    want = [np.asarray(w) for w in jax.tree_util.tree_leaves(jax.jit(f)(*args))]
    assert len(want) == len(got)
    if compare is not None:
        compare(want, got)
    else:
        for i, (w, g) in enumerate(zip(want, got)):
            report = diff_arrays(f"out[{i}]", w, g, rtol=rtol, atol=atol)
            assert report.ok, f"output {i} differs from jax.jit:\n{report}"
    return want, got
