"""Codegen's rule table: primitive -> rule(writer, eqn, output position, index) -> the name of
a C temporary holding the output's element at the symbolic `index` (fusejit/codegen.py's
KernelWriter.read calls them).  Elementwise primitives read their operands at the same index
and emit one statement from the table in `ops.py`; shape primitives (broadcasts, reshapes,
slices, pads, concatenations, gathers, dynamic slices) map the index and read their operand,
with a select where an element comes from one of several pieces or from a fill value.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from . import indexvalues, ops
from .errors import UnsupportedError
from .indexing import Affine, aff, clamp, delin, delinearize, linearize, runtime_value
from .templates import paren
from .windowmaps import WINDOW_REDUCTIONS, reduce_window_rule

if TYPE_CHECKING:
    from .codegen import KernelWriter


def operand_index(a, out, idx) -> tuple:
    """An elementwise operand's index at the output's `idx`: a 0-d operand is read at (), and
    a dimension of size 1 where the output's is larger broadcasts (lax allows both)."""
    if not a.ndim:
        return ()
    return tuple(aff(0) if n == 1 and m != 1 else e for n, m, e in zip(a.shape, out.shape, idx))


def elementwise_rule(w: KernelWriter, eqn, pos, idx) -> str:
    out = eqn.outputs[0]
    args = [w.read(a, operand_index(a, out, idx)) for a in eqn.inputs]
    decided, form = indexvalues.evaluate(w, eqn, args)
    if decided is not None:
        return indexvalues.note(w, decided, form)
    expr = ops.ELEMENTWISE[eqn.primitive](args, [a.dtype for a in eqn.inputs], out.dtype, eqn.params)
    invariant = w.is_invariant(*args)
    return indexvalues.note(w, w.emit("v", ops.ctype(out.dtype), expr, eqn.primitive, invariant=invariant,
                                      row_level=not invariant and w.is_row_level(*args)), form)


def integer_pow_rule(w: KernelWriter, eqn, pos, idx) -> str:
    """x ** y for a static integer y, by squaring, in the order JAX lowers it."""
    out = eqn.outputs[0]
    x = w.read(eqn.inputs[0], idx)
    y = int(eqn.params["y"])
    t = ops.ctype(out.dtype)
    inv = w.is_invariant(x)
    mul = (lambda a, b: f"{a} * {b}") if ops.is_float(out.dtype) else (lambda a, b: f"fj_mul({a}, {b})")
    if y == 0:
        return ops.c_literal(1, out.dtype)
    reciprocal, y = y < 0, abs(y)
    acc = None
    while y > 0:
        if y & 1:
            acc = x if acc is None else w.emit("v", t, mul(acc, x), "integer_pow", inv)
        y >>= 1
        if y > 0:
            x = w.emit("v", t, mul(x, x), "integer_pow", inv)
    if reciprocal:
        one = ops.c_literal(1, out.dtype)
        div = f"{one} / {acc}" if ops.is_float(out.dtype) else f"fj_div({one}, {acc})"
        acc = w.emit("v", t, div, "integer_pow", inv)
    return acc


def broadcast_in_dim_rule(w, eqn, pos, idx):
    op = eqn.inputs[0]
    dims = eqn.params["broadcast_dimensions"]
    return w.read(op, tuple(aff(0) if op.shape[k] == 1 else idx[dims[k]] for k in range(op.ndim)))


def reshape_rule(w, eqn, pos, idx):
    op, out = eqn.inputs[0], eqn.outputs[0]
    if eqn.params.get("dimensions") is not None:
        raise UnsupportedError("reshape with a 'dimensions' permutation is not supported",
                               primitive="reshape", source=eqn.source)
    if op.size == 0:
        return w.read(op, idx)  # never reached at run time: the kernel has no elements
    return w.read(op, delinearize(linearize(idx, out.shape), op.shape))


def squeeze_rule(w, eqn, pos, idx):
    op = eqn.inputs[0]
    dims = {d % op.ndim for d in eqn.params["dimensions"]}
    it = iter(idx)
    return w.read(op, tuple(aff(0) if k in dims else next(it) for k in range(op.ndim)))


def expand_dims_rule(w, eqn, pos, idx):
    out = eqn.outputs[0]
    dims = {d % out.ndim for d in eqn.params["dimensions"]}
    return w.read(eqn.inputs[0], tuple(e for k, e in enumerate(idx) if k not in dims))


def slice_rule(w, eqn, pos, idx):
    starts = eqn.params["start_indices"]
    strides = eqn.params.get("strides") or (1,) * len(starts)
    return w.read(eqn.inputs[0], tuple(e * int(st) + int(s0) for e, st, s0 in zip(idx, strides, starts)))


def rev_rule(w, eqn, pos, idx):
    op = eqn.inputs[0]
    dims = set(eqn.params["dimensions"])
    return w.read(op, tuple((op.shape[k] - 1) - e if k in dims else e for k, e in enumerate(idx)))


