"""Library rules for sort, gather and the scatters (rows of fusejit.library.LIBRARY).

Gather and scatter are written for XLA's general dimension numbers: every (batch index,
window element) pair becomes one flat position in the operand, computed with array
arithmetic, so any form jnp emits (take, x[idx], x[i, j_idx], take_along_axis, .at[...]
with windows and batching dims) is the same code.
"""
from __future__ import annotations

import dataclasses
import functools
import math

import numpy as np
from jax.lax import GatherScatterMode

from . import launch, ufuncs
from .errors import UnsupportedError

# ----------------------------------------------------------------------------------------------
# sort


def _sort_key(xp, x):
    """Integer keys in the order of JAX's sort comparator: for floats -0.0 equals 0.0, every NaN
    (either sign) equals every other and sorts after +inf; bools and integers as they are."""
    if x.dtype.kind == "b":
        return x.astype(xp.uint8)
    if x.dtype.kind != "f":
        return x
    canonical = xp.where(x == 0, xp.zeros_like(x), x)
    canonical = xp.where(xp.isnan(x), xp.full_like(x, np.nan), canonical)
    int_t = np.dtype(f"int{8 * x.dtype.itemsize}")
    bits = canonical.view(int_t)
    magnitude = int_t.type(np.iinfo(int_t).max)
    # Negative floats: flip the magnitude bits so that a larger magnitude is a smaller integer.
    return xp.where(bits < 0, bits ^ magnitude, bits)


def sort(lib, params, out_avals, *operands):
    """lax.sort: a stable lexicographic sort along `dimension` by the first `num_keys` operands,
    in JAX's comparator order (see _sort_key); every operand is permuted the same way."""
    xp = lib.xp
    moved = [xp.moveaxis(op, params["dimension"], -1) for op in operands]
    order = None
    for key in reversed(moved[: params["num_keys"]]):  # least significant key first
        k = _sort_key(xp, key)
        if order is not None:
            k = xp.take_along_axis(k, order, axis=-1)
        step = xp.argsort(k, axis=-1, kind="stable")
        order = step if order is None else xp.take_along_axis(order, step, axis=-1)
    return [xp.asarray(xp.moveaxis(xp.take_along_axis(op, order, axis=-1), -1, params["dimension"]), order="C")
            for op in moved]


def _total_key(xp, x):
    """Integer keys in IEEE total order for floats (-NaN < -inf < ... < -0 < +0 < ... < +NaN,
    what XLA's top_k ranks by); bools and integers as they are."""
    if x.dtype.kind != "f":
        return x.astype(xp.uint8) if x.dtype.kind == "b" else x
    int_t = np.dtype(f"int{8 * x.dtype.itemsize}")
    bits = x.view(int_t)
    return xp.where(bits < 0, bits ^ int_t.type(np.iinfo(int_t).max), bits)


def top_k(lib, params, out_avals, operand):
    """lax.top_k: the k largest along `axis` (the last by default) in descending total order,
    equal values in index order, and their int32 indices."""
    xp = lib.xp
    axis = int(params.get("axis", operand.ndim - 1)) % max(operand.ndim, 1)
    k = int(params["k"])
    moved = xp.moveaxis(operand, axis, -1)
    key = _total_key(xp, moved)
    order = xp.argsort(~key, axis=-1, kind="stable")[..., :k]  # ~ reverses the order, stably
    values = xp.take_along_axis(moved, order, axis=-1)
    return [xp.asarray(xp.moveaxis(values, -1, axis), order="C"),
            xp.asarray(xp.moveaxis(order.astype(np.int32), -1, axis), order="C")]


# ----------------------------------------------------------------------------------------------
# flat positions shared by gather and scatter


def _as_index(xp, indices):
    """Start indices as int64; uint64 values above the int64 range saturate (still out of bounds)."""
    if indices.dtype == np.uint64:
        indices = xp.minimum(indices, np.uint64(np.iinfo(np.int64).max))
    return indices.astype(xp.int64)


