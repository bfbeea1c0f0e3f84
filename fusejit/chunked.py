"""The interpreter on map graphs, a block of rows at a time.

A graph whose results are computed element by element (elementwise equations over inputs,
slices and broadcasts of inputs, and values that do not depend on any element) runs its
equations on CHUNK_ELEMENTS elements at a time: rows [r0, r1) of the common shape, every
value of the block staying in the caches, where the whole-array interpreter writes and
reads each value in full through memory.  The elementwise library computes each element
exactly as in the whole-array interpreter, so the results are the same bits.

`plan(graph)` says whether a graph is such a map (a MapPlan) or not (None); `run` runs it.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from . import interpret, launch
from .backends.pool import pool
from .ir import Eqn, Graph, Literal, Var

CHUNK_ELEMENTS = 1 << 17
# Equations that compute each element of their result from the same element of their operands.
MAPS = set(interpret.INTERPRET) - set(interpret.SHAPES) - set(interpret.REDUCTIONS) - \
    {p for p, rule in interpret.INTERPRET.items() if rule is interpret.library_call} - {"bitcast_convert_type"}
SOURCES = ("slice", "broadcast_in_dim")  # of a whole value: a block of rows is a view of it


@dataclasses.dataclass(frozen=True, eq=False)
class MapPlan:
    shape: tuple            # the common shape whose rows are split into blocks
    invariant: tuple        # equations of no block: run once, on whole values
    per_block: tuple        # equations run on every block, in order
    blocked: frozenset      # the values computed (or read) a block at a time

    def rows_per_block(self) -> int:
        row = int(np.prod(self.shape[1:], dtype=np.int64)) or 1
        return max(1, CHUNK_ELEMENTS // row)


def same_for_every_row(a: Var, shape) -> bool:
    """A value (of no block) that an elementwise equation over `shape` broadcasts along the
    rows: one element, or one row (lax broadcasts dimensions of size 1)."""
    return a.size == 1 or (len(a.shape) == len(shape) and a.shape[0] == 1
                           and all(d in (1, n) for d, n in zip(a.shape[1:], shape[1:])))


def plan(graph: Graph) -> MapPlan | None:
    """The graph as a map over the rows of one shape, or None where it is not one (a reduction
    or a shape change of a computed value, results of other shapes, or nothing to split)."""
    shapes = {tuple(a.shape) for a in graph.outputs if isinstance(a, Var) and a.size > 1}
    if len(shapes) != 1:
        return None
    shape = shapes.pop()
    if not shape or shape[0] < 2 or not interpret.interpretable(graph):
        return None
    blocked = {v for v in graph.inputs if tuple(v.shape) == shape} | \
              {v for v, _ in graph.consts if tuple(v.shape) == shape}
    invariant, per_block = [], []
    for eqn in graph.eqns:
        reads_block = any(isinstance(a, Var) and a in blocked for a in eqn.inputs)
        out_shapes = {tuple(v.shape) for v in eqn.outputs}
        if eqn.primitive in SOURCES and not reads_block and out_shapes == {shape}:
            per_block.append(eqn)
        elif not reads_block:
            invariant.append(eqn)
            continue
        elif eqn.primitive in MAPS and out_shapes == {shape} and \
                all(isinstance(a, Literal) or a in blocked or same_for_every_row(a, shape) for a in eqn.inputs):
            per_block.append(eqn)
        else:
            return None
        blocked.update(eqn.outputs)
    for a in graph.outputs:
        if isinstance(a, Var) and a.size > 1 and a not in blocked:
            return None
    return MapPlan(shape, tuple(invariant), tuple(per_block), frozenset(blocked))


def _block_eqn(eqn: Eqn, rows: int) -> Eqn:
    """The equation with results of `rows` rows (what the interpreter's rules allocate)."""
    outs = tuple(Var((rows,) + tuple(v.shape[1:]), v.dtype, v.weak_type) for v in eqn.outputs)
    return Eqn(eqn.primitive, eqn.inputs, outs, eqn.params, eqn.source)


def _source(eqn: Eqn, whole, r0: int, r1: int, shape):
    """Rows [r0, r1) of a slice or broadcast of a whole value: a view."""
    x = np.asarray(whole)
    if eqn.primitive == "slice":
        p = eqn.params
        strides = p.get("strides") or (1,) * x.ndim
        starts = [int(s) for s in p["start_indices"]]
        index = [slice(starts[0] + r0 * int(strides[0]), starts[0] + r1 * int(strides[0]), int(strides[0]))]
        index += [slice(s, int(e), int(st)) for s, e, st in zip(starts[1:], p["limit_indices"][1:], strides[1:])]
        return x[tuple(index)]
    dims = eqn.params["broadcast_dimensions"]
    target = [1] * len(shape)
    for k, d in enumerate(dims):
        target[d] = x.shape[k]
    return np.broadcast_to(x.reshape(target), shape)[r0:r1]


def _prepare(p: MapPlan, lib) -> list:
    """Per equation of a block: (library loop or None, the equation).  Elementwise equations
    call their loop directly; the others (select_n, clamp, integer_pow, copies) their rule."""
    steps = []
    for eqn in p.per_block:
        fn = None
        if interpret.INTERPRET.get(eqn.primitive) is interpret.elementwise and not interpret.is_retype(eqn):
            fn = lib.function(interpret.row_of(eqn))
        steps.append((fn, eqn))
    return steps


def run(p: MapPlan, graph: Graph, lib, args, stop=None) -> list[np.ndarray]:
    """The graph's results, computed a block of rows at a time (see the module's doc)."""
    whole: dict = {}

    def read(atom, env):
        if isinstance(atom, Literal):
            return np.asarray(atom.value, atom.dtype)
        return env[atom] if atom in env else whole[atom]

    for var, value in graph.consts:
        whole[var] = np.asarray(value)
    for var, value in zip(graph.inputs, args):
        whole[var] = np.asarray(value, var.dtype)
    given = list(whole.values())
    for eqn in p.invariant:
        for var, value in zip(eqn.outputs, interpret.INTERPRET[eqn.primitive](lib, eqn, [read(a, {}) for a in eqn.inputs])):
            whole[var] = value
    outs = {a: pool.empty(a.shape, np.dtype(a.dtype)) for a in graph.outputs if isinstance(a, Var) and a in p.blocked}
    steps = _prepare(p, lib)
    inputs = [v for v in whole if v in p.blocked]
    step = p.rows_per_block()
    eqns_of: dict = {}
    for r0 in range(0, p.shape[0], step):
        if stop is not None and stop():
            raise interpret.Stopped
        r1 = min(r0 + step, p.shape[0])
        if r1 - r0 not in eqns_of:
            eqns_of[r1 - r0] = [_block_eqn(e, r1 - r0) for e in p.per_block]
        env = {v: whole[v][r0:r1] for v in inputs}
        for (fn, eqn), block_eqn in zip(steps, eqns_of[r1 - r0]):
            if eqn.primitive in SOURCES:
                env[eqn.outputs[0]] = _source(eqn, read(eqn.inputs[0], {}), r0, r1, p.shape)
            elif fn is not None:  # straight into the result's rows when it is one
                out_var = eqn.outputs[0]
                out = outs[out_var][r0:r1] if out_var in outs else np.empty(block_eqn.outputs[0].shape, out_var.dtype)
                operands = [interpret.dense(read(a, env), out.shape) for a in eqn.inputs]
                env[out_var] = lib.call(fn, operands, out)
            else:
                results = interpret.INTERPRET[eqn.primitive](lib, block_eqn, [read(a, env) for a in eqn.inputs])
                for var, value in zip(eqn.outputs, results):
                    env[var] = value
        for var, out in outs.items():
            if env[var] is not out and not np.may_share_memory(env[var], out):
                np.copyto(out[r0:r1], env[var])
    launch.counter["interpreted"] += 1
    results = []
    for atom in graph.outputs:
        value = outs[atom] if atom in outs else np.asarray(read(atom, {}))
        if (value.shape != atom.shape or value.dtype != atom.dtype or not value.flags.c_contiguous
                or any(value is r for r in results) or any(np.may_share_memory(value, x) for x in given)):
            value = np.array(np.broadcast_to(value, atom.shape), dtype=atom.dtype, order="C", copy=True)
        results.append(value)
    return results
