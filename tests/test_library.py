"""The library layer (fusejit/library.py) against jax.jit.

Every test traces a jnp/lax function with jax.make_jaxpr and evaluates that jaxpr with each
primitive that has a LIBRARY row computed by its rule (host_lib(), NumPy inputs, the equation's
own params) and every other primitive by JAX; the result is diffed against jax.jit of the same
function with fusejit.check.diff_arrays (shape and dtype exactly, floats by the tolerance
table, integers and bools exactly). Each test also asserts that the primitives it is about
really went through the library, and the evaluator (tests/library_eval.py) checks every
rule's output contract (count, shape, dtype, C-contiguity).  The factorisations are in
tests/test_library_linalg.py.
"""
from __future__ import annotations

import collections
import os
import subprocess
import sys
import textwrap
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg
from jax import lax

from fusejit import backends, indexops, launch, library, ufuncs
from fusejit.errors import UnsupportedError
from helpers import rand
from library_eval import check, evaluate
from test_library_linalg import _eigh_compare, _qr_compare, _spd, _svd_compare, _triangular

# ----------------------------------------------------------------------------------------------
# the table itself


def test_unknown_primitive_names_primitive_and_backend():
    with pytest.raises(UnsupportedError, match=r"'while'.*numpy backend") as e:
        library.call("while", library.host_lib(), {}, [((), np.float32)], np.zeros((), np.float32))
    assert e.value.primitive == "while"
    fake_gpu = library.ArrayLib("cupy", np, "scipy.linalg")  # only the name reaches the message
    with pytest.raises(UnsupportedError, match=r"'fft'.*cupy backend"):
        library.call("fft", fake_gpu, {}, [((2,), np.float32)], np.zeros(2, np.float32))


def test_table_rows():
    assert set(library.LIBRARY) == {
        "dot_general", "lu", "triangular_solve", "cholesky", "qr", "svd", "eigh", "sort", "gather",
        "scatter", "scatter-add", "scatter-mul", "scatter-min", "scatter-max", "dynamic_slice",
        "dynamic_update_slice", "top_k", "conv_general_dilated", "reduce_window_sum", "reduce_window_max",
        "reduce_window_min", "select_and_scatter_add"}
    assert library.host_lib().name == "numpy" and library.host_lib().linalg is scipy.linalg


LAZY_SCIPY = textwrap.dedent("""
    import sys, numpy as np, jax, jax.numpy as jnp, fusejit
    from fusejit.check import check
    def products(a, b, i):
        return jnp.sort(a @ b, axis=0)[i] + 1.5
    def solve(a, b, i):
        return jnp.linalg.solve(a + 4.0 * jnp.eye(5), b) + products(a, b, i)
    rng = np.random.default_rng(7)
    args = rng.standard_normal((5, 5)).astype(np.float32), rng.standard_normal((5, 3)).astype(np.float32), np.int32(2)
    for fn in (products, solve):
        report = check(fusejit.jit(fn), *args)
        assert report.ok, report
        print(fn.__name__, "scipy.linalg" in sys.modules)
""")


