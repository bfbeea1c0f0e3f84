"""Sign facts (fusejit/ranges.py): the exp of `x - max(x)` over the max's axes calls the host's
fj_exp_nonpositive, whose results are fj_exp's bit for bit; other exps keep fj_exp."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fusejit
from fusejit import compiler
from helpers import bitwise_equal, rand, verify


def marked(fun, *args) -> list[bool]:
    """For each exp the compiled program computes, whether it is marked non-positive."""
    compiled = fusejit.jit(fun, backend="host").lower(*args)
    return [bool(e.params.get("nonpositive")) for e in compiled.graph.eqns if e.primitive == "exp"]


def test_softmax_exps_are_marked_and_compute_fj_exp_bit_for_bit(monkeypatch):
    """Every non-positive float (a stride through their bit patterns, with the ends, the
    denormals and -inf) exponentiated as `x - max(x)` with max 0: the same bits as the
    unmarked program, whose exp is fj_exp."""
    bits = np.concatenate([np.arange(0x80000000, 0xFF800001, 1021, dtype=np.uint64),
                           [0x80000000, 0x80000001, 0x807FFFFF, 0x80800000, 0xC2D00000, 0xC2D00001,
                            0xC2CFFFFF, 0xFF7FFFFF, 0xFF800000]]).astype(np.uint32)
    x = np.concatenate([bits.view(np.float32), [0.0]]).astype(np.float32)

    def f(x):
        return jnp.exp(x - jnp.max(x))

    assert marked(f, x) == [True]
    got = np.asarray(fusejit.jit(f, backend="host")(x))
    with monkeypatch.context() as m:
        m.setattr(compiler, "mark_nonpositive_exps", lambda graph: graph)
        assert marked(f, x) == [False]
        want = np.asarray(fusejit.jit(f, backend="host")(x))
    assert bitwise_equal(got, want)
    assert "fj_exp_nonpositive" in fusejit.jit(f, backend="host").lower(x).source


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_softmax_forms_with_special_values(dtype, x64):
    rng = np.random.default_rng(21)
    x = rand(rng, (37, 129), dtype, special=True)
    x[np.isnan(x)] = 1.0  # (XLA's CPU max of a large array can skip a NaN; fusejit's propagates it)
    x[3] = -np.inf  # a row with no finite max: -inf - -inf is NaN, as jax.jit has it
    x[4, :5] = np.inf

    def forms(x):
        return (jax.nn.softmax(x, axis=-1), jax.nn.softmax(x, axis=0), jax.nn.log_softmax(x, axis=1),
                jnp.exp(x - x.max()), jnp.exp(x - x.max(axis=1, keepdims=True)))

    verify(forms, x)
    exps = marked(forms, x)
    assert len(exps) >= 4 and all(exps)  # (cse merges log_softmax's exp with the last one's)


@pytest.mark.parametrize("dtype", [np.float16, jnp.bfloat16])
def test_half_type_softmax_exps_are_marked_through_the_rounding(dtype):
    """In a half type the difference is rounded (fusejit/halves.py) before the exp: to
    nearest, so it stays at or below zero."""
    x = rand(np.random.default_rng(23), (37, 129), dtype, special=True)

    def forms(x):
        return jax.nn.softmax(x, axis=-1), jnp.exp(x - x.max(axis=0, keepdims=True))

    verify(forms, x)
    assert marked(forms, x) == [True, True]


def test_exps_without_the_proof_are_not_marked():
    rng = np.random.default_rng(22)
    x = rand(rng, (33, 33), np.float32)
    y = rand(rng, (33, 33), np.float32)

    def others(x, y):
        return (jax.nn.logsumexp(x, axis=1),          # the max is replaced by 0 where infinite
                jnp.exp(x - y.max(axis=1, keepdims=True)),   # another array's max
                jnp.exp(x - x.max(axis=0)[:, None]),  # a column's max on a row
                jnp.exp(x.max(axis=1, keepdims=True) - x),   # the other sign
                jnp.exp(x + x.max(axis=1, keepdims=True)),
                jnp.exp(x - x.min(axis=1, keepdims=True)))

    verify(others, x, y)
    assert marked(others, x, y) == [False] * 6
