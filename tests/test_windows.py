"""Convolutions and window reductions (fusejit/windows.py) against jax.jit on every path:
jnp.convolve/correlate, lax.conv_general_dilated with strides, padding (negative too),
dilations, layouts and groups, pooling with reduce_window sum/max/min, and their gradients."""
import jax
import jax.numpy as jnp
import math

import numpy as np
import pytest
from jax import lax

from helpers import rand, verify


def rng(seed):
    return np.random.default_rng(seed)


@pytest.mark.parametrize("mode", ["full", "same", "valid"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int32])
def test_convolve_and_correlate(mode, dtype, x64):
    r = rng(1)
    x, k = rand(r, (23,), dtype), rand(r, (5,), dtype)
    verify(lambda x, k: (jnp.convolve(x, k, mode=mode), jnp.correlate(x, k, mode=mode)), x, k)


CONVS = {
    "same": dict(window_strides=(1, 1), padding="SAME"),
    "strided_negative_pad_dilated": dict(window_strides=(2, 1), padding=((1, 2), (0, -1)), lhs_dilation=(1, 2),
                                         rhs_dilation=(2, 1)),
    "nhwc_feature_groups": dict(window_strides=(1, 2), padding="SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                feature_group_count=2),
    "batch_groups": dict(window_strides=(1, 1), padding="VALID", batch_group_count=2),
}


@pytest.mark.parametrize("name", sorted(CONVS))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_conv_general_dilated(name, dtype, x64):
    params = CONVS[name]
    r = rng(2)
    if name == "nhwc_feature_groups":
        x, w = rand(r, (2, 9, 11, 6), dtype), rand(r, (3, 2, 3, 8), dtype)
    elif name == "batch_groups":
        x, w = rand(r, (4, 3, 7, 5), dtype), rand(r, (6, 3, 3, 2), dtype)
    else:
        x, w = rand(r, (2, 3, 9, 11), dtype), rand(r, (4, 3, 3, 2), dtype)
    verify(lambda x, w: jnp.tanh(lax.conv_general_dilated(x, w, **params)) + 1, x, w, rtol=1e-4 if dtype == np.float32 else None)


def test_conv_gradients_and_a_small_cnn(x64):
    """float64: in float32 the summation orders of the two libraries (BLAS against XLA's
    convolution) part by more than the tolerance where gradients cancel."""
    r = rng(3)
    x, w1, w2 = rand(r, (2, 3, 12, 12), np.float64), rand(r, (8, 3, 3, 3), np.float64), rand(r, (4, 8, 3, 3), np.float64)

    def loss(w1, w2, x):
        h = jax.nn.relu(lax.conv(x, w1, (1, 1), "SAME"))
        h = lax.reduce_window(h, -jnp.inf, lax.max, (1, 1, 2, 2), (1, 1, 2, 2), "VALID")
        h = lax.conv(h, w2, (2, 2), "SAME")
        return jnp.mean(h ** 2)

    verify(lambda w1, w2, x: jax.value_and_grad(loss, argnums=(0, 1, 2))(w1, w2, x), w1, w2, x)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int32, np.uint8])
def test_window_reductions(dtype, x64):
    r = rng(4)
    x = rand(r, (5, 9, 7), dtype, special=np.dtype(dtype).kind == "f")
    big = {np.dtype(np.float32): np.inf, np.dtype(np.float64): np.inf}.get(np.dtype(dtype))
    hi = big if big is not None else np.iinfo(dtype).max
    lo = -big if big is not None else np.iinfo(dtype).min
    verify(lambda x: {
        "sum": lax.reduce_window(x, x.dtype.type(0), lax.add, (1, 3, 2), (1, 2, 1), "SAME"),
        "max": lax.reduce_window(x, x.dtype.type(lo), lax.max, (2, 2, 3), (1, 1, 2), ((0, 1), (1, 0), (2, 2)),
                                 base_dilation=(1, 2, 1), window_dilation=(1, 1, 2)),
        "min": lax.reduce_window(x, x.dtype.type(hi), lax.min, (3, 1, 2), (2, 3, 1), ((-1, 1), (0, 0), (0, 0))),
        "window_larger_than_input": lax.reduce_window(x, x.dtype.type(0), lax.add, (6, 1, 1), (1, 1, 1), "VALID"),
    }, x)


