"""Codegen of reduction kernels: the operand's producers fused into a block-per-row loop.

The reduced axes are flattened into one inner index `r` that the block's threads stride
over; each thread accumulates in a register, then `fj_block_reduce` combines the block.
Reductions of one input over the same axes share the kernel (one accumulator each).
"""
from __future__ import annotations

import numpy as np

from . import ops
from .indexing import Sym, aff, delinearize

# primitive -> (combine functor, identity kind)
COMBINE = {
    "reduce_sum": ("fj_op_sum", "zero"), "reduce_prod": ("fj_op_prod", "one"),
    "reduce_max": ("fj_op_max", "lowest"), "reduce_min": ("fj_op_min", "highest"),
    "reduce_and": ("fj_op_and", "ones"), "reduce_or": ("fj_op_or", "zero"),
    "reduce_xor": ("fj_op_xor", "zero"),
}


def accumulator_dtype(primitive: str, dtype: np.dtype) -> np.dtype:
    """The register type: float32 sums in float64 (README: accuracy); narrow ints and bools in
    32 bits (warp shuffles move 32 or 64 bits), unsigned where the result wraps."""
    dtype = np.dtype(dtype)
    if dtype == np.float32 and primitive == "reduce_sum":
        return np.dtype(np.float64)
    if dtype.kind == "b":
        return np.dtype(np.int32)
    if dtype.kind in "iu" and dtype.itemsize < 4:
        wraps = primitive in ("reduce_sum", "reduce_prod")
        return np.dtype(np.uint32 if wraps or dtype.kind == "u" else np.int32)
    return dtype


def identity(kind: str, out: np.dtype, acc: np.dtype) -> str:
    out = np.dtype(out)
    if kind == "zero":
        return ops.c_literal(0, acc)
    if kind == "one":
        return ops.c_literal(1, acc)
    if kind == "ones":
        return ops.c_literal(1 if out.kind == "b" else np.iinfo(acc).max if acc.kind == "u" else -1, acc)
    if out.kind == "f":
        return ops.c_literal(-np.inf if kind == "lowest" else np.inf, acc)
    if out.kind == "b":
        return ops.c_literal(0 if kind == "lowest" else 1, acc)
    info = np.iinfo(out)
    return ops.c_literal(info.min if kind == "lowest" else info.max, acc)


def render_arg(w, k, eqn, out, idx, init, shared, combine, stores):
    """argmax/argmin over one axis: a (value, index) accumulator pair."""
    is_max = eqn.primitive == "argmax"
    operand = eqn.inputs[0]
    val_dtype = np.dtype(np.int32) if operand.dtype.kind == "b" or (
        operand.dtype.kind in "iu" and operand.dtype.itemsize < 4) else operand.dtype
    val_t, idx_t = ops.ctype(val_dtype), ops.ctype(out.dtype)
    ident_v = identity("lowest" if is_max else "highest", operand.dtype, val_dtype)
    ident_i = ops.c_literal(np.iinfo(out.dtype).max, out.dtype)
    value = w.read(operand, idx)
    if val_dtype != operand.dtype:
        value = f"({val_t}){value}"
    flag = "true" if is_max else "false"
    w.body.append(f"fj_arg_combine<{flag}>(acc{k}, arg{k}, {value}, ({idx_t})r);  // {eqn.primitive}")
    init.append(f"{val_t} acc{k} = {ident_v};")
    init.append(f"{idx_t} arg{k} = {ident_i};")
    shared.append(f"__shared__ {val_t} smem{k}[32];")
    shared.append(f"__shared__ {idx_t} smem_arg{k}[32];")
    combine.append(f"fj_block_argreduce<{flag}>(acc{k}, arg{k}, ({val_t}){ident_v}, ({idx_t}){ident_i}, "
                   f"smem{k}, smem_arg{k});")
    stores.append(f"out{k}[i] = arg{k};")


def epilogue(w, spec, out_idx, results) -> list[str]:
    """Statements computing the kernel's epilogue outputs from the reduction results (thread 0,
    after the block reduction).  Names from the reduction loop are out of scope here."""
    body = w.body
    w.body = lines = []
    w.memo.clear()
    w.sym_names.clear()
    for var_id, name in results.items():
        w.memo[(var_id, tuple(out_idx))] = name
        w.variant.add(name)
    for k, out in enumerate(spec.outputs):
        if id(out) in spec.epilogue:
            lines.append(f"out{k}[i] = {w.read(out, out_idx)};")
    w.body = body
    return lines


def render_reduction(w, block: int):
    from .codegen import Param, RenderedKernel, fill_kernel, indent
    spec = w.spec
    w.var_by_id = {id(v): v for e in spec.eqns for v in e.outputs}
    rows = spec.size
    reduce_n = int(np.prod(spec.reduce_shape, dtype=np.int64))
    out_idx = delinearize(aff(Sym("loop", ("i",), 0, max(rows - 1, 0))), spec.shape)
    red_idx = delinearize(aff(Sym("loop", ("r",), 0, max(reduce_n - 1, 0))), spec.reduce_shape)
    init, shared, combine, stores = [], [], [], []
    results = {}
    for k, out in enumerate(spec.outputs):
        if id(out) in spec.epilogue:
            continue
        eqn, _ = w.producers[id(out)]
        operand = eqn.inputs[0]
        it_out, it_red = iter(out_idx), iter(red_idx)
        idx = tuple(next(it_red) if d in spec.reduce_axes else next(it_out) for d in range(operand.ndim))
        if eqn.primitive in ("argmax", "argmin"):
            render_arg(w, k, eqn, out, idx, init, shared, combine, stores)
            results[id(out)] = f"arg{k}"
            continue
        functor, ident_kind = COMBINE[eqn.primitive]
        acc_dtype = accumulator_dtype(eqn.primitive, out.dtype)
        acc_t = ops.ctype(acc_dtype)
        ident = identity(ident_kind, out.dtype, acc_dtype)
        value = w.read(operand, idx)
        if acc_dtype != out.dtype:
            value = f"({acc_t}){value}"
        w.body.append(f"acc{k} = {functor}()(acc{k}, {value});  // {eqn.primitive}")
        init.append(f"{acc_t} acc{k} = {ident};")
        shared.append(f"__shared__ {acc_t} smem{k}[32];")
        combine.append(f"acc{k} = fj_block_reduce(acc{k}, ({acc_t}){ident}, smem{k}, {functor}());")
        stores.append(f"const {ops.ctype(out.dtype)} res{k} = fj_convert<{ops.ctype(out.dtype)}>(acc{k});")
        stores.append(f"out{k}[i] = res{k};")
        results[id(out)] = f"res{k}"
    stores += epilogue(w, spec, out_idx, results)
    params = w.buffer_params() + [Param("scalar", "n", w.index_ctype, value=rows),
                                  Param("scalar", "reduce_n", w.index_ctype, value=reduce_n)]
    source = fill_kernel(
        w, "reduce.cu.in",
        f"{len(spec.outputs)} reduction(s) over axes {list(spec.reduce_axes)} of "
        f"{list(spec.outputs[0].shape)} rows x {reduce_n} elements, {w.loads} load(s) per element",
        block, params, shared=indent(shared, 1), init=indent(init, 2), body=indent(w.body, 3),
        combine=indent(combine, 2), stores=indent(stores, 3))
    return RenderedKernel(spec, source, tuple(params), w.index64, w.loads, len(spec.outputs), block)
