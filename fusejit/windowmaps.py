"""reduce_window_{sum,max,min} fused into map kernels (a codegen rule of shaperules.RULES).

Each output combines its window's elements in window order, from the init value, as the
library's rule (windows.py) and XLA do, so sums keep jax.jit's bits: one read of the operand
per window offset, unrolled, at `out * stride + offset * dilation - low padding` per axis.
An offset outside the operand (padding) contributes the init value, chosen by a select;
each read is clamped into bounds, so no load leaves the operand.  Windows of more than
MAX_WINDOW_OFFSETS offsets and base dilations stay library calls (fusion.fusible).
"""
from __future__ import annotations

import math

import numpy as np

from . import ops
from .indexing import clamp
from .windows import init_value

MAX_WINDOW_OFFSETS = 64
WINDOW_REDUCTIONS = {"reduce_window_sum": "add", "reduce_window_max": "max", "reduce_window_min": "min"}


def fusible_window(eqn) -> bool:
    p = eqn.params
    return (all(int(d) == 1 for d in p["base_dilation"])
            and math.prod(int(d) for d in p["window_dimensions"]) <= MAX_WINDOW_OFFSETS)


def reduce_window_rule(w, eqn, pos, idx):
    (operand,) = eqn.inputs
    out = eqn.outputs[0]
    p = eqn.params
    t = ops.ctype(out.dtype)
    init = ops.c_literal(init_value(eqn.primitive.rsplit("_", 1)[1], out.dtype), out.dtype)
    combine = ops.ELEMENTWISE[WINDOW_REDUCTIONS[eqn.primitive]]
    acc = init
    for offset in np.ndindex(*[int(d) for d in p["window_dimensions"]]):
        conds, src, outside = [], [], operand.size == 0
        for e, n, k, stride, dilation, (lo, _) in zip(idx, operand.shape, offset, p["window_strides"],
                                                       p["window_dilation"], p["padding"]):
            g = e * int(stride) + (int(k) * int(dilation) - int(lo))
            if g.hi < 0 or g.lo > n - 1:  # padding for every output
                outside = True
                break
            if g.lo < 0:
                conds.append(f"{w.index(g)} >= 0")
            if g.hi > n - 1:
                conds.append(f"{w.index(g)} <= {w.int_text(n - 1)}")
            src.append(clamp(g, 0, n - 1))
        if outside:
            value = init
        else:
            value = w.read(operand, tuple(src))
            if conds:
                cond = w.emit("c", "bool", ops.conjunction(conds), eqn.primitive)
                value = w.emit("v", t, f"{cond} ? {value} : {init}", eqn.primitive, w.is_invariant(cond, value))
        acc = w.emit("v", t, combine([acc, value], [out.dtype] * 2, out.dtype, {}), eqn.primitive,
                     w.is_invariant(acc, value))
    return acc
