"""Index arithmetic that codegen sees through (fusejit/indexvalues.py): a gather or dynamic
slice whose index is computed from an iota reads the operand at the affine index, with no
clamp and no fill select where the index's range proves it fits.  Where it does not (a range
past the operand, arithmetic that wraps in its integer type, negative indices to normalise),
the run-time checks stay; every result matches jax.jit."""
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from helpers import rand, verify

RUN_TIME_CHECKS = ("fj_start_index", "fj_index_fits", "fj_clamp_index")


def source(compiled) -> str:
    return "\n".join(k.source for k in compiled.rendered)


# Gathers whose indices the ranges prove in bounds: no check is left in the kernel.
PROVEN = {
    "take_every_third": lambda a, labels: jnp.take(a, jnp.arange(0, a.shape[1], 3), axis=1),
    "take_clip": lambda a, labels: jnp.take(a, jnp.arange(1, a.shape[1], 2), axis=1, mode="clip") * 2,
    "rows_backwards_by_two": lambda a, labels: a[jnp.arange(a.shape[0] - 1, -1, -2)],
    "take_along_rows": lambda a, labels: jnp.take_along_axis(
        a, jnp.broadcast_to(jnp.arange(a.shape[1])[None, ::-1], a.shape), axis=1),
}
# Gathers whose indices may fall outside, or whose arithmetic wraps: the checks stay.
CHECKED = {
    "past_the_end": lambda a, labels: jnp.take(a, jnp.arange(0, 2 * a.shape[1] + 1, 3), axis=1),
    "negative_indices": lambda a, labels: jnp.take(a, jnp.arange(-a.shape[1], a.shape[1], 2), axis=1),
    "int32_wraps": lambda a, labels: jnp.take(a, jnp.arange(9, dtype=jnp.int32) * (2**30 - 1), axis=1,
                                              mode="clip"),
    "int8_wraps": lambda a, labels: jnp.take(a, (jnp.arange(100, dtype=jnp.int8) * 3).astype(jnp.int32) % 50,
                                             axis=1, mode="clip"),
    "uint32_wraps": lambda a, labels: jnp.take(a, jnp.arange(6, dtype=jnp.uint32) - 2, axis=1, mode="clip"),
    # one index of each pair from an iota (in bounds), the other from data
    "pick_per_row": lambda a, labels: a[jnp.arange(a.shape[0]), labels % a.shape[1]],
}
DTYPES = [np.float32, np.float64, np.int32, np.bool_]
SHAPES = [(7, 13), (64, 1001), (1, 1), (3, 4)]


def inputs(shape, dtype, seed):
    rng = np.random.default_rng(seed)
    return rand(rng, shape, dtype, special=True), rand(rng, (shape[0],), np.int32)


@pytest.mark.parametrize("name", sorted(PROVEN))
@pytest.mark.parametrize("dtype", DTYPES)
def test_gathers_at_iota_indices_read_the_operand_directly(name, dtype, x64):
    for k, shape in enumerate(SHAPES):
        compiled = verify(PROVEN[name], *inputs(shape, dtype, k))
        text = source(compiled)
        assert not any(check in text for check in RUN_TIME_CHECKS), text


@pytest.mark.parametrize("name", sorted(CHECKED))
@pytest.mark.parametrize("dtype", [np.float32, np.int32])
def test_indices_that_may_fall_outside_or_wrap_keep_their_checks(name, dtype):
    for k, shape in enumerate([(7, 13), (64, 101), (2, 3)]):
        compiled = verify(CHECKED[name], *inputs(shape, dtype, k))
        assert any(check in source(compiled) for check in RUN_TIME_CHECKS)


def test_decided_compares_selects_and_extremes_as_values(x64):
    """Index arithmetic whose outcome the ranges decide, used as values (not indices): the
    decided compare, select, min, max and rem give jax.jit's numbers, and those they cannot
    decide are computed."""
    def f(a):
        n = a.shape[1]
        i = lax.broadcasted_iota(jnp.int32, a.shape, 1)
        decided = jnp.where(i < n, a, 0) + jnp.minimum(i, n + 5) + jnp.maximum(i - n, -1) + i % (n + 1)
        flags = [i == n, i != -1, i >= 0, i <= n - 1, i > -1, -i > 0, (i * 2 + 1) == 0]
        undecided = jnp.where(i < n // 2, a, 1) * (i % 3) + jnp.minimum(i, n // 2) + (i > 2) + (i == 2)
        return decided, undecided, (i * 7 - 3).astype(jnp.int8), jnp.stack(flags), (i - 5).astype(jnp.uint8)
    for k, shape in enumerate(SHAPES):
        compiled = verify(f, rand(np.random.default_rng(k), shape, np.float32))
        if shape[1] > 3:  # the rem it cannot decide is computed
            assert "fj_rem(" in source(compiled)


def test_dynamic_slice_at_a_computed_start_inside_a_loop(x64):
    """fori_loop's counter is not an iota: its dynamic slices keep their clamps; an iota-built
    start folded to a constant clamps at compile time."""
    def f(a):
        def body(k, acc):
            return acc + lax.dynamic_slice_in_dim(a, k * 2, 3, axis=1).sum()
        start = jnp.arange(4)[3] * 5  # a constant the graph computes
        return lax.fori_loop(0, 4, body, 0.0), lax.dynamic_slice_in_dim(a, start, 2, axis=1)
    for k, shape in enumerate([(5, 30), (3, 9)]):
        verify(f, rand(np.random.default_rng(k), shape, np.float32))
