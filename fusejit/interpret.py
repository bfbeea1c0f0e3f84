"""The interpreter: a program's first calls, run equation by equation while its kernels compile.

An env/read/write interpreter over the Graph with one rule table, INTERPRET, keyed by
primitive.  Elementwise equations run the elementwise library's loops (fusejit/ufuncs.py:
the kernels' own C expressions, so each value is the kernel's, bit for bit); shapes and
indexing are NumPy views and copies; reductions and cumulative ops are NumPy's, with the
kernels' accumulator types (float32 sums in float64), so a sum may differ from the
compiled kernel's in its last bits (both are within the tolerance of jax.jit's); library
calls are the very calls the compiled program makes.  A graph with an equation outside the
table (a loop, a branch, a gather, a callback) is not interpreted: its first call waits for
the compiler, as every call did before.
"""
from __future__ import annotations

import numpy as np

from . import launch, library, ops, ufuncs
from .backends.pool import pool
from .ir import Eqn, Graph, Literal, Var

IDENTITIES = ("copy", "copy_p", "stop_gradient")


class Stopped(Exception):
    """An interpreted call given up because `stop()` turned true (its kernels are ready)."""


class Unsupported(Exception):
    """An equation the interpreter has no rule for (the graph waits for its kernels instead)."""


# ---- elementwise ----
def dense(x, out_shape):
    """An operand as the library reads it: one value, or every element in the output's order
    (a broadcast or a strided view copied into a buffer from the pool)."""
    x = np.asarray(x)
    if x.size == 1:
        return np.ascontiguousarray(x.reshape(-1))
    if x.shape == tuple(out_shape) and x.flags.c_contiguous:
        return x
    dense = pool.empty(out_shape, x.dtype)
    np.copyto(dense, x)
    return dense


def is_retype(eqn: Eqn) -> bool:
    """A convert_element_type that changes only the weak type: the value itself."""
    return eqn.primitive == "convert_element_type" and np.dtype(eqn.inputs[0].dtype) == np.dtype(eqn.outputs[0].dtype)


def row_of(eqn: Eqn) -> tuple:
    """The elementwise library's loop for an elementwise equation."""
    return ufuncs.key_of(eqn.primitive, [a.dtype for a in eqn.inputs], eqn.outputs[0].dtype, eqn.params)


def _loop(lib, eqn: Eqn, primitive, args, in_dtypes, out_var, params=None):
    row = ufuncs.key_of(primitive, in_dtypes, out_var.dtype, eqn.params if params is None else params)
    out = pool.empty(out_var.shape, np.dtype(out_var.dtype))
    return lib.apply(row, [dense(a, out_var.shape) for a in args], out)


def elementwise(lib, eqn, args):
    out = eqn.outputs[0]
    if is_retype(eqn):
        return [args[0]]
    return [_loop(lib, eqn, eqn.primitive, args, [a.dtype for a in eqn.inputs], out)]


def identity(lib, eqn, args):
    return [args[0]]


def select_n(lib, eqn, args):
    pred, cases = np.asarray(args[0]), args[1:]
    shape = eqn.outputs[0].shape
    if len(cases) == 1:
        return [np.broadcast_to(cases[0], shape)]
    if pred.dtype == np.bool_:
        return [np.where(pred, cases[1], cases[0]).astype(eqn.outputs[0].dtype, copy=False)]
    result = np.broadcast_to(cases[-1], shape)
    for k in range(len(cases) - 2, -1, -1):
        result = np.where(pred == k, cases[k], result)
    return [np.asarray(result, eqn.outputs[0].dtype)]


def clamp(lib, eqn, args):
    lo, x, hi = args
    out = eqn.outputs[0]
    d = out.dtype
    low = _loop(lib, eqn, "max", [x, lo], [d, d], out, {})
    return [_loop(lib, eqn, "min", [low, hi], [d, d], out, {})]


def bitcast(lib, eqn, args):
    x, out = np.asarray(args[0]), eqn.outputs[0]
    if x.dtype.itemsize != np.dtype(out.dtype).itemsize:
        raise Unsupported("bitcast_convert_type between sizes")
    return [np.ascontiguousarray(x).view(out.dtype).reshape(out.shape)]


