"""The library layer's factorisations (fusejit/library.py, linalg.py) against jax.jit, through
tests/library_eval.py's evaluator: lu, triangular_solve and cholesky; qr, svd and eigh, whose
vectors are compared up to sign or through their span."""
from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from fusejit import library
from fusejit.check import diff_arrays
from fusejit.errors import UnsupportedError
from helpers import rand
from library_eval import check

# ----------------------------------------------------------------------------------------------
# lu, triangular_solve, cholesky

FLOAT_DTYPES = [np.float32, np.float64]


def _singular_matrices(rng, n, dtype):
    """A batch of singular matrices: zero, rank 2, a repeated row, a zero column."""
    zero = np.zeros((n, n), dtype)
    rank2 = (rand(rng, (n, 2), dtype) @ rand(rng, (2, n), dtype)).astype(dtype)
    repeated, zero_column = rand(rng, (n, n), dtype), rand(rng, (n, n), dtype)
    repeated[3] = repeated[1]
    zero_column[:, 0] = 0
    return np.stack([zero, rank2, repeated, zero_column])


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_lu_singular_matrices(dtype, wide):
    # No error: U has a zero (or tiny) pivot and solve gives inf/NaN (or huge values) as in JAX.
    rng = np.random.default_rng(8)
    a = _singular_matrices(rng, 6, dtype)
    b = rand(rng, (4, 6, 2), dtype)
    want, _ = check(lambda a, b: (lax.linalg.lu(a), jnp.linalg.solve(a, b), jnp.linalg.det(a)), a, b,
                    expect=["lu", "triangular_solve", "gather"])
    assert not np.isfinite(want[3][0]).all() and not np.isfinite(want[3][3]).all()


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
        usv = (u_got[..., :k].astype(np.float64) * s_got[..., None, :]) @ vt_got[..., :k, :]
        _reconstructs("u @ diag(s) @ vt", a, usv, a.dtype)
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
        vwv = (v_got.astype(np.float64) * w_got[..., None, :]) @ np.swapaxes(v_got, -1, -2)
        _reconstructs("v @ diag(w) @ v.T", sym, vwv, a.dtype)
        v_got, _ = _aligned(v_want, v_got, axis=-2)
        _diff("eigenvectors", v_want, v_got)
    return compare


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("uplo", ["L", "U"])
@pytest.mark.parametrize("shape", [(6, 6), (3, 4, 4), (1, 1), (0, 0)])
def test_eigh(shape, uplo, dtype, wide):
    a = rand(np.random.default_rng(sum(shape) + 2), shape, dtype)
    check(lambda a: jnp.linalg.eigh(a, UPLO=uplo), a, expect=["eigh"], compare=_eigh_compare(a))


@pytest.mark.parametrize("lower,sort_eigenvalues", [(True, True), (False, False)])
def test_eigh_reads_one_triangle(lower, sort_eigenvalues, x64):
    # The bare primitive on a non-symmetric matrix: only the named triangle counts. Unsorted
    # eigenvalues come in the solver's order, ascending on jax.jit's CPU too.
    a = rand(np.random.default_rng(15), (2, 5, 5), np.float64)
    a[..., 0, 4] = np.nan if lower else 1e3  # NaN in the triangle that is not read
    a[..., 4, 0] = 1e3 if lower else np.nan
    half = np.tril(a) if lower else np.triu(a)
    sym = half + np.swapaxes(half, -1, -2) - half * np.eye(5)
    check(lambda a: lax.linalg.eigh(a, lower=lower, symmetrize_input=False, sort_eigenvalues=sort_eigenvalues), a,
          expect=["eigh"],
          compare=lambda want, got: _eigh_compare(sym)(want[::-1], got[::-1]))
