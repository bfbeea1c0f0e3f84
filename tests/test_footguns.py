"""Every known case where fusejit and jax.jit deliberately differ, and how.

Each test states fusejit's behaviour and checks it against NumPy or IEEE arithmetic,
not against jax.jit, because jax.jit's answer depends on the XLA backend.
"""
import jax
import jax.numpy as jnp
from jax import lax
import numpy as np
import pytest

import fusejit


def on_xla_cpu() -> bool:
    return jax.default_backend() == "cpu"


def test_denormal_inputs_are_kept_not_flushed():
    """fusejit keeps IEEE denormals, as GPUs and XLA's GPU backend do. XLA's CPU backend
    flushes them to zero, so sign/ceil/log of a denormal input differ from jax.jit on CPU.
    fusejit.check counts denormal *outputs* as zero on both sides."""
    tiny = np.finfo(np.float32).tiny / 4
    x = np.array([tiny, -tiny], np.float32)
    got = fusejit.jit(lambda x: (jnp.sign(x), jnp.ceil(x), x != 0))(x)
    np.testing.assert_array_equal(got[0], [1.0, -1.0])
    np.testing.assert_array_equal(got[1], [1.0, -0.0])
    np.testing.assert_array_equal(got[2], [True, True])
    if on_xla_cpu():
        want = jax.jit(lambda x: jnp.sign(x))(x)
        np.testing.assert_array_equal(want, [0.0, 0.0])  # the difference this test documents


@pytest.mark.parametrize("row", [24, 128, 1025])
def test_max_reduction_propagates_nan_in_long_rows(row):
    """lax.max and reduce_max propagate NaN. fusejit does so for every row length, as NumPy
    does (row groups, medium rows folded in groups, the team code). XLA's vectorised CPU
    reduction can lose a NaN in a long row."""
    x = np.ones((37, row), np.float32)
    x[0, row * 2 // 3] = np.nan
    got = fusejit.jit(lambda x: (jnp.max(x, 1), jnp.min(x, 1)))(x)
    np.testing.assert_array_equal(got[0], np.max(x, 1))
    np.testing.assert_array_equal(got[1], np.min(x, 1))
    assert np.isnan(got[0][0]) and np.isnan(got[1][0])


@pytest.mark.parametrize("rows", [90, 96, 1000])
def test_max_reduction_propagates_nan_down_columns(rows):
    """The same over axis 0: fusejit's column reductions (periodic columns, column tiles)
    give NaN in the column that holds one, as NumPy does; XLA's CPU backend gave the
    column's largest other element for 96 x 48 float32 with a NaN in row 89 (found by
    test_fuzz.py's medium programs)."""
    x = np.ones((rows, 48), np.float32)
    x[rows - 7, 17] = np.nan
    got = fusejit.jit(lambda x: (jnp.max(x, 0), jnp.min(x, 0)))(x)
    np.testing.assert_array_equal(got[0], np.max(x, 0))
    np.testing.assert_array_equal(got[1], np.min(x, 0))
    assert np.isnan(got[0][17]) and np.isnan(got[1][17]) and not np.isnan(got[0][16])


def test_float32_sums_accumulate_in_float64():
    """A float32 sum accumulates in float64 and rounds once, so it can be *more* accurate
    than jax.jit's. The diff uses the float32 tolerance, not bit equality."""
    x = np.full(2**24 + 8, 1.0, np.float32)
    got = fusejit.jit(jnp.sum)(x)
    assert got == np.float32(2**24 + 8)


def test_xla_simplifies_cumsum_of_a_padded_length_one_axis_wrongly():
    """jax.jit (XLA's CPU backend) turns cumsum(pad(x)) along an axis of length 1 padded to 3
    into a broadcast of x, so [0, 1, 0] sums to [1, 1, 1]. fusejit computes [0, 1, 1], as
    NumPy and JAX without jit do. The random-program test accepts fusejit's answer when it
    matches JAX run op by op and jax.jit's does not."""
    def f(x):
        return jnp.cumsum(lax.pad(x, np.float32(0), [(1, 1, 0), (0, 0, 0)]), 0)

    x = np.ones((1, 1), np.float32)
    want = np.cumsum(np.pad(x, [(1, 1), (0, 0)]), 0)
    np.testing.assert_array_equal(fusejit.jit(f)(x), want)
    with jax.disable_jit():
        np.testing.assert_array_equal(f(x), want)


def test_float32_sums_that_overflow_only_on_the_way_stay_finite():
    """float32 sums and cumsum accumulate in float64 and round once: where the float32
    partial sums leave the float32 range and the total comes back within it, the sum is
    finite (the float64 sum rounded) and the cumsum is inf only at the prefixes beyond the
    range.  XLA accumulates in float32, so jax.jit's are inf from the first overflow on."""
    x = np.array([3e38, 3e38, -3e38], np.float32)
    total, running = fusejit.jit(lambda x: (jnp.sum(x), jnp.cumsum(x)))(x)
    np.testing.assert_array_equal(total, np.sum(x.astype(np.float64)).astype(np.float32))
    with np.errstate(over="ignore"):
        np.testing.assert_array_equal(running, np.cumsum(x.astype(np.float64)).astype(np.float32))
    if on_xla_cpu():
        want_total, want_running = jax.jit(lambda x: (jnp.sum(x), jnp.cumsum(x)))(x)
        assert np.isinf(want_total) and np.isinf(want_running[2])  # the difference this test documents


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_a_reciprocal_below_the_normal_floats_is_kept(x64, dtype):
    """A division by a broadcast value is a multiplication by its reciprocal in jax.jit on the
    CPU, and in fusejit, which makes the same rewrite (fusejit/reciprocal.py).  The reciprocal
    of a divisor above 2^126 (float32; 2^1022 for float64) is a denormal: XLA's CPU backend
    flushes it to zero and fusejit keeps it, as IEEE arithmetic and the GPU do.  So
    `x / max|x|` over a row whose largest magnitude is the largest float is 0 in jax.jit and
    1 (the quotient, within an ULP or two) in fusejit.  The random-program tests accept
    fusejit's answer where it matches the program run with IEEE quotients."""
    def scaled(x):
        return x / jnp.max(jnp.abs(x), 1, keepdims=True)

    big = np.finfo(dtype).max
    x = np.array([[big / 2, big], [-big, big / 4]], dtype)
    got = np.asarray(fusejit.jit(scaled)(x))
    assert got.dtype == dtype
    np.testing.assert_allclose(got, [[0.5, 1.0], [-1.0, 0.25]], rtol=4 * np.finfo(dtype).eps)
    if on_xla_cpu():
        assert jax.jit(scaled)(x)[0, 1] == 0.0  # the difference this test documents
