"""Random programs against jax.jit (hypothesis).

Each example draws an input shape (0-d, size-0 and size-1 dimensions included) and a chain
of operations: elementwise math, broadcasting, strided and reversed slices, transposes,
reshapes, pads (negative and interior), concatenates, reductions over random axes and
cumulative sums. fusejit's host backend must match jax.jit. FUSEJIT_FUZZ_EXAMPLES=N runs
longer; every failure found becomes a regression test in test_shapes.py or here.
"""
import os

import jax
import jax.numpy as jnp
import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jax import lax

import fusejit

EXAMPLES = int(os.environ.get("FUSEJIT_FUZZ_EXAMPLES", "150"))

UNARY = [jnp.sin, jnp.tanh, jnp.abs, lambda x: -x, lambda x: x * 2.0 + 1.0,
         lambda x: jnp.sqrt(jnp.abs(x)), lambda x: jnp.exp(jnp.clip(x, -5, 5))]


def step(draw, x):
    """One random operation applied to x (a traced value); returns the new value."""
    shape = x.shape
    kind = draw(st.sampled_from(["unary", "binary", "slice", "rev", "transpose", "reshape", "pad",
                                 "concat", "reduce", "cumsum", "broadcast"]))
    if kind == "unary":
        return draw(st.sampled_from(UNARY))(x)
    if kind == "binary":
        other = draw(st.sampled_from(UNARY))(x)
        return draw(st.sampled_from([jnp.add, jnp.multiply, jnp.maximum, jnp.subtract]))(x, other)
    if kind == "broadcast" and x.ndim < 3:
        n = draw(st.integers(1, 3))
        return x[None] * jnp.ones((n,) + shape, x.dtype)
    if x.ndim == 0:
        return x + 1.0
    axis = draw(st.integers(0, x.ndim - 1))
    n = shape[axis]
    if kind == "slice":
        step_ = draw(st.sampled_from([1, 2, 3, -1, -2]))
        start = draw(st.integers(0, max(n - 1, 0)))
        index = [slice(None)] * x.ndim
        index[axis] = slice(start, None, step_) if step_ > 0 else slice(None, None, step_)
        return x[tuple(index)]
    if kind == "rev":
        return jnp.flip(x, axis)
    if kind == "transpose":
        return jnp.transpose(x, draw(st.permutations(range(x.ndim))))
    if kind == "reshape":
        if x.ndim == 1 or x.size == 0:
            return x.reshape(shape[::-1]) if x.ndim > 1 else x
        return x.reshape(-1) if draw(st.booleans()) else x.reshape(shape[::-1])
    if kind == "pad":
        config = [(0, 0, 0)] * x.ndim
        lo = draw(st.integers(-min(n, 2), 2))
        hi = draw(st.integers(-min(n - max(-lo, 0), 2), 2))
        config[axis] = (lo, hi, draw(st.integers(0, 2)) if n > 0 else 0)
        return lax.pad(x, np.float32(draw(st.sampled_from([0.0, -1.5]))), config)
    if kind == "concat":
        return jnp.concatenate([x, x[::-1] * 0.5], axis=axis)
    if kind == "reduce":
        keep = draw(st.booleans())
        if n == 0:
            return jnp.sum(x, axis, keepdims=keep)
        return draw(st.sampled_from([jnp.sum, jnp.max, jnp.min, jnp.mean]))(x, axis, keepdims=keep)
    if kind == "cumsum":
        return jnp.cumsum(x, axis)
    return x


def build(draw, x, steps):
    values = [x]
    for _ in range(steps):
        values.append(step(draw, values[-1]))
    return values[-1], values[len(values) // 2]


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.data())
def test_random_programs_match_jax(data):
    draw = data.draw
    rank = draw(st.integers(0, 3))
    shape = tuple(draw(st.sampled_from([0, 1, 2, 3, 5, 7])) if draw(st.integers(0, 9)) == 0
                  else draw(st.integers(1, 7)) for _ in range(rank))
    x = np.random.default_rng(draw(st.integers(0, 2**16))).standard_normal(shape).astype(np.float32)
    steps = draw(st.integers(1, 6))

    # Draw the program once, while tracing it; every later trace replays the same choices.
    choices = []

    def recording(strategy):
        choices.append(draw(strategy))
        return choices[-1]

    jax.make_jaxpr(lambda x: build(recording, x, steps))(x)

    def program(x):
        replay = iter(choices)
        return build(lambda strategy: next(replay), x, steps)

    report = fusejit.check(fusejit.jit(program, backend="host"), x, rtol=1e-4, atol=1e-5)
    assert report.ok, f"shape {shape}, choices {choices}\n{report}"
