"""`python -m bench.survey [--filter S] [--backend host|cuda] [--rows N] [--cols N]`: a survey
of common JAX functions outside the benchmark's suite, each timed under fusejit and jax.jit
in the same run (interleaved, bench.timing's rules) and diffed against jax.jit.

The suite (bench/workloads.py) holds the workloads the speed targets are measured on; this
looks wider, at one matrix of float32 (1024 x 1000 by default), at short rows (as many
elements in rows of 10) and at a small training step (a 32-row MLP and its gradient, where
the cost of each step between kernels shows), for the places where fusejit is behind.  It prints one table,
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
SMALL = (200, 128)  # the small cases' matrix
# Cases whose results are long float32 sums (a running sum, products, a carried sum): their
# error is absolute, a float32 ULP of the largest partial sum times the terms' count, and
# fusejit (float64 accumulators, another order) and XLA differ by that much where a result
# nears zero.  Their diff allows that many units of the largest result: SUMS_ATOL, or a
# float32 ULP (2^-24 of it) per term where the matrix is longer (a gradient through a
# product of 63 x 16000 by its transpose: fusejit and jax.jit each 1e-3 from float64,
# with results up to 10).
SUMS = {"cumsum_ax1", "cumsum_ax0", "matmul", "scan_rows", "grad_mlp", "small_mlp", "small_mlp_grad", "attention",
        "inv", "conv2d"}
SUMS_ATOL = 5e-5
# Cases where XLA's float32 approximation is several ULP off the exact result (fusejit's is
# within one): their diff allows this relative error (tests/helpers.py OVERRIDES, erf_inv).
LOOSE_RTOL = {"erf_inv": 1e-4}

def _small_mlp(a):
    w1, b1, x = a[:64], a[64], a[96:128, :64]
    w2, b2 = a[65:193, :10] * 0.1, a[193, :10]
    return jax.nn.log_softmax(jax.nn.relu(x @ w1 + b1) @ w2 + b2)


# name -> (function of one matrix, which matrix: "wide", "short" (rows of SHORT_ROW) or "small")
CASES = {
    "exp": (jnp.exp, "wide"), "tanh": (jnp.tanh, "wide"), "sin": (jnp.sin, "wide"),
    "sqrt_abs": (lambda a: jnp.sqrt(jnp.abs(a)), "wide"), "log1p_abs": (lambda a: jnp.log1p(jnp.abs(a)), "wide"),
    "log_abs": (lambda a: jnp.log(jnp.abs(a)), "wide"), "exp2": (jnp.exp2, "wide"), "expm1": (jnp.expm1, "wide"),
    "asinh": (jnp.arcsinh, "wide"), "erf_inv": (lambda a: jax.scipy.special.erfinv(jnp.tanh(a)), "wide"),
    "hypot": (lambda a: jnp.hypot(a, a[::-1]), "wide"),
    "pow": (lambda a: jnp.abs(a) ** 1.7, "wide"), "atan2": (lambda a: jnp.arctan2(a, a[::-1]), "wide"),
    "erf": (jax.scipy.special.erf, "wide"), "sigmoid": (jax.nn.sigmoid, "wide"), "silu": (jax.nn.silu, "wide"),
    "softplus": (jax.nn.softplus, "wide"), "gelu": (jax.nn.gelu, "wide"),
    "gelu_exact": (lambda a: jax.nn.gelu(a, approximate=False), "wide"),
    "where": (lambda a: jnp.where(a > 0, a, 0.1 * a), "wide"), "clip": (lambda a: jnp.clip(a, -1, 1), "wide"),
    "int_ops": (lambda a: ((a * 100).astype(jnp.int32) % 7) * 3, "wide"),
    "transpose_add": (lambda a: a.T + 1.0, "wide"), "flip": (lambda a: jnp.flip(a, 1) * 2, "wide"),
    "roll": (lambda a: jnp.roll(a, 3, axis=1), "wide"), "pad": (lambda a: jnp.pad(a, ((1, 2), (3, 0))), "wide"),
    "concat": (lambda a: jnp.concatenate([a, a * 2], 1), "wide"), "tril": (lambda a: jnp.tril(a), "wide"),
    "diff_ax0": (lambda a: jnp.diff(a, axis=0), "wide"), "outer": (lambda a: jnp.outer(a[0], a[1]), "wide"),
    "take_cols": (lambda a: jnp.take(a, jnp.arange(0, a.shape[1], 3), axis=1), "wide"),
    "gather_rows": (lambda a: a[jnp.arange(a.shape[0] - 1, -1, -2)], "wide"),
    "scatter_add": (lambda a: jnp.zeros(a.shape[1]).at[jnp.arange(a.shape[0]) % a.shape[1]].add(a[:, 0]), "wide"),
    "sum_all": (jnp.sum, "wide"), "max_all": (jnp.max, "wide"), "var_all": (jnp.var, "wide"),
    "argmax_all": (jnp.argmax, "wide"), "std_ax0": (lambda a: jnp.std(a, axis=0), "wide"),
    "norm_ax1": (lambda a: jnp.linalg.norm(a, axis=1), "wide"), "any_ax1": (lambda a: jnp.any(a > 3, axis=1), "wide"),
    "argmax_ax1": (lambda a: jnp.argmax(a, axis=1), "wide"),
    "softmax_ax0": (lambda a: jax.nn.softmax(a, axis=0), "wide"),
    "log_softmax": (lambda a: jax.nn.log_softmax(a, axis=1), "wide"),
    # attention's scores: scaled, causally masked with a large negative, softmax over each row
    "causal_softmax": (lambda a: jax.nn.softmax(jnp.where(jnp.tril(jnp.ones(a.shape, bool)), a / 8.0, -1e9), axis=1),
                       "wide"),
    "layernorm": (lambda a: (a - a.mean(1, keepdims=True)) / jnp.sqrt(a.var(1, keepdims=True) + 1e-5), "wide"),
    # normalised over the rows (a batch norm's statistics): a square root per column
    "batch_norm": (lambda a: (a - a.mean(0)) * lax.rsqrt(a.var(0) + 1e-5), "wide"),
    "cumsum_ax1": (lambda a: jnp.cumsum(a, axis=1), "wide"), "cumsum_ax0": (lambda a: jnp.cumsum(a, axis=0), "wide"),
    "sort_ax1": (lambda a: jnp.sort(a, axis=1), "wide"), "top_k": (lambda a: lax.top_k(a, 5)[0], "wide"),
    "matmul": (lambda a: a @ a[: a.shape[1]].T, "wide"),
    "max_pool": (lambda a: lax.reduce_window(a, -jnp.inf, lax.max, (2, 2), (2, 2), "VALID"), "wide"),
    "scan_rows": (lambda a: lax.scan(lambda c, r: (c * 0.9 + r, c.sum()), jnp.zeros(a.shape[1]), a)[1], "wide"),
    "grad_mlp": (jax.grad(lambda a: jnp.sum(jnp.tanh(a @ a[:64].T) ** 2)), "wide"),
    "while_steps": (lambda a: lax.while_loop(lambda c: c[0] < 10, lambda c: (c[0] + 1, c[1] * 0.9 + 0.1),
                                             (0, a))[1], "wide"),
    "update_slice": (lambda a: lax.dynamic_update_slice(a, jnp.ones((10, 10), a.dtype), (3, 4)), "wide"),
    "pad_reflect": (lambda a: jnp.pad(a, 2, mode="reflect"), "wide"),
    "short_sum": (lambda a: jnp.sum(a, axis=1), "short"), "short_max": (lambda a: jnp.max(a, axis=1), "short"),
    "short_argmax": (lambda a: jnp.argmax(a, axis=1), "short"),
    "short_softmax": (lambda a: jax.nn.softmax(a, axis=1), "short"),
    "short_logsumexp": (lambda a: jax.nn.logsumexp(a, axis=1), "short"),
    # a small training step's pieces: an MLP of 64 -> 128 -> 10 on 32 rows, all cut from one
    # SMALL matrix (weights, biases, inputs), and its loss's gradient with respect to it
    "small_mlp": (lambda a: _small_mlp(a), "small"),
    "attention": (lambda a: jax.nn.softmax(a @ a.T / 8.0, axis=-1) @ a, "small"),
    "inv": (lambda a: jnp.linalg.inv(a[:100, :100] + 10 * jnp.eye(100, dtype=a.dtype)), "small"),
    "conv2d": (lambda a: lax.conv_general_dilated(a[None, None], jnp.full((4, 1, 3, 3), 0.1, a.dtype), (1, 1),
                                                  "SAME"), "small"),
    "small_mlp_grad": (jax.grad(lambda a: -jnp.mean(jnp.take_along_axis(
        _small_mlp(a), jnp.argmax(a[160:192, :10], 1)[:, None], 1))), "small"),
    # the half types (fusejit/halves.py), on the wide matrix in that type
    "gelu_bf16": (jax.nn.gelu, "wide_bf16"), "softmax_bf16": (lambda a: jax.nn.softmax(a, axis=1), "wide_bf16"),
    "layer_norm_bf16": (lambda a: (a - a.mean(1, keepdims=True)) * lax.rsqrt(a.var(1, keepdims=True) + 1e-5),
                        "wide_bf16"),
    "axpy_f16": (lambda a: a * 2 + 1, "wide_f16"), "gelu_f16": (jax.nn.gelu, "wide_f16"),
}
# Matrix kinds in a dtype the backend's arrays may lack (bfloat16 before CuPy 14).
KIND_DTYPES = {"wide_bf16": "bfloat16", "wide_f16": "float16"}


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
    matrices = {"wide": wide, "short": short,
                "small": [rng.standard_normal(SMALL).astype(np.float32) for _ in range(3)],
                **{kind: [x.astype(dtype) for x in wide] for kind, dtype in KIND_DTYPES.items()}}
    missing = getattr(fusejit.backends.get(dev.backend), "missing_dtypes", frozenset())
    settings = Settings(min_time=args.min_time, rounds=3)
    rows, failed = [], []
    console = Console(width=110)
    for name, (fn, kind) in CASES.items():
        if args.filter not in name:
            continue
        if KIND_DTYPES.get(kind) in missing:
            console.print(f"{name}: skipped, backend {dev.backend} has no {KIND_DTYPES[kind]} arrays", style="dim")
            continue
        hosts = matrices[kind]
        on_device = [(dev.to_device(x),) for x in hosts]
        on_jax = [(jax.device_put(x),) for x in hosts]
        f = fusejit.jit(fn, backend=dev.backend)
        f.lower(*on_device[0])  # compiled before timing (no interpreted first calls)
        jitted = jax.jit(fn)
        atol = None
        if name in SUMS:
            reference = jax.tree_util.tree_leaves(jitted(*on_jax[0]))
            units = max(SUMS_ATOL, max(hosts[0].shape) * 2.0 ** -24)
            atol = units * max(float(jnp.max(jnp.abs(leaf))) for leaf in reference)
        report = fusejit.check(f, *on_device[0], atol=atol, rtol=LOOSE_RTOL.get(name))
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
