"""The library layer (fusejit/library.py) against jax.jit.

Every test traces a jnp/lax function with jax.make_jaxpr and evaluates that jaxpr with each
primitive that has a LIBRARY row computed by its rule (host_lib(), NumPy inputs, the equation's
own params) and every other primitive by JAX; the result is diffed against jax.jit of the same
function with fusejit.check.diff_arrays (shape and dtype exactly, floats by the tolerance
table, integers and bools exactly). Each test also asserts that the primitives it is about
really went through the library, and the evaluator checks every rule's output contract (count,
shape, dtype, C-contiguity).
"""
from __future__ import annotations

import collections
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg
from jax import lax
from jax.extend import core as jcore

from fusejit import indexops, library
from fusejit.check import diff_arrays
from fusejit.errors import UnsupportedError
from helpers import rand

# ----------------------------------------------------------------------------------------------
# the evaluator


def _read(env, v):
    if isinstance(v, jcore.Literal):
        return np.asarray(v.val, dtype=v.aval.dtype)
    return env[v]


def _library_eqn(lib, eqn, ins):
    name = eqn.primitive.name
    out_avals = [(v.aval.shape, v.aval.dtype) for v in eqn.outvars]
    arrays = [lib.xp.asarray(np.ascontiguousarray(np.asarray(x))) for x in ins]
    assert [a.dtype for a in arrays] == [v.aval.dtype for v in eqn.invars]
    outs = library.call(name, lib, eqn.params, out_avals, *arrays)
    assert isinstance(outs, list) and len(outs) == len(out_avals), f"{name}: {len(outs)} outputs for {len(out_avals)}"
    for i, (o, (shape, dtype)) in enumerate(zip(outs, out_avals)):
        assert isinstance(o, lib.xp.ndarray), f"{name} output {i} is a {type(o)}"
        assert o.shape == tuple(shape) and o.dtype == dtype, \
            f"{name} output {i} is {o.dtype}{list(o.shape)}; the equation says {np.dtype(dtype)}{list(shape)}"
        assert o.flags.c_contiguous, f"{name} output {i} is not C-contiguous"
    return [o if lib.name == "numpy" else o.get() for o in outs]


def _eval(closed, args, used, lib):
    jaxpr = closed.jaxpr
    env = dict(zip(jaxpr.constvars, closed.consts))
    env.update(zip(jaxpr.invars, args))
    for eqn in jaxpr.eqns:
        ins = [_read(env, v) for v in eqn.invars]
        name = eqn.primitive.name
        if name in library.LIBRARY:
            outs = _library_eqn(lib, eqn, ins)
            used[name] += 1
        elif name in ("jit", "pjit"):
            outs = _eval(eqn.params["jaxpr"], ins, used, lib)
        elif name == "custom_jvp_call":
            outs = _eval(eqn.params["call_jaxpr"], ins, used, lib)
        elif name == "custom_linear_solve":
            # The forward value: the `solve` jaxpr applied to its constants and the right-hand side.
            n = eqn.params["const_lengths"]
            start = n.matvec + n.vecmat
            outs = _eval(eqn.params["jaxprs"].solve, [*ins[start:start + n.solve], *ins[sum(n):]], used, lib)
        else:
            out = eqn.primitive.bind(*ins, **eqn.params)
            outs = out if eqn.primitive.multiple_results else [out]
        env.update(zip(eqn.outvars, outs))
    return [np.asarray(_read(env, v)) for v in jaxpr.outvars]


def run_with_library(f, *args, lib=None):
    """f's outputs computed with the library rules, and a Counter of the rules that ran."""
    used = collections.Counter()
    outs = _eval(jax.make_jaxpr(f)(*args), jax.tree_util.tree_leaves(args), used, lib or library.host_lib())
    return outs, used


