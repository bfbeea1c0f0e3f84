"""Small scatters as fused kernels (fusejit/scatter.py, kernels/scatter.cu.in), against jax.jit
on every path (host, emulation with the GPU's grid and block, NVRTC for sm_80/sm_90, the
interpreter): x.at[i].set/add/multiply/min/max with one index per update, duplicates applied in
order, indices out of bounds dropped or clamped, producers of the operand, the indices and the
updates fused; other forms and large scatters stay library calls (test_library.py)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

import fusejit
from fusejit import launch, scatter
from helpers import rand, run_host_under_asan, verify

KINDS = ["set", "add", "multiply", "min", "max"]
PRIMITIVE = {"set": "scatter", "add": "scatter-add", "multiply": "scatter-mul", "min": "scatter-min",
             "max": "scatter-max"}


def at(kind, ref, idx, updates, **kw):
    return getattr(ref.at[idx], kind)(updates, **kw)


def kinds_of(compiled) -> tuple[list, list]:
    """(the kernels' kinds, the primitives of the steps that are not kernels)."""
    kernels = [k.kind for k in compiled.plan.kernels]
    steps = [s.primitive for s in compiled.plan.steps if not hasattr(s, "kind")]
    return kernels, steps


@pytest.mark.parametrize("kind,dtype", [(k, d) for k in KINDS for d in (np.float32, np.float64, np.int32, np.int8,
                                                                      np.uint8)]
                         + [("set", np.bool_)])
def test_scatters_are_one_kernel_each(kind, dtype, x64):
    """Duplicates (applied in the scatter's order: the last set wins, sums round as XLA's),
    negative indices (jnp wraps them), indices out of bounds (dropped by default, clamped
    with clip), windows of whole rows, fused producers everywhere."""
    rng = np.random.default_rng(KINDS.index(kind))
    x, rows = rand(rng, (7,), dtype, special=True), rand(rng, (6, 5), dtype, special=True)
    cube = rand(rng, (4, 3, 2), dtype, special=True)
    i = np.array([1, 3, 1, -2, 9, 1, -9, 0, 3, 5, 6], np.int32)  # repeats; 9 and -9 out of bounds
    u, urows = rand(rng, (11,), dtype, special=True), rand(rng, (11, 5), dtype, special=True)
    ucube = rand(rng, (11, 3, 2), dtype, special=True)
    compiled = verify(lambda x, rows, cube, i, u, urows, ucube: (
        at(kind, x, i, u), at(kind, x, i, u, mode="clip"), at(kind, x, i % 7, u, mode="promise_in_bounds"),
        at(kind, rows, i, urows), at(kind, cube, i % 4, ucube), at(kind, x, 2, u[0]),
        at(kind, x[::-1] * 2 if dtype != np.bool_ else ~x, (i * 3) % 7, jnp.abs(u) if dtype != np.bool_ else u),
        at(kind, rows, i, urows).max(axis=1) if dtype != np.bool_ else at(kind, rows, i, urows).any(axis=1)),
        x, rows, cube, i, u, urows, ucube)
    kernels, steps = kinds_of(compiled)  # (jnp sets one static index with a select)
    assert kernels.count("scatter") >= 6 and PRIMITIVE[kind] not in steps, compiled.as_text()


@pytest.mark.parametrize("index_dtype", [np.int8, np.uint8, np.int16, np.int64, np.uint32])
def test_index_dtypes(index_dtype, x64):
    """Indices of every integer type: a negative int8 wraps through jnp, a uint8 above the
    operand's length is out of bounds, not a negative number."""
    rng = np.random.default_rng(3)
    x, u = rand(rng, (9, 3), np.float32), rand(rng, (12, 3), np.float32)
    i = np.array([0, 8, 200, 4, 4, 9, 127, 1, 3, 8, 2, 5], np.int64)
    if np.dtype(index_dtype).kind == "i":
        i[[2, 6]] = [-3, -10]
    i = i.astype(index_dtype)
    compiled = verify(lambda x, i, u: (x.at[i].add(u), x.at[i].set(u, mode="clip"), x.at[i].max(u * 2)), x, i, u)
    assert kinds_of(compiled)[0].count("scatter") == 3


def test_windows_wider_than_a_block():
    """Windows of more elements than a GPU block's 256 threads: each thread takes every 256th
    element of every update (the emulation runs the block's real 256 threads)."""
    rng = np.random.default_rng(4)
    x, u = rand(rng, (5, 300), np.float32), rand(rng, (9, 300), np.float32)
    i = np.array([4, 0, 4, 2, 7, -1, 4, 1, 0], np.int32)
    compiled = verify(lambda x, u, i: (x.at[i].add(u), x.at[i].set(u * 2), x.at[i].max(u, mode="clip")), x, u, i)
    assert kinds_of(compiled)[0].count("scatter") == 3


def test_nan_zero_signs_and_empty_updates():
    """min and max propagate NaN as lax.min/max do; -0.0 + -0.0 stays -0.0; no updates leave
    the operand as it is."""
    x = np.array([0.0, -0.0, 1.0, np.nan, -np.inf], np.float32)
    u = np.array([np.nan, -0.0, 0.0, 2.0, np.inf, -0.0], np.float32)
    i = np.array([0, 1, 1, 3, 4, 1], np.int32)
    dnums = lax.ScatterDimensionNumbers(update_window_dims=(), inserted_window_dims=(0,),
                                        scatter_dims_to_operand_dims=(0,))
    compiled = verify(lambda x, u, i, e: (x.at[i].min(u), x.at[i].max(u), x.at[i].add(u), x.at[i].multiply(u),
                                          lax.scatter_add(x * 2, e[:, None], u[:0], dnums)),
                      x, u, i, np.zeros((0,), np.int32))
    assert kinds_of(compiled) == (["scatter"] * 5, []), compiled.as_text()


def test_survey_case_and_gradients_fuse_their_producers(tmp_path):
    """The scatter-add of a column into a zero vector at iota % n (the survey's case) is one
    kernel: the zeros, the index arithmetic and the column are computed in it.  Under
    AddressSanitizer on the host every access stays in bounds, dropped indices included."""
    rng = np.random.default_rng(5)
    a = rand(rng, (203, 70), np.float32)
    compiled = verify(lambda a: (jnp.zeros(a.shape[1]).at[jnp.arange(a.shape[0]) % a.shape[1]].add(a[:, 0]),
                                 jnp.ones((5, 70)).at[jnp.arange(203) - 100].add(a, mode="drop")), a)
    assert kinds_of(compiled) == (["scatter", "scatter"], []), compiled.as_text()
    run_host_under_asan(compiled, (a,), tmp_path)
    table, idx, w = rand(rng, (60, 33), np.float32), rng.integers(-60, 60, 97).astype(np.int32), rand(rng, (97, 33), np.float32)
    x, ids = rand(rng, (501, 16), np.float32), rng.integers(-2, 40, 501).astype(np.int32)
    verify(jax.grad(lambda table, idx, w: jnp.sum(jnp.take(table, idx, axis=0) * w)), table, idx, w)
    compiled = verify(lambda x, ids: (jax.ops.segment_sum(x, ids, num_segments=37),
                                      jax.ops.segment_max(x, ids, num_segments=37)), x, ids)
    assert kinds_of(compiled)[0].count("scatter") == 2


def test_other_forms_and_large_scatters_are_library_calls():
    """Two index components, a window before the scattered axis and a scatter of more than
    scatter.MAX_FUSED elements go to the library, and still match."""
    rng = np.random.default_rng(6)
    rows, i = rand(rng, (6, 5), np.float32), np.array([1, 3, 1, 0], np.int32)
    compiled = verify(lambda rows, i: (rows.at[i, i].add(1.0), rows.at[:, i].add(jnp.ones((6, 4)))), rows, i)
    kernels, steps = kinds_of(compiled)
    assert "scatter" not in kernels and steps == ["scatter-add", "scatter-add"], compiled.as_text()
    n = scatter.MAX_FUSED + 1
    big, ids = rand(rng, (n,), np.float32), rng.integers(0, n, 1000).astype(np.int32)
    before = launch.counter["scatter loop"]
    compiled = verify(lambda big, ids: big.at[ids].add(1.0), big, ids, backends=("host",))
    kernels, steps = kinds_of(compiled)
    assert "scatter" not in kernels and steps == ["scatter-add"], compiled.as_text()
    fusejit.jit(lambda big, ids: big.at[ids].add(1.0))(big, ids)
    assert launch.counter["scatter loop"] > before
