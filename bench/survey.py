"""`python -m bench.survey [--filter S] [--backend host|cuda] [--rows N] [--cols N]`: a survey
of common JAX functions outside the benchmark's suite, each timed under fusejit and jax.jit
in the same run (interleaved, bench.timing's rules) and diffed against jax.jit.

The suite (bench/workloads.py) holds the workloads the speed targets are measured on; this
looks wider, at one matrix of float32 (1024 x 1000 by default) and at short rows (as many
elements in rows of 10), for the places where fusejit is behind.  It prints one table,
slowest ratio first, and exits 1 if any output differs from jax.jit.  About two minutes on
two cores.
"""
from __future__ import annotations

import argparse
import sys

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

import fusejit

from . import device as device_mod
from .timing import Settings, measure_all

SHORT_ROW = 10  # the short-row cases' row length
# Cases whose results are long float32 sums (a running sum, products, a carried sum): their
# error is absolute, a float32 ULP of the largest partial sum times the terms' count, and
# fusejit (float64 accumulators, another order) and XLA differ by that much where a result
# nears zero.  Their diff allows that many units of the largest result.
SUMS = {"cumsum_ax1", "cumsum_ax0", "matmul", "scan_rows", "grad_mlp"}
SUMS_ATOL = 5e-5

# name -> (function of one matrix, whether it takes the short-row matrix)
CASES = {
    "exp": (jnp.exp, False), "tanh": (jnp.tanh, False), "sin": (jnp.sin, False),
    "sqrt_abs": (lambda a: jnp.sqrt(jnp.abs(a)), False), "log1p_abs": (lambda a: jnp.log1p(jnp.abs(a)), False),
    "pow": (lambda a: jnp.abs(a) ** 1.7, False), "atan2": (lambda a: jnp.arctan2(a, a[::-1]), False),
    "erf": (jax.scipy.special.erf, False), "sigmoid": (jax.nn.sigmoid, False), "silu": (jax.nn.silu, False),
    "softplus": (jax.nn.softplus, False), "gelu": (jax.nn.gelu, False),
    "gelu_exact": (lambda a: jax.nn.gelu(a, approximate=False), False),
    "where": (lambda a: jnp.where(a > 0, a, 0.1 * a), False), "clip": (lambda a: jnp.clip(a, -1, 1), False),
    "int_ops": (lambda a: ((a * 100).astype(jnp.int32) % 7) * 3, False),
    "transpose_add": (lambda a: a.T + 1.0, False), "flip": (lambda a: jnp.flip(a, 1) * 2, False),
    "roll": (lambda a: jnp.roll(a, 3, axis=1), False), "pad": (lambda a: jnp.pad(a, ((1, 2), (3, 0))), False),
    "concat": (lambda a: jnp.concatenate([a, a * 2], 1), False), "tril": (lambda a: jnp.tril(a), False),
    "diff_ax0": (lambda a: jnp.diff(a, axis=0), False), "outer": (lambda a: jnp.outer(a[0], a[1]), False),
    "take_cols": (lambda a: jnp.take(a, jnp.arange(0, a.shape[1], 3), axis=1), False),
    "gather_rows": (lambda a: a[jnp.arange(a.shape[0] - 1, -1, -2)], False),
    "scatter_add": (lambda a: jnp.zeros(a.shape[1]).at[jnp.arange(a.shape[0]) % a.shape[1]].add(a[:, 0]), False),
    "sum_all": (jnp.sum, False), "max_all": (jnp.max, False), "var_all": (jnp.var, False),
    "argmax_all": (jnp.argmax, False), "std_ax0": (lambda a: jnp.std(a, axis=0), False),
    "norm_ax1": (lambda a: jnp.linalg.norm(a, axis=1), False), "any_ax1": (lambda a: jnp.any(a > 3, axis=1), False),
    "argmax_ax1": (lambda a: jnp.argmax(a, axis=1), False),
    "softmax_ax0": (lambda a: jax.nn.softmax(a, axis=0), False),
    "log_softmax": (lambda a: jax.nn.log_softmax(a, axis=1), False),
    # attention's scores: scaled, causally masked with a large negative, softmax over each row
    "causal_softmax": (lambda a: jax.nn.softmax(jnp.where(jnp.tril(jnp.ones(a.shape, bool)), a / 8.0, -1e9), axis=1),
                       False),
    "layernorm": (lambda a: (a - a.mean(1, keepdims=True)) / jnp.sqrt(a.var(1, keepdims=True) + 1e-5), False),
    "cumsum_ax1": (lambda a: jnp.cumsum(a, axis=1), False), "cumsum_ax0": (lambda a: jnp.cumsum(a, axis=0), False),
    "sort_ax1": (lambda a: jnp.sort(a, axis=1), False), "top_k": (lambda a: lax.top_k(a, 5)[0], False),
    "matmul": (lambda a: a @ a[: a.shape[1]].T, False),
    "max_pool": (lambda a: lax.reduce_window(a, -jnp.inf, lax.max, (2, 2), (2, 2), "VALID"), False),
    "scan_rows": (lambda a: lax.scan(lambda c, r: (c * 0.9 + r, c.sum()), jnp.zeros(a.shape[1]), a)[1], False),
    "grad_mlp": (jax.grad(lambda a: jnp.sum(jnp.tanh(a @ a[:64].T) ** 2)), False),
    "short_sum": (lambda a: jnp.sum(a, axis=1), True), "short_max": (lambda a: jnp.max(a, axis=1), True),
    "short_argmax": (lambda a: jnp.argmax(a, axis=1), True),
    "short_softmax": (lambda a: jax.nn.softmax(a, axis=1), True),
    "short_logsumexp": (lambda a: jax.nn.logsumexp(a, axis=1), True),
}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.survey", description=__doc__.split("\n\n")[0])
    parser.add_argument("--filter", default="", help="only cases whose name contains this")
    parser.add_argument("--backend", choices=("host", "cuda"), default=None)
    parser.add_argument("--rows", type=int, default=1024)
    parser.add_argument("--cols", type=int, default=1000)
    parser.add_argument("--min-time", type=float, default=0.2, help="seconds of timed calls per implementation")
    args = parser.parse_args(argv)
    from rich.console import Console
    from rich.table import Table

    dev = device_mod.make(args.backend)
    rng = np.random.default_rng(0)
    wide = [rng.standard_normal((args.rows, args.cols)).astype(np.float32) for _ in range(3)]
    short = [rng.standard_normal((args.rows * args.cols // SHORT_ROW, SHORT_ROW)).astype(np.float32)
             for _ in range(3)]
    settings = Settings(min_time=args.min_time, rounds=3)
    rows, failed = [], []
    console = Console(width=110)
    for name, (fn, is_short) in CASES.items():
        if args.filter not in name:
            continue
        hosts = short if is_short else wide
        on_device = [(dev.to_device(x),) for x in hosts]
        on_jax = [(jax.device_put(x),) for x in hosts]
        f = fusejit.jit(fn, backend=dev.backend)
        f.lower(*on_device[0])  # compiled before timing (no interpreted first calls)
        jitted = jax.jit(fn)
        atol = None
        if name in SUMS:
            reference = jax.tree_util.tree_leaves(jitted(*on_jax[0]))
            atol = SUMS_ATOL * max(float(jnp.max(jnp.abs(leaf))) for leaf in reference)
        report = fusejit.check(f, *on_device[0], atol=atol)
        if not report.ok:
            failed.append(name)
        timings = measure_all({"fusejit": (f, on_device, dev.sync),
                               "jax": (jitted, on_jax, jax.block_until_ready)}, settings)
        ratio = timings["jax"].median / timings["fusejit"].median
        rows.append((ratio, name, hosts[0].shape, timings["fusejit"].median, timings["jax"].median, report.ok))
        console.print(f"{name}: {ratio:.2f}", style="dim")
    blas = device_mod.blas_kernels() if dev.kind == "cpu" else ""
    caption = f"NumPy's OpenBLAS (matmul, grad_mlp) runs its {blas} kernels" if blas else None
    table = Table(title=f"fusejit ({dev.backend}) against jax.jit, slowest first", caption=caption)
    for column in ("function", "input", "fusejit", "jax.jit", "× jax.jit", "vs jax.jit"):
        table.add_column(column, justify="left" if column in ("function", "input") else "right")
    for ratio, name, shape, t_fj, t_jax, ok in sorted(rows):
        table.add_row(name, "x".join(map(str, shape)), f"{t_fj * 1e3:.3f} ms", f"{t_jax * 1e3:.3f} ms",
                      f"{ratio:.2f}×", "pass" if ok else "FAIL")
    console.print(table)
    if failed:
        console.print(f"outputs differ from jax.jit: {', '.join(failed)}", style="red")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