def check(f, *args, expect, compare=None, lib=None, rtol=None, atol=None):
    """Assert that f with the library rules equals jax.jit(f) and that every primitive in
    `expect` went through the library; compare(want, got) replaces the plain diff. Returns
    (want, got) as lists of NumPy arrays."""
    got, used = run_with_library(f, *args, lib=lib)
    missing = set(expect) - set(used)
    assert not missing, f"{missing} never reached the library (it ran: {dict(used)})"
    want = [np.asarray(w) for w in jax.tree_util.tree_leaves(jax.jit(f)(*args))]
    assert len(want) == len(got)
    if compare is not None:
        compare(want, got)
    else:
        for i, (w, g) in enumerate(zip(want, got)):
            report = diff_arrays(f"out[{i}]", w, g, rtol=rtol, atol=atol)
            assert report.ok, f"output {i} differs from jax.jit:\n{report}"
    return want, got


@pytest.fixture
def wide(request):
    """jax_enable_x64 on for a test whose `dtype` parameter is a 64-bit type."""
    dtype = request.node.callspec.params.get("dtype")
    if dtype is not None and np.dtype(dtype).itemsize == 8:
        request.getfixturevalue("x64")


# ----------------------------------------------------------------------------------------------
# the table itself


def test_unknown_primitive_names_primitive_and_backend():
    with pytest.raises(UnsupportedError, match=r"'while'.*numpy backend") as e:
        library.call("while", library.host_lib(), {}, [((), np.float32)], np.zeros((), np.float32))
    assert e.value.primitive == "while"
    fake_gpu = library.ArrayLib("cupy", np, scipy.linalg)  # only the name reaches the message
    with pytest.raises(UnsupportedError, match=r"'fft'.*cupy backend"):
        library.call("fft", fake_gpu, {}, [((2,), np.float32)], np.zeros(2, np.float32))


def test_table_rows():
    assert set(library.LIBRARY) == {
        "dot_general", "lu", "triangular_solve", "cholesky", "qr", "svd", "eigh", "sort", "gather",
        "scatter", "scatter-add", "scatter-mul", "scatter-min", "scatter-max", "dynamic_slice",
        "dynamic_update_slice"}
    assert library.host_lib().name == "numpy" and library.host_lib().linalg is scipy.linalg


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


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int8, np.uint8, np.int16, np.int32, np.uint32,
                                   np.int64, np.uint64, np.bool_])
def test_dot_general_dtypes(dtype, wide):
    # Extreme integers: products and sums wrap as in XLA.
    rng = np.random.default_rng(5)
    special = np.dtype(dtype).kind != "f"
    a, b = rand(rng, (3, 6, 17), dtype, special=special), rand(rng, (3, 17, 4), dtype, special=special)
    check(lambda a, b: (a @ b, a[0] @ b[1]), a, b, expect=["dot_general"])


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
# lu, triangular_solve, cholesky

FLOAT_DTYPES = [np.float32, np.float64]


def _singular(rng, kind, n, dtype):
    if kind == "zero":
        return np.zeros((n, n), dtype)
    if kind == "rank2":
        return (rand(rng, (n, 2), dtype) @ rand(rng, (2, n), dtype)).astype(dtype)
    a = rand(rng, (n, n), dtype)
    if kind == "repeated_row":
        a[3] = a[1]
    if kind == "zero_column":
        a[:, 0] = 0
    return a


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("shape", [(6, 6), (4, 7), (7, 4), (3, 5, 5), (1, 1), (0, 0), (3, 0), (0, 4, 4), (2, 0, 3)])
def test_lu(shape, dtype, wide):
    # Pivots and permutations are integers: they must be equal, not just close.
    a = rand(np.random.default_rng(sum(shape)), shape, dtype)
    check(lambda a: lax.linalg.lu(a), a, expect=["lu"])


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("kind", ["zero", "rank2", "repeated_row", "zero_column"])
def test_lu_singular_matrices(kind, dtype, wide):
    rng = np.random.default_rng(8)
    a = _singular(rng, kind, 6, dtype)
    b = rand(rng, (6, 2), dtype)
    want, _ = check(lambda a, b: (lax.linalg.lu(a), jnp.linalg.solve(a, b), jnp.linalg.det(a)), a, b,
                    expect=["lu", "triangular_solve", "gather"])
    if kind in ("zero", "zero_column"):  # an exactly zero pivot: the solution is inf/NaN, as in JAX
        assert not np.isfinite(want[3]).all()


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_solve_inv_det(dtype, wide):
    rng = np.random.default_rng(9)
    a, a3 = rand(rng, (6, 6), dtype), rand(rng, (2, 5, 5), dtype)
    check(lambda a, b, c, a3, d: (jnp.linalg.solve(a, b), jnp.linalg.solve(a, c), jnp.linalg.solve(a3, d),
                                  jnp.linalg.inv(a3), jnp.linalg.det(a3), jnp.linalg.slogdet(a)),
          a, rand(rng, (6,), dtype), rand(rng, (6, 3), dtype), a3, rand(rng, (2, 5, 2), dtype),
          expect=["lu", "triangular_solve", "gather"])