def test_scipy_linalg_imported_only_by_factorisations(tmp_path):
    """Importing scipy.linalg takes over 100 ms: a program of products, sorts and gathers does
    not wait for it; the first factorisation imports it."""
    env = dict(os.environ, FUSEJIT_CACHE_DIR=str(tmp_path))
    out = subprocess.run([sys.executable, "-c", LAZY_SCIPY], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["products", "False", "solve", "True"]


# ----------------------------------------------------------------------------------------------
# dot_general

DOTS = {
    "matmul": (lambda a, b: a @ b, (7, 13), (13, 5)),
    "matvec": (lambda a, b: a @ b, (6, 9), (9,)),
    "vecmat": (lambda a, b: a @ b, (9,), (9, 6)),
    "inner": (jnp.dot, (11,), (11,)),
    "outer": (lambda a, b: jnp.einsum("i,j->ij", a, b), (4,), (3,)),
    "batched": (lambda a, b: a @ b, (3, 4, 5), (3, 5, 2)),
    "broadcast_batch": (lambda a, b: a @ b, (2, 1, 4, 5), (3, 5, 2)),
    "einsum_bij_bkj": (lambda a, b: jnp.einsum("bij,bkj->bki", a, b), (2, 3, 4), (2, 5, 4)),
    "einsum_two_contractions": (lambda a, b: jnp.einsum("ijk,kjl->li", a, b), (3, 4, 5), (5, 4, 2)),
    "tensordot": (lambda a, b: jnp.tensordot(a, b, axes=([0, 2], [2, 0])), (3, 4, 5), (5, 2, 3)),
    "transposed_lhs": (lambda a, b: jnp.einsum("ji,jk->ik", a, b), (13, 7), (13, 5)),
    "transposed_rhs": (lambda a, b: jnp.einsum("ij,kj->ik", a, b), (7, 13), (5, 13)),
    "transposed_both": (lambda a, b: jnp.einsum("ji,kj->ik", a, b), (13, 7), (5, 13)),
    "spelled_transposed": (lambda a, b: a.T @ b.T, (13, 7), (5, 13)),
    "batched_transposed": (lambda a, b: jnp.einsum("bji,bjk->bik", a, b), (3, 13, 7), (3, 13, 5)),
    "batch_innermost": (lambda a, b: jnp.einsum("ijb,jkb->bik", a, b), (4, 6, 3), (6, 5, 3)),
    "unit_dims": (lambda a, b: jnp.einsum("aij,jkb->bik", a, b), (1, 1, 13), (13, 4, 1)),
    "empty_contraction": (lambda a, b: a @ b, (5, 0), (0, 3)),
    "empty_rows": (lambda a, b: a @ b, (0, 4), (4, 3)),
}


@pytest.mark.parametrize("dtype", [np.float32, np.int8])
@pytest.mark.parametrize("case", sorted(DOTS))
def test_dot_general_forms(case, dtype):
    f, sa, sb = DOTS[case]
    rng = np.random.default_rng(len(case))
    special = dtype != np.float32  # extreme integers wrap; NaN/inf are test_dot_general_nonfinite_floats
    check(f, rand(rng, sa, dtype, special=special), rand(rng, sb, dtype, special=special), expect=["dot_general"])


def test_dot_general_reads_transposed_operands_in_place():
    """An operand whose contraction is not its last axis (the products of a gradient, an
    einsum) goes to BLAS as a transposed view, without a copy; one BLAS cannot read that way (a batch
    axis innermost: no unit stride in either matrix dim) is copied into order first."""
    def plan(f, sa, sb):
        (eqn,) = [e for e in jax.make_jaxpr(f)(np.ones(sa, np.float32), np.ones(sb, np.float32)).eqns
                  if e.primitive.name == "dot_general"]
        return library._dot_plan(eqn.params["dimension_numbers"], sa, sb)

    for case in ("transposed_lhs", "transposed_rhs", "transposed_both", "batched_transposed", "unit_dims"):
        f, sa, sb = DOTS[case]
        p = plan(f, sa, sb)
        assert p.lhs.view and p.rhs.view, (case, p)
    assert plan(*DOTS["transposed_lhs"]).lhs.axes == (1, 0)
    p = plan(*DOTS["batch_innermost"])
    assert not p.lhs.view and not p.rhs.view, p


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int8, np.uint8, np.int16, np.int32, np.uint32,
                                   np.int64, np.uint64, np.bool_])
def test_dot_general_dtypes(dtype, wide):
    # Extreme integers: products and sums wrap as in XLA.
    rng = np.random.default_rng(5)
    special = np.dtype(dtype).kind != "f"
    a, b = rand(rng, (3, 6, 17), dtype, special=special), rand(rng, (3, 17, 4), dtype, special=special)
    check(lambda a, b: (a @ b, a[0] @ b[1]), a, b, expect=["dot_general"])


def test_dot_general_bool_long_contraction():
    # 256 true products: a count kept in 8 bits would wrap to zero (false).
    a, b = np.ones((2, 256), bool), np.ones((256, 3), bool)
    _, (got,) = check(lambda a, b: a @ b, a, b, expect=["dot_general"])
    assert got.all()


def test_dot_general_nonfinite_floats():
    a = np.array([[np.inf, 1.0], [np.nan, 2.0], [1.0, -np.inf]], np.float32)
    b = np.array([[0.0, 1.0, 2.0], [3.0, np.inf, -1.0]], np.float32)
    _, (got,) = check(lambda a, b: a @ b, a, b, expect=["dot_general"])
    assert np.isnan(got).any() and np.isinf(got).any()


def test_dot_general_preferred_element_type(x64):
    rng = np.random.default_rng(6)
    f32 = rand(rng, (5, 7), np.float32), rand(rng, (7, 3), np.float32)
    _, (got,) = check(lambda a, b: lax.dot(a, b, preferred_element_type=jnp.float64), *f32, expect=["dot_general"])
    assert got.dtype == np.float64
    i8 = rand(rng, (5, 7), np.int8, special=True), rand(rng, (7, 3), np.int8, special=True)
    _, (got,) = check(lambda a, b: lax.dot(a, b, preferred_element_type=jnp.int32), *i8, expect=["dot_general"])
    assert got.dtype == np.int32 and np.abs(got).max() > 127  # no int8 wrapping before the sum
    u8 = rand(rng, (5, 7), np.uint8, special=True), rand(rng, (7, 3), np.uint8, special=True)
    check(lambda a, b: lax.dot_general(a, b, (([1], [0]), ([], [])), preferred_element_type=jnp.int64), *u8,
          expect=["dot_general"])


