"""lax.top_k as a generated kernel (fusejit/topk.py, kernels/top_k.cu.in) against jax.jit on
every path: values in descending total order (-NaN < -inf < ... < -0 < +0 < ... < +NaN), equal
values in the order of the row, int32 places; the operand's producers fused into it."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

import fusejit
from fusejit.topk import MAX_TOP_K
from helpers import ALL_DTYPES, rand, run_host_under_asan, verify


def kernel_kinds(compiled) -> list:
    return [k.spec.kind for k in compiled.rendered]


@pytest.mark.parametrize("dtype", ALL_DTYPES)
def test_top_k_runs_as_a_kernel_in_total_order_with_ties_by_place(dtype, x64):
    rng = np.random.default_rng(61)
    x = rand(rng, (7, 37), dtype, special=True)
    if np.dtype(dtype).kind == "f":
        x = np.round(x / 2)  # ties
        x[0, :6] = [np.nan, -0.0, 0.0, np.inf, -np.inf, -np.nan]
        x[1, 3], x[1, 30] = -np.nan, np.nan
        x[2] = 0.0
        x[2, ::3] = -0.0
    elif np.dtype(dtype).kind in "iu":
        x[3] = x[3, 0]  # a row of one value
    compiled = verify(lambda x: (lax.top_k(x, 1), lax.top_k(x, 5), lax.top_k(x, 37)), x)
    assert kernel_kinds(compiled).count("top_k") == 3
    assert compiled.call_count == 0  # no library call left


@pytest.mark.parametrize("shape, k, axis", [((1,), 1, -1), ((9,), 4, 0), ((3, 5, 17), 6, -1),
                                            ((4, 6, 5), 3, 1), ((6, 4), 2, 0), ((2, 1000), MAX_TOP_K, -1)])
def test_top_k_of_any_rank_and_axis(shape, k, axis):
    x = rand(np.random.default_rng(62), shape, np.float32)
    compiled = verify(lambda x: lax.top_k(x, k, axis=axis), x)
    assert kernel_kinds(compiled) == ["top_k"]


def test_top_k_fuses_its_operand_and_feeds_later_kernels():
    rng = np.random.default_rng(63)
    x, bias = rand(rng, (33, 50), np.float32, special=True), rand(rng, (50,), np.float32)

    def f(x, bias):
        values, places = lax.top_k(jnp.sin(x) * 2 + bias, 7)
        return jnp.exp(values) / jnp.sum(jnp.exp(values), axis=-1, keepdims=True), places * 3, places
    compiled = verify(f, x, bias)
    top = [k for k in compiled.rendered if k.spec.kind == "top_k"]
    assert len(top) == 1 and {e.primitive for e in top[0].spec.eqns} >= {"sin", "mul", "add", "top_k"}


def test_top_k_of_a_single_output_and_sorted_inputs():
    """Only the values (or only the places) used; rows in ascending order insert every
    element (each moves up the whole list), rows in descending order none after the first k."""
    ramp = np.tile(np.arange(300, dtype=np.float32), (5, 1))
    verify(lambda x: (lax.top_k(x, 9)[0], lax.top_k(-x, 9)[1]), ramp)
    verify(lambda x: jnp.argsort(x)[..., :3] + lax.top_k(x, 3)[1], ramp)


@pytest.mark.parametrize("shape, k", [((0, 5), 2), ((4, 0), 0), ((3, 8), 0), ((0,), 0)])
def test_top_k_of_empty_operands_and_k_zero(shape, k):
    x = np.zeros(shape, np.float32)
    verify(lambda x: lax.top_k(x, k), x)


def test_large_k_stays_a_library_call():
    x = rand(np.random.default_rng(64), (3, 200), np.float32)
    compiled = verify(lambda x: lax.top_k(x, MAX_TOP_K + 1), x)
    assert "top_k" not in kernel_kinds(compiled) and compiled.call_count == 1


def test_top_k_kernel_source_reads_like_cuda():
    x = rand(np.random.default_rng(65), (4, 10), np.float32)
    text = fusejit.jit(lambda x: lax.top_k(jnp.cos(x), 3)).lower(x).source
    assert "// fused: cos, top_k" in text
    assert "top 3 of 4 row(s) of 10 along axis 1 of [4, 10]" in text


def test_top_k_under_grad_and_vmap():
    x = rand(np.random.default_rng(66), (5, 12), np.float32)
    verify(jax.grad(lambda x: jnp.sum(lax.top_k(x, 3)[0] ** 2)), x)
    verify(jax.vmap(lambda row: lax.top_k(row, 4)), x)


def test_top_k_host_chunks_stay_in_bounds(tmp_path):
    """The host ranks 16 elements at a time (FJ_TOP_K_CHUNK), which the emulation compiles
    out: rows shorter than a chunk, rows a chunk and a few long, one chunk exactly."""
    rng = np.random.default_rng(67)
    x, y = rand(rng, (9, 37), np.float32, special=True), rand(rng, (5, 7), np.int16)
    z = rand(rng, (3, 16), np.float64)
    compiled = verify(lambda x, y, z: (lax.top_k(jnp.sin(x), 3), lax.top_k(y, 7), lax.top_k(z, 16)), x, y, z)
    assert "FJ_TOP_K_CHUNK" in compiled.source
    run_host_under_asan(compiled, (x, y, z), tmp_path)