def integer_pow(lib, eqn, args):
    """x ** y by squaring, in the order the kernels compute it (shaperules.integer_pow_rule)."""
    out = eqn.outputs[0]
    d = out.dtype
    x, y = args[0], int(eqn.params["y"])
    if y == 0:
        return [np.ones(out.shape, d)]
    reciprocal, y = y < 0, abs(y)
    acc = None
    while y > 0:
        if y & 1:
            acc = x if acc is None else _loop(lib, eqn, "mul", [acc, x], [d, d], out, {})
        y >>= 1
        if y > 0:
            x = _loop(lib, eqn, "mul", [x, x], [d, d], out, {})
    if reciprocal:
        acc = _loop(lib, eqn, "div", [np.ones((), d), acc], [d, d], out, {})
    return [np.broadcast_to(acc, out.shape)]


# ---- shapes and indexing ----
def broadcast_in_dim(lib, eqn, args):
    x, out = np.asarray(args[0]), eqn.outputs[0]
    shape = [1] * len(out.shape)
    for k, d in enumerate(eqn.params["broadcast_dimensions"]):
        shape[d] = x.shape[k]
    return [np.broadcast_to(x.reshape(shape), out.shape)]


def reshape(lib, eqn, args):
    if eqn.params.get("dimensions") is not None:
        raise Unsupported("reshape with dimensions")
    return [np.reshape(args[0], eqn.outputs[0].shape)]


def slice_(lib, eqn, args):
    p = eqn.params
    strides = p.get("strides") or (1,) * len(p["start_indices"])
    return [np.asarray(args[0])[tuple(slice(int(a), int(b), int(s))
                                      for a, b, s in zip(p["start_indices"], p["limit_indices"], strides))]]


def pad(lib, eqn, args):
    x, value = np.asarray(args[0]), args[1]
    out = eqn.outputs[0]
    config = [(int(lo), int(hi), int(interior)) for lo, hi, interior in eqn.params["padding_config"]]
    # Pad the non-negative amounts (interior too), then crop what the negative ones remove.
    spread = [n + max(n - 1, 0) * i for n, (_, _, i) in zip(x.shape, config)]
    big = np.full([max(lo, 0) + s + max(hi, 0) for s, (lo, hi, _) in zip(spread, config)], value, out.dtype)
    big[tuple(slice(max(lo, 0), max(lo, 0) + s, i + 1) for s, (lo, _, i) in zip(spread, config))] = x
    return [big[tuple(slice(max(-lo, 0), n - max(-hi, 0)) for n, (lo, hi, _) in zip(big.shape, config))]]


def iota(lib, eqn, args):
    out = eqn.outputs[0]
    dim = eqn.params["dimension"]
    shape = [1] * len(out.shape)
    shape[dim] = out.shape[dim]
    return [np.broadcast_to(np.arange(out.shape[dim]).astype(out.dtype).reshape(shape), out.shape)]


def start_of(value, extent: int, size: int) -> int:
    """A dynamic start index clamped so the window fits (XLA's semantics)."""
    return int(min(max(int(np.asarray(value)), 0), extent - size))


def dynamic_slice(lib, eqn, args):
    x, starts = np.asarray(args[0]), args[1:]
    sizes = eqn.params["slice_sizes"]
    at = [start_of(s, n, m) for s, n, m in zip(starts, x.shape, sizes)]
    return [x[tuple(slice(a, a + m) for a, m in zip(at, sizes))]]


def dynamic_update_slice(lib, eqn, args):
    x, update, starts = np.asarray(args[0]), np.asarray(args[1]), args[2:]
    at = [start_of(s, n, m) for s, n, m in zip(starts, x.shape, update.shape)]
    result = np.array(x, copy=True)
    result[tuple(slice(a, a + m) for a, m in zip(at, update.shape))] = update
    return [result]


def split(lib, eqn, args):
    edges = np.cumsum([int(s) for s in eqn.params["sizes"]])[:-1]
    return np.split(np.asarray(args[0]), edges, axis=eqn.params["axis"])


def _shaped(fn):
    def rule(lib, eqn, args):
        return [fn(eqn, *args)]
    return rule


