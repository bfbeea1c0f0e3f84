"""The benchmark workloads: a small registry, one `Workload` per entry.

To add a workload, write the JAX function (at module level, so `python -m bench.latency`
can find it by name), the same computation written against an array module `xp`
(NumPy on the CPU, CuPy on the GPU: they share the API), an input builder, and call
`register(Workload(...))`:

    def my_fn(x):
        return jnp.exp(x) * 2.0

    register(Workload(
        name="exp_1M", fn=my_fn, eager=lambda xp, x: xp.exp(x) * 2.0,
        build=lambda rng, n: (uniform(rng, (n,), np.float32),),
        size=1_000_000, stresses="one transcendental per element, bandwidth bound"))

`build(rng, n)` gets a `numpy.random.Generator` and an element count `n` (the default
`size` times the `--size` scale factor, unless `scalable=False`) and returns the
positional arguments as NumPy arrays. Inputs must be random and never all zeros.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Callable

import jax.numpy as jnp
import numpy as np


@dataclasses.dataclass(frozen=True)
class Workload:
    """One benchmark entry."""

    name: str
    fn: Callable          # the JAX function that fusejit.jit and jax.jit compile
    eager: Callable       # eager(xp, *args): the same computation with NumPy/CuPy
    build: Callable       # build(rng, n) -> tuple of NumPy arrays (the positional arguments)
    size: int             # default element count handed to `build`
    stresses: str         # one line: what this workload exercises
    x64: bool = False     # run with jax_enable_x64 on
    scalable: bool = True  # False: the size is the point of the workload; --size leaves it alone

    def size_at(self, scale: float) -> int:
        """Element count for a scale factor (at least 16 elements when scaled)."""
        if not self.scalable:
            return self.size
        return max(16, int(round(self.size * scale)))


REGISTRY: dict[str, Workload] = {}


def register(workload: Workload) -> Workload:
    if workload.name in REGISTRY:
        raise ValueError(f"workload {workload.name!r} registered twice")
    REGISTRY[workload.name] = workload
    return workload


def select(substring: str | None = None) -> list[Workload]:
    """Workloads whose name contains `substring` (all of them when None), in registry order."""
    return [w for w in REGISTRY.values() if not substring or substring in w.name]


def uniform(rng: np.random.Generator, shape, dtype, low=-4.0, high=4.0) -> np.ndarray:
    """Random values in [low, high), never exactly zero (zeros would flatter some kernels)."""
    x = rng.uniform(low, high, size=shape).astype(dtype)
    x[x == 0] = 0.5
    return x


# ---- diff5 ---------------------------------------------------------------------------------

def diff5(x):
    """jnp.diff applied five times: a chain of shifted-slice subtractions."""
    for _ in range(5):
        x = jnp.diff(x)
    return x


def diff5_eager(xp, x):
    for _ in range(5):
        x = xp.diff(x)
    return x


register(Workload(
    name="diff5", fn=diff5, eager=diff5_eager,
    build=lambda rng, n: (uniform(rng, (n,), np.float64),),
    size=100_000, x64=True,
    stresses="float64 chain of 5 shifted slices + subtracts: fusing offset reads into one kernel"))


# ---- sin + cos -----------------------------------------------------------------------------

def sin_cos(x):
    """Two transcendentals and an add per element."""
    return jnp.sin(x) + jnp.cos(x)


def sin_cos_eager(xp, x):
    return xp.sin(x) + xp.cos(x)


register(Workload(
    name="sin_cos_9", fn=sin_cos, eager=sin_cos_eager,
    build=lambda rng, n: (uniform(rng, (n,), np.float32),),
    size=9, scalable=False,
    stresses="9 elements: pure per-call dispatch overhead"))

register(Workload(
    name="sin_cos_10M", fn=sin_cos, eager=sin_cos_eager,
    build=lambda rng, n: (uniform(rng, (n,), np.float32),),
    size=10_000_000,
    stresses="10M float32, 2 transcendentals per element: math throughput and bandwidth"))


# ---- broadcast_row -------------------------------------------------------------------------

def broadcast_row(m, r):
    """A (rows, cols) matrix combined with a (cols,) row broadcast over every row."""
    return jnp.tanh(m * r + 1.0) - r


def broadcast_row_eager(xp, m, r):
    return xp.tanh(m * r + 1.0) - r


def _square(rng, n):
    side = max(4, int(round(math.sqrt(n))))
    return (uniform(rng, (side, side), np.float32, -2.0, 2.0),
            uniform(rng, (side,), np.float32, -2.0, 2.0))


register(Workload(
    name="broadcast_row", fn=broadcast_row, eager=broadcast_row_eager,
    build=_square, size=1_000_000,
    stresses="(1000,1000) x (1000,) row broadcast with a weak-typed scalar: broadcast indexing"))
