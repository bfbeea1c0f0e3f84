"""library: primitives that run as library calls between fused kernels.

Primitives that fusion does not turn into generated kernels (matrix products, factorisations,
sorts, gathers and scatters, dynamic slices) run here, through NumPy/SciPy on the CPU backends
and CuPy (cuBLAS/cuSOLVER) on the GPU. Each row of LIBRARY is one rule:

    rule(lib, params, out_avals, *arrays) -> list of arrays

`lib` is an ArrayLib (host_lib() or cuda_lib()); `params` is the jaxpr equation's params dict
unchanged; `out_avals` gives each output's (shape, dtype); `arrays` are C-contiguous arrays of
exactly the equation's input dtypes (NumPy on the host, CuPy on the GPU). A rule returns one
C-contiguous array per output with exactly that shape and dtype. Every rule is written once
against `lib.xp` / `lib.linalg`; where NumPy/SciPy and CuPy differ, one small helper branches on
`lib.name`. No rule calls JAX. tests/test_library.py diffs every rule against jax.jit.

The rules live by job: dot_general and the dynamic slices here, factorisations in
fusejit/linalg.py, sort/gather/scatter in fusejit/indexops.py, convolutions and window
reductions in fusejit/windows.py.
"""
from __future__ import annotations

import dataclasses
import functools
import importlib
import math
import types
from typing import Callable

import numpy as np

from . import indexops, linalg, windows
from .backends.pool import pool
from .errors import UnsupportedError


@dataclasses.dataclass(frozen=True)
class ArrayLib:
    """The array module a rule computes with: NumPy + SciPy on the host, CuPy on the GPU."""
    name: str                  # 'numpy' | 'cupy'
    xp: types.ModuleType       # numpy or cupy
    linalg_name: str           # 'scipy.linalg' or 'cupyx.scipy.linalg'

    def empty(self, shape, dtype):
        """A new C-contiguous array; on the host a large one comes from the backends' buffer
        pool (fusejit/backends/pool.py), already mapped: a product's output or an operand's
        transposed copy in fresh memory paid its page faults on every call (a transformer
        block's forward, one core: 26 ms, 22 with the pool)."""
        if self.name == "numpy":
            return pool.empty(tuple(shape), np.dtype(dtype))
        return self.xp.empty(tuple(shape), dtype)

    @property
    def linalg(self) -> types.ModuleType:
        """The factorisations' module, imported on first use: importing scipy.linalg takes
        over 100 ms, which a program of products, sorts and gathers need not wait for."""
        return importlib.import_module(self.linalg_name)


@functools.lru_cache(maxsize=None)
def host_lib() -> ArrayLib:
    """NumPy with scipy.linalg (the LAPACK/BLAS that jax.jit itself calls on the CPU)."""
    return ArrayLib("numpy", np, "scipy.linalg")


@functools.lru_cache(maxsize=None)
def cuda_lib() -> ArrayLib:
    """CuPy with cupyx.scipy.linalg (cuBLAS/cuSOLVER); imported on first use."""
    import cupy
    return ArrayLib("cupy", cupy, "cupyx.scipy.linalg")


# Products of at most this many multiply-adds run on one BLAS thread on the host.  OpenBLAS
# splits products from about 2^18 multiply-adds over all cores, and its threads wait for work
# by spinning: beside fusejit's own kernel threads, or any other load on the cores, a program
# of many small products (a transformer block's gradient: 180) ran 20-40 times slower.
SINGLE_THREAD_MACS = 1 << 22
# Below this many, OpenBLAS takes one thread by itself (interface/gemm.c: 65536 times
# GEMM_MULTITHREAD_THRESHOLD, 4): the thread count is left alone, which saves a small
# product (a layer of 32 x 64 x 128) a microsecond of threadpoolctl.
BLAS_ONE_THREAD_MACS = 1 << 18


@functools.lru_cache(maxsize=None)
def _numpy_blas():
    """threadpoolctl's controllers of the BLAS libraries loaded in this process."""
    from threadpoolctl import ThreadpoolController
    return ThreadpoolController().select(user_api="blas").lib_controllers


def matmul(lib, a, b, out_shape=None, dtype=None):
    """xp.matmul(a, b) (batched) into a new array from `lib.empty`; on the host, small
    products run on one BLAS thread.  `out_shape` and `dtype`: the result's, where the caller
    knows them (np.broadcast_shapes and np.result_type cost microseconds)."""
    if out_shape is None:
        out_shape = np.broadcast_shapes(a.shape[:-2], b.shape[:-2]) + (a.shape[-2], b.shape[-1])
    out = lib.empty(out_shape, np.result_type(a.dtype, b.dtype) if dtype is None else dtype)
    macs = out.size * a.shape[-1]
    if lib.name != "numpy" or macs > SINGLE_THREAD_MACS or macs <= BLAS_ONE_THREAD_MACS:
        return lib.xp.matmul(a, b, out=out)
    blas = [(c, c.num_threads) for c in _numpy_blas() if c.num_threads != 1]
    for c, _ in blas:
        c.set_num_threads(1)
    try:
        return lib.xp.matmul(a, b, out=out)
    finally:
        for c, n in blas:
            c.set_num_threads(n)


