"""Callbacks into Python between kernels: jax.debug.print and debug.callback (kept for their
effect though they return nothing), pure_callback and io_callback, also inside loops, against
what jax.jit prints and returns."""
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.experimental import io_callback

import fusejit
from helpers import rand, verify


def printed(capfd, f, *args):
    """What f prints (lines, sorted: unordered effects may come in any order) and returns."""
    capfd.readouterr()
    out = f(*args)
    return sorted(capfd.readouterr().out.splitlines()), out


def test_debug_print_and_callback_print_what_jax_jit_prints(capfd):
    def f(x):
        y = jnp.sin(x) * 2
        jax.debug.print("sum {s} of {y}", s=y.sum(), y=y)
        jax.debug.callback(lambda a: print("callback", a.dtype, a.shape), y)
        return y + 1

    x = rand(np.random.default_rng(1), (5,), np.float32)
    got_lines, got = printed(capfd, fusejit.jit(f), x)
    want_lines, want = printed(capfd, jax.jit(f), x)
    assert got_lines == want_lines and len(got_lines) == 2
    np.testing.assert_allclose(got, want, rtol=1e-6)


def test_prints_in_loops_run_every_iteration(capfd):
    def f(x):
        def body(c, i):
            jax.debug.print("step {i}", i=i)  # reads no carry: still once per iteration
            jax.debug.print("carry {c}", c=c)
            return c * 2, None
        c, _ = lax.scan(body, x, jnp.arange(4))

        def quiet(c, i):
            jax.debug.print("unused loop {i}", i=i)  # a loop kept for its prints alone
            return c, None
        lax.scan(quiet, x, jnp.arange(2))
        return c

    for scan in ("auto", "unroll", "loop"):
        got_lines, got = printed(capfd, fusejit.jit(f, scan=scan), np.float32(1.5))
        want_lines, want = printed(capfd, jax.jit(f), np.float32(1.5))
        assert got_lines == want_lines and len(got_lines) == 10, scan
        assert got == want


def test_pure_callback_and_io_callback_results_flow_into_kernels():
    def f(x):
        y = jax.pure_callback(lambda a: np.cos(a) * 3, jax.ShapeDtypeStruct(x.shape, x.dtype), jnp.exp(x))
        n = io_callback(lambda a: np.int32(a.size), jax.ShapeDtypeStruct((), np.int32), x)
        return y * 2 + n, jnp.sum(y)

    verify(f, rand(np.random.default_rng(2), (3, 7), np.float32))
    verify(f, rand(np.random.default_rng(3), (4,), np.float64), backends=("host",))


def test_a_callback_gets_prng_keys_as_jax_jit_passes_them(capfd):
    """Under jax.jit a callback receives a key as its uint32 data: one call, not one per word."""
    seen = []

    def f(k):
        jax.debug.print("key {k}", k=k)
        jax.debug.callback(lambda kk: seen.append((np.shape(kk), np.asarray(kk).dtype)), k)
        return jax.random.uniform(k, (2,))

    key = jax.random.key(3)
    got_lines, _ = printed(capfd, fusejit.jit(f), key)
    got_seen, seen[:] = list(seen), []
    want_lines, _ = printed(capfd, jax.jit(f), key)
    assert got_lines == want_lines and len(got_lines) == 1
    assert got_seen == seen and len(seen) == 1