def _triangular(rng, shape, lower, unit_diagonal, dtype):
    """A well-conditioned triangular matrix with NaN in the half that must not be read (and on
    the diagonal when it is implied), so a rule that reads it gives NaN."""
    n = shape[-1]
    a = rand(rng, shape, dtype) + (2 * n * np.eye(n)).astype(dtype)
    keep = np.tril(np.ones((n, n), bool)) if lower else np.triu(np.ones((n, n), bool))
    if unit_diagonal:
        keep &= ~np.eye(n, dtype=bool)
    a[..., ~keep] = np.nan
    return a


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("left_side,lower,transpose_a,unit_diagonal", list(itertools.product([True, False], repeat=4)))
def test_triangular_solve(left_side, lower, transpose_a, unit_diagonal, dtype, wide):
    rng = np.random.default_rng(10)
    a = _triangular(rng, (2, 4, 4), lower, unit_diagonal, dtype)
    b = rand(rng, (2, 4, 3) if left_side else (2, 3, 4), dtype)
    _, (got,) = check(lambda a, b: lax.linalg.triangular_solve(
        a, b, left_side=left_side, lower=lower, transpose_a=transpose_a, unit_diagonal=unit_diagonal), a, b,
        expect=["triangular_solve"])
    assert np.isfinite(got).all()


def test_triangular_solve_conjugate_a_singular_and_empty():
    rng = np.random.default_rng(11)
    a = _triangular(rng, (5, 5), True, False, np.float32)
    singular = a.copy()
    singular[2, 2] = 0  # a zero pivot divides by zero: inf and NaN, no error
    b = rand(rng, (5, 2), np.float32)
    want, _ = check(lambda a, s, b, e: (
        lax.linalg.triangular_solve(a, b, left_side=True, lower=True, conjugate_a=True),
        lax.linalg.triangular_solve(s, b, left_side=True, lower=True),
        lax.linalg.triangular_solve(a, e, left_side=True, lower=True)),
        a, singular, b, np.zeros((5, 0), np.float32), expect=["triangular_solve"])
    assert not np.isfinite(want[1]).all()


def _spd(rng, shape, dtype):
    x = rand(rng, shape, dtype)
    return (x @ np.swapaxes(x, -1, -2) + shape[-1] * np.eye(shape[-1])).astype(dtype)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_cholesky(dtype, wide):
    rng = np.random.default_rng(12)
    spd, not_pd = _spd(rng, (3, 5, 5), dtype), rand(rng, (5, 5), dtype)
    not_pd[0, 0] = -1.0  # a negative pivot: certainly not positive definite
    with_nan = _spd(rng, (4, 4), dtype)
    with_nan[2, 1] = with_nan[1, 2] = np.nan
    mixed = np.stack([_spd(rng, (4, 4), dtype), -_spd(rng, (4, 4), dtype)])  # one good, one bad matrix
    want, _ = check(lambda a, b, c, d, e: (jnp.linalg.cholesky(a), jnp.linalg.cholesky(b), jnp.linalg.cholesky(c),
                                           jnp.linalg.cholesky(d), jnp.linalg.cholesky(e)),
                    spd, not_pd, with_nan, mixed, np.zeros((0, 0), dtype), expect=["cholesky"])
    lower = np.tril(np.ones((5, 5), bool)), np.tril(np.ones((4, 4), bool))  # jnp zeroes the upper triangle
    assert np.isfinite(want[0]).all() and np.isnan(want[1][lower[0]]).all() and np.isnan(want[2]).any()
    assert np.isfinite(want[3][0]).all() and np.isnan(want[3][1][lower[1]]).all()


