"""Every code cell of the two notebooks fusejit grew from (../shared/seeds/jit_in_jax.txt and
jit_transforms.txt), with `jax.jit` replaced by `fusejit.jit` and diffed against `jax.jit`.
The cells that fail under jax.jit by design ("Will these work?") must fail under fusejit
with the same kind of error.  `from jax.config import config` is spelled `jax.config` (the
installed JAX removed the old module)."""
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fusejit
from fusejit import fusejit as fusejit_decorator
from helpers import verify


# ---- jit_in_jax.txt ----

def test_cell_enable_x64():
    """`config.update("jax_enable_x64", True)`: fusejit follows the flag, as jax.jit does."""
    before = jax.config.jax_enable_x64
    try:
        jax.config.update("jax_enable_x64", True)
        assert fusejit.jit(lambda x: x * 2)(np.ones(3)).dtype == np.float64
        jax.config.update("jax_enable_x64", False)
        assert fusejit.jit(lambda x: x * 2)(np.ones(3)).dtype == np.float32
    finally:
        jax.config.update("jax_enable_x64", before)


def func_jax_diff(x):
    return jnp.diff(jnp.diff(jnp.diff(jnp.diff(jnp.diff(x)))))


def test_cell_diff5(x64):
    x = np.random.randn(100000)
    jx = jnp.asarray(x)
    compiled = verify(func_jax_diff, x)
    assert compiled.kernel_count == 1
    func_jax = fusejit.jit(func_jax_diff)
    np.testing.assert_allclose(func_jax(jx), np.diff(np.diff(np.diff(np.diff(np.diff(x))))), rtol=1e-12, atol=1e-12)


def notebook_scan(Aj, Bj):
    def func_jax(x):
        def scan_body(carry, _):
            x = carry
            return Bj @ x + jnp.linalg.solve(Aj, x) + jnp.linalg.norm(x), _
        return jax.lax.scan(scan_body, x, jnp.arange(100))[-1]
    return func_jax


@pytest.mark.parametrize("scan", ["auto", "loop", "unroll"])
def test_cell_scan_solve_norm(scan, x64):
    """The cell as written returns the scan's ys (the arange it scanned over)."""
    Aj, Bj = jnp.eye(50), jnp.eye(50)
    verify(notebook_scan(Aj, Bj), np.ones((50,)), backends=("host",), scan=scan)


def test_cell_scan_solve_norm_final_carry(x64):
    """The loop's own result (the final carry, which the cell discards) matches too, with a
    well-conditioned random A and a contracting B, on every path."""
    rng = np.random.default_rng(0)
    Aj = jnp.asarray(np.eye(50) * 4 + rng.standard_normal((50, 50)) * 0.1)
    Bj = jnp.asarray(rng.standard_normal((50, 50)) * 0.02)

    def func_jax(x):
        def scan_body(carry, _):
            x = carry
            return Bj @ x + jnp.linalg.solve(Aj, x) + jnp.linalg.norm(x), _
        return jax.lax.scan(scan_body, x, jnp.arange(100))[0]

    compiled = verify(func_jax, np.ones((50,)) * 1e-3, backends=("host",))
    assert "hoisted=('lu',)" in compiled.as_text()
    verify(lambda x: jax.lax.scan(lambda c, _: (Bj @ c + jnp.linalg.solve(Aj, c) + jnp.linalg.norm(c), _),
                                  x, jnp.arange(4))[0], np.ones((50,)) * 1e-3)


def test_cell_will_these_work_numpy_function_on_a_tracer():
    """`np.exp(x)` inside jit: jax.jit raises TracerArrayConversionError; so does fusejit."""
    def my_func(x):
        return np.exp(x)

    with pytest.raises(jax.errors.TracerArrayConversionError):
        jax.jit(my_func)(jnp.ones((2,)))
    with pytest.raises(jax.errors.TracerArrayConversionError):
        fusejit.jit(my_func)(jnp.ones((2,)))


def test_cell_will_these_work_numpy_constant():
    """`x + np.array([1., 2.])` works under jax.jit, with jax and numpy inputs."""
    def my_func(x):
        return x + np.array([1., 2.])

    verify(my_func, np.ones((2,)))
    np.testing.assert_array_equal(fusejit.jit(my_func)(jnp.ones((2,))), jax.jit(my_func)(jnp.ones((2,))))


def test_cell_will_these_work_method_without_static_self():
    """A jitted method sees `self` as an argument that is not an array, for both."""
    for jit in (jax.jit, fusejit.jit):
        class MyClass:
            def __init__(self):
                self.y = jnp.array(1.)

            @jit
            def my_method(self, x):
                return x + self.y

        obj = MyClass()
        with pytest.raises(TypeError, match="not marked as static"):
            obj.my_method(jnp.array(2.))


def test_cell_method_with_static_self():
    results = []
    for jit in (jax.jit, fusejit.jit):
        class MyClass:
            def __init__(self):
                self.y = jnp.array(1.)

            @partial(jit, static_argnums=(0,))
            def my_method(self, x):
                return x + self.y

        obj = MyClass()
        results.append(np.asarray(obj.my_method(jnp.array(2.))))
    np.testing.assert_array_equal(results[0], results[1])
    assert results[1] == 3.0


def test_markdown_static_callable_argument():
    """`f(x, g)` needs g static; with static_argnums=(1,) it works, and g from an outer scope too."""
    def g(x):
        return jnp.sin(x) * 2

    def f(x, g):
        return x + g(x)

    x = np.linspace(-1, 1, 7, dtype=np.float32)
    with pytest.raises(TypeError):
        fusejit.jit(f)(x, g)
    verify(f, x, g, static_argnums=(1,))
    verify(lambda x: x + g(x), x)


def test_cell_arrays_are_immutable():
    """`x[0] = 1.` on a JAX array is a TypeError, inside fusejit.jit as in jax.jit."""
    def assign(x):
        x[0] = 1.
        return x

    for jit in (jax.jit, fusejit.jit):
        with pytest.raises(TypeError):
            jit(assign)(jnp.ones((2,)))


# ---- jit_transforms.txt ----

def test_cells_sin_plus_cos_on_random_normal():
    from jax import random
    key = random.PRNGKey(123)
    x = random.normal(key, shape=(9,))

    def f(x):
        return jnp.sin(x) + jnp.cos(x)

    f_with_jit = fusejit.jit(f)
    np.testing.assert_allclose(f_with_jit(x), jax.jit(f)(x), rtol=2e-6, atol=1e-7)
    verify(f, np.asarray(x))


def test_cell_decorator_syntax():
    @fusejit_decorator
    def f(x):
        return jnp.sin(x) + jnp.cos(x)

    x = np.random.default_rng(1).standard_normal(9).astype(np.float32)
    assert fusejit.check(f, x).ok


def test_cell_make_jaxpr():
    """make_jaxpr(f)(x) shows the equations; fusejit.make_graph(f)(x) shows fusejit's graph."""
    def f(x):
        return jnp.sin(x) + jnp.cos(x)

    x = np.ones(9, np.float32)
    text = str(fusejit.make_graph(f)(x))
    assert "sin" in text and "cos" in text and "add" in text and "f32[9]" in text
    assert "sin" in str(jax.make_jaxpr(f)(x))
