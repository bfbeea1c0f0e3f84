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


def test_a_scatter_of_one_update_per_row_is_a_select():
    """The gradients of take_along_axis and of x[jnp.arange(n), y] (classification losses')
    and a vmapped x.at[i].op(u) with one index per row are selects fused with their
    neighbours, bit for bit jax.jit's:
    an index past the row (or before it, after jax's wrap of negatives) is dropped, an
    operand's -0.0 stays where no update lands.  Several updates per row (rows named by
    values, or by an iota of one stretched along them), CLIP mode and x.at[i].apply keep the
    scatter."""
    rng = np.random.default_rng(4)
    x = rand(rng, (37, 11), np.float32, special=True)
    x[:, 0] = -0.0
    y = rng.integers(-11, 13, 37).astype(np.int32)  # some past either end
    u = rand(rng, (37,), np.float32)
    t = rand(rng, (5, 4, 6), np.float32)
    ti = rng.integers(0, 6, (5, 4)).astype(np.int32)

    def loss(x, y):
        return jnp.sum(jnp.take_along_axis(x * x, y[:, None], 1) * 3.0)

    def indexed(x, y):  # x[jnp.arange(n), y]: the scatter's first index column is an iota
        return jnp.sum((x * x)[jnp.arange(x.shape[0]), y] * 3.0)

    def rows(x, y, u, t, ti):
        each = lambda op: jax.vmap(lambda r, i, v: op(r.at[i], v))(x, y, u)  # noqa: E731
        return {"grad": jax.grad(loss)(x, y), "indexed": jax.grad(indexed)(x, y),
                "add": each(lambda a, v: a.add(v)), "set": each(lambda a, v: a.set(v)),
                "mul": each(lambda a, v: a.multiply(v)), "min": each(lambda a, v: a.min(v)),
                "max": each(lambda a, v: a.max(v)),
                "two_batch_axes": jax.vmap(jax.vmap(lambda r, i: r.at[i].add(1.5)))(t, ti)}

    args = (x, y, u, t, ti)
    assert not [p for p in primitives(fusejit.make_graph(rows)(*args)) if p.startswith("scatter")]
    assert_bits_of_jax_jit(rows, *args)

    y2 = rng.integers(0, 11, (37, 2)).astype(np.int32)

    def kept(x, y, y2):
        rows = jnp.abs(y) % x.shape[0]  # not an iota: rows may repeat
        first = jnp.broadcast_to(jnp.arange(1), y.shape)  # an iota of one, stretched: all row 0
        return (jax.vmap(lambda r, i: r.at[i].add(1.0))(x, y2),  # two updates a row may meet
                jax.vmap(lambda r, i: r.at[i].add(1.0, mode="clip"))(x, y),
                x.at[rows, y].add(1.0), x.at[first, y].add(1.0),
                jax.vmap(lambda r, i: r.at[i].apply(jnp.sin))(x, y))

    scatters = [p for p in primitives(fusejit.make_graph(kept)(x, y, y2)) if p.startswith("scatter")]
    assert len(scatters) == 5, scatters
    verify(lambda x, y, y2: kept(x, y, y2)[:4], x, y, y2)


def test_a_product_of_a_transposed_operand_reads_the_operand():
    """`a.T @ b` and attention's `q @ k.T` are products of a and k themselves (no transpose
    kernel; BLAS reads them transposed), composed with the swap above; a transpose with other
    users stays for them, and one that reorders the free axes is not folded."""
    rng = np.random.default_rng(5)
    q, k = rand(rng, (2, 5, 8), np.float32), rand(rng, (2, 7, 8), np.float32)
    a, b = rand(rng, (4, 3), np.float32), rand(rng, (4, 5), np.float32)
    x, w = rand(rng, (4, 3, 5), np.float32), rand(rng, (5, 6), np.float32)

    def attention(q, k):
        return jax.nn.softmax(q @ jnp.swapaxes(k, -1, -2) / 8.0, axis=-1)

    assert "transpose" not in primitives(fusejit.make_graph(attention)(q, k))
    verify(attention, q, k, rtol=1e-5, atol=1e-6)

    def both(a, b):
        return a.T @ b, (a.T @ b).T, b.T @ b

    assert "transpose" not in primitives(fusejit.make_graph(both)(a, b))
    verify(both, a, b, rtol=1e-5, atol=1e-5)
    shared = lambda a, b: (a.T @ b, a.T * 2.0)  # noqa: E731
    assert primitives(fusejit.make_graph(shared)(a, b)).count("transpose") == 1
    verify(shared, a, b, rtol=1e-5, atol=1e-5)
    reordered = lambda x, w: jnp.transpose(x, (1, 0, 2)) @ w  # noqa: E731
    assert "transpose" in primitives(fusejit.make_graph(reordered)(x, w))
    verify(reordered, x, w, rtol=1e-5, atol=1e-5)


def test_transposes_of_transposes_compose_into_the_product():
    """Multi-head attention splits heads with a transpose and transposes k again for q @ k.T:
    both fold into the products, leaving only the transpose that merges the heads; a first
    transpose with another user stays for it."""
    rng = np.random.default_rng(6)
    b, t, heads, d = 2, 16, 4, 32
    h, w = rand(rng, (b, t, d), np.float32) * 0.3, rand(rng, (3, d, d), np.float32) * 0.2  # moderate scores

    def attention(h, w):
        q, k, v = ((h @ w[j]).reshape(b, t, heads, d // heads).transpose(0, 2, 1, 3) for j in range(3))
        s = jax.nn.softmax(q @ jnp.swapaxes(k, -1, -2), -1)
        return (s @ v).transpose(0, 2, 1, 3).reshape(b, t, d)

    assert primitives(fusejit.make_graph(attention)(h, w)).count("transpose") == 1
    # Three chained float32 products with outputs near 2: fusejit and jax.jit each differ from
    # the float64 answer by up to 1.7e-5 (the BLAS's summation order follows the CPU it finds),
    # so an absolute tolerance of 1e-5 failed elements near zero on one machine and not another.
    verify(attention, h, w, rtol=1e-4, atol=5e-5)

    def shared(h):
        k = h.transpose(0, 2, 1)
        return jnp.swapaxes(k, 1, 2) @ k, k * 2.0

    assert primitives(fusejit.make_graph(shared)(h)).count("transpose") == 1
    verify(shared, h, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_a_reshape_of_a_reshape_is_one_view_between_library_calls(dtype, x64):
    """jnp.linalg.inv and solve reshape a triangular solve's result and back before the next
    solve: one reshape of the first result, a view, with no kernel's copy between the solves;
    a chain of reshapes a kernel reads (its own output) still computes the same values."""
    rng = np.random.default_rng(6)
    a = rand(rng, (9, 9), dtype) + 9 * np.eye(9, dtype=dtype)
    compiled = verify(lambda a, b: (jnp.linalg.inv(a), jnp.linalg.solve(a, b)), a, rand(rng, (9, 4), dtype))
    chains = [e for e in compiled.graph.eqns if e.primitive == "reshape"
              and any(p.primitive == "reshape" and e.inputs[0] is p.outputs[0] for p in compiled.graph.eqns)]
    assert not chains
    assert "reshape (a view)" in compiled.as_text()
    verify(lambda x: x.reshape(6, 10).reshape(3, 20).reshape(60) * 2.0, rand(rng, (4, 15), dtype))
