"""Windowed library rules: conv_general_dilated, reduce_window_{sum,max,min} and the max/min
pooling gradient select_and_scatter_add.

Both gather each output element's window as a strided view of the (dilated, padded) input,
XLA's semantics step by step: base (lhs) dilation inserts holes, padding (negative: cropping)
adds the init value or zeros, the window walks with its strides and its own dilation.  A
convolution is then one batched matrix product per feature group (im2col), a window reduction
one reduction over the window axes.  Rules follow library.py's contract (NumPy or CuPy
through `lib.xp`, C-contiguous results of exactly the output dtype).
"""
from __future__ import annotations

import math

import numpy as np

from .errors import UnsupportedError
from .indexops import accumulate


def _dilate(xp, x, axes, factors, fill):
    """Insert factor - 1 holes of `fill` between neighbours along each axis."""
    if all(f == 1 for f in factors):
        return x
    shape = list(x.shape)
    for a, f in zip(axes, factors):
        shape[a] = (shape[a] - 1) * f + 1 if shape[a] else 0
    out = xp.full(shape, fill, dtype=x.dtype)
    index = [slice(None)] * x.ndim
    for a, f in zip(axes, factors):
        index[a] = slice(None, None, f)
    out[tuple(index)] = x
    return out


def _pad(xp, x, axes, padding, fill):
    """XLA padding: a negative low or high amount crops, a positive one adds `fill`."""
    crop = [slice(None)] * x.ndim
    widths = [(0, 0)] * x.ndim
    for a, (lo, hi) in zip(axes, padding):
        lo, hi = int(lo), int(hi)
        crop[a] = slice(max(-lo, 0), x.shape[a] - max(-hi, 0))
        widths[a] = (max(lo, 0), max(hi, 0))
    x = x[tuple(crop)]
    if any(w != (0, 0) for w in widths):
        x = xp.pad(x, widths, mode="constant", constant_values=fill)
    return xp.ascontiguousarray(x)


