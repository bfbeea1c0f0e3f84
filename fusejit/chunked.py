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
SOURCES = ("slice", "broadcast_in_dim")  # of a whole value: a view, whose rows blocks read


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
        if not reads_block:
            # Run once on whole values; a slice or broadcast of the common shape is a view,
            # which blocks then read a block of rows of, as they read the inputs.
            invariant.append(eqn)
            if eqn.primitive in SOURCES and out_shapes == {shape}:
                blocked.update(eqn.outputs)
        elif eqn.primitive in MAPS and out_shapes == {shape} and \
                all(isinstance(a, Literal) or a in blocked or same_for_every_row(a, shape) for a in eqn.inputs):
            per_block.append(eqn)
            blocked.update(eqn.outputs)
        else:
            return None
    for a in graph.outputs:
        if isinstance(a, Var) and a.size > 1 and a not in blocked:
            return None
    return MapPlan(shape, tuple(invariant), tuple(per_block), frozenset(blocked))


def _block_eqn(eqn: Eqn, rows: int) -> Eqn:
    """The equation with results of `rows` rows (what the interpreter's rules allocate)."""
    outs = tuple(Var((rows,) + tuple(v.shape[1:]), v.dtype, v.weak_type) for v in eqn.outputs)
    return Eqn(eqn.primitive, eqn.inputs, outs, eqn.params, eqn.source)


def _library_loops(p: MapPlan, lib) -> list:
    """Per equation of a block, its elementwise library loop (called directly), or None for
    those that go through their rule (select_n, clamp, integer_pow, copies)."""
    return [lib.function(interpret.row_of(e))
            if interpret.INTERPRET.get(e.primitive) is interpret.elementwise and not interpret.is_retype(e) else None
            for e in p.per_block]


def run(p: MapPlan, graph: Graph, lib, args, stop=None) -> list[np.ndarray]:
    """The graph's results, computed a block of rows at a time (see the module's doc)."""
    whole = interpret.bind_inputs(graph, args)
    given = list(whole.values())
    for eqn in p.invariant:
        interpret.evaluate(lib, eqn, whole)
    outs = {a: pool.empty(a.shape, np.dtype(a.dtype)) for a in graph.outputs if isinstance(a, Var) and a in p.blocked}
    loops = _library_loops(p, lib)
    sliced = [v for v in whole if v in p.blocked]
    step = p.rows_per_block()
    # Each equation's result and each operand it copies (a broadcast, a strided slice) get a
    # buffer of one block, reused by every block: a fresh one per block would be fresh pages.
    scratch: dict = {}

    def buffer(key, rows, dtype):
        if key not in scratch:
            scratch[key] = np.empty((step,) + tuple(p.shape[1:]), dtype)
        return scratch[key][:rows]

    eqns_of: dict = {}
    for r0 in range(0, p.shape[0], step):
        if stop is not None and stop(r0 / p.shape[0]):
            raise interpret.Stopped
        r1 = min(r0 + step, p.shape[0])
        rows = r1 - r0
        if rows not in eqns_of:
            eqns_of[rows] = [_block_eqn(e, rows) for e in p.per_block]
        env = dict(whole)
        env.update((v, whole[v][r0:r1]) for v in sliced)
        for k, (fn, eqn, block_eqn) in enumerate(zip(loops, p.per_block, eqns_of[rows])):
            args_ = [interpret.read(a, env) for a in eqn.inputs]
            if fn is None:  # the rule, with results of the block's rows
                env.update(zip(eqn.outputs, interpret.INTERPRET[eqn.primitive](lib, block_eqn, args_)))
                continue
            var, shape = eqn.outputs[0], block_eqn.outputs[0].shape
            operands = []
            for j, a in enumerate(args_):
                if a.size != 1 and (a.shape != shape or not a.flags.c_contiguous):
                    a = buffer((k, j), rows, a.dtype)
                    np.copyto(a, args_[j])
                operands.append(a)
            # The loop writes straight into the result's rows when it is one.
            out = outs[var][r0:r1] if var in outs else buffer(k, rows, var.dtype)
            env[var] = lib.call(fn, [np.ascontiguousarray(a.reshape(-1)) if a.size == 1 else a for a in operands], out)
        for var, out in outs.items():
            if not np.may_share_memory(env[var], out):
                np.copyto(out[r0:r1], env[var])
    launch.counter["interpreted"] += 1
    return interpret.results(graph, {**whole, **outs}, given)