def test_dot_general_float32_stays_float32_long_sums():
    # K = 300: BLAS and XLA block the sums differently. Both round each partial sum, so the
    # error is absolute and grows like sqrt(K) * eps * sum|a*b|; a wrong result is off by O(1).
    rng = np.random.default_rng(7)
    a, b = rand(rng, (30, 300), np.float32), rand(rng, (300, 20), np.float32)
    atol = np.sqrt(300) * np.finfo(np.float32).eps * float((np.abs(a) @ np.abs(b)).max())
    _, (got,) = check(lambda a, b: a @ b, a, b, expect=["dot_general"], atol=atol)
    assert got.dtype == np.float32


# ----------------------------------------------------------------------------------------------
# sort

ALL_DTYPES = [np.float32, np.float64, np.int8, np.uint16, np.int32, np.int64, np.uint64, np.bool_]
TIES = np.array([np.nan, -np.nan, 0.0, -0.0, np.inf, -np.inf, 1.0, -1.0, 2.5])


def _keys(rng, shape, dtype):
    """Values with many ties: for floats NaN of both signs, both zeros and infinities."""
    if np.dtype(dtype).kind == "f":
        return rng.choice(TIES, size=shape).astype(dtype)
    return rand(rng, shape, dtype, special=True) if rng.random() < 0.5 else rng.integers(0, 3, size=shape).astype(dtype)


@pytest.mark.parametrize("dtype", ALL_DTYPES)
def test_sort_and_argsort(dtype, wide):
    # argsort's integer output pins the order exactly: -0.0 ties with 0.0, every NaN (either
    # sign) ties with every other after +inf, and ties keep their input order.
    rng = np.random.default_rng(16)
    x, y = _keys(rng, (5, 13), dtype), _keys(rng, (3, 4, 6), dtype)
    _, got = check(lambda x, y: (jnp.sort(x), jnp.sort(x, axis=0), jnp.argsort(x), jnp.argsort(x, axis=0),
                                 jnp.argsort(y, axis=1), jnp.sort(y, axis=1), jnp.argsort(x, descending=True)),
                   x, y, expect=["sort"])
    if np.dtype(dtype).kind == "f":
        assert np.isnan(got[0][:, -1]).any() and np.signbit(got[0]).any()  # NaN and -0.0 were there


def test_sort_random_floats_and_special_values(x64):
    rng = np.random.default_rng(17)
    x = rand(rng, (4, 33), np.float64, special=True)
    check(lambda x: (jnp.sort(x), jnp.argsort(x), jnp.sort(x.astype(jnp.float32), axis=0)), x, expect=["sort"])


def test_sort_several_keys_and_operands():
    rng = np.random.default_rng(18)
    k1, k2 = rng.integers(0, 3, (4, 20)).astype(np.int32), rng.choice(TIES, (4, 20)).astype(np.float32)
    payload = rand(rng, (4, 20), np.float32)
    check(lambda a, b, p: (lax.sort((a, b, p), dimension=1, num_keys=2), lax.sort((b, a), dimension=0, num_keys=1),
                           lax.sort((a, b, p), dimension=1, num_keys=3), jnp.lexsort((b, a), axis=-1)),
          k1, k2, payload, expect=["sort"])


def test_sort_edge_shapes():
    rng = np.random.default_rng(19)
    check(lambda a, b, c, d: (jnp.sort(a), jnp.argsort(b, axis=0), jnp.sort(c), jnp.sort(d, axis=0),
                              lax.sort(c, is_stable=False)),
          np.zeros((0, 5), np.float32), np.zeros((3, 0), np.int32), rand(rng, (1,), np.float32),
          rand(rng, (7,), np.bool_), expect=["sort"])


# ----------------------------------------------------------------------------------------------
# gather