def _windows(lib, x, axes, window, strides, dilation):
    """A read-only view of x with each axis in `axes` replaced by (output position, window
    offset): output axes where they were, the window axes appended last in `axes` order."""
    counts = []
    for a, w, s, d in zip(axes, window, strides, dilation):
        span = (w - 1) * d + 1
        counts.append(max(0, (x.shape[a] - span) // s + 1) if x.shape[a] >= span else 0)
    shape = list(x.shape)
    strides_b = list(x.strides)
    for a, c, s in zip(axes, counts, strides):
        shape[a] = c
        strides_b[a] = x.strides[a] * s
    shape += list(window)
    strides_b += [x.strides[a] * d for a, d in zip(axes, dilation)]
    if 0 in shape:
        return lib.xp.zeros(shape, x.dtype)
    return lib.xp.lib.stride_tricks.as_strided(x, shape=tuple(shape), strides=tuple(strides_b))


def conv_general_dilated(lib, params, out_avals, lhs, rhs):
    """lax.conv_general_dilated: lhs and rhs brought to (N, C, spatial...) and (O, I,
    spatial...), dilated and padded, windows of lhs times rhs per feature group and batch group,
    the result laid out as out_spec says.  Operands are converted to the output dtype first."""
    xp = lib.xp
    shape, dtype = out_avals[0]
    dtype = np.dtype(dtype)
    if dtype == np.bool_:
        raise UnsupportedError("fusejit does not run boolean convolutions (conv_general_dilated on bool)",
                               primitive="conv_general_dilated")
    dn = params["dimension_numbers"]
    lhs_spec, rhs_spec, out_spec = (tuple(int(d) for d in s) for s in (dn.lhs_spec, dn.rhs_spec, dn.out_spec))
    groups, batch_groups = int(params["feature_group_count"]), int(params["batch_group_count"])
    x = xp.transpose(lhs, lhs_spec).astype(dtype)
    k = xp.transpose(rhs, rhs_spec).astype(dtype)
    nsp = x.ndim - 2
    spatial = tuple(range(2, 2 + nsp))
    x = _dilate(xp, x, spatial, [int(d) for d in params["lhs_dilation"]], 0)
    x = _pad(xp, x, spatial, params["padding"], 0)
    view = _windows(lib, x, spatial, k.shape[2:], [int(s) for s in params["window_strides"]],
                    [int(d) for d in params["rhs_dilation"]])  # (N, C, out spatial..., window...)
    n, c = view.shape[:2]
    out_sp = view.shape[2:2 + nsp]
    o, ci = k.shape[:2]
    kp, positions = math.prod(k.shape[2:]), math.prod(out_sp)
    # One matrix product per group (im2col): feature groups split C into G runs of Ci; batch
    # groups split the batch into B runs of N / B.  Group t's output features are the t-th
    # run of O / (G * B).
    if batch_groups == 1:
        rows = n
        cols = view.reshape(n, groups, ci, positions, kp).transpose(1, 0, 3, 2, 4)
    else:
        rows = n // batch_groups
        cols = view.reshape(batch_groups, rows, c, positions, kp).transpose(0, 1, 3, 2, 4)
    t = groups * batch_groups
    cols = cols.reshape(t, rows * positions, ci * kp)
    weights = k.reshape(t, o // t, ci, kp).transpose(0, 2, 3, 1).reshape(t, ci * kp, o // t)
    from .library import matmul  # (library imports this module)
    prod = matmul(lib, cols, weights).reshape(t, rows, positions, o // t)
    result = prod.transpose(1, 0, 3, 2).reshape(rows, o, *out_sp)
    out = xp.transpose(result, tuple(int(a) for a in np.argsort(out_spec)))
    return [xp.ascontiguousarray(out).reshape(shape)]


# Window offsets up to which a window reduction runs offset by offset: in XLA's order (from the
# init value, window position by window position), so sums match jax.jit's bits; larger
# windows reduce over the window axes in one NumPy call (a sum then adds pairwise).
SMALL_WINDOW = 1024


def init_value(op: str, dtype):
    """The init value of a window reduction ('sum', 'max' or 'min') of `dtype`: what padding
    and base-dilation holes hold (windowmaps.py pads with it too)."""
    dtype = np.dtype(dtype)
    if op == "sum":
        return 0
    if dtype.kind == "f":
        return -np.inf if op == "max" else np.inf
    if dtype == np.bool_:
        return op == "min"
    info = np.iinfo(dtype)
    return info.min if op == "max" else info.max


def _window_reduce(op: str):
    def rule(lib, params, out_avals, operand):
        xp = lib.xp
        shape, dtype = out_avals[0]
        dtype = np.dtype(dtype)
        init = init_value(op, dtype)
        axes = tuple(range(operand.ndim))
        x = _dilate(xp, operand, axes, [int(d) for d in params["base_dilation"]], init)
        x = _pad(xp, x, axes, params["padding"], init)
        view = _windows(lib, x, axes, [int(w) for w in params["window_dimensions"]],
                        [int(s) for s in params["window_strides"]], [int(d) for d in params["window_dilation"]])
        window_axes = tuple(range(operand.ndim, view.ndim))
        offsets = math.prod(view.shape[operand.ndim:])
        if view.size == 0:  # no outputs, or empty windows: the init value (a sum's is 0)
            out = xp.full(shape, init, dtype)
        elif offsets <= SMALL_WINDOW:
            # One elementwise pass per window offset, in window order, over all outputs: NumPy's
            # reduction over the small trailing axes of a strided view is a loop per output
            # (2 x 2 max pooling of 1024 x 1000 floats: 18 ms, this way 1 ms).  No copy of the
            # windows is made.
            combine = {"sum": xp.add, "max": xp.maximum, "min": xp.minimum}[op]
            out = None
            for offset in np.ndindex(*view.shape[operand.ndim:]):
                term = view[(Ellipsis, *offset)]
                out = combine(xp.asarray(init, dtype), term) if out is None else combine(out, term, out=out)
        elif op == "sum":
            out = xp.sum(view, axis=window_axes, dtype=dtype)
        else:
            out = (xp.max if op == "max" else xp.min)(view, axis=window_axes)
        return [xp.ascontiguousarray(xp.asarray(out, dtype=dtype).reshape(shape))]
    rule.__name__ = f"reduce_window_{op}"
    rule.__doc__ = (f"lax.reduce_window_{op}: the init value fills base-dilation holes and padding; "
                    f"each output is the {op} over its window.")
    return rule


reduce_window_sum = _window_reduce("sum")
reduce_window_max = _window_reduce("max")
reduce_window_min = _window_reduce("min")


def select_and_scatter_add(lib, params, out_avals, source, operand):
    """The gradient of a max (select_prim ge) or min (le) window reduction: each window of the
    padded operand selects its first largest (smallest) element, and the window's `source`
    value is added there; the padding is cropped off the result."""
    xp = lib.xp
    shape, dtype = out_avals[0]
    dtype = np.dtype(dtype)
    largest = str(params["select_prim"]) == "ge"
    if str(params["select_prim"]) not in ("ge", "le"):
        raise UnsupportedError(f"select_and_scatter_add selecting by {params['select_prim']}",
                               primitive="select_and_scatter_add")
    padding = [(int(lo), int(hi)) for lo, hi in params["padding"]]
    if any(lo < 0 or hi < 0 for lo, hi in padding):
        raise UnsupportedError("select_and_scatter_add with negative padding", primitive="select_and_scatter_add")
    if dtype.kind == "f":
        fill = -np.inf if largest else np.inf
    else:
        fill = np.iinfo(dtype).min if largest else np.iinfo(dtype).max
    axes = tuple(range(operand.ndim))
    window = [int(w) for w in params["window_dimensions"]]
    strides = [int(s) for s in params["window_strides"]]
    x = _pad(xp, operand, axes, padding, fill)
    view = _windows(lib, x, axes, window, strides, [1] * operand.ndim)
    out = xp.zeros(x.size, dtype)
    if source.size and math.prod(window):
        flat_windows = view.reshape(*source.shape, math.prod(window))
        pick = (xp.argmax if largest else xp.argmin)(flat_windows, axis=-1)
        offsets = xp.unravel_index(pick, tuple(window))
        coords = [xp.arange(n).reshape([-1 if k == a else 1 for k in axes]) * s + off
                  for a, (n, s, off) in enumerate(zip(source.shape, strides, offsets))]
        flat = xp.ravel_multi_index(tuple(xp.broadcast_to(c, source.shape) for c in coords), x.shape)
        accumulate("add", lib, out, flat.reshape(-1), source.reshape(-1).astype(dtype))
    crop = tuple(slice(lo, lo + n) for (lo, _), n in zip(padding, operand.shape))
    return [xp.ascontiguousarray(out.reshape(x.shape)[crop]).reshape(shape)]
