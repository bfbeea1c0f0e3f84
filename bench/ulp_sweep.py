"""`python -m bench.ulp_sweep [--step N] [function ...]`: the host's float32 math against the
float64 result rounded to float32, over every float32 bit pattern (or every Nth).

kernels/cpu_prelude.h and kernels/cpu_trig.h compute exp, log, tanh, log1p, expm1, the
logistic function, sin, cos, tan, erf, erfc, atan, asin, acos, exp2, sinh, cosh, asinh, acosh,
atanh and erfinv of a float in code the C++ compiler vectorises, and promise at most one ULP from the exact result, NaN exactly where the result
is NaN.  The test suite checks a sweep of a million floats (tests/test_elementwise.py); this
checks all 2^32, in chunks, with fusejit's host backend and NumPy's float64 functions
(SciPy's for erf, erfc and erfinv) as the reference (about a minute per function on two cores,
erfinv about ninety minutes, for SciPy's erfinv; --step 64 takes seconds, erfinv a minute and a half).  The exit status is 1 if any function breaks the promise.
"""
from __future__ import annotations

import argparse
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import scipy.special

import fusejit
from fusejit.check import ulp_distance

FUNCTIONS = {
    "exp": (jnp.exp, np.exp), "log": (jnp.log, np.log), "tanh": (jnp.tanh, np.tanh),
    "log1p": (jnp.log1p, np.log1p), "expm1": (jnp.expm1, np.expm1),
    "logistic": (jax.nn.sigmoid, lambda v: 1 / (1 + np.exp(-v))),
    "sin": (jnp.sin, np.sin), "cos": (jnp.cos, np.cos), "tan": (jnp.tan, np.tan),
    "erf": (jax.scipy.special.erf, scipy.special.erf), "erfc": (jax.scipy.special.erfc, scipy.special.erfc),
    "atan": (jnp.arctan, np.arctan), "asin": (jnp.arcsin, np.arcsin), "acos": (jnp.arccos, np.arccos),
    "exp2": (jnp.exp2, np.exp2), "sinh": (jnp.sinh, np.sinh), "cosh": (jnp.cosh, np.cosh),
    "asinh": (jnp.arcsinh, np.arcsinh), "acosh": (jnp.arccosh, np.arccosh), "atanh": (jnp.arctanh, np.arctanh),
    "erfinv": (jax.scipy.special.erfinv, scipy.special.erfinv),
}
CHUNK = 1 << 24  # floats per call


def sweep(name: str, step: int) -> tuple[float, int]:
    """(largest ULP distance over the finite results, floats whose NaN-ness differs)."""
    ours, exact = FUNCTIONS[name]
    f = fusejit.jit(ours, backend="host")
    worst, nan_mismatch = 0.0, 0
    for start in range(0, 1 << 32, CHUNK * step):
        x = np.arange(start, min(start + CHUNK * step, 1 << 32), step, dtype=np.uint64).astype(np.uint32)
        x = x.view(np.float32)
        got = np.asarray(f(x))
        with np.errstate(all="ignore"):
            want = exact(x.astype(np.float64)).astype(np.float32)
        nan_mismatch += int(np.count_nonzero(np.isnan(got) != np.isnan(want)))
        finite = ~np.isnan(want) & ~np.isnan(got)
        if finite.any():
            worst = max(worst, float(ulp_distance(got[finite], want[finite]).max()))
    return worst, nan_mismatch


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("functions", nargs="*", help=f"functions to sweep (default: all of {', '.join(FUNCTIONS)})")
    parser.add_argument("--step", type=int, default=1, help="every Nth bit pattern (default 1: all)")
    args = parser.parse_args(argv)
    unknown = [name for name in args.functions if name not in FUNCTIONS]
    if unknown:
        parser.error(f"unknown function(s) {', '.join(unknown)}; choose from {', '.join(FUNCTIONS)}")
    failed = False
    for name in args.functions or FUNCTIONS:
        t0 = time.perf_counter()
        worst, nan_mismatch = sweep(name, args.step)
        ok = worst <= 1 and nan_mismatch == 0
        failed |= not ok
        print(f"{name:9s} max {worst:.0f} ULP, {nan_mismatch} NaN mismatch(es)  "
              f"{'ok' if ok else 'FAIL'}  ({time.perf_counter() - t0:.0f} s)", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
