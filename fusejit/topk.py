"""Codegen of lax.top_k: the k largest of every row along one axis, and their places.

One thread per row (kernels/top_k.cu.in) reads the row once, computing the operand's fused
producers element by element, and keeps the k largest so far sorted by their total-order
keys: an element that does not rank above the k-th costs one comparison (on the host, a
vectorised loop ranks 16 elements at a time against the k-th, and only a chunk with one
above it is inserted element by element).  Values are stored from their keys
(fj_total_value), so NaN payloads and the sign of zero come out as they went in.  A large k
is better served by a sort: fusion leaves top_k with k above MAX_TOP_K to the library
(indexops.top_k).
"""
from __future__ import annotations

import math

from . import ops
from .indexing import Sym, aff, delinearize, linearize
from .launch import Layout

MAX_TOP_K = 64  # a larger k runs as a library call: each insertion moves up to k places


def render_top_k(w, block: int):
    from .codegen import Param, RenderedKernel, fill_kernel, indent
    spec = w.spec
    w.var_by_id = {id(v): v for e in spec.eqns for v in e.outputs}
    (axis,), (row_n,) = spec.reduce_axes, spec.reduce_shape
    eqn, _ = w.producers[id(spec.outputs[0])]
    operand = eqn.inputs[0]
    k = int(eqn.params["k"])
    row_shape = operand.shape[:axis] + operand.shape[axis + 1:]
    rows = math.prod(row_shape)

    at = list(delinearize(aff(Sym("loop", ("i",), 0, max(rows - 1, 0))), row_shape))  # the row's position
    r = aff(Sym("loop", ("r",), 0, max(row_n - 1, 0)))
    value = w.read(operand, tuple(at[:axis] + [r] + at[axis:]))
    body, w.body = w.body, []
    w.new_scope()  # the stores' loop sees nothing of the row loop's statements
    w.variant.add("j")
    j = aff(Sym("loop", ("j",), 0, max(k - 1, 0)))
    out_idx = tuple(at[:axis] + [j] + at[axis:])
    value_t = ops.ctype(operand.dtype)
    stores = []
    for m, out in enumerate(spec.outputs):
        _, pos = w.producers[id(out)]
        address = w.index(linearize(out_idx, out.shape))
        result = f"fj_total_value(keys[j], ({value_t})0)" if pos == 0 else "places[j]"
        stores.append(f"out{m}[{address}] = {result};  // {'values' if pos == 0 else 'indices'}")
    stores = w.body + stores
    params = w.buffer_params() + [Param("scalar", "n", w.index_ctype, value=rows),
                                  Param("scalar", "row_n", w.index_ctype, value=row_n)]
    source = fill_kernel(
        w, "top_k.cu.in", f"top {k} of {rows} row(s) of {row_n} along axis {axis} of {list(operand.shape)}",
        block, params, value_type=value_t, value=value, k=k, chunk_body=indent(body, 4), body=indent(body, 3),
        stores=indent(stores, 3))
    return RenderedKernel(spec, source, tuple(params), w.index64, w.loads, len(spec.outputs), block,
                          Layout("rows", rows, row_n, block))
