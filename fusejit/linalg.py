"""Library rules for the factorisations and triangular solves (rows of fusejit.library.LIBRARY).

On the host these call the LAPACK/BLAS routines that jax.jit's CPU lowering calls (through
SciPy, whose LAPACK jaxlib itself uses): getrf, trsm, potrf, geqrf/orgqr, gesdd, syevd. On the
GPU the same rules call cuSOLVER/cuBLAS through CuPy. The routines that NumPy/SciPy and CuPy
spell differently are the small `_<routine>` helpers below, each branching on `lib.name`; the
rules themselves are written once. Batches are handled one matrix at a time (_per_matrix).
"""
from __future__ import annotations

import contextlib
import functools
import warnings

import numpy as np

from .errors import UnsupportedError

# ----------------------------------------------------------------------------------------------
# helpers: batches, empty matrices, failures


def _per_matrix(lib, fn, arrays, out_avals):
    """Fresh outputs of out_avals, filled one batch entry at a time: the batch dims are those
    before the last two of arrays[0], shared by every input and output, and fn(*matrices)
    returns each output's value for one entry."""
    xp = lib.xp
    batch = arrays[0].shape[:-2]
    if not batch:  # one matrix: its results as they are, C-ordered (copied only where they are not)
        return [xp.ascontiguousarray(got, dtype=dtype).reshape(shape)
                for got, (shape, dtype) in zip(fn(*arrays), out_avals)]
    outs = [xp.empty(shape, dtype) for shape, dtype in out_avals]
    for idx in np.ndindex(*batch):
        for out, got in zip(outs, fn(*(a[idx] for a in arrays))):
            out[idx] = got
    return outs


def _eye(xp, n, m, dtype):
    return xp.eye(n, m, dtype=dtype)


def _nan_like(xp, out_avals, batch_ndim):
    """NaN arrays of one batch entry's output shapes: jax.jit's lowering of a failed solve."""
    return tuple(xp.full(shape[batch_ndim:], np.nan, dtype) for shape, dtype in out_avals)


def _unless_failed(lib, routine, *args):
    """routine(*args), or None when the solver reports a failure (LinAlgError: no convergence,
    not positive definite). CuPy checks the solver's status only under errstate(linalg='raise')."""
    if lib.name == "numpy":
        context = contextlib.nullcontext()
    else:
        import cupyx
        context = cupyx.errstate(linalg="raise")
    with context:
        try:
            return routine(lib, *args)
        except np.linalg.LinAlgError:
            return None


def _to_host(lib, x):
    return x if lib.name == "numpy" else x.get()


# ----------------------------------------------------------------------------------------------
# the routines NumPy/SciPy and CuPy spell differently (one matrix each)


@functools.lru_cache(maxsize=None)
def _routine(kind: str, name: str, dtype: np.dtype):
    """SciPy's BLAS or LAPACK routine `name` for matrices of `dtype` (looked up once)."""
    from scipy import linalg
    get = linalg.get_blas_funcs if kind == "blas" else linalg.get_lapack_funcs
    return get(name, dtype=dtype)


def _getrf(lib, a):
    """LU with partial pivoting of one matrix: (lu, 0-based pivots). A singular matrix is not an
    error (its U has a zero on the diagonal: getrf's info > 0, which SciPy's lu_factor turns
    into a warning)."""
    if lib.name == "numpy":
        factor, pivots, info = _routine("lapack", "getrf", a.dtype)(a)
        if info < 0:
            raise ValueError(f"getrf: argument {-info} is invalid")
        return factor, pivots
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*[Ss]ingular matrix")
        return lib.linalg.lu_factor(a, check_finite=False)