def _starts(xp, indices, operand_shape, window, index_map, operand_batching, indices_batching, clip):
    """Per operand dim, the window start for every batch index (arrays of the indices' batch
    shape, or 0), and the mask of batch indices whose window fits in the operand (None when
    all do). With `clip` the starts are clamped so that every window fits (XLA's CLIP); without,
    starts are clamped too but the mask marks the windows that did not fit."""
    idx = _as_index(xp, indices)
    batch_shape = indices.shape[:-1]
    starts = [0] * len(operand_shape)
    fits = None
    for k, d in enumerate(index_map):
        s = idx[..., k]
        hi = operand_shape[d] - window[d]
        if not clip:
            ok = (s >= 0) & (s <= hi)
            fits = ok if fits is None else fits & ok
        starts[d] = xp.minimum(xp.maximum(s, 0), hi)  # np.clip's Python wrapper costs microseconds
    for d, axis in zip(operand_batching, indices_batching):
        shape = [1] * len(batch_shape)
        shape[int(axis)] = batch_shape[int(axis)]
        starts[int(d)] = xp.arange(batch_shape[int(axis)], dtype=xp.int64).reshape(shape)
    return starts, fits


def _flat_positions(xp, operand_shape, starts, window_dims, window_sizes, batch_ndim):
    """Flat operand position of every (batch index, window element): an int64 array of shape
    batch shape + window_sizes (window dims in operand order)."""
    strides = [math.prod(operand_shape[d + 1:]) for d in range(len(operand_shape))]
    n_window = len(window_dims)
    flat = xp.zeros((1,) * (batch_ndim + n_window), dtype=xp.int64)
    for d, stride in enumerate(strides):
        term = starts[d]
        if not isinstance(term, int):
            term = term.reshape(term.shape + (1,) * n_window)
        if d in window_dims:
            j = window_dims.index(d)
            shape = [1] * (batch_ndim + n_window)
            shape[batch_ndim + j] = window_sizes[j]
            term = term + xp.arange(window_sizes[j], dtype=xp.int64).reshape(shape)
        flat = flat + term * stride
    return flat


def _window_mask(fits, n_window):
    """The per-window mask `fits` broadcastable over the window dims."""
    return fits.reshape(fits.shape + (1,) * n_window)


# ----------------------------------------------------------------------------------------------
# gather


def gather(lib, params, out_avals, operand, indices):
    """lax.gather (index_vector_dim last, as JAX emits): CLIP and PROMISE_IN_BOUNDS clamp each
    window start so the window fits (XLA's semantics); FILL_OR_DROP gives params['fill_value']
    for every window whose start is out of bounds."""
    xp = lib.xp
    dn, sizes = params["dimension_numbers"], params["slice_sizes"]
    shape, dtype = out_avals[0]
    if math.prod(shape) == 0:
        return [xp.empty(shape, dtype)]
    mode = GatherScatterMode.from_any(params["mode"])
    if mode == GatherScatterMode.ONE_HOT:  # jax.jit has no CPU lowering for it either
        raise UnsupportedError("gather with mode=ONE_HOT has no library rule", primitive="gather")
    batching = [int(d) for d in dn.operand_batching_dims]
    window_dims = [d for d in range(operand.ndim) if d not in dn.collapsed_slice_dims and d not in batching]
    window_sizes = [sizes[d] for d in window_dims]
    starts, fits = _starts(xp, indices, operand.shape, sizes, dn.start_index_map, batching,
                           dn.start_indices_batching_dims, clip=mode != GatherScatterMode.FILL_OR_DROP)
    batch_ndim = indices.ndim - 1
    flat = _flat_positions(xp, operand.shape, starts, window_dims, window_sizes, batch_ndim)
    got = xp.take(operand.reshape(-1), flat)
    if fits is not None:
        fill = xp.asarray(params["fill_value"], dtype=dtype)  # jnp resolves the default (NaN, INT_MIN, ...)
        got = xp.where(_window_mask(fits, len(window_dims)), got, fill)
    # Output dims: offset_dims hold the window dims in order, the others the batch dims in order.
    batch_axes = iter(range(batch_ndim))
    perm = [batch_ndim + list(dn.offset_dims).index(i) if i in dn.offset_dims else next(batch_axes)
            for i in range(len(shape))]
    return [xp.asarray(xp.transpose(got, perm), order="C")]


# ----------------------------------------------------------------------------------------------
# scatter