def _size(shape, dims) -> int:
    return math.prod(shape[d] for d in dims)


@dataclasses.dataclass(frozen=True)
class _Operand:
    """How a product takes one operand: its axes in the order (batch axes, rows, columns) and
    the shape they make, each batch axis kept and the rows' and the columns' axes merged into
    one; `view`: the transposition is a strided view that BLAS reads as it is (the rows' axes
    adjacent and in order, the columns' too, one of the two with unit stride), else the
    operand is copied into that order."""
    axes: tuple | None  # None: already in order
    shape: tuple
    view: bool


def _operand(shape: tuple, batch: list, rows: list, columns: list) -> _Operand:
    axes = [*batch, *rows, *columns]
    merged = (*(shape[d] for d in batch), _size(shape, rows), _size(shape, columns))
    if axes == sorted(axes):
        return _Operand(None, merged, True)
    strides = [math.prod(shape[d + 1:]) for d in range(len(shape))]
    view, inner = True, []
    for group in (rows, columns):
        dims = [d for d in group if shape[d] != 1]
        view &= dims == list(range(dims[0], dims[0] + len(dims))) if dims else True
        inner.append(strides[dims[-1]] if dims else 0)  # the merged axis's element stride (0: of extent 1)
    return _Operand(tuple(axes), merged, view and min(inner) <= 1)


@dataclasses.dataclass(frozen=True)
class _DotPlan:
    lhs: _Operand        # (batch..., free, contracting)
    rhs: _Operand        # (batch..., contracting, free)
    out_shape: tuple     # (batch..., lhs free, rhs free)


@functools.lru_cache(maxsize=1024)
def _dot_plan(dimension_numbers, lhs_shape: tuple, rhs_shape: tuple) -> _DotPlan:
    (lhs_contract, rhs_contract), (lhs_batch, rhs_batch) = dimension_numbers
    lhs_free = [d for d in range(len(lhs_shape)) if d not in lhs_contract and d not in lhs_batch]
    rhs_free = [d for d in range(len(rhs_shape)) if d not in rhs_contract and d not in rhs_batch]
    lhs = _operand(lhs_shape, list(lhs_batch), lhs_free, list(lhs_contract))
    rhs = _operand(rhs_shape, list(rhs_batch), list(rhs_contract), rhs_free)
    return _DotPlan(lhs, rhs, (*lhs.shape[:-1], rhs.shape[-1]))


def _arranged(lib, x, operand: _Operand):
    """x with its axes in the product's order, as a (batch axes..., rows, columns) array: a
    view where BLAS can read the transposition as it is, else a copy into `lib.empty`."""
    if operand.axes is None:
        return x.reshape(operand.shape)
    moved = lib.xp.transpose(x, operand.axes)
    if operand.view:
        return moved.reshape(operand.shape)
    copy = lib.empty(moved.shape, moved.dtype)
    lib.xp.copyto(copy, moved)
    return copy.reshape(operand.shape)


def dot_general(lib, params, out_avals, lhs, rhs):
    """lax.dot_general: output dims are batch, lhs free, rhs free; operands are converted to the
    output dtype first (preferred_element_type), integers wrap, bool is an OR of ANDs."""
    return list(prepared_dot(lib, params, out_avals[0], lhs.shape, rhs.shape)(lhs, rhs))


def _arranger(lib, operand: _Operand, shape: tuple):
    """`_arranged` for an operand of `shape`, as a function of the array alone; None where the
    operand goes to the product as it is."""
    if operand.axes is None:
        return None if tuple(shape) == operand.shape else (lambda x: x.reshape(operand.shape))
    return lambda x: _arranged(lib, x, operand)


def prepared_dot(lib, params, out_aval, lhs_shape: tuple, rhs_shape: tuple):
    """dot_general for operands of these shapes as a function of the two arrays: its layout
    planned once and only the steps that layout needs taken on each call (a small network's
    product, 32 x 128 x 10: 2 us of BLAS behind 3 of bookkeeping).  Without np.errstate: the
    caller holds it (the program's runner, once for all its steps; library.run)."""
    shape, dtype = out_aval
    return _product(lib, params["dimension_numbers"], tuple(shape), np.dtype(dtype), tuple(lhs_shape),
                    tuple(rhs_shape))


