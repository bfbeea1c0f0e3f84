"""Random programs against jax.jit (hypothesis).

Each example draws two inputs (any supported dtype; shapes with 0-d, size-0 and size-1
dimensions; the second broadcastable to the first) filled with random values and special
ones: NaN, +-inf, -0.0, denormals, the largest floats and extreme integers.  It then draws a
chain of operations: dtype-aware elementwise math, binary operations between the inputs
(with jnp's type promotion; integer division, remainders and shifts at their edges),
comparisons and selects, conversions, broadcasts, strided and reversed slices, transposes,
reshapes, pads (negative and interior), concatenates, reductions, argmaxes and argmins over
random axes, cumulative sums, products, maxima and minima, takes (indices out of range
too), dynamic slices past the end, sorts, scatter-adds with repeated indices, short scans
and conds.  fusejit's host backend must match jax.jit.  FUSEJIT_FUZZ_EXAMPLES=N runs
longer; every failure found becomes a regression test (test_shapes.py, test_control.py,
test_footguns.py, here).
"""
import os

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jax import lax
from jax.extend.core import Literal

import fusejit
from fusejit import halves
from fusejit.check import compare
from helpers import ALL_DTYPES, HALVES, rand

EXAMPLES = int(os.environ.get("FUSEJIT_FUZZ_EXAMPLES", "200"))
MEDIUM_EXAMPLES = int(os.environ.get("FUSEJIT_FUZZ_MEDIUM_EXAMPLES", "25"))
# Extents around the host paths' thresholds: vector widths (8 and 16 lanes), the folded rows
# (16 to 96), the periodic rows (up to 64, chunk counts), the transposed tiles (16 and 32).
MEDIUM_DIMS = [1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 20, 24, 31, 32, 33, 48, 63, 64, 65, 96, 97, 100, 128,
               129, 257, 1000, 1025]
MEDIUM_SIZE = 1 << 16
HALF_EXAMPLES = int(os.environ.get("FUSEJIT_FUZZ_HALF_EXAMPLES", "25"))


def kind(dtype) -> str:
    dtype = np.dtype(dtype)
    return "bool" if dtype.kind == "b" else "float" if dtype.kind == "f" or halves.is_half(dtype) else \
        "signed" if dtype.kind == "i" else "unsigned"