def _trsm(lib, a, b, left_side, lower, transpose_a, unit_diagonal):
    """X with op(a) @ X = b (left_side) or X @ op(a) = b; reads only a's `lower`/upper triangle
    (and not its diagonal when unit_diagonal). No singularity check: a zero pivot gives inf/NaN."""
    if lib.name == "numpy":
        # (Solving the transposed problem on a and b as they lie in memory, column-major a^T
        # and b^T, would save SciPy's copies into column-major order, but trsm's other order
        # of operations puts inf and NaN elsewhere than jax.jit for a singular matrix.)
        trsm = _routine("blas", "trsm", np.result_type(a.dtype, b.dtype))
        return trsm(1.0, a, b, side=0 if left_side else 1, lower=int(lower), trans_a=int(transpose_a),
                    diag=int(unit_diagonal))
    if left_side:
        return lib.linalg.solve_triangular(a, b, trans=int(transpose_a), lower=lower, unit_diagonal=unit_diagonal)
    # X @ op(a) = b  <=>  op(a)^T @ X^T = b^T
    return lib.linalg.solve_triangular(a, b.T, trans=int(not transpose_a), lower=lower,
                                       unit_diagonal=unit_diagonal).T


def _potrf(lib, a):
    """The lower Cholesky factor of one symmetric matrix (upper triangle zero), reading only its
    lower triangle; LinAlgError if the matrix is not positive definite."""
    if lib.name == "numpy":
        return lib.linalg.cholesky(a, lower=True, check_finite=False)
    return lib.xp.linalg.cholesky(a)


def _geqrf(lib, a, full_matrices):
    """(q, r) of one matrix by Householder QR (geqrf + orgqr)."""
    if lib.name == "numpy":
        return lib.linalg.qr(a, mode="full" if full_matrices else "economic", check_finite=False)
    return lib.xp.linalg.qr(a, mode="complete" if full_matrices else "reduced")


def _gesdd(lib, a, full_matrices, compute_uv):
    """(u, s, vt), or s alone, of one matrix without NaN."""
    if lib.name == "numpy":
        return lib.linalg.svd(a, full_matrices=full_matrices, compute_uv=compute_uv, check_finite=False,
                              lapack_driver="gesdd")
    return lib.xp.linalg.svd(a, full_matrices=full_matrices, compute_uv=compute_uv)


def _syevd(lib, a, lower):
    """(ascending eigenvalues, eigenvectors as columns) of one symmetric matrix without NaN,
    reading only its lower or upper triangle."""
    if lib.name == "numpy":
        return lib.linalg.eigh(a, lower=lower, driver="evd", check_finite=False)
    return lib.xp.linalg.eigh(a, UPLO="L" if lower else "U")


# ----------------------------------------------------------------------------------------------
# rules


def _permutation(pivots, m):
    """The row permutation that the sequence of LAPACK row swaps `pivots` applies to range(m)
    (swapped in a list: element by element, a NumPy array is ten times slower)."""
    perm = list(range(m))
    for i, p in enumerate(pivots.tolist()):
        perm[i], perm[p] = perm[p], perm[i]
    return np.array(perm, dtype=np.int32)


def lu(lib, params, out_avals, a):
    """lax.linalg.lu: (lu, pivots, permutation) by getrf with partial pivoting, batched; pivots
    and permutation are 0-based int32; a singular matrix gives a zero on U's diagonal, no error."""
    xp = lib.xp
    m, n = a.shape[-2:]

    def one(x):
        if min(m, n) == 0:
            return x, xp.empty((0,), np.int32), xp.arange(m, dtype=np.int32)
        factor, pivots = _getrf(lib, x)
        return factor, pivots, xp.asarray(_permutation(_to_host(lib, pivots), m))

    return _per_matrix(lib, one, [a], out_avals)


def triangular_solve(lib, params, out_avals, a, b):
    """lax.linalg.triangular_solve: X with op(a) @ X = b (left_side) or X @ op(a) = b, op(a) = a
    or a^T (transpose_a; conjugate_a changes nothing for real dtypes); reads only the `lower` or
    upper triangle of a, and not its diagonal with unit_diagonal; batched over leading dims."""
    p = params

    def one(x, y):
        if y.size == 0:
            return (y,)
        return (_trsm(lib, x, y, p["left_side"], p["lower"], p["transpose_a"], p["unit_diagonal"]),)

    return _per_matrix(lib, one, [a, b], out_avals)