def _occurrence(xp, flat):
    """For each position in `flat`, how many earlier positions hold the same value."""
    order = xp.argsort(flat, kind="stable")
    sorted_flat = flat[order]
    head = xp.ones(flat.shape, dtype=bool)
    head[1:] = sorted_flat[1:] != sorted_flat[:-1]
    positions = xp.arange(flat.size, dtype=xp.int64)
    run = xp.cumsum(head) - 1
    rank_sorted = positions - positions[head][run]
    rank = xp.empty_like(rank_sorted)
    rank[order] = rank_sorted
    return rank


def accumulate_in_rounds(xp, op, out, flat, values):
    """out[flat[i]] = op(out[flat[i]], values[i]) for every i in order, duplicates included:
    round r applies the r-th update of every target, so no round has a repeated target."""
    if flat.size == 0:
        return
    rank = _occurrence(xp, flat)
    for r in range(int(rank.max()) + 1):
        sel = rank == r
        targets = flat[sel]
        out[targets] = op(out[targets], values[sel])


def accumulate(op_name, lib, out, flat, values):
    """In-place out[flat[i]] op= values[i] in update order: ufunc.at on NumPy; on CuPy, whose
    atomics cover few dtypes and no multiply, rounds of duplicate-free updates."""
    op = getattr(lib.xp, op_name)
    if lib.name == "numpy":
        op.at(out, flat, values)
    else:
        accumulate_in_rounds(lib.xp, op, out, flat, values)


def _set_last(lib, out, flat, values):
    """out[flat[i]] = values[i]; where indices repeat, the last update in scatter order wins
    (what XLA's CPU scatter does)."""
    xp = lib.xp
    if flat.size == 0:
        return
    order = xp.argsort(flat, kind="stable")
    sorted_flat = flat[order]
    last = xp.ones(flat.shape, dtype=bool)
    last[:-1] = sorted_flat[:-1] != sorted_flat[1:]
    winners = order[last]
    out[flat[winners]] = values[winners]


def _compiled_scatter(lib, primitive: str, dtype):
    """The elementwise library (ufuncs.py) when it is loaded and has `primitive`'s loop for
    `dtype`: on the host, one compiled loop over the windows instead of NumPy's ufunc.at over
    every element's position (a segment_sum of 100,000 rows of 16: 14.6 to 0.7 ms)."""
    if lib.name != "numpy":
        return None
    loops = ufuncs.loaded()
    if loops is None:  # loaded in the background for later calls (the interpreter starts it too)
        from .backends import get
        ufuncs.start(get("host"))
        return None
    return loops if loops.has_scatter(primitive, dtype) else None


@dataclasses.dataclass(frozen=True)
class _ScatterLayout:
    """What a scatter's dimension numbers and shapes fix, computed once per form."""
    window: tuple  # the window's extent in each operand dim (1 in inserted and batching dims)
    window_dims: tuple  # operand dims the window spans, in order
    window_sizes: tuple
    values_perm: tuple | None  # updates transposed to batch dims + window dims; None: as they are
    strides: tuple  # each operand dim's stride in elements
    offsets: np.ndarray | None  # window elements' flat offsets from the window's start; None: 0, 1, ...


@functools.lru_cache(maxsize=512)
def _scatter_layout(dn, operand_shape: tuple, updates_shape: tuple) -> _ScatterLayout:
    update_window_dims = [int(d) for d in dn.update_window_dims]
    inserted = [int(d) for d in dn.inserted_window_dims]
    batching = [int(d) for d in dn.operand_batching_dims]
    ndim = len(operand_shape)
    window_dims = [d for d in range(ndim) if d not in inserted and d not in batching]
    window_sizes = [updates_shape[d] for d in update_window_dims]
    window = [1] * ndim
    for d, size in zip(window_dims, window_sizes):
        window[d] = size
    perm = [d for d in range(len(updates_shape)) if d not in update_window_dims] + update_window_dims
    offsets = _flat_positions(np, operand_shape, [0] * ndim, window_dims, window_sizes, 0).reshape(-1)
    offsets.flags.writeable = False
    return _ScatterLayout(tuple(window), tuple(window_dims), tuple(window_sizes),
                          None if perm == sorted(perm) else tuple(perm),
                          tuple(math.prod(operand_shape[d + 1:]) for d in range(ndim)),
                          None if np.array_equal(offsets, np.arange(offsets.size)) else offsets)


