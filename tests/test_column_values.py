"""Values that depend on the column alone, in map kernels over rows (fusejit/columnvalues.py):
the host computes them once per column before the rows, where a division, a square root or
a call is among them; every result matches jax.jit, and the kernels stay in bounds."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from helpers import rand, run_host_under_asan, verify


def batch_norm(x, mean, var, scale):
    return (x - mean) * lax.rsqrt(var + 1e-5) * scale + 0.5


def softmax_columns(x):
    return jax.nn.softmax(x, axis=0)


def chained(x, mean, var, scale):
    """Two per-column values that share a step, one of them stored as it is, and an integer one."""
    inv = 1.0 / (jnp.abs(var) + 1.0)
    ints = (jnp.floor(mean * 10).astype(jnp.int32) // 3).astype(x.dtype)
    return x * inv + jnp.exp(scale) * inv, jnp.broadcast_to(jnp.sqrt(jnp.abs(mean)), x.shape), x - ints


CASES = {"batch_norm": (batch_norm, 3), "softmax_columns": (softmax_columns, 0), "chained": (chained, 3)}


def source(compiled) -> str:
    return "\n".join(k.source for k in compiled.rendered)


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(70, 129), (300, 1000), (5, 3)])
def test_per_column_values_are_computed_once_per_column(name, dtype, shape, x64, tmp_path):
    fn, vectors = CASES[name]
    rng = np.random.default_rng(shape[1])
    args = (rand(rng, shape, dtype, special=True),) + tuple(rand(rng, shape[1:], dtype) for _ in range(vectors))
    compiled = verify(fn, *args)
    assert ("#if FJ_COLUMN_VALUES" in source(compiled)) == (shape != (5, 3))  # (5, 3): a flat loop, no rows
    if shape == (70, 129):
        run_host_under_asan(compiled, args, tmp_path)


def test_per_column_values_past_the_stack_budget_stay_per_element():
    """A row of 16000 floats: an array per value would pass COLUMN_BYTES; and a map whose
    per-column values are loads alone has nothing worth an array."""
    rng = np.random.default_rng(0)
    x, var = rand(rng, (3, 16000), np.float32), rand(rng, (16000,), np.float32)
    compiled = verify(lambda x, v: x * lax.rsqrt(jnp.abs(v) + 1.0), x, var)
    assert "#if FJ_COLUMN_VALUES" not in source(compiled)
    compiled = verify(lambda x, v: x * v - jnp.maximum(v, 0.0), x[:, :100], var[:100])
    assert "#if FJ_COLUMN_VALUES" not in source(compiled)
