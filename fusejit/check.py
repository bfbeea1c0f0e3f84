"""check: run a function with fusejit and with jax.jit on the same inputs and diff every output.

Pass or fail per output uses the dtype's tolerance (TOLERANCES): floats pass when
|got - want| <= atol + rtol * |want| element-wise, NaN in the same places, infinities
equal; values below the smallest normal number count as zero on both sides (XLA's CPU
backend flushes denormals, GPUs may not); integers and bools must be equal.
The report also gives max absolute, max relative and max ULP distance.
"""
from __future__ import annotations

import dataclasses

import jax
import ml_dtypes
import numpy as np

from . import halves, keys

# dtype name -> (rtol, atol).  The half types' allow a few of their ULPs: where fusejit's
# float32 functions and XLA's differ in a last bit, a rounding to the half type can flip,
# and later equations carry the flip on (fusejit/halves.py).
TOLERANCES = {
    "float32": (2e-5, 1e-6),
    "float64": (1e-12, 1e-13),
    "float16": (4e-3, 1e-4),
    "bfloat16": (3e-2, 1e-3),
}


def tolerance(dtype, rtol=None, atol=None):
    base = TOLERANCES.get(np.dtype(dtype).name, (0.0, 0.0))
    return (base[0] if rtol is None else rtol), (base[1] if atol is None else atol)


def to_numpy(x) -> np.ndarray:
    if type(x).__module__.startswith("cupy"):
        return x.get()
    if hasattr(x, "dtype") and keys.is_key(x):  # typed PRNG keys: their data
        return np.asarray(jax.random.key_data(x))
    return np.asarray(x)


def to_jax_args(args, kwargs):
    """CuPy leaves become JAX arrays (DLPack, no copy) so jax.jit accepts them."""
    def conv(x):
        if type(x).__module__.startswith("cupy"):
            return jax.dlpack.from_dlpack(x)
        return x
    return jax.tree_util.tree_map(conv, (args, kwargs))