GATHERS = {
    "take_axis0": lambda x, i: jnp.take(x, i, axis=0),
    "take_axis1_clip": lambda x, i: jnp.take(x, i, axis=1, mode="clip"),
    "take_wrap": lambda x, i: jnp.take(x, i, axis=1, mode="wrap"),
    "take_flat": lambda x, i: jnp.take(x, i),
    "index_rows": lambda x, i: x[i],
    "index_2d_array": lambda x, i: x[i.reshape(2, -1) % 4],
    "index_scalar_and_array": lambda x, i: x[1, i % 5],
    "index_two_arrays": lambda x, i: x[i % 4, (i * 3) % 5],
    "index_columns": lambda x, i: x[:, i % 5],
    "index_with_slice": lambda x, i: x[i % 4, 1:4],
    "get_fill": lambda x, i: x.at[i].get(mode="fill"),
    "get_fill_value": lambda x, i: x.at[:, i].get(mode="fill", fill_value=7),
    "get_promise_oob": lambda x, i: x.at[i].get(mode="promise_in_bounds"),
    "get_clip": lambda x, i: x.at[i, i].get(mode="clip"),
    "take_along_axis0": lambda x, i: jnp.take_along_axis(x, i.reshape(2, -1)[:, :5] % 4, axis=0),
    "take_along_axis1": lambda x, i: jnp.take_along_axis(x, jnp.broadcast_to(i[:4, None], (4, 3)), axis=1),
    "vmap_take": lambda x, i: jax.vmap(lambda row, j: row[j])(x, i[:4] % 5),
}


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int8, np.uint32, np.int64, np.bool_])
@pytest.mark.parametrize("case", sorted(GATHERS))
def test_gather_forms(case, dtype, wide):
    # Indices out of bounds on both sides (after jnp's negative-index wrap): FILL_OR_DROP fills
    # (NaN, INT_MIN, UINT_MAX, True, or fill_value), CLIP and PROMISE_IN_BOUNDS clamp.
    rng = np.random.default_rng(len(case))
    x = rand(rng, (4, 5), dtype, special=True)
    i = rng.integers(-8, 9, size=10).astype(np.int32)
    check(GATHERS[case], x, i, expect=["gather"])


@pytest.mark.parametrize("mode", ["clip", "fill", "promise_in_bounds"])
def test_gather_windows(mode):
    # Windows of 2x3 at start positions some of which do not fit: XLA clamps a start so the whole
    # window fits (clip, promise_in_bounds) or fills the whole window (fill).
    rng = np.random.default_rng(20)
    x = rand(rng, (6, 7), np.float32)
    starts = rng.integers(-2, 8, size=(5, 2)).astype(np.int32)
    dnums = lax.GatherDimensionNumbers(offset_dims=(1, 2), collapsed_slice_dims=(), start_index_map=(0, 1))
    _, (got,) = check(lambda x, s: lax.gather(x, s, dnums, slice_sizes=(2, 3), mode=mode), x, starts,
                      expect=["gather"])
    assert got.shape == (5, 2, 3)


def test_gather_one_hot_is_unsupported():
    # jax.jit cannot lower it on the CPU either.
    closed = jax.make_jaxpr(lambda x, i: x.at[i].get(mode="one_hot"))(np.zeros(3, np.float32), np.array([0], np.int32))
    (eqn,) = [e for e in closed.jaxpr.eqns if e.primitive.name == "gather"]
    with pytest.raises(UnsupportedError, match="ONE_HOT"):
        library.call("gather", library.host_lib(), eqn.params, [((1,), np.float32)], np.zeros(3, np.float32),
                     np.zeros((1, 1), np.int32))


def test_gather_empty_and_3d():
    rng = np.random.default_rng(21)
    x3 = rand(rng, (3, 4, 5), np.float32)
    i = rng.integers(0, 3, size=(2, 3)).astype(np.int32)
    check(lambda x3, i, e: (x3[i, :, i], x3[:, i], x3[..., i], jnp.take(x3, e, axis=1), jnp.take(x3[:, :0], i, axis=0)),
          x3, i, np.zeros((0,), np.int32), expect=["gather"])


# ----------------------------------------------------------------------------------------------
# scatter


def _at(kind, ref, idx, updates, **kw):
    return getattr(ref.at[idx], kind)(updates, **kw)


SCATTER_KINDS = ["set", "add", "multiply", "min", "max"]


@pytest.fixture(params=["compiled loop", "numpy"])
def scatter_path(request, monkeypatch):
    """A scatter test runs twice: through the elementwise library's compiled loops (ufuncs.py,
    the host once that library is loaded), and through NumPy (before it is)."""
    if request.param == "numpy":
        monkeypatch.setattr(ufuncs, "loaded", lambda: None)
    else:
        ufuncs.wait(backends.get("host"))
    before = launch.counter["scatter loop"]
    yield request.param
    ran = launch.counter["scatter loop"] - before
    assert ran > 0 if request.param == "compiled loop" else ran == 0, f"{ran} scatter(s) ran the compiled loop"