def transpose_rule(w, eqn, pos, idx):
    perm = eqn.params["permutation"]
    src = [None] * len(perm)
    for k, p in enumerate(perm):
        src[p] = idx[k]
    return w.read(eqn.inputs[0], tuple(src))


def tile_rule(w, eqn, pos, idx):
    op = eqn.inputs[0]
    return w.read(op, tuple(delin(e, 1, d) for e, d in zip(idx, op.shape)))


def split_rule(w, eqn, pos, idx):
    axis = eqn.params["axis"]
    offset = sum(int(s) for s in eqn.params["sizes"][:pos])
    return w.read(eqn.inputs[0], tuple(e + offset if k == axis else e for k, e in enumerate(idx)))


def iota_rule(w, eqn, pos, idx):
    out = eqn.outputs[0]
    e = idx[eqn.params["dimension"]]
    t = ops.ctype(out.dtype)
    form = e if indexvalues.fits(e, out.dtype) else None
    if e.is_const:
        return indexvalues.note(w, ops.c_literal(e.const, out.dtype), form)
    return indexvalues.note(w, w.emit("v", t, f"({t}){w.index(e)}", "iota"), form)


def select_piece(w, e, pieces, out_dtype, primitive) -> str:
    """The value of the piece (start, end, read) whose [start, end) holds index e, as a chain of
    selects; each piece is read at a clamped index so every load stays in bounds."""
    pieces = [p for p in pieces if e.hi >= p[0] and e.lo < p[1]]  # only the pieces e can reach
    if not pieces:  # every piece is empty: so is the result, and no element is ever read
        return ops.c_literal(0, out_dtype)
    values = [read() for _, _, read in pieces]
    result = values[-1]
    t = ops.ctype(out_dtype)
    for (start, end, _), value in reversed(list(zip(pieces[:-1], values[:-1]))):
        cond = w.emit("c", "bool", f"{w.index(e)} < {w.int_text(end)}", primitive)
        result = w.emit("v", t, f"{cond} ? {value} : {result}", primitive, w.is_invariant(cond, value, result))
    return result


def concatenate_rule(w, eqn, pos, idx):
    dim = eqn.params["dimension"]
    e = idx[dim]
    pieces, offset = [], 0
    for op in eqn.inputs:
        n = op.shape[dim]
        if n > 0:
            sub = clamp(e - offset, 0, n - 1)
            at = tuple(sub if k == dim else x for k, x in enumerate(idx))
            pieces.append((offset, offset + n, lambda op=op, at=at: w.read(op, at)))
        offset += n
    return select_piece(w, e, pieces, eqn.outputs[0].dtype, "concatenate")


def stack_rule(w, eqn, pos, idx):
    axis = eqn.params["axis"]
    e = idx[axis]
    rest = idx[:axis] + idx[axis + 1:]
    pieces = [(k, k + 1, lambda op=op: w.read(op, rest)) for k, op in enumerate(eqn.inputs)]
    return select_piece(w, e, pieces, eqn.outputs[0].dtype, "stack")


def pad_rule(w, eqn, pos, idx):
    op, padval = eqn.inputs
    out = eqn.outputs[0]
    if op.size == 0:
        return w.read(padval, ())
    conds, src = [], []
    for e, n, (lo, hi, interior) in zip(idx, op.shape, eqn.params["padding_config"]):
        lo, interior = int(lo), int(interior)
        g = e - lo
        step = interior + 1
        top = (n - 1) * step
        gc = clamp(g, 0, top)
        if g.lo < 0:
            conds.append(f"{w.index(g)} >= 0")
        if g.hi > top:
            conds.append(f"{w.index(g)} <= {w.int_text(top)}")
        if step > 1:
            conds.append(f"{paren(w.index(gc))} % {step} == 0")
            src.append(delin(gc, step, None))
        else:
            src.append(gc)
    value = w.read(op, tuple(src))
    if not conds:
        return value
    cond = w.emit("c", "bool", ops.conjunction(conds), "pad")
    pv = w.read(padval, ())
    return w.emit("v", ops.ctype(out.dtype), f"{cond} ? {value} : {pv}", "pad",
                  w.is_invariant(cond, value, pv))


def start_index(w, value: str, dtype, hi: int, primitive: str) -> Affine:
    """A window start read from data (`value`, of `dtype`), clamped to [0, hi] as XLA does
    (at compile time where the value's affine form is known: indexvalues)."""
    form = w.affine.get(value)
    if form is not None:
        return clamp(form, 0, max(hi, 0))
    name = w.emit("j", "idx_t", f"(idx_t)fj_start_index({value}, (long long){hi})", primitive,
                  w.is_invariant(value))
    return runtime_value(name, 0, max(hi, 0))


