"""Codegen of small scatters (x.at[i].set/add/multiply/min/max with one index per update).

A scatter through the library (indexops.py) waits for its operand, indices and updates in
memory and computes every window's position in NumPy: a scatter of a thousand values cost
20 us where jax.jit takes 7.  Here one kernel (kernels/scatter.cu.in) does it all: it copies
the operand into the output, computing the operand's producers (a broadcast zero) element by
element, then applies the updates in order, each index and update computed from their
producers where they are read (an iota's modulo, a column of a matrix).

The form fused: one index per update (scatter_dims_to_operand_dims of one operand dim, which
the window leaves out), the update's window in its trailing dims, no batching dims, and a
combination of an elementwise primitive's (update_jaxpr as jnp writes it).  An index outside
the operand drops its update (FILL_OR_DROP, PROMISE_IN_BOUNDS) or is clamped into it (CLIP).

One block applies the updates, so a large scatter stays with the library (MAX_FUSED), whose
GPU path (CuPy) uses the whole device.
"""
from __future__ import annotations

import math

import numpy as np

from . import ops
from .indexing import Sym, aff, delinearize
from .launch import Layout

# primitive -> the elementwise primitive combining the element and the update (None: the update)
COMBINE = {"scatter": None, "scatter-add": "add", "scatter-mul": "mul", "scatter-min": "min", "scatter-max": "max"}
MAX_FUSED = 1 << 16  # the most operand elements and the most update elements a fused scatter has


def _update_primitive(eqn) -> str | None:
    """The single equation of the scatter's update_jaxpr, or None."""
    jaxpr = eqn.params.get("update_jaxpr")
    if jaxpr is None:
        return None
    eqns = getattr(jaxpr, "eqns", None)
    if eqns is None or len(eqns) != 1:
        return None
    return eqns[0].primitive.name


def fusible_scatter(eqn) -> bool:
    """Whether a kernel computes the scatter (the module docstring's form)."""
    if eqn.primitive not in COMBINE:
        return False
    operand, indices, updates = eqn.inputs
    dn = eqn.params["dimension_numbers"]
    combine = COMBINE[eqn.primitive]
    if combine is None and eqn.params.get("update_jaxpr") is not None:  # x.at[i].apply(f)
        return False
    if combine is not None and (operand.dtype == np.bool_ or _update_primitive(eqn) != combine):
        return False
    if eqn.params.get("update_consts"):
        return False
    if tuple(dn.operand_batching_dims) or tuple(dn.scatter_indices_batching_dims):
        return False
    if indices.ndim == 0 or indices.shape[-1] != 1 or len(dn.scatter_dims_to_operand_dims) != 1:
        return False
    d0 = int(dn.scatter_dims_to_operand_dims[0])
    if tuple(int(d) for d in dn.inserted_window_dims) != (d0,):
        return False
    batch = indices.ndim - 1
    if tuple(int(d) for d in dn.update_window_dims) != tuple(range(batch, updates.ndim)):
        return False
    if updates.shape[:batch] != indices.shape[:-1]:
        return False
    if np.dtype(indices.dtype).kind not in "iu":
        return False
    return 0 < operand.size <= MAX_FUSED and updates.size <= MAX_FUSED


def render_scatter(w, block: int):
    from .codegen import Param, RenderedKernel, fill_kernel, indent
    spec = w.spec
    w.var_by_id = {id(v): v for e in spec.eqns for v in e.outputs}
    (out,) = spec.outputs
    eqn, _ = w.producers[id(out)]
    operand, indices, updates = eqn.inputs
    dn = eqn.params["dimension_numbers"]
    d0 = int(dn.scatter_dims_to_operand_dims[0])
    batch_shape = tuple(indices.shape[:-1])
    window_dims = [d for d in range(operand.ndim) if d != d0]
    window_sizes = tuple(updates.shape[len(batch_shape):])
    count, window_n = math.prod(batch_shape), math.prod(window_sizes)

    # The operand, element by element.
    w.variant |= {"i", "k", "w"}
    i = aff(Sym("loop", ("i",), 0, max(out.size - 1, 0)))
    init_value = w.read(operand, delinearize(i, out.shape))
    init_body, w.body = w.body, []
    w.new_scope()

    # Each update's index, then its window.
    k = aff(Sym("loop", ("k",), 0, max(count - 1, 0)))
    at = delinearize(k, batch_shape)
    index = w.read(indices, tuple(at) + (aff(0),))
    hi = operand.shape[d0] - 1
    clip = "CLIP" in str(eqn.params.get("mode"))
    keep = "true" if clip else f"fj_index_fits({index}, (long long){hi})"
    start = f"(idx_t)fj_start_index({index}, (long long){hi})"
    index_body, w.body = w.body, []
    j = aff(Sym("loop", ("w",), 0, max(window_n - 1, 0)))
    in_window = delinearize(j, window_sizes)
    update = w.read(updates, tuple(at) + tuple(in_window))
    strides = [math.prod(out.shape[d + 1:]) for d in range(out.ndim)]
    offset = sum((aff(e) * strides[d] for e, d in zip(in_window, window_dims)), aff(0))
    combine = COMBINE[eqn.primitive]
    combined = update if combine is None else \
        ops.ELEMENTWISE[combine](["out0[at]", update], [out.dtype, out.dtype], out.dtype, {})

    params = w.buffer_params() + [Param("scalar", "n", w.index_ctype, value=out.size),
                                  Param("scalar", "updates_n", w.index_ctype, value=count),
                                  Param("scalar", "window_n", w.index_ctype, value=window_n)]
    source = fill_kernel(
        w, "scatter.cu.in",
        f"{count} update(s) of {window_n} element(s) into axis {d0} of {list(out.shape)}",
        block, params, min_blocks=1, init_body=indent(init_body, 2), init_value=init_value,
        index_body=indent(index_body, 2), keep=keep,
        mode="clamped into the operand (CLIP)" if clip else "an index outside the operand drops its update",
        base=f"{start} * {w.int_text(strides[d0])}", update_body=indent(w.body, 3), offset=w.index(offset),
        combined=combined, primitive=eqn.primitive)
    return RenderedKernel(spec, source, tuple(params), w.index64, w.loads, 1, block,
                          Layout("rows", 1, out.size + updates.size))