@pytest.mark.parametrize("dtype", [np.float32, np.int16, np.bool_])
def test_window_reductions_small_and_large_windows(dtype, x64):
    """Windows of up to SMALL_WINDOW offsets reduce offset by offset, in XLA's order (from the
    init value, window position by window position): the sums' bits equal jax.jit's, windows
    of -0.0 included (0 + -0.0 is +0.0), and NaNs win the max pools.  Larger windows reduce
    over the window axes in one call (their sums add pairwise: positive terms here)."""
    from fusejit.windows import SMALL_WINDOW
    kind = np.dtype(dtype).kind
    x = rand(rng(6), (2, 70, 41), dtype, special=kind == "f")
    if kind == "f":
        x[0, :4, :4] = -0.0
    lo = -np.inf if kind == "f" else (False if kind == "b" else np.iinfo(dtype).min)
    large = (1, 33, 32)
    assert math.prod(large) > SMALL_WINDOW >= 3 * 3
    pools = {
        "max_small": lambda x: lax.reduce_window(x, x.dtype.type(lo), lax.max, (1, 3, 3), (1, 2, 2), "VALID"),
        "max_large": lambda x: lax.reduce_window(x, x.dtype.type(lo), lax.max, large, (1, 4, 3), "VALID"),
    }
    if kind != "b":
        pools["sum_small"] = lambda x: lax.reduce_window(x, x.dtype.type(0), lax.add, (2, 3, 1), (1, 1, 1),
                                                         "SAME")
        pools["sum_large"] = lambda x: lax.reduce_window(jnp.abs(x), x.dtype.type(0), lax.add, large, (1, 5, 5),
                                                         "VALID")
    if kind == "f":
        sum_small = pools.pop("sum_small")
        verify(sum_small, x, rtol=0.0, atol=0.0)  # bit for bit
    verify(lambda x: {name: f(x) for name, f in pools.items()}, x)


def test_pooling_gradients_select_the_first_extreme():
    r = rng(5)
    x = rand(r, (2, 9, 11), np.float32)
    ties = np.round(x)  # equal values in a window: the first one gets the gradient
    for arr in (x, ties):
        verify(lambda x: (
            jax.grad(lambda x: jnp.sum(jnp.sin(lax.reduce_window(x, -jnp.inf, lax.max, (1, 3, 3), (1, 2, 1), "SAME"))))(x),
            jax.grad(lambda x: jnp.sum(jnp.cos(lax.reduce_window(x, jnp.inf, lax.min, (1, 2, 2), (1, 2, 1),
                                                                 ((0, 0), (0, 1), (1, 0))))))(x)), arr)


def test_empty_batches_channels_and_windows():
    verify(lambda x, w: lax.conv(x, w, (1, 1), "SAME"), np.zeros((0, 3, 5, 5), np.float32),
           rand(rng(6), (2, 3, 3, 3), np.float32))
    verify(lambda x, w: lax.conv(x, w, (1, 1), "SAME"), np.zeros((2, 0, 5, 5), np.float32),
           np.zeros((2, 0, 3, 3), np.float32))
    x = rand(rng(7), (3,), np.float32)
    verify(lambda x: (lax.reduce_window(x, -jnp.inf, lax.max, (5,), (1,), "VALID"),
                      jax.grad(lambda x: jnp.sum(lax.reduce_window(x, -jnp.inf, lax.max, (5,), (1,), "VALID")))(x)), x)
    verify(lambda x: lax.reduce_window(x, 0.0, lax.add, (2,), (1,), "VALID"), np.zeros((0,), np.float32))


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int8, np.uint32, np.bool_])
def test_small_window_reductions_fuse_into_map_kernels(dtype, x64):
    """Windows of up to MAX_WINDOW_OFFSETS offsets without base dilation are computed by the
    map kernel of their consumers, from their producers, offset by offset in window order:
    padding, strides, window dilation, windows past the edge and negative padding; larger
    windows and base dilation stay library calls."""
    from fusejit.windowmaps import MAX_WINDOW_OFFSETS
    kind = np.dtype(dtype).kind
    x = rand(rng(8), (3, 13, 10), dtype, special=kind == "f")
    lo = -np.inf if kind == "f" else (False if kind == "b" else np.iinfo(dtype).min)
    hi = np.inf if kind == "f" else (True if kind == "b" else np.iinfo(dtype).max)
    t = np.dtype(dtype).type

    def f(x):
        y = x if kind == "b" else x * t(2)
        pools = [lax.reduce_window(y, t(lo), lax.max, (1, 3, 3), (1, 2, 2), "SAME"),
                 lax.reduce_window(y, t(hi), lax.min, (2, 2, 2), (1, 3, 1), ((1, 0), (-1, 2), (0, 3)),
                                   window_dilation=(1, 2, 3))]
        if kind != "b":
            pools.append(lax.reduce_window(y, t(0), lax.add, (1, 4, 4), (1, 1, 1), "SAME") + t(1))
        return pools
    compiled = verify(f, x)
    assert compiled.call_count == 0 and all(k.spec.kind == "map" for k in compiled.rendered)
    assert "reduce_window_max" in {e.primitive for k in compiled.rendered for e in k.spec.eqns}
    side = math.isqrt(MAX_WINDOW_OFFSETS) + 1  # a window of more offsets
    kept = verify(lambda x: (lax.reduce_window(x, t(lo), lax.max, (1, side, side), (1, 1, 1), "SAME"),
                             lax.reduce_window(x, t(lo), lax.max, (1, 2, 2), (1, 1, 1), "VALID", base_dilation=(1, 2, 1))),
                  x)
    assert kept.call_count == 2