PRIMITIVE = {"set": "scatter", "add": "scatter-add", "multiply": "scatter-mul", "min": "scatter-min",
             "max": "scatter-max"}


@pytest.mark.parametrize("kind,dtype", [(k, d) for k in SCATTER_KINDS
                                          for d in (np.float32, np.float64, np.int8, np.uint8, np.int32, np.bool_)
                                          if not (d == np.bool_ and k in ("add", "multiply"))])  # none in jnp
def test_scatter_duplicates_and_out_of_bounds(kind, dtype, wide, scatter_path):
    # Duplicate indices accumulate (add/mul/min/max) or the last one wins (set); out-of-bound
    # indices are dropped (the default mode), clamped (clip), or dropped too for
    # promise_in_bounds and one_hot (what XLA's CPU scatter does with them).
    rng = np.random.default_rng(SCATTER_KINDS.index(kind))
    x, rows = rand(rng, (6,), dtype, special=True), rand(rng, (6, 4), dtype, special=True)
    i = np.array([1, 3, 1, -2, 9, 1, -9, 0, 3, 5], np.int32)  # repeats 1 and 3; 9 and -9 out of bounds
    u, urows = rand(rng, (10,), dtype, special=True), rand(rng, (10, 4), dtype, special=True)
    check(lambda x, rows, i, u, urows: (
        _at(kind, x, i, u), _at(kind, x, i, u, mode="clip"), _at(kind, x, i, u, mode="promise_in_bounds"),
        _at(kind, x, i, u, mode="one_hot"),
        _at(kind, rows, i, urows), _at(kind, rows, (i, i % 4), u), _at(kind, rows, (2, 3), u[0]),
        _at(kind, rows.T, (slice(None), i % 7), urows.T)),
        x, rows, i, u, urows, expect=[PRIMITIVE[kind]])


def test_scatter_set_last_update_wins(scatter_path):
    # Written down: for x.at[idx].set(u) with repeated indices, the update that comes last in
    # the (row-major) order of the scatter indices wins, as in jax.jit on the CPU.
    x = np.zeros(4, np.int32)
    i = np.array([2, 0, 2, 2, 1, 0], np.int32)
    u = np.arange(10, 16, dtype=np.int32)
    _, (got,) = check(lambda x, i, u: x.at[i].set(u), x, i, u, expect=["scatter"])
    np.testing.assert_array_equal(got, [15, 14, 13, 0])


@pytest.mark.parametrize("kind", SCATTER_KINDS)
def test_scatter_windows_and_batching_dims(kind, scatter_path):
    rng = np.random.default_rng(22)
    x3 = rand(rng, (3, 4, 5), np.float32)
    i = rng.integers(-1, 4, size=(2, 3)).astype(np.int32)
    check(lambda x3, i, u, v, w: (
        _at(kind, x3, (i, slice(None), i), u),       # advanced indices split by a slice
        _at(kind, x3, (slice(None), 1), v),           # static window
        _at(kind, x3, (slice(1, 3), i[0] % 4), w),  # window before the scattered dim
        jax.vmap(lambda row, j, val: _at(kind, row, j, val))(x3[0], i.reshape(-1)[:4] % 5, u.reshape(-1)[:4]),
        jnp.put_along_axis(x3[0], i.reshape(-1)[:4, None] % 5, u.reshape(-1)[:4, None], axis=1, inplace=False)
        if kind == "set" else x3),
        x3, i, rand(rng, (2, 3, 4), np.float32), rand(rng, (3, 5), np.float32), rand(rng, (2, 3, 5), np.float32),
        expect=[PRIMITIVE[kind]])


@pytest.mark.parametrize("mode", ["clip", "drop", "promise_in_bounds"])
def test_scatter_add_window_partly_out_of_bounds(mode, scatter_path):
    # A 2-row window starting at the last row does not fit: XLA drops the whole window (or, with
    # clip, moves it back so that it fits).
    dnums = lax.ScatterDimensionNumbers(update_window_dims=(0,), inserted_window_dims=(1,),
                                        scatter_dims_to_operand_dims=(0, 1))
    idx = np.array([[3, 1], [2, 4], [-1, 2], [1, 7], [0, 0]], np.int32)
    x, u = np.zeros((4, 5), np.float32), np.arange(1, 11, dtype=np.float32).reshape(2, 5)
    _, (got,) = check(lambda x, i, u: lax.scatter_add(x, i, u, dnums, mode=mode), x, idx, u, expect=["scatter-add"])
    assert got.any()


