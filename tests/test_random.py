"""jax.random inside the jitted function: keys made inside, raw uint32 keys (PRNGKey) and typed
keys (jax.random.key) as arguments and results, split/fold_in/bits and the samplers built on
them, against jax.jit on every path (the same threefry bits, so integer results are equal)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

import fusejit
from fusejit.check import compare
from helpers import rand, verify


def test_a_key_made_inside_the_function():
    x = rand(np.random.default_rng(1), (7, 5), np.float32)
    verify(lambda x: x + jax.random.uniform(jax.random.PRNGKey(3), x.shape), x)
    verify(lambda x: x * jax.random.bernoulli(jax.random.key(4), 0.3, x.shape), x)


@pytest.mark.parametrize("typed", [False, True])
def test_raw_and_typed_keys_as_arguments(typed):
    key = jax.random.key(11) if typed else jax.random.PRNGKey(11)
    x = rand(np.random.default_rng(2), (3, 33), np.float32)

    def dropout(key, x):
        keep = jax.random.bernoulli(key, 0.7, x.shape)
        return jnp.where(keep, x / 0.7, 0.0)

    verify(dropout, key, x)
    verify(lambda k: {"bits8": jax.random.bits(k, (5,), jnp.uint8), "bits32": jax.random.bits(k, (2, 9)),
                      "randint": jax.random.randint(k, (13,), -4, 50),
                      "fold_in": jax.random.bits(jax.random.fold_in(k, 7), (4,))}, key)


def test_typed_keys_as_results_are_keys():
    key = jax.random.key(5)
    split = fusejit.jit(lambda k: jax.random.split(k, 3))
    got = split(key)
    assert jax.dtypes.issubdtype(got.dtype, jax.dtypes.prng_key) and got.shape == (3,)
    np.testing.assert_array_equal(jax.random.key_data(got), jax.random.key_data(jax.jit(split.fun)(key)))
    verify(lambda k, x: (jax.random.split(k)[1], x + jax.random.normal(k, x.shape)), key,
           rand(np.random.default_rng(3), (4,), np.float32))
    # fusejit's check notices a result that should be keys but is their data
    report = fusejit.check(fusejit.jit(lambda k: jax.random.key_data(jax.random.split(k))), key)
    assert report.ok
    wrong = compare(jax.random.split(key), jax.random.key_data(jax.random.split(key)))
    assert not wrong.ok and "key<fry>" in str(wrong)


def test_keys_move_through_indexing_loops_and_vmap():
    key = jax.random.PRNGKey(8)

    def walk(key):
        def step(k, _):
            k, sub = jax.random.split(k)
            return k, jax.random.normal(sub, (3,))
        return lax.scan(step, key, None, length=6)

    verify(walk, key)
    verify(lambda k: jax.vmap(lambda kk: jax.random.uniform(kk, (2,)))(jax.random.split(k, 5)), key)
    verify(lambda k: jax.random.split(k, 4)[jnp.array([3, 0])], jax.random.key(2))
    verify(lambda k: {"perm": jax.random.permutation(k, 17), "choice": jax.random.choice(k, 10, (4,), replace=False)},
           key)


def test_other_prng_implementations_name_what_is_missing():
    with pytest.raises(fusejit.UnsupportedError, match="rng_bit_generator"):
        fusejit.jit(lambda k: jax.random.uniform(k, (3,)))(jax.random.key(0, impl="rbg"))


def test_samplers_built_on_gamma_and_key_clones():
    """random_gamma is rejection sampling in a while loop per key (JAX's own code, traced);
    beta, dirichlet, t and chisquare draw through it.  Host only: a loop per key of loops
    until acceptance takes a minute in the emulation (NVRTC still compiles every kernel)."""
    key = jax.random.PRNGKey(21)
    a = np.abs(rand(np.random.default_rng(4), (6,), np.float32)) + 0.3
    verify(lambda k, a: {"gamma": jax.random.gamma(k, a), "beta": jax.random.beta(k, a, a[::-1]),
                         "dirichlet": jax.random.dirichlet(k, a), "t": jax.random.t(k, 3.0, (4,)),
                         "chisquare": jax.random.chisquare(k, 2.5, (4,))}, key, a, rtol=1e-4,
           backends=("host",))
    verify(lambda k: jax.random.uniform(jax.random.clone(k), (3,)), jax.random.key(2))
