"""XLA's algebraic rewrites that remove work (fusejit/simplify.py): a reduction over axes of
extent 1 is a reshape (so a sum of one -0.0 is -0.0, as jax.jit's), and a transpose that swaps
a product's free blocks is the product with its operands swapped.  Each case is checked
against jax.jit (bit for bit where no product rounds) and on the graph fusejit compiles."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fusejit
from fusejit.simplify import REDUCTIONS
from helpers import bitwise_equal, rand, verify


def primitives(graph) -> list[str]:
    names = []
    for e in graph.eqns:
        names.append(e.primitive)
        for value in e.params.values():
            bodies = value if isinstance(value, tuple) else (value,)
            names += [n for b in bodies if isinstance(b, fusejit.ir.Graph) for n in primitives(b)]
    return names


def assert_bits_of_jax_jit(fun, *args):
    expected = jax.tree_util.tree_leaves(jax.jit(fun)(*args))
    for backend in ("host", "emulate"):
        got = jax.tree_util.tree_leaves(fusejit.jit(fun, backend=backend)(*args))
        for k, (a, b) in enumerate(zip(got, expected)):
            a, b = np.asarray(a), np.asarray(b)
            assert a.dtype == b.dtype and a.shape == b.shape, (backend, k)
            assert bitwise_equal(a, b), (backend, k, a, b)


@pytest.mark.parametrize("dtype", [np.float32, np.int32, np.bool_])
def test_reductions_over_unit_axes_are_reshapes(dtype):
    """Sums, products, max, min, and/or, argmax and argmin over axes of extent 1 only (keepdims
    or not, one or two axes, a scan body's too): no reduction left, results bit for bit
    jax.jit's (-0.0 stays -0.0; a NaN stays)."""
    rng = np.random.default_rng(1)
    x = rand(rng, (1, 37, 1), dtype, special=True)
    if x.dtype.kind == "f":
        x[0, :5, 0] = -0.0

    def f(x):
        if x.dtype == jnp.bool_:
            out = {"any": jnp.any(x, 0), "all": jnp.all(x, (0, 2), keepdims=True)}
        else:
            out = {"sum": jnp.sum(x, 0), "prod": jnp.prod(x, (0, 2)), "max": jnp.max(x, 2, keepdims=True),
                   "min": jnp.min(x, (0, 2)), "argmax": jnp.argmax(x, 0), "argmin": jnp.argmin(x, 2)}
        out["scan"] = jax.lax.scan(lambda c, r: (c, jnp.max(r, 1)), 0, x.reshape(37, 1, 1))[1]
        return out

    assert not REDUCTIONS & set(primitives(fusejit.make_graph(f)(x)))
    assert_bits_of_jax_jit(f, x)


def test_reductions_over_longer_axes_stay():
    x = rand(np.random.default_rng(2), (1, 37, 3), np.float32)
    f = lambda x: (jnp.sum(x, (0, 1)), jnp.argmax(x, 2), jnp.max(x, 1))  # noqa: E731
    assert primitives(fusejit.make_graph(f)(x)).count("reduce_sum") == 1
    verify(f, x)


def test_a_transposed_product_is_the_swapped_product():
    """jax.grad of x @ w with respect to w is dot(g, x) then a transpose: fusejit computes
    dot(x, g) instead (no transpose kernel), also batched; a product with another use, and a
    transpose that is not the swap, keep their form."""
    rng = np.random.default_rng(3)
    x, w = rand(rng, (32, 64), np.float32), rand(rng, (64, 16), np.float32)
    a, b = rand(rng, (3, 5, 7), np.float32), rand(rng, (3, 7, 4), np.float32)

    def loss(w, x):
        return jnp.sum(jnp.tanh(x @ w))

    grad = jax.grad(loss)
    assert "dot_general" in str(jax.make_jaxpr(grad)(w, x)) and "transpose" in str(jax.make_jaxpr(grad)(w, x))
    assert "transpose" not in primitives(fusejit.make_graph(grad)(w, x))
    scale = float(np.abs(jax.jit(grad)(w, x)).max())  # sums of 32 products: errors of that size
    verify(grad, w, x, rtol=1e-5, atol=1e-5 * scale)

    swapped = lambda a, b: jnp.swapaxes(a @ b, 1, 2)  # noqa: E731
    graph = fusejit.make_graph(swapped)(a, b)
    assert primitives(graph) == ["dot_general"]
    (dot,) = graph.eqns
    assert dot.inputs == (graph.inputs[1], graph.inputs[0])
    verify(swapped, a, b, rtol=1e-5, atol=1e-5)

    def kept(a, b):
        p = a @ b
        return jnp.swapaxes(p, 1, 2), p

    assert primitives(fusejit.make_graph(kept)(a, b)).count("transpose") == 1
    verify(kept, a, b, rtol=1e-5, atol=1e-5)
    other = lambda a, b: jnp.transpose(a @ b, (2, 1, 0))  # noqa: E731
    assert "transpose" in primitives(fusejit.make_graph(other)(a, b))
    verify(other, a, b, rtol=1e-5, atol=1e-5)
