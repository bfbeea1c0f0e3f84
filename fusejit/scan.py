"""Codegen of cumulative ops (cumsum, cumprod, cummax, cummin, cumlogsumexp).

A row is every element along the scanned axis for one position of the other axes.  One
block per row: a chunked two-pass scan (kernels/scan.cu.in).  The operand's producers are
fused, and computed in both passes, so the input is read twice.
"""
from __future__ import annotations

from . import ops
from .indexing import Sym, aff, delinearize, linearize
from .launch import Layout
from .accumulators import accumulator_dtype, identity

COMBINE = {
    "cumsum": ("fj_op_sum", "zero", "reduce_sum"), "cumprod": ("fj_op_prod", "one", "reduce_prod"),
    "cummax": ("fj_op_max", "lowest", "reduce_max"), "cummin": ("fj_op_min", "highest", "reduce_min"),
    "cumlogsumexp": ("fj_op_logaddexp", "lowest", "reduce_max"),
}


def render_scan(w, block: int):
    from .codegen import Param, RenderedKernel, fill_kernel, indent
    spec = w.spec
    w.var_by_id = {id(v): v for e in spec.eqns for v in e.outputs}
    (axis,), (scan_n,) = spec.reduce_axes, spec.reduce_shape
    row_shape = spec.shape[:axis] + spec.shape[axis + 1:]
    rows = spec.size // max(scan_n, 1)
    row_idx = list(delinearize(aff(Sym("loop", ("i",), 0, max(rows - 1, 0))), row_shape))
    r = aff(Sym("loop", ("r",), 0, max(scan_n - 1, 0)))
    position = (scan_n - 1) - r if spec.scan_reverse else r
    idx = tuple(row_idx[:axis] + [position] + row_idx[axis:])
    address = w.index(linearize(idx, spec.shape))
    shared, init, accumulate, publish, exclusive, resume, rescan = [], [], [], [], [], [], []
    for k, out in enumerate(spec.outputs):
        eqn, _ = w.producers[id(out)]
        functor, ident_kind, like = COMBINE[eqn.primitive]
        acc_dtype = accumulator_dtype(like, out.dtype)
        acc_t, out_t = ops.ctype(acc_dtype), ops.ctype(out.dtype)
        ident = identity(ident_kind, out.dtype, acc_dtype)
        value = w.read(eqn.inputs[0], idx)
        if acc_dtype != out.dtype:
            value = f"({acc_t}){value}"
        shared.append(f"__shared__ {acc_t} totals{k}[{block}];")
        init.append(f"{acc_t} acc{k} = {ident};")
        accumulate.append(f"acc{k} = {functor}()(acc{k}, {value});  // {eqn.primitive}")
        publish.append(f"totals{k}[threadIdx.x] = acc{k};")
        exclusive += [f"{acc_t} prefix{k} = {ident};",
                      "for (unsigned t = 0; t < blockDim.x; ++t) {",
                      f"  const {acc_t} chunk_total = totals{k}[t];",
                      f"  totals{k}[t] = prefix{k};",
                      f"  prefix{k} = {functor}()(prefix{k}, chunk_total);",
                      "}"]
        resume.append(f"acc{k} = totals{k}[threadIdx.x];")
        rescan += [f"acc{k} = {functor}()(acc{k}, {value});  // {eqn.primitive}",
                   f"out{k}[{address}] = fj_convert<{out_t}>(acc{k});"]
    params = w.buffer_params() + [Param("scalar", "n", w.index_ctype, value=rows),
                                  Param("scalar", "scan_n", w.index_ctype, value=scan_n)]
    source = fill_kernel(
        w, "scan.cu.in",
        f"{len(spec.outputs)} scan(s) along axis {axis}{' (reversed)' if spec.scan_reverse else ''} "
        f"of {list(spec.shape)}: {rows} row(s) of {scan_n}",
        block, params, shared=indent(shared, 1), init=indent(init, 2), body=indent(w.body, 3),
        accumulate=indent(accumulate, 3), publish=indent(publish, 2), exclusive=indent(exclusive, 3),
        resume=indent(resume, 2), rescan=indent(rescan, 3))
    return RenderedKernel(spec, source, tuple(params), w.index64, 2 * w.loads, len(spec.outputs), block,
                          Layout("scan", rows, scan_n))