def test_scatter_empty_updates_and_nan(scatter_path):
    rng = np.random.default_rng(23)
    x = rand(rng, (5,), np.float32)
    u = np.array([np.nan, 1.0, -np.inf], np.float32)
    i = np.array([0, 0, 4], np.int32)
    check(lambda x, e, u, i: (x.at[e].add(x[:0]), x.at[i].max(u), x.at[i].min(u), x.at[i].add(u), x.at[i].multiply(u),
                              x[:0].at[i].add(u, mode="clip"), x[:0].at[i].set(u)),
          x, np.zeros((0,), np.int32), u, i,
          expect=["scatter", "scatter-add", "scatter-max", "scatter-min", "scatter-mul"])


def test_scatter_apply_is_unsupported():
    closed = jax.make_jaxpr(lambda x, i: x.at[i].apply(jnp.sin))(np.zeros(3, np.float32), np.array([0], np.int32))
    (eqn,) = [e for e in closed.jaxpr.eqns if e.primitive.name == "scatter"]
    ins = [np.zeros(3, np.float32), np.zeros((1, 1), np.int32), np.zeros(1, np.float32)]
    with pytest.raises(UnsupportedError, match="apply"):
        library.call("scatter", library.host_lib(), eqn.params, [((3,), np.float32)], *ins)


@pytest.mark.parametrize("primitive", ["scatter", "scatter-add", "scatter-mul"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int16, np.uint64])
def test_compiled_scatter_loops_match_numpy_bit_for_bit(primitive, dtype, wide):
    """The loops apply the updates in the order NumPy's ufunc.at does (and XLA's CPU scatter):
    sums and products of repeated positions round alike.  Windows of 16 contiguous elements
    (the vectorised loop) and of a strided column (offsets), some dropped."""
    closed = jax.make_jaxpr(lambda x, i, u, c: (_at(PRIMITIVE_KIND[primitive], x, i, u),
                                                _at(PRIMITIVE_KIND[primitive], x, (slice(None), i[:9] % 16), c)))(
        np.zeros((40, 16), dtype), np.zeros(300, np.int32), np.zeros((300, 16), dtype), np.zeros((40, 9), dtype))
    rng = np.random.default_rng(26)
    args = [rand(rng, (40, 16), dtype), rng.integers(-3, 43, 300).astype(np.int32), rand(rng, (300, 16), dtype),
            rand(rng, (40, 9), dtype)]
    if np.dtype(dtype).kind == "f":
        args[0], args[2] = args[0] / 8 + 1, args[2] / 8 + 1  # products stay finite
    ufuncs.wait(backends.get("host"))
    before = launch.counter["scatter loop"]
    loop = evaluate(closed, args, collections.Counter(), library.host_lib())
    assert launch.counter["scatter loop"] - before == 2
    with pytest.MonkeyPatch.context() as m:
        m.setattr(ufuncs, "loaded", lambda: None)
        plain = evaluate(closed, args, collections.Counter(), library.host_lib())
    for a, b in zip(loop, plain):
        np.testing.assert_array_equal(a, b)


PRIMITIVE_KIND = {p: k for k, p in PRIMITIVE.items()}


@pytest.mark.parametrize("op", ["add", "multiply", "minimum", "maximum"])
def test_accumulate_in_rounds_matches_ufunc_at(op):
    # The CuPy path of the combining scatters, run with NumPy: same order, so bit-identical.
    rng = np.random.default_rng(24)
    flat = rng.integers(0, 7, size=200)
    values = rand(rng, (200,), np.float64) / 4 + 1
    want, got = rand(rng, (9,), np.float64), None
    got = want.copy()
    getattr(np, op).at(want, flat, values)
    indexops.accumulate_in_rounds(np, getattr(np, op), got, flat, values)
    np.testing.assert_array_equal(got, want)


# ----------------------------------------------------------------------------------------------
# dynamic_slice, dynamic_update_slice

STARTS = [(1, 2), (-1, 0), (100, -100), (3, 4), (0, 0)]


@pytest.mark.parametrize("dtype", [np.float32, np.int8, np.int64, np.bool_])
@pytest.mark.parametrize("starts", STARTS)
def test_dynamic_slice_and_update(starts, dtype, wide):
    # Start indices are clamped so that the slice fits (negative ones first wrap once, in lax).
    rng = np.random.default_rng(25)
    x, u = rand(rng, (5, 7), dtype), rand(rng, (2, 3), dtype)
    i, j = (np.int32(s) for s in starts)
    check(lambda x, u, i, j: (lax.dynamic_slice(x, (i, j), (2, 3)), lax.dynamic_slice(x, (i, j), (0, 7)),
                              lax.dynamic_update_slice(x, u, (i, j)), lax.dynamic_update_slice(x, u[:0], (i, j)),
                              x[i], lax.dynamic_update_index_in_dim(x, u[0, :1].repeat(7), j, axis=0),
                              lax.dynamic_slice_in_dim(x, j, 5, axis=1)),
          x, u, i, j, expect=["dynamic_slice", "dynamic_update_slice"])