def test_cholesky_primitive_reads_lower_keeps_upper():
    # The bare primitive (no symmetrisation, no masking): jax.jit on the CPU computes L from the
    # lower triangle and leaves the input's strict upper triangle in place.
    a = _spd(np.random.default_rng(13), (2, 5, 5), np.float32)
    a[..., np.triu_indices(5, 1)[0], np.triu_indices(5, 1)[1]] = 7.5
    check(lambda a: lax.linalg.cholesky_p.bind(a), a, expect=["cholesky"])


# ----------------------------------------------------------------------------------------------
# qr, svd, eigh: vectors are unique only up to sign (and, where a factor has more columns than
# the rank, only their span is unique), so those are compared after aligning signs with
# jax.jit's, or through the projector onto their span; values and reconstructions directly.


def _aligned(want, got, axis):
    """got with each vector along `axis` (columns: axis=-2 holds the vector) multiplied by the
    sign that makes it agree with want's; also returns the signs for the paired factor."""
    dots = np.sum(want.astype(np.float64) * got, axis=axis, keepdims=True)
    signs = np.where(dots < 0, -1, 1).astype(got.dtype)
    return got * signs, signs


def _diff(name, want, got, **tol):
    report = diff_arrays(name, want, got, **tol)
    assert report.ok, f"{name} differs from jax.jit:\n{report}"


def _same_span(name, want, got):
    """want and got have orthonormal columns spanning the same space (compared by projectors)."""
    if want.shape[-1] == 0:
        return
    proj = lambda q: q.astype(np.float64) @ np.swapaxes(q, -1, -2)
    eps = np.finfo(want.dtype).eps
    _diff(name, proj(want), proj(got), rtol=0, atol=50 * want.shape[-2] * eps)


def _reconstructs(name, a, product, dtype):
    """product equals a up to the backward error of a stable factorisation in `dtype`."""
    eps = np.finfo(dtype).eps
    scale = max(1.0, float(np.abs(a).max(initial=0)))
    _diff(name, a.astype(np.float64), product.astype(np.float64), rtol=0, atol=20 * max(a.shape[-2:]) * eps * scale)


def _qr_compare(a, mode):
    m, n = a.shape[-2:]
    k = min(m, n)

    def compare(want, got):
        if mode == "r":
            (r_want,), (r_got,) = want, got
            r_got, _ = _aligned(r_want, r_got, axis=-1)  # rows of r carry the signs of q's columns
            _diff("r", r_want, r_got)
            return
        (q_want, r_want), (q_got, r_got) = want, got
        assert q_got.shape == q_want.shape and r_got.shape == r_want.shape
        _reconstructs("q @ r", a, q_got.astype(np.float64) @ r_got, a.dtype)
        q_k, signs = _aligned(q_want[..., :k], q_got[..., :k], axis=-2)
        _diff("q[:, :k]", q_want[..., :k], q_k)
        _diff("r[:k]", r_want[..., :k, :], r_got[..., :k, :] * np.swapaxes(signs, -1, -2))
        _diff("r[k:]", r_want[..., k:, :], r_got[..., k:, :])  # zeros
        _same_span("q[:, k:]", q_want[..., k:], q_got[..., k:])  # complete mode, m > n: a basis of the complement
    return compare


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("mode", ["reduced", "complete", "r"])
@pytest.mark.parametrize("shape", [(7, 4), (4, 7), (5, 5), (2, 6, 3), (3, 0), (0, 3)])
def test_qr(shape, mode, dtype, wide):
    a = rand(np.random.default_rng(sum(shape)), shape, dtype)
    check(lambda a: jnp.linalg.qr(a, mode=mode), a, expect=["qr"], compare=_qr_compare(a, mode))


def test_qr_pivoting_is_unsupported():
    a = np.ones((3, 3), np.float32)
    closed = jax.make_jaxpr(lambda a: jax.scipy.linalg.qr(a, pivoting=True))(a)
    (eqn,) = [e for e in closed.jaxpr.eqns[0].params["jaxpr"].jaxpr.eqns if e.primitive.name == "qr"]
    out_avals = [(v.aval.shape, v.aval.dtype) for v in eqn.outvars]
    with pytest.raises(UnsupportedError, match="pivoting=True"):
        library.call("qr", library.host_lib(), eqn.params, out_avals, a)