@functools.lru_cache(maxsize=1024)
def _product(lib, dimension_numbers, shape: tuple, dtype: np.dtype, lhs_shape: tuple, rhs_shape: tuple):
    plan = _dot_plan(dimension_numbers, lhs_shape, rhs_shape)
    arrange_a, arrange_c = _arranger(lib, plan.lhs, lhs_shape), _arranger(lib, plan.rhs, rhs_shape)
    out_shape = plan.out_shape
    reshaped = tuple(shape) != out_shape
    as_bool = dtype == np.bool_
    compute = np.dtype(np.float32) if as_bool else dtype

    macs = math.prod(out_shape) * plan.lhs.shape[-1]
    if lib.name == "numpy" and macs <= BLAS_ONE_THREAD_MACS:  # (no thread count to set)
        empty, xp_matmul = pool.allocator(out_shape, compute), lib.xp.matmul

        def multiply(a, c):
            return xp_matmul(a, c, out=empty(out_shape, compute))
    else:
        def multiply(a, c):
            return matmul(lib, a, c, out_shape, compute)

    def product(lhs, rhs):
        a = lhs if arrange_a is None else arrange_a(lhs)
        c = rhs if arrange_c is None else arrange_c(rhs)
        if a.dtype != compute:
            a = a.astype(compute)
        if c.dtype != compute:
            c = c.astype(compute)
        out = multiply(a, c)
        if as_bool:  # a sum of non-negative counts is positive exactly when some AND is true
            out = out > 0
        return (out.reshape(shape),) if reshaped else (out,)
    return product


def _start(index, dim: int, size: int) -> int:
    """A dynamic start index clamped so that a slice of `size` fits in `dim`, as XLA does."""
    return max(0, min(int(index), dim - size))


def dynamic_slice(lib, params, out_avals, operand, *starts):
    """lax.dynamic_slice: start indices clamped to [0, dim - slice_size]."""
    sizes = params["slice_sizes"]
    window = tuple(slice(_start(s, d, z), _start(s, d, z) + z) for s, d, z in zip(starts, operand.shape, sizes))
    return [lib.xp.asarray(operand[window], order="C")]


def dynamic_update_slice(lib, params, out_avals, operand, update, *starts):
    """lax.dynamic_update_slice: start indices clamped to [0, dim - update dim]."""
    window = tuple(slice(_start(s, d, z), _start(s, d, z) + z) for s, d, z in zip(starts, operand.shape, update.shape))
    out = operand.copy()
    out[window] = update
    return [out]


LIBRARY: dict[str, Callable] = {
    "dot_general": dot_general,
    "dynamic_slice": dynamic_slice,
    "dynamic_update_slice": dynamic_update_slice,
    "conv_general_dilated": windows.conv_general_dilated,
    "reduce_window_sum": windows.reduce_window_sum,
    "reduce_window_max": windows.reduce_window_max,
    "reduce_window_min": windows.reduce_window_min,
    "select_and_scatter_add": windows.select_and_scatter_add,
    "lu": linalg.lu,
    "triangular_solve": linalg.triangular_solve,
    "cholesky": linalg.cholesky,
    "qr": linalg.qr,
    "svd": linalg.svd,
    "eigh": linalg.eigh,
    "sort": indexops.sort,
    "top_k": indexops.top_k,
    "gather": indexops.gather,
    "scatter": indexops.scatter,
    "scatter-add": indexops.scatter_add,
    "scatter-mul": indexops.scatter_mul,
    "scatter-min": indexops.scatter_min,
    "scatter-max": indexops.scatter_max,
}


def rule_of(primitive: str, backend: str = "host") -> Callable:
    """`primitive`'s LIBRARY rule; a primitive without a row is UnsupportedError."""
    rule = LIBRARY.get(primitive)
    if rule is None:
        raise UnsupportedError(
            f"primitive '{primitive}' has no library rule on the {backend} backend "
            f"(library rules exist for: {', '.join(sorted(LIBRARY))})", primitive=primitive)
    return rule


def prepared(primitive: str, lib: ArrayLib, params: dict, out_avals: list, in_shapes: list) -> Callable:
    """`primitive`'s rule as a function of its arrays alone, for inputs of `in_shapes`, with
    what those fix computed once (a product's layout); it runs without np.errstate, which
    the caller holds."""
    if primitive == "dot_general":
        return prepared_dot(lib, params, out_avals[0], *in_shapes)
    rule = rule_of(primitive, lib.name)
    return lambda *arrays: rule(lib, params, out_avals, *arrays)


def run(rule: Callable, lib: ArrayLib, params: dict, out_avals: list, *arrays) -> list:
    """A rule's results; `out_avals`: (shape tuple, np.dtype) of each output."""
    with np.errstate(all="ignore"):  # inf, NaN and integer wrap-around are results, as in XLA
        return rule(lib, params, out_avals, *arrays)


def call(primitive: str, lib: ArrayLib, params: dict, out_avals, *arrays) -> list:
    """Runs `primitive` through its LIBRARY rule; a primitive without a row is UnsupportedError."""
    return run(rule_of(primitive, lib.name), lib, params, [(tuple(s), np.dtype(d)) for s, d in out_avals], *arrays)