# ----------------------------------------------------------------------------------------------
# the same rules with CuPy (cuBLAS/cuSOLVER), where a GPU is present


def _cases_for_both_libs():
    rng = np.random.default_rng(26)
    x, i = rand(rng, (4, 5), np.float64, special=True), rng.integers(-8, 9, size=10).astype(np.int32)
    keys = rng.choice(TIES, size=(3, 9)).astype(np.float64)
    a, spd = rand(rng, (2, 5, 5), np.float64), _spd(rng, (2, 5, 5), np.float64)
    tri = _triangular(rng, (2, 4, 4), True, False, np.float64)
    ints = rand(rng, (3, 6, 17), np.int32, special=True), rand(rng, (3, 17, 4), np.int32, special=True)
    whole = rng.integers(-4, 5, (7, 13)).astype(np.float64), rng.integers(-4, 5, (13, 5)).astype(np.float64)
    u = rand(rng, (10,), np.float64)
    return {
        "dot_int": (lambda a, b: a @ b, ints, ["dot_general"], None),
        "dot_float_exact": (lambda a, b: a @ b, whole, ["dot_general"], None),  # integer values: no rounding
        "sort": (lambda k: (jnp.sort(k), jnp.argsort(k, axis=0)), (keys,), ["sort"], None),
        "gather": (lambda x, i: (jnp.take(x, i, axis=1), x[i % 4, 1:4], x.at[i].get(mode="clip")), (x, i),
                   ["gather"], None),
        "scatter": (lambda v, x, i, u: (v.at[i].set(u), v.at[i].add(u), v.at[i].multiply(u), v.at[i].min(u),
                                        x.at[i, i % 5].max(u)), (x[:, 0].copy(), x, i, u),
                    ["scatter", "scatter-add", "scatter-mul", "scatter-min", "scatter-max"], None),
        "dynamic": (lambda x, i: (lax.dynamic_slice(x, (i, i), (2, 3)), lax.dynamic_update_slice(x, x[:2, :2], (i, i))),
                    (x, np.int32(3)), ["dynamic_slice", "dynamic_update_slice"], None),
        "lu_solve": (lambda a, b: (lax.linalg.lu(a), jnp.linalg.solve(a, b)), (a, rand(rng, (2, 5, 3), np.float64)),
                     ["lu", "triangular_solve", "gather"], None),
        "triangular_solve": (lambda t, b: lax.linalg.triangular_solve(t, b, left_side=False, lower=True,
                                                                      transpose_a=True),
                             (tri, rand(rng, (2, 3, 4), np.float64)), ["triangular_solve"], None),
        "cholesky": (lambda s, n: (jnp.linalg.cholesky(s), jnp.linalg.cholesky(n)), (spd, -spd), ["cholesky"], None),
        "qr": (jnp.linalg.qr, (a[0, :, :3].copy(),), ["qr"], _qr_compare(a[0, :, :3], "reduced")),
        "svd": (jnp.linalg.svd, (a,), ["svd"], _svd_compare(a, True, True)),
        "eigh": (jnp.linalg.eigh, (a,), ["eigh"], _eigh_compare(a)),
        "windows": (lambda x, w: (lax.conv_general_dilated(x, w, (1, 2), "SAME", rhs_dilation=(1, 2)),
                                  lax.reduce_window(x, 0.0, lax.add, (1, 1, 2, 2), (1, 1, 1, 2), "VALID"),
                                  jax.grad(lambda x: jnp.sum(lax.reduce_window(x, -jnp.inf, lax.max, (1, 1, 2, 2),
                                                                               (1, 1, 2, 2), "SAME")))(x)),
                    (rand(rng, (2, 3, 6, 7), np.float64), rand(rng, (4, 3, 2, 3), np.float64)),
                    ["conv_general_dilated", "reduce_window_sum", "select_and_scatter_add"], None),
    }


@pytest.mark.parametrize("backend", ["numpy", pytest.param("cupy", marks=pytest.mark.skipif(
    not __import__("fusejit.backends", fromlist=["x"]).gpu_available(), reason="no GPU"))])
@pytest.mark.parametrize("case", ["dot_int", "dot_float_exact", "sort", "gather", "scatter", "dynamic", "lu_solve",
                                  "triangular_solve", "cholesky", "qr", "svd", "eigh", "windows"])
