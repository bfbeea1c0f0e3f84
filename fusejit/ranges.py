"""ranges: facts about values' signs that let a kernel call a cheaper exact function.

A softmax, and every function written like one, exponentiates `x - max(x)` over the axes
the max reduced: each element minus the largest of its row, never above zero (x <= max(x)
exactly, and the difference of two floats keeps the sign of the exact difference; NaN where
x has one, or where an infinite max meets itself).  `exp` of such a value cannot overflow,
so `mark_nonpositive_exps` marks its equation (`nonpositive=True` in its params) and the
host's code calls `fj_exp_nonpositive`, which skips fj_exp's overflow clamp and its choice
between two scalings: the same results bit for bit (checked over every float at or below
zero, and NaN), a third fewer instructions.  CUDA's prelude maps both names to expf.

The proof is structural: the exponent is `sub(a, m)` where m is `reduce_max(a)` (the same
array) brought back to a's shape by broadcast_in_dim equations that put each row's max
back on the row's elements, optionally through `max(-inf, .)` (jax.nn.softmax's guard).
Anything else (jax.nn.logsumexp, which swaps an infinite max for 0, a max of another array,
a max broadcast along other axes) is left alone.
"""
from __future__ import annotations

import numpy as np

from .ir import Eqn, Graph, Literal, Var


def _row_max_of(value, a: Var, producers: dict) -> bool:
    """Whether `value` holds, at each element of a's shape (after the subtraction's implicit
    broadcast of size-1 axes), the max of a over the row that element belongs to."""
    links = []
    while isinstance(value, Var) and id(value) in producers:
        eqn = producers[id(value)]
        if eqn.primitive == "max" and any(_is_negative_infinity(x) for x in eqn.inputs):
            value = next(x for x in eqn.inputs if not _is_negative_infinity(x))
            continue
        if eqn.primitive == "broadcast_in_dim":
            links.append(eqn)
            value = eqn.inputs[0]
            continue
        if eqn.primitive == "reduce_max" and eqn.inputs[0] is a:
            return _brings_back(eqn, list(reversed(links)), a)
        return False
    return False


def _is_negative_infinity(atom) -> bool:
    return isinstance(atom, Literal) and bool(np.isneginf(np.asarray(atom.value)))


def _brings_back(reduction: Eqn, links: list, a: Var) -> bool:
    """The broadcasts from the reduction's result to a's shape keep each kept axis in place."""
    axes = tuple(int(d) for d in reduction.params["axes"])
    kept = tuple(d for d in range(a.ndim) if d not in axes)
    if not links:  # the max of the whole array, a scalar the subtraction stretches
        return kept == ()
    first, rest = links[0], links[1:]
    if tuple(first.params["broadcast_dimensions"]) != kept or first.outputs[0].ndim != a.ndim:
        return False
    shape = first.outputs[0].shape  # each kept axis as a's, each reduced one 1 or stretched to a's
    if not all(shape[d] == a.shape[d] or (d in axes and shape[d] == 1) for d in range(a.ndim)):
        return False
    for eqn in rest:  # further broadcasts along axes of size 1 only
        if tuple(eqn.params["broadcast_dimensions"]) != tuple(range(a.ndim)):
            return False
        if any(s not in (1, t) for s, t in zip(eqn.inputs[0].shape, a.shape)) or eqn.outputs[0].ndim != a.ndim:
            return False
    return True


def _nonpositive(value, producers: dict) -> bool:
    """Whether `value` is `a - (a's max over its row)` (see the module's doc), or that rounded
    to a half type (fusejit/halves.py: to nearest, which keeps a value at or below zero so)."""
    eqn = producers.get(id(value)) if isinstance(value, Var) else None
    if eqn is not None and eqn.primitive == "round_to_half":
        eqn = producers.get(id(eqn.inputs[0])) if isinstance(eqn.inputs[0], Var) else None
    if eqn is None or eqn.primitive != "sub":
        return False
    a, m = eqn.inputs
    if not isinstance(a, Var) or eqn.outputs[0].shape != a.shape or not np.issubdtype(np.dtype(a.dtype), np.floating):
        return False
    return _row_max_of(m, a, producers)


def mark_nonpositive_exps(graph: Graph) -> Graph:
    """`graph` with every exp of a provably non-positive value marked `nonpositive=True`."""
    producers = {id(o): e for e in graph.eqns for o in e.outputs}
    eqns, changed = [], False
    for eqn in graph.eqns:
        if eqn.primitive == "exp" and not eqn.params.get("nonpositive") and _nonpositive(eqn.inputs[0], producers):
            eqn = Eqn(eqn.primitive, eqn.inputs, eqn.outputs, {**eqn.params, "nonpositive": True}, eqn.source)
            changed = True
        eqns.append(eqn)
    return Graph(graph.inputs, graph.consts, tuple(eqns), graph.outputs) if changed else graph