SHAPES = {
    "broadcast_in_dim": broadcast_in_dim,
    "reshape": reshape,
    "squeeze": _shaped(lambda e, x: np.reshape(x, e.outputs[0].shape)),
    "expand_dims": _shaped(lambda e, x: np.reshape(x, e.outputs[0].shape)),
    "slice": slice_,
    "rev": _shaped(lambda e, x: np.flip(x, tuple(e.params["dimensions"]))),
    "transpose": _shaped(lambda e, x: np.transpose(x, e.params["permutation"])),
    "concatenate": lambda lib, e, args: [np.concatenate([np.asarray(a) for a in args], axis=e.params["dimension"])],
    "stack": lambda lib, e, args: [np.stack([np.asarray(a) for a in args], axis=e.params["axis"])],
    "tile": _shaped(lambda e, x: np.tile(x, [m // n for m, n in zip(e.outputs[0].shape, np.shape(x))])),
    "split": split,
    "pad": pad,
    "iota": iota,
    "dynamic_slice": dynamic_slice,
    "dynamic_update_slice": dynamic_update_slice,
}


# ---- reductions and cumulative ops ----
def _axes(eqn):
    return tuple(int(a) for a in eqn.params["axes"])


def reduce_sum(lib, eqn, args):
    x, out = np.asarray(args[0]), eqn.outputs[0]
    acc = np.float64 if x.dtype == np.float32 else x.dtype  # the kernels' accumulator (accumulators.py)
    return [np.add.reduce(x, axis=_axes(eqn), dtype=acc).astype(out.dtype, copy=False)]


def _extreme(ufunc, lowest: bool):
    def rule(lib, eqn, args):
        x = np.asarray(args[0])
        d = x.dtype
        if d.kind == "f":
            initial = -np.inf if lowest else np.inf
        elif d.kind == "b":
            initial = not lowest
        else:
            info = np.iinfo(d)
            initial = info.min if lowest else info.max
        return [ufunc.reduce(x, axis=_axes(eqn), initial=initial).astype(d, copy=False)]
    return rule


def _fold(ufunc, bool_ufunc, identity):
    def rule(lib, eqn, args):
        x = np.asarray(args[0])
        fn = bool_ufunc if x.dtype == np.bool_ else ufunc
        start = identity(x.dtype)
        return [fn.reduce(x, axis=_axes(eqn), dtype=x.dtype, initial=start).astype(x.dtype, copy=False)]
    return rule


def _all_ones(dtype):
    return np.bool_(True) if dtype == np.bool_ else np.array(-1).astype(dtype)


def _arg(fn):
    def rule(lib, eqn, args):
        axis = _axes(eqn)[0]
        return [fn(np.asarray(args[0]), axis=axis).astype(eqn.params["index_dtype"])]
    return rule


def _cumulative(fn, float32_carry=None):
    def rule(lib, eqn, args):
        x = np.asarray(args[0])
        axis, reverse = int(eqn.params["axis"]), bool(eqn.params.get("reverse", False))
        if reverse:
            x = np.flip(x, axis)
        kw = {"dtype": float32_carry} if float32_carry and x.dtype == np.float32 else {}
        y = fn(x, axis=axis, **kw).astype(eqn.outputs[0].dtype, copy=False)
        return [np.flip(y, axis) if reverse else y]
    return rule


REDUCTIONS = {
    "reduce_sum": reduce_sum,
    "reduce_max": _extreme(np.maximum, True),
    "reduce_min": _extreme(np.minimum, False),
    "reduce_prod": lambda lib, e, a: [np.multiply.reduce(np.asarray(a[0]), axis=_axes(e), dtype=e.outputs[0].dtype)],
    "reduce_and": _fold(np.bitwise_and, np.logical_and, _all_ones),
    "reduce_or": _fold(np.bitwise_or, np.logical_or, lambda d: np.zeros((), d)[()]),
    "reduce_xor": _fold(np.bitwise_xor, np.logical_xor, lambda d: np.zeros((), d)[()]),
    "argmax": _arg(np.argmax),
    "argmin": _arg(np.argmin),
    "cumsum": _cumulative(np.cumsum, np.float64),
    "cumprod": _cumulative(np.cumprod),
    "cummax": _cumulative(np.maximum.accumulate),
    "cummin": _cumulative(np.minimum.accumulate),
}


def library_call(lib, eqn, args):
    launch.counter["library"] += 1
    out_avals = [(v.shape, v.dtype) for v in eqn.outputs]
    args = [np.asarray(a, order="C") for a in args]  # as the compiled program passes them (0-d stays 0-d)
    return list(library.call(eqn.primitive, library.host_lib(), eqn.params, out_avals, *args))


INTERPRET = {p: library_call for p in library.LIBRARY}
INTERPRET.update({p: elementwise for p in ops.ELEMENTWISE})
INTERPRET.update({p: identity for p in IDENTITIES})
INTERPRET.update({"select_n": select_n, "clamp": clamp, "bitcast_convert_type": bitcast,
                  "integer_pow": integer_pow})
INTERPRET.update(SHAPES)
INTERPRET.update(REDUCTIONS)


def interpretable(graph: Graph) -> bool:
    """Whether every equation has a rule (and every elementwise one a loop in the library)."""
    for eqn in graph.eqns:
        rule = INTERPRET.get(eqn.primitive)
        if rule is None:
            return False
        if rule is elementwise and not is_retype(eqn):
            if row_of(eqn) not in ufuncs.INDEX:
                return False
        if eqn.primitive == "bitcast_convert_type" and \
                np.dtype(eqn.inputs[0].dtype).itemsize != np.dtype(eqn.outputs[0].dtype).itemsize:
            return False
        if eqn.primitive == "reshape" and eqn.params.get("dimensions") is not None:
            return False
    return True


def read(atom, env):
    if isinstance(atom, Literal):
        return np.asarray(atom.value, atom.dtype)
    return env[atom]


def bind_inputs(graph: Graph, args) -> dict:
    """The env of a call: the graph's constants and arguments."""
    env = {var: np.asarray(value) for var, value in graph.consts}
    env.update((var, np.asarray(value, var.dtype)) for var, value in zip(graph.inputs, args))
    return env


def evaluate(lib, eqn: Eqn, env: dict) -> None:
    """Run one equation by its rule, its results into env."""
    for var, value in zip(eqn.outputs, INTERPRET[eqn.primitive](lib, eqn, [read(a, env) for a in eqn.inputs])):
        env[var] = value


def results(graph: Graph, env: dict, given: list) -> list[np.ndarray]:
    """The graph's results from env, each a contiguous array of its own, as a kernel's is:
    never an argument (`given`), a view of one, or (part of) another result."""
    outs = []
    for atom in graph.outputs:
        value = np.asarray(read(atom, env))
        if (value.shape != atom.shape or value.dtype != atom.dtype or not value.flags.c_contiguous
                or any(np.may_share_memory(value, x) for x in given + outs)):
            value = np.array(np.broadcast_to(value, atom.shape), dtype=atom.dtype, order="C", copy=True)
        outs.append(value)
    return outs


def run(graph: Graph, lib, args, stop=None, work=lambda eqn: 1) -> list[np.ndarray]:
    """The graph's results for `args` (NumPy arrays or scalars), as fresh contiguous arrays.
    `stop(done)`, asked between equations with the fraction of the call's work done so far
    (`work(eqn)` for each equation), gives the call up (Stopped) when it returns true."""
    env = bind_inputs(graph, args)
    given = list(env.values())
    last = last_uses(graph)
    weights = [work(eqn) for eqn in graph.eqns] if stop is not None else []
    total, done = max(1, sum(weights)), 0
    # IEEE results without NumPy's warnings, as jax.jit and the kernels give them (a float32
    # sum beyond float32's range is inf; 0 / 0 is NaN)
    with np.errstate(all="ignore"):
        for k, eqn in enumerate(graph.eqns):
            if stop is not None:
                if stop(done / total):
                    raise Stopped
                done += weights[k]
            evaluate(lib, eqn, env)
            for var in last.get(k, ()):  # its buffer goes back to the pool for the next equations
                del env[var]
    launch.counter["interpreted"] += 1
    return results(graph, env, given)


def last_uses(graph: Graph) -> dict[int, list[Var]]:
    """Equation index -> the values no later equation (nor the results) reads."""
    final: dict = {}
    for k, eqn in enumerate(graph.eqns):
        for a in eqn.inputs:
            if isinstance(a, Var):
                final[a] = k
    for a in graph.outputs:
        final.pop(a, None)
    for var, _ in graph.consts:
        final.pop(var, None)
    for var in graph.inputs:
        final.pop(var, None)
    by_eqn: dict = {}
    for var, k in final.items():
        by_eqn.setdefault(k, []).append(var)
    return by_eqn