def test_both_libs(case, backend, x64):
    # The cases run with NumPy everywhere (so the cases themselves are checked) and with CuPy
    # where a GPU is present.
    f, args, expect, compare = _cases_for_both_libs()[case]
    lib = library.host_lib() if backend == "numpy" else library.cuda_lib()
    check(f, *args, expect=expect, compare=compare, lib=lib)


# ----------------------------------------------------------------------------------------------
# windows: convolutions, window reductions and the pooling gradient


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int32])
def test_windowed_rules_keep_the_contract(dtype, wide):
    r = np.random.default_rng(40)
    x = rand(r, (2, 4, 9, 7), dtype)
    w = rand(r, (6, 2, 3, 2), dtype)
    conv = lambda x, w: lax.conv_general_dilated(x, w, (2, 1), ((1, 0), (2, -1)), lhs_dilation=(1, 2),  # noqa: E731
                                                 rhs_dilation=(2, 1), feature_group_count=2)
    check(conv, x, w, expect={"conv_general_dilated"}, rtol=1e-4 if dtype == np.float32 else None)
    lo, hi = (np.iinfo(dtype).min, np.iinfo(dtype).max) if np.dtype(dtype).kind == "i" else (-np.inf, np.inf)
    pools = lambda x: (lax.reduce_window(x, x.dtype.type(0), lax.add, (1, 2, 3, 1), (1, 1, 2, 1), "SAME"),  # noqa: E731
                       lax.reduce_window(x, x.dtype.type(lo), lax.max, (1, 1, 2, 2), (1, 1, 2, 2), "VALID"),
                       lax.reduce_window(x, x.dtype.type(hi), lax.min, (2, 1, 1, 3), (1, 2, 1, 1), "VALID"))
    check(pools, x, expect={"reduce_window_sum", "reduce_window_max", "reduce_window_min"})
    if np.dtype(dtype).kind == "f":
        grad = jax.grad(lambda x: jnp.sum(jnp.sin(lax.reduce_window(x, -jnp.inf, lax.max, (1, 1, 3, 2),
                                                                    (1, 1, 2, 1), "SAME"))))
        check(grad, x, expect={"select_and_scatter_add"})


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int8, np.uint32])
def test_top_k_in_total_order_ties_by_index(dtype, wide):
    """-NaN < -inf < ... < -0 < +0 < ... < +NaN, as XLA's top_k ranks; equal values keep
    their index order."""
    r = np.random.default_rng(41)
    x = rand(r, (5, 11), dtype)
    if np.dtype(dtype).kind == "f":
        x = np.round(x / 2)  # ties
        x[0, :5] = [np.nan, -0.0, 0.0, np.inf, -np.inf]
        x[1, 2], x[1, 7] = -np.nan, np.nan
    check(lambda x: (lax.top_k(x, 4), lax.top_k(x, 11), lax.top_k(x[:, :3], 0)), x, expect={"top_k"})


def test_small_products_run_on_one_blas_thread():
    """OpenBLAS spreads products of a few hundred thousand multiply-adds over every core, and
    its waiting threads spin: beside fusejit's kernel threads that made a transformer block's
    gradient 20-40 times slower.  Small products take one thread, larger ones all of them, and
    the setting is restored after each; products OpenBLAS runs on one thread by itself (up to
    BLAS_ONE_THREAD_MACS) leave the setting alone."""
    blas = library._numpy_blas()
    assert blas, "threadpoolctl found no BLAS in this process"
    before = [c.num_threads for c in blas]
    seen = []

    def recording_matmul(a, b, out):
        seen.append([c.num_threads for c in blas])
        return np.matmul(a, b, out=out)

    lib = library.ArrayLib("numpy", types.SimpleNamespace(matmul=recording_matmul), "scipy.linalg")
    try:
        for c in blas:
            c.set_num_threads(2)
        small = np.ones((64, 128), np.float32), np.ones((128, 128), np.float32)
        n = int(np.sqrt(library.SINGLE_THREAD_MACS)) + 1
        big = np.ones((n, 2), np.float32), np.ones((2, n), np.float32)
        tiny = np.ones((32, 64), np.float32), np.ones((64, 128), np.float32)
        assert 32 * 64 * 128 <= library.BLAS_ONE_THREAD_MACS < 64 * 128 * 128
        np.testing.assert_array_equal(library.matmul(lib, *small), np.matmul(*small))
        library.matmul(lib, *big)
        np.testing.assert_array_equal(library.matmul(lib, *tiny), np.matmul(*tiny))
        assert seen == [[1] * len(blas), [2] * len(blas), [2] * len(blas)]
        assert [c.num_threads for c in blas] == [2] * len(blas)
    finally:
        for c, k in zip(blas, before):
            c.set_num_threads(k)
