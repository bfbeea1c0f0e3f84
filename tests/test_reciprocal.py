"""Divisions as jax.jit computes them (fusejit/reciprocal.py): XLA's CPU compiler multiplies
by the reciprocal of a constant or broadcast divisor, so fusejit does too, and keeps the
division everywhere else.  The two forms differ in the last bit for about a third of random
quotients, so each case below is checked bit for bit against jax.jit, on both backends, and
a rewrite made in the wrong place (or not made) fails it."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fusejit
from fusejit.ir import Graph, Literal
from helpers import bitwise_equal, rand, verify

FLOATS = (np.float32, np.float64)


def assert_bits_of_jax_jit(fun, *args):
    expected = jax.jit(fun)(*args)
    for backend in ("host", "emulate"):
        got = fusejit.jit(fun, backend=backend)(*args)
        for k, (a, b) in enumerate(zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(expected))):
            a, b = np.asarray(a), np.asarray(b)
            assert a.dtype == b.dtype and a.shape == b.shape
            assert bitwise_equal(a, b), f"{backend}, result {k}: {np.sum(a != b)} of {a.size} differ from jax.jit's"


def divisor(rng, shape, dtype):
    return (rand(rng, shape, dtype) + 7.0).astype(dtype)  # away from 0: quotients of ordinary size


CAPTURED = np.random.default_rng(3).standard_normal((37, 129)) + 5.0


def _scan_rows(body):
    return lambda x, s: jax.lax.scan(body, s, x)[1]


# (case, function of (x[37,129], row[129], col[37], s[]), whether jax.jit multiplies)
CASES = [
    ("row", lambda x, row, col, s: x / row[None, :], True),
    ("column", lambda x, row, col, s: x / col[:, None], True),
    ("computed column", lambda x, row, col, s: x / (col * 2.0)[:, None], True),
    ("scalar", lambda x, row, col, s: x / s, True),
    ("literal", lambda x, row, col, s: x / 3.0, True),
    ("literal 1000", lambda x, row, col, s: x / 1000.0, True),
    ("captured", lambda x, row, col, s: x / CAPTURED.astype(x.dtype), True),
    ("broadcast_to", lambda x, row, col, s: x / jnp.broadcast_to(row, x.shape), True),
    ("reshaped", lambda x, row, col, s: x / col.reshape(-1, 1), True),
    ("in a branch", lambda x, row, col, s: jax.lax.cond(s > 0, lambda: x / s, lambda: x * s), True),
    ("literal in a loop", lambda x, row, col, s: _scan_rows(lambda c, r: (c, r / 3.0))(x, s), True),
    ("computed in a loop", lambda x, row, col, s: _scan_rows(lambda c, r: (c, r / (r[0] * 2.0)))(x, s), True),
    ("row made 2-d", lambda x, row, col, s: (x / row[None, :], row + 1.0), True),  # B: row[None, :]
    ("same shape", lambda x, row, col, s: x / (jnp.abs(x) + 1.0), False),
    ("scalar used twice", lambda x, row, col, s: (x / s, s * 2.0), False),
    ("row used twice", lambda x, row, col, s: (x / jnp.broadcast_to(row, x.shape), row + 1.0), False),
    ("literal dividend", lambda x, row, col, s: 3.0 / jnp.broadcast_to(row, x.shape), False),
    ("carry in a loop", lambda x, row, col, s: _scan_rows(lambda c, r: (c * 1.01, r / c))(x, s), False),
    ("closed over in a loop", lambda x, row, col, s: jax.lax.fori_loop(0, 3, lambda i, v: v / s, x), False),
]


def divides_elementwise(graph) -> bool:
    """Whether some division in the graph (or its bodies) is not a reciprocal's."""
    for e in graph.eqns:
        if e.primitive == "div" and not (isinstance(e.inputs[0], Literal) and e.inputs[0].value == 1):
            return True
        for value in e.params.values():
            bodies = value if isinstance(value, tuple) else (value,)
            if any(isinstance(b, Graph) and divides_elementwise(b) for b in bodies):
                return True
    return False


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("case, fun, multiplies", CASES, ids=[c[0] for c in CASES])
def test_divisions_as_jax_jit_computes_them(case, fun, multiplies, dtype, x64):
    rng = np.random.default_rng(11)
    args = (rand(rng, (37, 129), dtype), divisor(rng, (129,), dtype), divisor(rng, (37,), dtype), dtype(1.7))
    assert_bits_of_jax_jit(fun, *args)
    assert divides_elementwise(fusejit.make_graph(fun)(*args)) != multiplies


def test_softmax_divides_once_per_row():
    def softmax(x):
        return jax.nn.softmax(x, axis=-1)

    x = rand(np.random.default_rng(14), (33, 257), np.float32)
    verify(softmax, x)
    graph = fusejit.make_graph(softmax)(x)
    divisions = [e for e in graph.eqns if e.primitive == "div"]
    assert len(divisions) == 1 and divisions[0].outputs[0].shape == (33, 1)


@pytest.mark.parametrize("dtype", FLOATS)
def test_zero_infinite_and_nan_divisors(dtype, x64):
    def f(x, row, s):
        return x / row[None, :], x / s, x / 0.0

    rng = np.random.default_rng(15)
    x = rand(rng, (5, 8), dtype, special=True)
    row = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 2.0, -3.0, 1e-3], dtype)
    for s in (0.0, -0.0, np.inf, np.nan):
        verify(f, x, row, dtype(s))
        x_finite = rand(rng, (5, 8), dtype)
        assert_bits_of_jax_jit(f, x_finite, row, dtype(s))


def test_integer_division_is_untouched(x64):
    def f(x, row):
        return jax.lax.div(x, row[None, :]), x // 7, jax.lax.rem(x, row[None, :])

    rng = np.random.default_rng(16)
    x = rand(rng, (9, 17), np.int32)
    row = rand(rng, (17,), np.int32)
    row[row == 0] = 3
    verify(f, x, row)
    assert "mul" not in [e.primitive for e in fusejit.make_graph(f)(x, row).eqns]
