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
    # fusejit.check tolerance overrides (rtol/atol), with the reason in `stresses` or a comment
    tolerance: dict = dataclasses.field(default_factory=dict)

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


# ---- reductions ----------------------------------------------------------------------------

def _rows(cols):
    """A builder of (n // cols, cols) float32 matrices: n sets the element count."""
    def build(rng, n):
        return (uniform(rng, (max(1, n // cols), cols), np.float32, -2.0, 2.0),)
    return build


def mean_var(x):
    """Mean and variance of every row: two reductions over one input."""
    return jnp.mean(x, axis=1), jnp.var(x, axis=1)


def mean_var_eager(xp, x):
    return xp.mean(x, axis=1), xp.var(x, axis=1)


register(Workload(
    name="mean_var", fn=mean_var, eager=mean_var_eager, build=_rows(1024), size=4096 * 1024,
    stresses="mean and variance of (4096, 1024) rows: reductions sharing an input"))


def softmax(x):
    import jax
    return jax.nn.softmax(x, axis=-1)


def softmax_eager(xp, x):
    e = xp.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


register(Workload(
    name="softmax", fn=softmax, eager=softmax_eager, build=_rows(1024), size=4096 * 1024,
    stresses="softmax over (4096, 1024) float32 rows: reduce, broadcast back, reduce again"))


def logsumexp(x):
    import jax
    return jax.nn.logsumexp(x, axis=-1)


def logsumexp_eager(xp, x):
    m = x.max(axis=-1, keepdims=True)
    return (xp.log(xp.exp(x - m).sum(axis=-1, keepdims=True)) + m)[:, 0]


register(Workload(
    name="logsumexp", fn=logsumexp, eager=logsumexp_eager, build=_rows(1024), size=4096 * 1024,
    stresses="logsumexp of (4096, 1024) rows: max, then a sum of exponentials"))


def norm(x):
    return jnp.linalg.norm(x)


def norm_eager(xp, x):
    return xp.linalg.norm(x)


register(Workload(
    name="norm_10M", fn=norm, eager=norm_eager,
    build=lambda rng, n: (uniform(rng, (n,), np.float32),), size=10_000_000,
    stresses="vector 2-norm of 10M float32: a full reduction of a large array"))


def sum_axis0(x):
    return jnp.sum(x, axis=0)


def sum_axis0_eager(xp, x):
    return x.sum(axis=0)


def _square_matrix(rng, n):
    side = max(4, int(round(math.sqrt(n))))
    return (uniform(rng, (side, side), np.float32, -2.0, 2.0),)


register(Workload(
    name="sum_axis0", fn=sum_axis0, eager=sum_axis0_eager, build=_square_matrix, size=4096 * 4096,
    stresses="column sums of a (4096, 4096) matrix: an outer-axis reduction",
    # A column sum of thousands of +-2 values can cancel to nearly zero; the error of a float32
    # sum scales with sum(|x|) (~eps * rows * 2), not with the result, so atol must too.
    tolerance=dict(atol=2e-3)))


# ---- epilogues, optimizers, stencils -------------------------------------------------------

def gelu_bias(x, b):
    """GELU (tanh form) of x + bias: a matmul epilogue without the matmul."""
    import jax
    return jax.nn.gelu(x + b)


def gelu_bias_eager(xp, x, b):
    y = x + b
    return 0.5 * y * (1.0 + xp.tanh(0.7978845608 * (y + 0.044715 * y ** 3)))


def _matrix_bias(cols):
    def build(rng, n):
        rows = max(1, n // cols)
        return (uniform(rng, (rows, cols), np.float32, -3.0, 3.0), uniform(rng, (cols,), np.float32, -1.0, 1.0))
    return build


register(Workload(
    name="gelu_bias", fn=gelu_bias, eager=gelu_bias_eager, build=_matrix_bias(4096), size=8192 * 4096,
    stresses="GELU with a broadcast bias over (8192, 4096) float32: a long elementwise epilogue"))


def adam(p, g, m, v):
    """One Adam step: 4 inputs, 3 outputs per parameter."""
    b1, b2, lr, eps = 0.9, 0.999, 1e-3, 1e-8
    m = b1 * m + (1 - b1) * g
    v = b2 * v + (1 - b2) * g * g
    p = p - lr * (m / (1 - b1)) / (jnp.sqrt(v / (1 - b2)) + eps)
    return p, m, v


def adam_eager(xp, p, g, m, v):
    b1, b2, lr, eps = 0.9, 0.999, 1e-3, 1e-8
    m = b1 * m + (1 - b1) * g
    v = b2 * v + (1 - b2) * g * g
    return p - lr * (m / (1 - b1)) / (xp.sqrt(v / (1 - b2)) + eps), m, v


register(Workload(
    name="adam", fn=adam, eager=adam_eager,
    build=lambda rng, n: (uniform(rng, (n,), np.float32), uniform(rng, (n,), np.float32),
                          uniform(rng, (n,), np.float32), uniform(rng, (n,), np.float32, 0.1, 2.0)),
    size=10_000_000, stresses="an Adam step over 10M parameters: many inputs and outputs in one kernel"))


def laplacian(u):
    """5-point Laplacian of the interior of a 2-D grid, from shifted slices."""
    return u[:-2, 1:-1] + u[2:, 1:-1] + u[1:-1, :-2] + u[1:-1, 2:] - 4.0 * u[1:-1, 1:-1]


def laplacian_eager(xp, u):
    return u[:-2, 1:-1] + u[2:, 1:-1] + u[1:-1, :-2] + u[1:-1, 2:] - 4.0 * u[1:-1, 1:-1]


register(Workload(
    name="laplacian", fn=laplacian, eager=laplacian_eager, build=_square_matrix, size=4096 * 4096,
    stresses="2-D 5-point stencil from slices on (4096, 4096): neighbouring reads fused into one kernel"))

TAPS = (0.02, 0.05, 0.12, 0.2, 0.22, 0.2, 0.12, 0.05, 0.02)


def conv9(x):
    """A 9-tap filter from shifted slices (a 'valid' 1-D convolution)."""
    n = x.shape[0] - len(TAPS) + 1
    return sum(w * x[k:k + n] for k, w in enumerate(TAPS))


def conv9_eager(xp, x):
    n = x.shape[0] - len(TAPS) + 1
    return sum(w * x[k:k + n] for k, w in enumerate(TAPS))


register(Workload(
    name="conv9", fn=conv9, eager=conv9_eager,
    build=lambda rng, n: (uniform(rng, (n,), np.float32),), size=10_000_000,
    stresses="9-tap 1-D convolution of 10M float32 from shifted slices: 9 loads per output, 1 kernel"))


def cumsum(x):
    return jnp.cumsum(x)


def cumsum_eager(xp, x):
    return xp.cumsum(x)


register(Workload(
    name="cumsum_10M", fn=cumsum, eager=cumsum_eager,
    build=lambda rng, n: (uniform(rng, (n,), np.float32, 0.0, 1.0),), size=10_000_000,
    stresses="cumulative sum of 10M float32 (positive): a scan of one long row",
    # The running sum grows to ~5e6: float32 sums differ from float64-accumulated ones by
    # about eps * (running sum), so the relative tolerance is widened.
    tolerance=dict(rtol=2e-4)))


# ---- loops: the seed notebook's scan, and an elementwise recurrence ---------------------

_NB = np.random.default_rng(2024)
NB_A = np.eye(50) * 3.0 + _NB.uniform(-0.1, 0.1, (50, 50))   # well conditioned
NB_B = _NB.uniform(-0.1, 0.1, (50, 50))


def notebook(x):
    """The seed notebook's loop: 100 iterations of B @ x + solve(A, x) + norm(x) (a scan whose
    body has a matrix-vector product, an LU solve of a constant matrix, and a norm)."""
    import jax
    A, B = jnp.asarray(NB_A), jnp.asarray(NB_B)

    def body(x, _):
        return B @ x + jnp.linalg.solve(A, x) + jnp.linalg.norm(x), None
    return jax.lax.scan(body, x, None, length=100)[0]


def notebook_eager(xp, x):
    A, B = xp.asarray(NB_A), xp.asarray(NB_B)
    for _ in range(100):
        x = B @ x + xp.linalg.solve(A, x) + xp.linalg.norm(x)
    return x


register(Workload(
    name="notebook_scan", fn=notebook, eager=notebook_eager,
    build=lambda rng, n: (uniform(rng, (50,), np.float64, -1e-3, 1e-3),), size=50, scalable=False, x64=True,
    stresses="100 scan iterations of a 50x50 matvec, an LU solve (hoisted factorisation) and a norm"))


def recurrence(x, y):
    """1,000 steps of an elementwise recurrence: the body is elementwise in the carry."""
    import jax
    return jax.lax.scan(lambda c, _: (c * 0.99 + y * 0.01, None), x, None, length=1000)[0]


def recurrence_eager(xp, x, y):
    for _ in range(1000):
        x = x * 0.99 + y * 0.01
    return x


register(Workload(
    name="recurrence", fn=recurrence, eager=recurrence_eager,
    build=lambda rng, n: (uniform(rng, (n,), np.float32), uniform(rng, (n,), np.float32)), size=1_000_000,
    stresses="1000 steps of an elementwise recurrence over 10**6 float32: a loop inside one kernel",
    # 1000 roundings of a contracting recurrence: float32 results differ in the last bits,
    # with or without fused multiply-adds, by up to a few eps of the value.
    tolerance=dict(rtol=1e-4)))
