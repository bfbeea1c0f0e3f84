"""Programs that differentiate inside the jitted function: the jaxprs jax.grad, jax.jvp and
jax.checkpoint produce (add_any where a gradient reaches a value along two paths, transposed
products, remat2) against jax.jit on every path."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from helpers import rand, verify


def rng(seed):
    return np.random.default_rng(seed)


def test_grad_of_a_value_used_twice_sums_both_paths():
    w = rand(rng(1), (13,), np.float32)
    verify(lambda w: jax.grad(lambda w: jnp.sum(w * w + jnp.sin(w) * w))(w), w)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_value_and_grad_of_a_softmax_cross_entropy_layer(dtype, x64):
    r = rng(2)
    x, w, b = rand(r, (9, 7), dtype), rand(r, (7, 5), dtype), rand(r, (5,), dtype)
    labels = r.integers(0, 5, 9).astype(np.int32)

    def loss(params, x, labels):
        w, b = params
        logits = jax.nn.gelu(x @ w + b)
        logp = jax.nn.log_softmax(logits, axis=-1)
        return -jnp.mean(jnp.take_along_axis(logp, labels[:, None], axis=1))

    verify(lambda w, b, x, labels: jax.value_and_grad(loss)((w, b), x, labels), w, b, x, labels,
           rtol=1e-4 if dtype == np.float32 else None)


def test_checkpoint_inlines_its_body():
    x = rand(rng(3), (6, 11), np.float32)
    verify(lambda x: jax.checkpoint(lambda v: jnp.tanh(v) * v)(x) * 2 + 1, x)
    verify(lambda x: jax.grad(lambda v: jnp.sum(jax.checkpoint(lambda u: jnp.sin(u) * u)(v)))(x), x)


def test_forward_mode_and_a_hessian():
    x = rand(rng(4), (5,), np.float32)
    f = lambda v: jnp.sum(jnp.exp(v) * v[::-1])  # noqa: E731
    verify(lambda x: jax.jvp(f, (x,), (jnp.ones_like(x),)), x)
    verify(jax.hessian(f), x, rtol=1e-4)


def test_grad_through_a_scan():
    xs = rand(rng(5), (8, 3), np.float32)

    def loss(h0, xs):
        def step(h, x):
            h = jnp.tanh(h * 0.5 + x)
            return h, h * h
        h, ys = lax.scan(step, h0, xs)
        return jnp.sum(ys) + jnp.sum(h)

    verify(lambda h0, xs: jax.grad(loss)(h0, xs), np.zeros(3, np.float32) + 0.1, xs, rtol=1e-4)