def cholesky(lib, params, out_avals, a):
    """lax.linalg.cholesky as jax.jit's CPU lowering computes it: the lower triangle holds L with
    a = L @ L^T (only a's lower triangle is read), the strict upper triangle keeps a's values;
    a matrix that is not positive definite gives NaN everywhere (no exception)."""
    xp = lib.xp
    n = a.shape[-1]
    lower = xp.tril(xp.ones((n, n), dtype=bool))

    def one(x):
        factor = _unless_failed(lib, _potrf, x) if n else x
        if factor is None:
            return _nan_like(xp, out_avals, a.ndim - 2)
        return (xp.where(lower, factor, x),)

    return _per_matrix(lib, one, [a], out_avals)


def qr(lib, params, out_avals, a):
    """lax.linalg.qr (pivoting=False): a = q @ r by Householder QR; full_matrices gives q of
    shape (m, m) and r of (m, n), otherwise (m, k) and (k, n), k = min(m, n). Column signs
    follow the library's Householder convention (LAPACK's on the host, as in jax.jit)."""
    if params.get("pivoting"):
        raise UnsupportedError("qr with pivoting=True (jax.scipy.linalg.qr(..., pivoting=True)) has no "
                               "library rule; only pivoting=False is supported", primitive="qr")
    xp = lib.xp
    (q_shape, dtype), (r_shape, _) = out_avals

    def one(x):
        if x.size == 0:
            return _eye(xp, *q_shape[-2:], dtype), xp.zeros(r_shape[-2:], dtype)
        return _geqrf(lib, x, params["full_matrices"])

    return _per_matrix(lib, one, [a], out_avals)


def _check_subset(params, primitive):
    if params.get("subset_by_index") is not None:
        raise UnsupportedError(f"{primitive} with subset_by_index={params['subset_by_index']} has no library rule; "
                               f"only subset_by_index=None is supported", primitive=primitive)


def svd(lib, params, out_avals, a):
    """lax.linalg.svd: outputs (s, u, vt) with compute_uv, else (s,); s descending; full_matrices
    as in numpy. A matrix with a NaN entry, or on which the solver fails, gives NaN in every
    output, as jax.jit's lowering does. Singular vectors are unique only up to sign."""
    _check_subset(params, "svd")
    xp = lib.xp
    full, uv = params["full_matrices"], params["compute_uv"]

    def one(x):
        if x.size == 0:  # no singular values; u and vt are identities (or empty without full_matrices)
            s = xp.empty((0,), x.dtype)
            if not uv:
                return (s,)
            (u_shape, _), (vt_shape, _) = out_avals[1:]
            return s, _eye(xp, *u_shape[-2:], x.dtype), _eye(xp, *vt_shape[-2:], x.dtype)
        got = None if bool(xp.isnan(x).any()) else _unless_failed(lib, _gesdd, x, full, uv)
        if got is None:
            return _nan_like(xp, out_avals, a.ndim - 2)
        if not uv:
            return (got,)
        u, s, vt = got
        return s, u, vt

    return _per_matrix(lib, one, [a], out_avals)


def eigh(lib, params, out_avals, a):
    """lax.linalg.eigh: outputs (v, w), eigenvectors as columns of v and eigenvalues w ascending
    (also with sort_eigenvalues=False: the solver's order, as on jax.jit's CPU), reading only
    the lower (lower=True) or upper triangle. A NaN in that triangle, or a solver
    failure, gives NaN in both outputs, as jax.jit's lowering does. Eigenvectors are unique only
    up to sign."""
    _check_subset(params, "eigh")
    xp = lib.xp
    lower = params["lower"]

    def one(x):
        if x.size == 0:
            return x, xp.empty((0,), x.dtype)
        read = xp.tril(x) if lower else xp.triu(x)
        got = None if bool(xp.isnan(read).any()) else _unless_failed(lib, _syevd, x, lower)
        if got is None:
            return _nan_like(xp, out_avals, a.ndim - 2)
        w, v = got
        return v, w

    return _per_matrix(lib, one, [a], out_avals)
