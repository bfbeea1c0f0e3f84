"""cse: one equation for each computation a graph spells more than once.

A jaxpr computes what the user's code asks for, as often as it asks: `(x.mean(), x.var())`
sums x twice (jnp.var takes its own mean), and `jnp.where(c, f(x), g(f(x)))` computes f(x)
twice.  The kernels would compute each copy (two accumulators of one row, two passes of an
exp), so `eliminate_common_subexpressions` keeps the first of equations that have the same
primitive, parameters and inputs, and reads its results wherever a later copy's were read.

Equations kept for an effect (a debug print, an io_callback, a loop or branch holding one)
are never merged: each runs.  Parameters compare by value when they are plain data (numbers,
strings, dtypes, tuples of them) and by identity otherwise (a loop body, a function).
"""
from __future__ import annotations

import numpy as np

from .ir import Eqn, Graph, Literal, Var
from .trace import effectful


def _frozen(value):
    """A hashable stand-in for a parameter value, equal only for equal values."""
    if value is None or isinstance(value, (bool, int, float, str, complex)):
        return (type(value).__name__, repr(value))  # repr: -0.0 and 0.0 stay apart
    if isinstance(value, np.dtype):
        return ("dtype", value.str)
    if isinstance(value, (np.generic,)):
        return ("scalar", value.dtype.str, repr(value.item()))
    if isinstance(value, (tuple, list)):
        return (type(value).__name__, tuple(_frozen(v) for v in value))
    if isinstance(value, dict):
        return ("dict", tuple(sorted((repr(k), _frozen(v)) for k, v in value.items())))
    if isinstance(value, type):
        return ("type", value.__module__, value.__qualname__)
    return ("object", id(value))  # a Graph, a function, an enum member: the same object only


def _atom_key(atom, replaced: dict):
    if isinstance(atom, Literal):
        return ("literal", np.dtype(atom.dtype).str, repr(np.asarray(atom.value).item()))
    return ("var", id(replaced.get(id(atom), atom)))


def eliminate_common_subexpressions(graph: Graph) -> Graph:
    """The graph with each repeated equation (same primitive, parameters and inputs, after
    earlier repeats are replaced) removed and its results read from the first one's."""
    replaced: dict[int, Var] = {}
    first: dict[tuple, Eqn] = {}
    eqns = []

    def read(atom):
        return replaced.get(id(atom), atom) if isinstance(atom, Var) else atom

    for eqn in graph.eqns:
        inputs = tuple(read(a) for a in eqn.inputs)
        if inputs != eqn.inputs:
            eqn = Eqn(eqn.primitive, inputs, eqn.outputs, eqn.params, eqn.source)
        if effectful(eqn):
            eqns.append(eqn)
            continue
        key = (eqn.primitive, _frozen(eqn.params), tuple(_atom_key(a, replaced) for a in inputs),
               tuple((v.shape, np.dtype(v.dtype).str, v.weak_type) for v in eqn.outputs))
        earlier = first.get(key)
        if earlier is None:
            first[key] = eqn
            eqns.append(eqn)
            continue
        for mine, theirs in zip(eqn.outputs, earlier.outputs):
            replaced[id(mine)] = theirs
    if not replaced:
        return graph
    return Graph(graph.inputs, graph.consts, tuple(eqns), tuple(read(a) for a in graph.outputs))