def _svd_compare(a, full_matrices, compute_uv):
    m, n = a.shape[-2:]
    k = min(m, n)

    def compare(want, got):
        if not compute_uv:
            _diff("s", want[0], got[0])
            return
        (u_want, s_want, vt_want), (u_got, s_got, vt_got) = want, got
        assert u_got.shape == u_want.shape and vt_got.shape == vt_want.shape
        _diff("s", s_want, s_got)
        _reconstructs("u @ diag(s) @ vt", a, (u_got[..., :k].astype(np.float64) * s_got[..., None, :]) @ vt_got[..., :k, :],
                      a.dtype)
        u_k, signs = _aligned(u_want[..., :k], u_got[..., :k], axis=-2)  # a singular pair flips together
        _diff("u[:, :k]", u_want[..., :k], u_k)
        _diff("vt[:k]", vt_want[..., :k, :], vt_got[..., :k, :] * np.swapaxes(signs, -1, -2))
        _same_span("u[:, k:]", u_want[..., k:], u_got[..., k:])
        _same_span("vt[k:]", np.swapaxes(vt_want[..., k:, :], -1, -2), np.swapaxes(vt_got[..., k:, :], -1, -2))
    return compare


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("full_matrices,compute_uv", [(True, True), (False, True), (False, False)])
@pytest.mark.parametrize("shape", [(7, 4), (4, 7), (2, 5, 5), (3, 0)])
def test_svd(shape, full_matrices, compute_uv, dtype, wide):
    a = rand(np.random.default_rng(sum(shape) + 1), shape, dtype)
    check(lambda a: jnp.linalg.svd(a, full_matrices=full_matrices, compute_uv=compute_uv), a, expect=["svd"],
          compare=_svd_compare(a, full_matrices, compute_uv))


def test_svd_and_eigh_of_nonfinite_matrices():
    # jax.jit's lowering turns a solver failure into NaN: a NaN entry makes every output of its
    # matrix NaN. An infinite entry is no failure: the host rules pass it to the same LAPACK.
    rng = np.random.default_rng(14)
    a = rand(rng, (3, 4, 4), np.float32)
    a[0, 1, 2], a[2, 3, 3] = np.nan, np.inf
    (u, s, vt, w, v), _ = check(lambda a: (*jnp.linalg.svd(a), *jnp.linalg.eigh(a)), a, expect=["svd", "eigh"])
    assert all(np.isnan(x[0]).all() and np.isfinite(x[1]).all() for x in (u, s, vt, w, v))


def _eigh_compare(a):
    sym = (a + np.swapaxes(a, -1, -2)).astype(np.float64) / 2  # jnp.linalg.eigh symmetrises first

    def compare(want, got):
        (w_want, v_want), (w_got, v_got) = want, got
        _diff("eigenvalues", w_want, w_got)
        _reconstructs("v @ diag(w) @ v.T", sym, (v_got.astype(np.float64) * w_got[..., None, :]) @ np.swapaxes(v_got, -1, -2),
                      a.dtype)
        v_got, _ = _aligned(v_want, v_got, axis=-2)
        _diff("eigenvectors", v_want, v_got)
    return compare


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("uplo", ["L", "U"])
@pytest.mark.parametrize("shape", [(6, 6), (3, 4, 4), (1, 1), (0, 0)])
def test_eigh(shape, uplo, dtype, wide):
    a = rand(np.random.default_rng(sum(shape) + 2), shape, dtype)
    check(lambda a: jnp.linalg.eigh(a, UPLO=uplo), a, expect=["eigh"], compare=_eigh_compare(a))


def test_eigh_reads_one_triangle(x64):
    # The bare primitive on a non-symmetric matrix: only the named triangle counts.
    a = rand(np.random.default_rng(15), (2, 5, 5), np.float64)
    a[..., 0, 4] = np.nan  # upper triangle: ignored with lower=True
    check(lambda a: lax.linalg.eigh(a, lower=True, symmetrize_input=False), a, expect=["eigh"],
          compare=lambda want, got: _eigh_compare(np.tril(a) + np.swapaxes(np.tril(a, -1), -1, -2))(want[::-1], got[::-1]))