def _scatter_with_loop(loops, primitive, operand, starts, fits, values, layout, batch_ndim):
    """The scatter by the library's loop: each window's flat start (-1: dropped) and the
    window's offsets from it (None when they are 0, 1, ...)."""
    batch_shape = values.shape[:batch_ndim]
    base = 0
    for start, stride in zip(starts, layout.strides):
        if not isinstance(start, int):
            base = base + start * stride
    if np.shape(base) != batch_shape:
        base = np.broadcast_to(np.asarray(base, dtype=np.int64), batch_shape)
    if fits is not None:
        base = np.where(fits, base, -1)
    out = operand.copy().reshape(-1)
    launch.counter["scatter loop"] += 1
    loops.scatter(primitive, out, np.ascontiguousarray(base, dtype=np.int64).reshape(-1), layout.offsets,
                  np.ascontiguousarray(values).reshape(math.prod(batch_shape), math.prod(layout.window_sizes)))
    return out.reshape(operand.shape)


def _scatter(lib, params, out_avals, operand, indices, updates, apply, primitive):
    """Common to the scatters: CLIP clamps each window start so the window fits; the other modes
    (FILL_OR_DROP, PROMISE_IN_BOUNDS, ONE_HOT) drop every window that does not fit entirely, as
    XLA's CPU scatter does. The updates are applied in row-major order of the scatter indices."""
    xp = lib.xp
    dn = params["dimension_numbers"]
    if operand.size == 0:  # nowhere to scatter to (CLIP could not clamp into an empty dim)
        return [operand.copy()]
    mode = GatherScatterMode.from_any(params["mode"])
    layout = _scatter_layout(dn, tuple(operand.shape), tuple(updates.shape))
    values = updates if layout.values_perm is None else xp.transpose(updates, layout.values_perm)  # batch + window
    starts, fits = _starts(xp, indices, operand.shape, layout.window, dn.scatter_dims_to_operand_dims,
                           [int(d) for d in dn.operand_batching_dims], dn.scatter_indices_batching_dims,
                           clip=mode == GatherScatterMode.CLIP)
    loops = _compiled_scatter(lib, primitive, operand.dtype)
    if loops is not None:
        return [_scatter_with_loop(loops, primitive, operand, starts, fits, values, layout, indices.ndim - 1)]
    window_dims, window_sizes = list(layout.window_dims), list(layout.window_sizes)
    flat = _flat_positions(xp, operand.shape, starts, window_dims, window_sizes, indices.ndim - 1)
    flat = xp.broadcast_to(flat, values.shape)
    if fits is not None:
        keep = xp.broadcast_to(_window_mask(fits, len(window_dims)), values.shape)
        flat, values = flat[keep], values[keep]
    out = operand.copy().reshape(-1)
    apply(lib, out, flat.reshape(-1), values.reshape(-1))
    return [out.reshape(operand.shape)]


def scatter(lib, params, out_avals, operand, indices, updates):
    """lax.scatter (x.at[idx].set): with duplicate indices the last update in row-major order of
    the scatter indices wins, as on XLA's CPU backend."""
    if params.get("update_jaxpr") is not None:
        raise UnsupportedError("scatter with a custom update function (x.at[idx].apply) has no library rule",
                               primitive="scatter")
    return _scatter(lib, params, out_avals, operand, indices, updates, _set_last, "scatter")


def scatter_add(lib, params, out_avals, operand, indices, updates):
    """lax.scatter_add (x.at[idx].add): duplicates accumulate in update order; integers wrap."""
    return _scatter(lib, params, out_avals, operand, indices, updates, functools.partial(accumulate, "add"),
                    "scatter-add")


def scatter_mul(lib, params, out_avals, operand, indices, updates):
    """lax.scatter_mul (x.at[idx].multiply): duplicates accumulate in update order; integers wrap."""
    return _scatter(lib, params, out_avals, operand, indices, updates, functools.partial(accumulate, "multiply"),
                    "scatter-mul")


def scatter_min(lib, params, out_avals, operand, indices, updates):
    """lax.scatter_min (x.at[idx].min): duplicates accumulate; NaN propagates."""
    return _scatter(lib, params, out_avals, operand, indices, updates, functools.partial(accumulate, "minimum"),
                    "scatter-min")


def scatter_max(lib, params, out_avals, operand, indices, updates):
    """lax.scatter_max (x.at[idx].max): duplicates accumulate; NaN propagates."""
    return _scatter(lib, params, out_avals, operand, indices, updates, functools.partial(accumulate, "maximum"),
                    "scatter-max")