# Operations that keep the dtype (so they can be a loop body), by kind of dtype.  XLA's CPU
# backend flushes denormal inputs to zero and fusejit does not (test_footguns.py), so no op
# here turns a denormal into a large difference: no division or log of a raw value, and
# floor and sign only after a shift (floor(-denormal) is -1, floor(-0.0) is -0.0).  sin
# only of arguments within +-100: fusejit rounds a float32 sum once (float64 accumulators)
# where XLA rounds each step, so a cumsum of values in the thousands can differ in its last
# bit (jax.jit's the less accurate), and sin of such an argument turns that bit into an
# absolute difference of 1e-3, beyond the tolerance.
UNARY = {
    "float": [lambda x: jnp.sin(jnp.clip(x, -100.0, 100.0)), jnp.tanh, jnp.abs, lambda x: -x, lambda x: x * 2.0 + 1.0, lambda x: jnp.sqrt(jnp.abs(x)),
              lambda x: jnp.exp(jnp.clip(x, -5, 5)), lambda x: jnp.log1p(jnp.abs(x)),
              lambda x: jnp.floor(x + 0.5), lambda x: jnp.sign(x - 0.25), lambda x: x / (1.0 + jnp.abs(x))],
    "signed": [jnp.abs, lambda x: -x, lambda x: x * 3 + 1, lambda x: x // 3, lambda x: x % 5, lambda x: ~x,
               lambda x: x >> 1, lambda x: jnp.clip(x, -100, 100)],
    "unsigned": [lambda x: x * 3 + 1, lambda x: x // 3, lambda x: x % 5, lambda x: ~x, lambda x: x >> 1],
    "bool": [jnp.logical_not, lambda x: x ^ True],
}
# The integer rows include the operations whose C++ counterparts are undefined or differ from
# XLA's at the edges: a division or remainder by zero or of the least value by -1, a shift by
# a negative amount or by the width or more.
INTEGER_BINARY = [jnp.add, jnp.subtract, jnp.multiply, jnp.maximum, jnp.minimum, jnp.floor_divide, jnp.remainder,
                  lambda a, b: lax.div(*jnp.broadcast_arrays(a, b)), lambda a, b: lax.rem(*jnp.broadcast_arrays(a, b)),
                  jnp.left_shift, jnp.right_shift, jnp.bitwise_and, jnp.bitwise_or, jnp.bitwise_xor]
BINARY = {
    # (no arctan2: of two denormals it is their angle, and 0 or pi/2 where XLA flushes one)
    "float": [jnp.add, jnp.subtract, jnp.multiply, jnp.maximum, jnp.minimum, jnp.copysign],
    "signed": INTEGER_BINARY,
    "unsigned": INTEGER_BINARY,
    "bool": [jnp.logical_and, jnp.logical_or, jnp.logical_xor],
}


def reduce_op(draw, x):
    k = kind(x.dtype)
    if k == "bool":
        return draw(st.sampled_from([jnp.any, jnp.all]))
    return draw(st.sampled_from([jnp.sum, jnp.max, jnp.min] + ([jnp.mean] if k == "float" else [])))


def step(draw, x, inputs, targets):
    """One random operation applied to x (a traced value); returns the new value.  `targets`:
    the dtypes a conversion may draw."""
    shape = x.shape
    k = kind(x.dtype)
    op = draw(st.sampled_from(["unary", "binary", "input", "select", "convert", "slice", "rev", "transpose",
                               "reshape", "pad", "concat", "reduce", "cumsum", "broadcast", "scan", "cond", "arg",
                               "cumulative", "take", "dynamic_slice", "sort", "scatter_add"]))
    if op == "unary":
        return draw(st.sampled_from(UNARY[k]))(x)
    if op == "binary":
        return draw(st.sampled_from(BINARY[k]))(x, draw(st.sampled_from(UNARY[k]))(x))
    if op == "input":  # an input of another dtype: jnp's promotion
        other = inputs[draw(st.integers(0, len(inputs) - 1))]
        try:
            jnp.broadcast_shapes(shape, other.shape)
        except ValueError:
            return x
        a = jnp.promote_types(x.dtype, other.dtype)
        return draw(st.sampled_from(BINARY[kind(a)]))(x.astype(a), other.astype(a))
    if op == "select":
        other = draw(st.sampled_from(UNARY[k]))(x)
        return jnp.where(x > other, x, other)
    if op == "convert":
        to = np.dtype(draw(st.sampled_from(targets)))
        if k == "float" and to.kind in "iu":
            # Rounded first: a float one ULP either side of an integer (a float32 tanh that
            # saturates at 1 in one library and at 0.99999994 in the other) truncates to two.
            x = jnp.round(x)
        return x.astype(to)
    if op == "broadcast" and x.ndim < 3:
        n = draw(st.integers(1, 3))
        return jnp.broadcast_to(x[None], (n,) + shape)
    if op == "scan":  # a short scan whose body is a dtype-keeping op; carry or stacked ys
        body = draw(st.sampled_from(UNARY[k]))
        length = draw(st.integers(0, 4))
        carry, ys = lax.scan(lambda c, _: (body(c), c), x, None, length=length)
        return carry if draw(st.booleans()) or length == 0 else ys[length // 2]
    if op == "cond":
        first, second = draw(st.sampled_from(UNARY[k])), draw(st.sampled_from(UNARY[k]))
        pred = jnp.any(x) if k == "bool" else jnp.sum(x.astype(jnp.float32) if k != "float" else x) > 0
        return lax.cond(pred, first, second, x)
    if x.ndim == 0:
        return draw(st.sampled_from(UNARY[k]))(x)
    axis = draw(st.integers(0, x.ndim - 1))
    n = shape[axis]
    if op == "slice":
        stride = draw(st.sampled_from([1, 2, 3, -1, -2]))
        start = draw(st.integers(0, max(n - 1, 0)))
        index = [slice(None)] * x.ndim
        index[axis] = slice(start, None, stride) if stride > 0 else slice(None, None, stride)
        return x[tuple(index)]
    if op == "rev":
        return jnp.flip(x, axis)
    if op == "transpose":
        return jnp.transpose(x, draw(st.permutations(range(x.ndim))))
    if op == "reshape":
        if x.ndim == 1 or x.size == 0:
            return x.reshape(shape[::-1]) if x.ndim > 1 else x
        return x.reshape(-1) if draw(st.booleans()) else x.reshape(shape[::-1])
    if op == "pad":
        config = [(0, 0, 0)] * x.ndim
        lo = draw(st.integers(-min(n, 2), 2))
        hi = draw(st.integers(-min(n - max(-lo, 0), 2), 2))
        config[axis] = (lo, hi, draw(st.integers(0, 2)) if n > 0 else 0)
        return lax.pad(x, np.zeros((), x.dtype)[()], config)
    if op == "concat":
        return jnp.concatenate([x, x[::-1]], axis=axis)
    if op == "reduce":
        keep = draw(st.booleans())
        if n == 0:
            return jnp.sum(x, axis, keepdims=keep)
        return reduce_op(draw, x)(x, axis, keepdims=keep)
    if op == "arg":  # an int32 index of the largest or least element (the first of equal ones)
        if n == 0:
            return x
        return draw(st.sampled_from([jnp.argmax, jnp.argmin]))(x, axis, keepdims=draw(st.booleans()))
    if op == "cumulative" and k != "bool":
        f = draw(st.sampled_from([lax.cummax, lax.cummin, lax.cumprod]))
        if f is lax.cumprod and k == "float":
            # Of values within +-1: jax.jit multiplies in a tree, fusejit in a row, and a
            # product near the largest float is inf in one order and finite in the other.
            x = jnp.tanh(x)
            if halves.is_half(x.dtype):  # (as cumsum below)
                return lax.cumprod(x.astype(jnp.float32), axis).astype(x.dtype)
        return f(x, axis)
    if op == "take":  # indices anywhere from -n - 2 to n + 1: negative ones count from the end
        # (jnp.take's default mode fills the ones out of range with NaN, 0 or the least value)
        if n == 0:
            return x
        count = draw(st.integers(0, 5))
        indices = np.array([draw(st.integers(-n - 2, n + 1)) for _ in range(count)], np.int32)
        return jnp.take(x, indices, axis=axis, mode=draw(st.sampled_from([None, "clip", "wrap"])))
    if op == "dynamic_slice":  # a start that may run past the end: XLA moves it back inside
        size = draw(st.integers(0, n))
        start = [0] * x.ndim
        start[axis] = draw(st.integers(-2, n + 2))
        sizes = list(shape)
        sizes[axis] = size
        return lax.dynamic_slice(x, start, sizes)
    if op == "sort":  # NaN last; -0.0 and 0.0 equal, so kept in their order
        return jnp.sort(x, axis=axis)
    if op == "scatter_add" and k != "bool":  # repeated indices add up
        if n == 0:
            return x
        indices = np.array([draw(st.integers(0, n - 1)) for _ in range(draw(st.integers(0, 4)))], np.int32)
        index = [slice(None)] * x.ndim
        index[axis] = indices
        values = jnp.take(x, indices, axis=axis)
        return x.at[tuple(index)].add(values)
    if op == "cumsum":
        if halves.is_half(x.dtype):  # XLA accumulates in the half type (test_halves.py)
            return jnp.cumsum(x.astype(jnp.float32), axis).astype(x.dtype)
        return jnp.cumsum(x, axis)
    return x


def build(draw, inputs, steps, targets=ALL_DTYPES):
    values = [inputs[0]]
    for _ in range(steps):
        values.append(step(draw, values[-1], inputs, targets))
    return values[-1], values[len(values) // 2]


def small_shape(draw):
    rank = draw(st.integers(0, 3))
    return tuple(draw(st.sampled_from([0, 1, 2, 3, 5, 7])) if draw(st.integers(0, 9)) == 0
                 else draw(st.integers(1, 7)) for _ in range(rank))


def medium_shape(draw):
    """A shape of up to MEDIUM_SIZE elements with extents near the host paths' thresholds."""
    shape = []
    for _ in range(draw(st.integers(1, 3))):
        room = MEDIUM_SIZE // max(int(np.prod(shape)), 1)
        shape.append(draw(st.sampled_from([d for d in MEDIUM_DIMS if d <= room])))
    return tuple(shape)


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.data())
def test_random_programs_match_jax(x64, data):
    check_random_program(data.draw, small_shape(data.draw), special=True)


@settings(max_examples=MEDIUM_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.data())
def test_random_medium_programs_match_jax(x64, data):
    """Thousands of elements: the host backend's vectorised paths (folded rows, periodic
    rows, transposed tiles, chunked blocks) rather than its element loops."""
    check_random_program(data.draw, medium_shape(data.draw), special=data.draw(st.booleans()))


@settings(max_examples=HALF_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.data())
def test_random_half_programs_match_jax(x64, data):
    """float16 and bfloat16 programs (fusejit/halves.py), small or medium, their results
    within the half types' tolerance: each equation rounded to the half type, where one ULP
    of difference in a float32 function (XLA's tanh against fusejit's) can flip a rounding
    that later steps carry on."""
    shape = medium_shape(data.draw) if data.draw(st.booleans()) else small_shape(data.draw)
    check_random_program(data.draw, shape, special=data.draw(st.booleans()), first=HALVES,
                         targets=ALL_DTYPES + HALVES, rtol=3e-2, atol=1e-2, largest=1e4)


def check_random_program(draw, shape, special, first=ALL_DTYPES, targets=ALL_DTYPES, rtol=1e-4, atol=1e-5,
                         largest=None):
    """A random program on an input of a dtype from `first` and one from `targets`, which
    its conversions draw from too, against jax.jit within rtol and atol.  `largest`: finite
    float inputs beyond it are clipped to it.  (A half-type input converted to float32 and
    summed: fusejit's float64 accumulator carries max + max - max where XLA's float32 one
    overflows, and xla_rounds_more's judge widens float32 inputs only.)"""
    rank = len(shape)
    other_shape = shape[draw(st.integers(0, rank)):]  # a suffix: broadcastable
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    inputs = [rand(rng, s, draw(st.sampled_from(dtypes)), special=special, denormals=special)
              for s, dtypes in ((shape, first), (other_shape, targets))]
    if largest is not None:
        inputs = [np.where(np.isfinite(a) & (np.abs(a) > largest), np.sign(a) * largest, a).astype(a.dtype)
                  if kind(a.dtype) == "float" else a for a in inputs]
    steps = draw(st.integers(1, 6))

    # Draw the program once, while tracing it; every later trace replays the same choices.
    choices = []

    def recording(strategy):
        choices.append(draw(strategy))
        return choices[-1]

    jax.make_jaxpr(lambda *xs: build(recording, xs, steps, targets))(*inputs)

    def program(*xs):
        replay = iter(choices)
        return build(lambda strategy: next(replay), xs, steps, targets)

    assert_matches_jax(program, inputs, choices, rtol, atol)


def assert_matches_jax(program, inputs, choices, rtol=1e-4, atol=1e-5):
    jitted = fusejit.jit(program, backend="host")
    report = fusejit.check(jitted, *inputs, rtol=rtol, atol=atol)
    if not report.ok and (xla_miscompiles(program, jitted, inputs) or xla_flushes_denormals(program, jitted, inputs)
                          or xla_rounds_more(program, jitted, inputs)
                          or xla_loses_nan_or_flushes_a_reciprocal(program, jitted, inputs)):
        return
    assert report.ok, f"inputs {[(a.dtype.name, a.shape) for a in inputs]}, choices {choices}\n{report}"


# Row programs: a map that feeds a reduction family over one axis, as models write them.
PRODUCERS = {
    "x": lambda x, row, col: x,
    "x * row + col": lambda x, row, col: x * row + col,
    "sin(x) * row": lambda x, row, col: jnp.sin(x) * row,  # (a saturating tanh makes argmax ties)
    "x - x[..., :1]": lambda x, row, col: x - x[..., :1],
    "swapaxes(x) * row": lambda x, row, col: jnp.swapaxes(x, -1, -2) * row,
    "x[..., ::-1] * col": lambda x, row, col: x[..., ::-1] * col,
}
FAMILIES = {
    "softmax": jax.nn.softmax,
    "log_softmax": jax.nn.log_softmax,
    "logsumexp": lambda y, axis: jax.nn.logsumexp(y, axis),
    "standardize": lambda y, axis: (y - y.mean(axis, keepdims=True)) / jnp.sqrt(y.var(axis, keepdims=True) + 1e-5),
    "sum": lambda y, axis: jnp.sum(y, axis),
    "max - min": lambda y, axis: jnp.max(y, axis) - jnp.min(y, axis),
    "argmax": lambda y, axis: jnp.argmax(y, axis),
    "argmin": lambda y, axis: jnp.argmin(y, axis),
    "argmax of ties": lambda y, axis: jnp.argmax(jnp.round(y), axis),  # the first of equal values
    "argmin |y|": lambda y, axis: jnp.argmin(jnp.abs(y), axis),
    "max, argmax": lambda y, axis: (jnp.max(y, axis), jnp.argmax(y, axis)),
    "y / max|y|": lambda y, axis: y / jnp.max(jnp.abs(y), axis, keepdims=True),
    "norm": lambda y, axis: jnp.sqrt(jnp.sum(y * y, axis)),
}


@settings(max_examples=MEDIUM_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.data())
def test_random_row_programs_match_jax(x64, data):
    """Softmaxes, norms, argmaxes and their kin over odd row lengths and either axis, after
    maps with row and column broadcasts, reversals and transposes, on values with or without
    NaN, infinities and -0.0: the host backend's row groups, flat rows, folded rows, periodic
    rows and columns, and transposed tiles, against jax.jit."""
    draw = data.draw
    shape = medium_shape(draw)
    if len(shape) == 1:
        shape = (draw(st.sampled_from([d for d in MEDIUM_DIMS if d * shape[0] <= 4 * MEDIUM_SIZE])),) + shape
    dtype = draw(st.sampled_from([np.float32, np.float32, np.float64]))
    producer, family = draw(st.sampled_from(sorted(PRODUCERS))), draw(st.sampled_from(sorted(FAMILIES)))
    axis, both = draw(st.sampled_from([-1, -2])), draw(st.booleans())
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    row_len = shape[-2] if producer.startswith("swapaxes") else shape[-1]
    # NaN, +-inf and -0.0 at a few places of x.  (Not the largest floats: a sum of a row with
    # both of them depends on its order, float64 accumulators too, whose ULP there is 1e23.)
    special = draw(st.booleans())
    x = rand(rng, shape, dtype, special=special)
    x = np.where(np.abs(x) == np.finfo(dtype).max, np.sign(x) * 2.5, x).astype(dtype)
    inputs = [x, rand(rng, (row_len,), dtype), rand(rng, shape[:-1] + (1,), dtype)]

    def program(x, row, col):
        y = PRODUCERS[producer](x, row, col)
        out = FAMILIES[family](y, axis)
        return (out, y) if both else out

    assert_matches_jax(program, inputs, [shape, producer, family, axis, both, special])


def xla_flushes_denormals(program, jitted, inputs) -> bool:
    """True when the difference is the documented one (README, test_footguns.py): XLA's CPU
    backend, jitted or op by op, treats float32 and float64 denormal inputs as zero and
    fusejit keeps them (a denormal times infinity: NaN there, infinity here).  fusejit on the
    inputs flushed to zero, signs kept, matches jax.jit."""
    def flush(a):
        # (a bfloat16 denormal is a float32 denormal where XLA computes it; a float16 one is not)
        if a.dtype not in (np.float32, np.float64, np.dtype(jnp.bfloat16)):
            return a
        tiny = np.asarray(ml_dtypes.finfo(a.dtype).tiny, a.dtype)
        return np.where(np.abs(a) < tiny, np.copysign(np.zeros((), np.float64), a.astype(np.float64)).astype(a.dtype), a)
    flushed = [flush(a) for a in inputs]
    if all(np.array_equal(f, a, equal_nan=True) for f, a in zip(flushed, inputs)):
        return False  # no denormal input: not this difference
    return compare(jax.jit(program)(*inputs), jitted.run(*flushed), rtol=1e-4, atol=1e-5).ok


def xla_loses_nan_or_flushes_a_reciprocal(program, jitted, inputs) -> bool:
    """True when the differences are NaNs that XLA's CPU reductions lose, reciprocals it
    flushes to zero, or both (test_footguns.py): its vectorised max and min over rows or
    columns can return the largest other element, and it divides by a broadcast value as a
    multiplication by its reciprocal, a denormal for a divisor near the largest float.  The
    judge is the program evaluated primitive by primitive with every float max and min
    reduction made NaN-propagating explicitly and IEEE quotients (NumPy's): fusejit, which
    differs from jax.jit, must match it."""
    return matches_judge(program, jitted, inputs, lambda *eqn: propagate_nan(*eqn) or ieee_divide(*eqn))


def ieee_divide(primitive, params, invals):
    """eval_jaxpr's rule for a float division: NumPy's quotient, no reciprocal flushed."""
    if primitive.name != "div" or not jnp.issubdtype(invals[0].dtype, jnp.floating):
        return None
    with np.errstate(all="ignore"):
        return [jnp.asarray(np.divide(np.asarray(invals[0]), np.asarray(invals[1])))]


def propagate_nan(primitive, params, invals):
    """eval_jaxpr's rule for max and min reductions that keep a NaN."""
    if primitive.name not in ("reduce_max", "reduce_min") or not jnp.issubdtype(invals[0].dtype, jnp.floating):
        return None
    out = primitive.bind(*invals, **params)
    nan = jnp.any(jnp.isnan(invals[0]), axis=params["axes"])
    return [jnp.where(nan, jnp.nan, out).astype(out.dtype)]


def sum_in_float64(primitive, params, invals):
    """eval_jaxpr's rule for fusejit's documented float32 sums: reduce_sum and cumsum of
    float32 values accumulate in float64 and round once (README, Numerics)."""
    if primitive.name not in ("reduce_sum", "cumsum") or invals[0].dtype != np.float32:
        return None
    with jax.enable_x64(True):
        wide = primitive.bind(jnp.asarray(invals[0], np.float64), **params)
        return [wide.astype(np.float32)]


def matches_judge(program, jitted, inputs, rule) -> bool:
    """fusejit's answer against the program evaluated primitive by primitive under `rule`."""
    closed = jax.make_jaxpr(program)(*inputs)
    judge = eval_jaxpr(closed.jaxpr, closed.consts, inputs, rule)
    ours = jitted.run(*inputs)
    return compare(jax.tree_util.tree_unflatten(jax.tree_util.tree_structure(ours), judge), ours,
                   rtol=1e-4, atol=1e-5).ok


def eval_jaxpr(jaxpr, consts, args, rule) -> list:
    """The jaxpr run primitive by primitive (nested jits too); `rule(primitive, params, invals)`
    returns the outputs of the equations it overrides and None for the rest."""
    env = {}

    def read(v):
        return v.val if isinstance(v, Literal) else env[v]

    env.update(zip(jaxpr.constvars, consts))
    env.update(zip(jaxpr.invars, args))
    for eqn in jaxpr.eqns:
        invals = [read(v) for v in eqn.invars]
        name = eqn.primitive.name
        if name in ("jit", "pjit"):
            inner = eqn.params["jaxpr"]
            outs = eval_jaxpr(inner.jaxpr, inner.consts, invals, rule)
        else:
            outs = rule(eqn.primitive, eqn.params, invals)
            if outs is None:
                outs = eqn.primitive.bind(*invals, **eqn.params)
                outs = outs if eqn.primitive.multiple_results else [outs]
        env.update(zip(eqn.outvars, outs))
    return [read(v) for v in jaxpr.outvars]


def xla_rounds_more(program, jitted, inputs) -> bool:
    """True when the difference is float32 rounding that jax.jit does more of: fusejit sums
    and scans float32 values in float64 and rounds once, XLA rounds every step, and a later
    step (a sine, a difference) can turn the last bits of a large sum into an absolute
    difference beyond the tolerance.  Two judges: the program run primitive by primitive
    with those sums in float64 (fusejit's documented answer) must match fusejit; or, run by
    jax.jit on the float32 inputs widened to float64, every element where the two answers
    differ must be a finite one that fusejit gets no farther from than jax.jit does.  (The
    second alone failed a sine of a sine of a 48-row cumsum: the sines' own float32 roundings,
    amplified by arguments near 100, put fusejit's better sum farther from the float64
    answer at one element of 144.)"""
    if not any(a.dtype == np.float32 for a in inputs):
        return False
    if matches_judge(program, jitted, inputs, sum_in_float64):
        return True
    wide = [a.astype(np.float64) if a.dtype == np.float32 else a for a in inputs]
    ours = jax.tree_util.tree_leaves(jitted.run(*inputs))
    theirs = jax.tree_util.tree_leaves(jax.jit(program)(*inputs))
    judge = jax.tree_util.tree_leaves(jax.jit(program)(*wide))
    for o, t, r in zip(ours, theirs, judge, strict=True):
        o, t, r = np.asarray(o), np.asarray(t), np.asarray(r)
        if o.shape != t.shape or o.dtype != t.dtype or r.shape != o.shape:
            return False
        if o.dtype.kind != "f":
            if not np.array_equal(o, t):
                return False
            continue
        differ = ~np.isclose(o, t, rtol=1e-4, atol=1e-5, equal_nan=True)
        o, t, r = (v.astype(np.float64)[differ] for v in (o, t, r))
        if not (np.isfinite(o) & np.isfinite(t) & np.isfinite(r)).all():
            return False
        if not (np.abs(o - r) <= np.abs(t - r)).all():
            return False
    return True


def xla_miscompiles(program, jitted, inputs) -> bool:
    """True when jax.jit's answer is the wrong one: fusejit matches JAX run op by op (no
    jit, no XLA fusion) and jax.jit does not.  test_footguns.py keeps the known cases."""
    try:
        with jax.disable_jit():
            eager = program(*inputs)
    except ValueError:  # JAX cannot run a zero-length scan op by op: no verdict
        return False
    ours = compare(eager, jitted.run(*inputs), rtol=1e-4, atol=1e-5)
    theirs = compare(eager, jax.jit(program)(*inputs), rtol=1e-4, atol=1e-5)
    return ours.ok and not theirs.ok
