"""check: run a function with fusejit and with jax.jit on the same inputs and diff every output.

Pass or fail per output uses the dtype's tolerance (TOLERANCES): floats pass when
|got - want| <= atol + rtol * |want| element-wise, NaN in the same places, infinities
equal; values below the smallest normal number count as zero on both sides (XLA's CPU
backend flushes denormals, GPUs may not); integers and bools must be equal.
The report also gives max absolute, max relative and max ULP distance.

jax.jit is not exact either.  Where a float32 (or half) output has elements beyond the
tolerance and nothing else wrong, `check` evaluates the function once more with jax.jit,
64-bit types on and the float inputs widened to float64, and measures both results against
that evaluation in units of each element's tolerance there (atol + rtol*|exact|).  Let q be
jax.jit's largest distance over the output in those units (at most 64): an element beyond
the tolerance of jax.jit's value is accepted when fusejit's distance is at most 1 + 2q, that
is, when fusejit is as close to the exact value as jax.jit's own rounding allows on this
output.  The judge applies only where the evaluation is the same computation as jax.jit's:
jax.jit's value is within one unit at half of the output's elements at least.  A matrix
product's elements near zero, where both sum their terms in different orders and float32's
tolerance is below either's rounding error, are the usual case; the report counts the
elements accepted.  `float64=False` turns the judge off.
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

# The float64 judge (above): the most tolerances of jax.jit's own distance from the float64
# evaluation it counts, and how many times that distance fusejit's may add to one tolerance.
JUDGE_MARGIN = 64
JUDGE_FACTOR = 2


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
    beyond: int = 0  # float elements beyond the tolerance, after the float64 judge where it ran
    note: str = ""  # what the float64 judge accepted


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
                          f"{o.max_ulp:.0f}",
                          (f"pass ({o.note})" if o.note else "pass") if o.ok else f"FAIL {o.problem}")
        console = Console(width=120, record=True, file=open("/dev/null", "w"), force_terminal=False)
        console.print(table)
        return console.export_text()

    __repr__ = __str__


def diff_arrays(path: str, want, got, rtol=None, atol=None, exact=None) -> OutputDiff:
    """One output's row; `exact`: the float64 evaluation's value of it, for the judge."""
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
    bad = err > atol + rtol * np.abs(wf)
    n_bad, note = int(np.count_nonzero(bad)), ""
    if n_bad and not problems and exact is not None:
        judged = judge_elements(wf, gf, exact, finite, bad, rtol, atol)
        if judged is not None:
            left = int(np.count_nonzero(judged))
            note = "" if left else f"{n_bad} element(s) beyond the tolerance, accepted against float64"
            n_bad = left
    if n_bad:
        problems.append(f"{n_bad} element(s) beyond rtol={rtol:g} atol={atol:g}")
    return OutputDiff(path, got.shape, got.dtype.name, max_abs, max_rel, max_ulp, not problems, "; ".join(problems),
                      n_bad, note)


def judge_elements(wf, gf, exact, finite, bad, rtol, atol):
    """The elements still beyond the tolerance after the float64 judge (module docstring), or
    None where the float64 evaluation is not the same computation as jax.jit's."""
    exact = np.asarray(exact)
    if exact.shape != finite.shape or exact.dtype.kind != "f" or exact.dtype.itemsize < 8:
        return None
    t = exact[finite]
    if not np.all(np.isfinite(t)):
        return None
    with np.errstate(over="ignore", invalid="ignore"):
        tol = np.maximum(atol + rtol * np.abs(t), np.finfo(np.float64).tiny)
        jax_units, fusejit_units = np.abs(wf - t) / tol, np.abs(gf - t) / tol
    if np.count_nonzero(jax_units <= 1) * 2 < t.size:
        return None
    q = min(float(jax_units.max()), JUDGE_MARGIN)
    return bad & ~(fusejit_units <= 1 + JUDGE_FACTOR * q)


def compare(want_tree, got_tree, rtol=None, atol=None, exact_tree=None) -> CheckReport:
    """The report on fusejit's outputs `got_tree` against jax.jit's `want_tree`; `exact_tree`,
    where given, the float64 evaluation for the judge (module docstring)."""
    want_leaves, want_def = jax.tree_util.tree_flatten_with_path(want_tree)
    got_leaves, got_def = jax.tree_util.tree_flatten(got_tree)
    if want_def != got_def:
        return CheckReport([OutputDiff("(tree)", (), "", np.inf, np.inf, np.inf, False,
                                       f"output structure {got_def} != jax.jit's {want_def}")])
    exact_leaves = [None] * len(want_leaves)
    if exact_tree is not None:
        leaves, exact_def = jax.tree_util.tree_flatten(exact_tree)
        if exact_def == want_def:
            exact_leaves = leaves
    rows = []
    for (path, want), got, exact in zip(want_leaves, got_leaves, exact_leaves):
        rows.append(diff_arrays(jax.tree_util.keystr(path) or "out", want, got, rtol, atol, exact))
    return CheckReport(rows)


def float64_evaluation(jitted, args, kwargs):
    """The function under jax.jit with 64-bit types on and its float arguments (not the
    static ones) widened to float64, as NumPy arrays: the float64 judge's values."""
    def widen(x):
        dtype = getattr(x, "dtype", None)
        if dtype is None or keys.is_key(x) or not (np.dtype(dtype).kind == "f" or halves.is_half(dtype)):
            return x
        return to_numpy(x).astype(np.float64)
    static = set(jitted.static_argnums)
    args = tuple(a if k in static else jax.tree_util.tree_map(widen, a) for k, a in enumerate(args))
    kwargs = {k: v if k in jitted.static_argnames else jax.tree_util.tree_map(widen, v) for k, v in kwargs.items()}
    args, kwargs = to_jax_args(args, kwargs)
    with jax.enable_x64(True):
        fn = jax.jit(jitted.fun, static_argnums=jitted.static_argnums, static_argnames=jitted.static_argnames)
        return jax.tree_util.tree_map(to_numpy, fn(*args, **kwargs))


def judge(jitted, args, kwargs, got, rtol=None, atol=None, float64=True) -> CheckReport:
    """fusejit's outputs `got` for these arguments against jax.jit's, with the float64 judge
    where an output of fewer bits fails by its tolerance alone (module docstring)."""
    want = jitted.reference(*args, **kwargs)
    report = compare(want, got, rtol, atol)
    widenable = [o for o in report.outputs if not o.ok and o.beyond and o.problem.count(";") == 0
                 and o.dtype in ("float32", "float16", "bfloat16")]
    if report.ok or not float64 or not widenable:
        return report
    try:
        exact = float64_evaluation(jitted, args, kwargs)
    except Exception as e:  # the function does not run with 64-bit types: the report stands, saying so
        for o in widenable:
            o.problem += f" (no float64 evaluation to judge them: {type(e).__name__}: {str(e)[:200]})"
        return report
    return compare(want, got, rtol, atol, exact)


def check(f, *args, rtol=None, atol=None, float64=True, **kwargs) -> CheckReport:
    """Run f with fusejit and with jax.jit on the same inputs; return the per-output diff report
    (`float64`: whether the float64 judge may accept elements beyond the tolerance)."""
    from .api import Jitted, jit
    jitted = f if isinstance(f, Jitted) else jit(f)
    got = jitted.run(*args, **kwargs)
    return judge(jitted, args, kwargs, got, rtol, atol, float64)