def ulp_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Distance in units in the last place between same-dtype finite float arrays."""
    int_t, uint_t = {4: (np.int32, np.uint32), 2: (np.int16, np.uint16)}.get(a.dtype.itemsize, (np.int64, np.uint64))

    def ordered(x):  # IEEE bit patterns mapped to integers in the order of the values
        bits = x.view(int_t)
        return np.where(bits < 0, np.iinfo(int_t).min - bits, bits).view(uint_t)

    d = ordered(a) - ordered(b)  # modular difference
    return np.minimum(d, (-d).astype(uint_t)).astype(np.float64)


@dataclasses.dataclass
class OutputDiff:
    path: str
    shape: tuple
    dtype: str
    max_abs: float
    max_rel: float
    max_ulp: float
    ok: bool
    problem: str = ""


@dataclasses.dataclass
class CheckReport:
    outputs: list

    @property
    def ok(self) -> bool:
        return all(o.ok for o in self.outputs)

    def __bool__(self) -> bool:
        return self.ok

    def __str__(self) -> str:
        from rich.console import Console
        from rich.table import Table
        table = Table(title="fusejit vs jax.jit")
        for col in ("output", "shape", "dtype", "max abs err", "max rel err", "max ULP", "result"):
            table.add_column(col)
        for o in self.outputs:
            table.add_row(o.path, str(list(o.shape)), o.dtype, f"{o.max_abs:.3g}", f"{o.max_rel:.3g}",
                          f"{o.max_ulp:.0f}", "pass" if o.ok else f"FAIL {o.problem}")
        console = Console(width=120, record=True, file=open("/dev/null", "w"), force_terminal=False)
        console.print(table)
        return console.export_text()

    __repr__ = __str__


def diff_arrays(path: str, want, got, rtol=None, atol=None) -> OutputDiff:
    if hasattr(want, "dtype") and hasattr(got, "dtype") and keys.is_key(want) != keys.is_key(got):
        return OutputDiff(path, np.shape(got), str(got.dtype), np.inf, np.inf, np.inf, False,
                          f"expected {want.dtype}, got {got.dtype}")
    want, got = to_numpy(want), to_numpy(got)
    if want.shape != got.shape or want.dtype != got.dtype:
        return OutputDiff(path, got.shape, got.dtype.name, np.inf, np.inf, np.inf, False,
                          f"expected {want.dtype.name}{list(want.shape)}, got {got.dtype.name}{list(got.shape)}")
    if want.size == 0:
        return OutputDiff(path, got.shape, got.dtype.name, 0.0, 0.0, 0.0, True)
    half = halves.is_half(want.dtype)
    if want.dtype.kind != "f" and not half:
        bad = want != got
        n_bad = int(np.count_nonzero(bad))
        max_abs = float(np.max(np.abs(want.astype(np.float64) - got.astype(np.float64)))) if n_bad else 0.0
        return OutputDiff(path, got.shape, got.dtype.name, max_abs, 0.0, 0.0, n_bad == 0,
                          f"{n_bad} element(s) differ" if n_bad else "")
    rtol, atol = tolerance(want.dtype, rtol, atol)
    tiny = (ml_dtypes.finfo if half else np.finfo)(want.dtype).tiny
    w = np.where(np.abs(want) < tiny, np.zeros_like(want), want)
    g = np.where(np.abs(got) < tiny, np.zeros_like(got), got)
    nan_w, nan_g = np.isnan(w), np.isnan(g)
    problems = []
    if not np.array_equal(nan_w, nan_g):
        problems.append(f"NaN in {int(np.count_nonzero(nan_w != nan_g))} different place(s)")
    inf_w, inf_g = np.isinf(w), np.isinf(g)
    inf_bad = (inf_w | inf_g) & ~(nan_w | nan_g) & (w != g)
    if np.any(inf_bad):
        problems.append(f"inf differs in {int(np.count_nonzero(inf_bad))} place(s)")
    finite = np.isfinite(w) & np.isfinite(g)
    wf, gf = w[finite].astype(np.float64), g[finite].astype(np.float64)
    with np.errstate(over="ignore"):  # float64 values near the largest double: inf is the answer
        err = np.abs(wf - gf)
        rel = err / np.maximum(np.abs(wf), tiny)
    max_abs = float(err.max()) if err.size else 0.0
    max_rel = float(rel.max()) if rel.size else 0.0
    max_ulp = float(ulp_distance(np.ascontiguousarray(w[finite]), np.ascontiguousarray(g[finite])).max()) if err.size else 0.0
    n_bad = int(np.count_nonzero(err > atol + rtol * np.abs(wf)))
    if n_bad:
        problems.append(f"{n_bad} element(s) beyond rtol={rtol:g} atol={atol:g}")
    return OutputDiff(path, got.shape, got.dtype.name, max_abs, max_rel, max_ulp, not problems, "; ".join(problems))


def compare(want_tree, got_tree, rtol=None, atol=None) -> CheckReport:
    want_leaves, want_def = jax.tree_util.tree_flatten_with_path(want_tree)
    got_leaves, got_def = jax.tree_util.tree_flatten(got_tree)
    if want_def != got_def:
        return CheckReport([OutputDiff("(tree)", (), "", np.inf, np.inf, np.inf, False,
                                       f"output structure {got_def} != jax.jit's {want_def}")])
    rows = []
    for (path, want), got in zip(want_leaves, got_leaves):
        rows.append(diff_arrays(jax.tree_util.keystr(path) or "out", want, got, rtol, atol))
    return CheckReport(rows)


def check(f, *args, rtol=None, atol=None, **kwargs) -> CheckReport:
    """Run f with fusejit and with jax.jit on the same inputs; return the per-output diff report."""
    from .api import Jitted, jit
    jitted = f if isinstance(f, Jitted) else jit(f)
    got = jitted.run(*args, **kwargs)
    want = jitted.reference(*args, **kwargs)
    return compare(want, got, rtol, atol)