def gather_fill(eqn):
    """FILL_OR_DROP's value: params['fill_value'], else JAX's default for the dtype."""
    dtype = eqn.outputs[0].dtype
    value = eqn.params.get("fill_value")
    if value is None:
        value = np.nan if dtype.kind == "f" else (True if dtype.kind == "b" else
                                                   np.iinfo(dtype).min if dtype.kind == "i" else np.iinfo(dtype).max)
    return ops.c_literal(value, dtype)


def gather_rule(w, eqn, pos, idx):
    """lax.gather with the index vector last (as jnp emits): each output element reads its
    window's start from the indices at run time, clamps it so the window fits (CLIP,
    PROMISE_IN_BOUNDS), or gives the fill value when it does not (FILL_OR_DROP)."""
    operand, indices = eqn.inputs
    out = eqn.outputs[0]
    dn, sizes = eqn.params["dimension_numbers"], eqn.params["slice_sizes"]
    batching = [int(d) for d in dn.operand_batching_dims]
    window_dims = [d for d in range(operand.ndim) if d not in dn.collapsed_slice_dims and d not in batching]
    offsets = list(dn.offset_dims)
    batch_idx = [e for k, e in enumerate(idx) if k not in offsets]
    op_index = [aff(0)] * operand.ndim
    for d, e in zip(window_dims, [idx[k] for k in offsets]):
        op_index[d] = e
    for d, axis in zip(batching, dn.start_indices_batching_dims):
        op_index[d] = batch_idx[int(axis)]
    fits, values = [], []
    for k, d in enumerate(dn.start_index_map):
        value = w.read(indices, tuple(batch_idx) + (aff(k),))
        hi = operand.shape[d] - sizes[d]
        op_index[d] = op_index[d] + start_index(w, value, indices.dtype, hi, "gather")
        form = w.affine.get(value)
        if form is None or form.lo < 0 or form.hi > hi:  # not proven to fit
            fits.append(f"fj_index_fits({value}, (long long){hi})")
        values.append(value)
    result = w.read(operand, tuple(op_index))
    if not is_fill_or_drop(eqn) or not fits:
        return result
    ok = w.emit("c", "bool", ops.conjunction(fits), "gather", w.is_invariant(*values))
    return w.emit("v", ops.ctype(out.dtype), f"{ok} ? {result} : {gather_fill(eqn)}", "gather",
                  w.is_invariant(ok, result))


def is_fill_or_drop(eqn) -> bool:
    return "FILL_OR_DROP" in str(eqn.params.get("mode"))


def dynamic_slice_rule(w, eqn, pos, idx):
    """operand[start + idx] with each start clamped so the slice fits (XLA's semantics)."""
    operand, starts = eqn.inputs[0], eqn.inputs[1:]
    sizes = eqn.params["slice_sizes"]
    index = tuple(e + start_index(w, w.read(s, ()), s.dtype, n - size, "dynamic_slice")
                  for e, s, n, size in zip(idx, starts, operand.shape, sizes))
    return w.read(operand, index)


def dynamic_update_slice_rule(w, eqn, pos, idx):
    """The update where the (clamped) window covers idx, the operand elsewhere."""
    operand, update, starts = eqn.inputs[0], eqn.inputs[1], eqn.inputs[2:]
    out = eqn.outputs[0]
    conds, upd_index = [], []
    for e, s, n, m in zip(idx, starts, operand.shape, update.shape):
        start = start_index(w, w.read(s, ()), s.dtype, n - m, "dynamic_update_slice")
        rel = e - start
        if rel.lo < 0:
            conds.append(f"{w.index(rel)} >= 0")
        if rel.hi > m - 1:
            conds.append(f"{w.index(rel)} < {w.int_text(m)}")
        upd_index.append(clamp(rel, 0, m - 1))
    inside = w.read(update, tuple(upd_index)) if update.size else None
    if inside is None:
        return w.read(operand, idx)
    if not conds:
        return inside
    cond = w.emit("c", "bool", ops.conjunction(conds), "dynamic_update_slice")
    outside = w.read(operand, idx)
    return w.emit("v", ops.ctype(out.dtype), f"{cond} ? {inside} : {outside}", "dynamic_update_slice",
                  w.is_invariant(cond, inside, outside))


RULES = {prim: elementwise_rule for prim in ops.ELEMENTWISE}
RULES.update({
    "integer_pow": integer_pow_rule,
    "broadcast_in_dim": broadcast_in_dim_rule,
    "reshape": reshape_rule,
    "squeeze": squeeze_rule,
    "expand_dims": expand_dims_rule,
    "slice": slice_rule,
    "rev": rev_rule,
    "transpose": transpose_rule,
    "tile": tile_rule,
    "split": split_rule,
    "iota": iota_rule,
    "concatenate": concatenate_rule,
    "stack": stack_rule,
    "pad": pad_rule,
    **{prim: reduce_window_rule for prim in WINDOW_REDUCTIONS},
    "gather": gather_rule,
    "dynamic_slice": dynamic_slice_rule,
    "dynamic_update_slice": dynamic_update_slice_rule,
})
