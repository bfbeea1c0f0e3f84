"""simplify: rewrites of XLA's algebraic simplifier that remove work, on the lowered graph.

Forms that `jax.grad` and jnp write often and XLA rewrites before it compiles:

* A reduction over axes of extent 1 only (the gradient of a broadcast bias: a sum over the
  one row of a `[1, n]` array) is a reshape: its result is the operand's element itself,
  `-0.0` included, where a sum computed from its identity would give `0.0`.  An argmax or
  argmin over such axes is 0.  fusejit launched a kernel for each; XLA emits a bitcast.
* A product of a transposed operand (`a.T @ b`, attention's `q @ k.T`) is the product of
  the operand itself with its axes renamed: BLAS reads it transposed, where fusejit copied
  it in a kernel first.
* A transpose that swaps a matrix product's two free blocks (the gradient of `x @ w` with
  respect to `w`: `dot(g, x)` then a transpose) is the product with its operands swapped,
  `dot(x, g)`, which BLAS computes in the transposed order directly: one kernel and one pass
  over the product fewer.  Where the product has another use it is kept as it is.  A
  transpose of a transpose is one transpose, so operands transposed twice (attention's
  heads split, then k.T) fold into their product too.
* A reshape of a reshape is one reshape of the first's operand (a copy fewer where a
  library call reads it: a reshape of a step's result is a view).
* A scatter that puts at most one update into each row of its operand along one axis (the
  gradient of `jnp.take_along_axis(x, y[:, None], 1)` or of `x[jnp.arange(n), y]`, a
  classification loss's: one update per row, at column y) is elementwise: `where(iota == index, combine(operand, update),
  operand)`, with the index and update broadcast along that axis.  It fuses with its
  operand (often zeros) and its users instead of running as a library call between kernels;
  an index outside the axis matches no column and is dropped, as XLA's FILL_OR_DROP.

Each rule is one row of RULES (primitive -> rewrite); bodies of loops and branches are
rewritten too.  The results are those of the graph as written (a product's rounding is
BLAS's either way: the check against jax.jit allows for it).
"""
from __future__ import annotations

from collections import Counter

import numpy as np

from .ir import Eqn, Graph, Literal, Var, map_bodies

REDUCTIONS = {"reduce_sum", "reduce_prod", "reduce_max", "reduce_min", "reduce_and", "reduce_or", "reduce_xor",
              "argmax", "argmin"}


def simplify(graph: Graph) -> Graph:
    """`graph` with the rules of RULES applied (and its nested bodies')."""
    uses = Counter(id(a) for e in graph.eqns for a in e.inputs if isinstance(a, Var))
    uses.update(id(a) for a in graph.outputs if isinstance(a, Var))
    producers = {id(o): e for e in graph.eqns for o in e.outputs}
    replaced: dict[int, Eqn | tuple | None] = {}  # id(eqn) -> its rewrite: an Eqn, Eqns, None: dropped
    for eqn in graph.eqns:
        rule = RULES.get(eqn.primitive)
        if rule is not None:
            rule(eqn, uses, producers, replaced)
    eqns = []
    for eqn in graph.eqns:
        rewrite = replaced.get(id(eqn), eqn)
        for e in rewrite if isinstance(rewrite, tuple) else () if rewrite is None else (rewrite,):
            eqns.append(map_bodies(e, simplify))
    if not replaced and all(a is b for a, b in zip(eqns, graph.eqns)):
        return graph
    return Graph(graph.inputs, graph.consts, tuple(eqns), graph.outputs)


def _unit_reduction(eqn: Eqn, uses, producers, replaced) -> None:
    """A reduction over axes of extent 1 only: a reshape (argmax, argmin: zeros)."""
    (operand,), (out,) = eqn.inputs, eqn.outputs
    axes = eqn.params["axes"]
    if any(operand.shape[a] != 1 for a in axes):
        return
    if eqn.primitive in ("argmax", "argmin"):
        zero = Literal(np.zeros((), out.dtype)[()], out.dtype)
        replaced[id(eqn)] = Eqn("broadcast_in_dim", (zero,), (out,),
                                {"shape": out.shape, "broadcast_dimensions": (), "sharding": None}, eqn.source)
    else:
        replaced[id(eqn)] = Eqn("reshape", (operand,), (out,),
                                {"new_sizes": out.shape, "dimensions": None, "sharding": None}, eqn.source)


def _product_of_transposes(eqn: Eqn, uses, producers, replaced) -> None:
    """dot_general of a transposed operand (`a.T @ b`, `q @ k.T`): of the operand itself, its
    axes renamed in the dimension numbers, where the transposition keeps its free axes in
    order (the product's output lists them in the operand's order).  BLAS reads the operand
    transposed (library.dot_general); the transpose is left to its other users, if any."""
    (lhs_contract, rhs_contract), (lhs_batch, rhs_batch) = eqn.params["dimension_numbers"]
    operands, numbers = list(eqn.inputs), [[lhs_contract, lhs_batch], [rhs_contract, rhs_batch]]
    for k, x in enumerate(eqn.inputs):
        t = producers.get(id(x))
        t = replaced.get(id(t), t)  # (a transpose of a transpose composed already)
        if not isinstance(t, Eqn) or t.primitive != "transpose":
            continue
        perm = tuple(t.params["permutation"])
        contract, batch = numbers[k]
        free = [d for d in range(len(perm)) if d not in contract and d not in batch]
        if [perm[d] for d in free] != sorted(perm[d] for d in free):
            continue
        operands[k] = t.inputs[0]
        numbers[k] = [tuple(perm[d] for d in contract), tuple(perm[d] for d in batch)]
    if operands != list(eqn.inputs):
        (lhs_contract, lhs_batch), (rhs_contract, rhs_batch) = numbers
        params = dict(eqn.params, dimension_numbers=((tuple(lhs_contract), tuple(rhs_contract)),
                                                     (tuple(lhs_batch), tuple(rhs_batch))))
        replaced[id(eqn)] = Eqn("dot_general", tuple(operands), eqn.outputs, params, eqn.source)


def _transposed(eqn: Eqn, uses, producers, replaced) -> None:
    """A transpose of a transpose: one transpose of the first's operand (so a product's
    operand transposed twice, `swapaxes(k.transpose(0, 2, 1, 3), -1, -2)`, folds into the
    product); then a transpose of a product's output: the swapped product."""
    current = eqn
    (operand,) = eqn.inputs
    inner = producers.get(id(operand))
    inner = replaced.get(id(inner), inner)
    if isinstance(inner, Eqn) and inner.primitive == "transpose":
        first, second = inner.params["permutation"], eqn.params["permutation"]
        current = Eqn("transpose", inner.inputs, eqn.outputs,
                      dict(eqn.params, permutation=tuple(first[d] for d in second)), eqn.source)
        replaced[id(eqn)] = current
        if uses[id(operand)] != 1:
            return  # the first transpose's other users keep the product as it is
    _transposed_product(eqn, current, uses, producers, replaced)


def _transposed_product(eqn: Eqn, current: Eqn, uses, producers, replaced) -> None:
    """transpose(dot_general(a, b)) swapping the free blocks (`current`: the transpose, as
    rewritten so far): dot_general(b, a)."""
    (operand,), (out,) = current.inputs, current.outputs
    original = producers.get(id(operand))
    dot = replaced.get(id(original), original)  # (its operands' transposes folded already)
    if not isinstance(dot, Eqn) or dot.primitive != "dot_general" or uses[id(operand)] != 1:
        return
    (lhs_contract, rhs_contract), (lhs_batch, rhs_batch) = dot.params["dimension_numbers"]
    lhs, rhs = dot.inputs
    nb = len(lhs_batch)
    lhs_free = lhs.ndim - nb - len(lhs_contract)
    rhs_free = rhs.ndim - nb - len(rhs_contract)
    swapped = (*range(nb), *range(nb + lhs_free, nb + lhs_free + rhs_free), *range(nb, nb + lhs_free))
    if tuple(current.params["permutation"]) != swapped:
        return
    params = dict(dot.params, dimension_numbers=((rhs_contract, lhs_contract), (rhs_batch, lhs_batch)))
    if isinstance(params.get("precision"), tuple) and len(params["precision"]) == 2:
        params["precision"] = params["precision"][::-1]  # (lhs's, rhs's)
    replaced[id(original)] = None
    replaced[id(eqn)] = Eqn("dot_general", (rhs, lhs), (out,), params, dot.source)


def _scatter_rows(eqn: Eqn, producers, replaced):
    """(scattered operand axis, operand batching axes, the indices' axes naming them, the
    index array [..., 1]) of a scatter whose windows are single elements, or None.  Batching
    axes are the dimension numbers', or, without any, the index components that count along
    an axis of the indices (`x[jnp.arange(n), y]`: its first component is an iota)."""
    operand, indices, _ = eqn.inputs
    dn = eqn.params["dimension_numbers"]
    if len(dn.scatter_dims_to_operand_dims) == 1:
        if tuple(dn.inserted_window_dims) != tuple(dn.scatter_dims_to_operand_dims):
            return None
        return (dn.scatter_dims_to_operand_dims[0], tuple(dn.operand_batching_dims),
                tuple(dn.scatter_indices_batching_dims), indices)
    if dn.operand_batching_dims or sorted(dn.inserted_window_dims) != list(range(len(operand.shape))):
        return None
    concat = producers.get(id(indices))
    concat = replaced.get(id(concat), concat)
    if (not isinstance(concat, Eqn) or concat.primitive != "concatenate"
            or concat.params["dimension"] != len(indices.shape) - 1 or any(p.shape[-1] != 1 for p in concat.inputs)):
        return None
    axis = index = None
    batching, index_batching = [], []
    for d, part in zip(dn.scatter_dims_to_operand_dims, concat.inputs):
        along = _iota_axis(part, producers, replaced) if isinstance(part, Var) else None
        if along is not None and along < len(indices.shape) - 1:
            batching.append(d)
            index_batching.append(along)
        elif axis is None:
            axis, index = d, part
        else:
            return None
    return None if axis is None else (axis, tuple(batching), tuple(index_batching), index)


def _iota_axis(v: Var, producers, replaced, depth: int = 8) -> int | None:
    """The axis along which v counts 0, 1, 2, ... (v's value is its index there), or None:
    an iota, broadcast, converted between integers, or through jnp's wrap of negative
    indices (`x < 0 ? x + n : x`, which leaves an iota as it is)."""
    e = producers.get(id(v))
    e = replaced.get(id(e), e)
    if not isinstance(e, Eqn) or depth == 0:
        return None
    if e.primitive == "iota":
        return int(e.params["dimension"])
    if e.primitive == "broadcast_in_dim" and isinstance(e.inputs[0], Var):
        inner = _iota_axis(e.inputs[0], producers, replaced, depth - 1)
        if inner is None:
            return None
        axis = int(e.params["broadcast_dimensions"][inner])
        # (an axis of extent 1 stretched along the result holds one value: no count there)
        return axis if e.inputs[0].shape[inner] == v.shape[axis] else None
    if e.primitive == "convert_element_type" and isinstance(e.inputs[0], Var) and e.inputs[0].dtype.kind in "iu" \
            and v.dtype.kind in "iu" and v.dtype.itemsize >= e.inputs[0].dtype.itemsize:
        return _iota_axis(e.inputs[0], producers, replaced, depth - 1)
    if e.primitive == "select_n" and len(e.inputs) == 3 and isinstance(e.inputs[1], Var):
        pred, x = e.inputs[0], e.inputs[1]
        test = producers.get(id(pred))
        if (isinstance(test, Eqn) and test.primitive == "lt" and test.inputs[0] is x
                and isinstance(test.inputs[1], Literal) and test.inputs[1].value == 0):
            return _iota_axis(x, producers, replaced, depth - 1)  # never negative: the select picks x
    return None


# scatter primitive -> the elementwise primitive combining the operand with an update (None: set)
SCATTER_COMBINE = {"scatter": None, "scatter-add": "add", "scatter-mul": "mul", "scatter-min": "min",
                   "scatter-max": "max"}


def _row_scatter(eqn: Eqn, uses, producers, replaced) -> None:
    """A scatter of one update per operand row (scalar updates along one axis, every other
    operand axis a batching axis, the indices' other batch axes of extent 1): a select."""
    operand, indices, updates = eqn.inputs
    (out,) = eqn.outputs
    dn = eqn.params["dimension_numbers"]
    mode = str(eqn.params.get("mode", ""))
    if (dn.update_window_dims or "CLIP" in mode
            or eqn.primitive == "scatter" and eqn.params.get("update_jaxpr") is not None):  # x.at[i].apply(f)
        return
    rows = _scatter_rows(eqn, producers, replaced)
    if rows is None:
        return
    axis, batching, index_batching, indices = rows
    nd = len(operand.shape)
    if (sorted((*batching, axis)) != list(range(nd)) or indices.shape[-1] != 1
            or updates.shape != indices.shape[:-1]):
        return
    kept = sorted(index_batching)  # the indices' batch axes that name operand rows
    if any(indices.shape[d] != 1 for d in range(len(indices.shape) - 1) if d not in kept):
        return  # several updates may land in one row
    targets = [batching[index_batching.index(d)] for d in kept]  # operand axis of each kept axis
    if targets != sorted(targets) or any(indices.shape[d] != operand.shape[t] for d, t in zip(kept, targets)):
        return
    row_shape = tuple(indices.shape[d] for d in kept)
    source = eqn.source

    def along_rows(x: Var) -> tuple[list[Eqn], Var]:
        """x (of the indices' batch shape) reshaped to the rows' shape and broadcast along the axis."""
        rows = Var(row_shape, x.dtype)
        wide = Var(tuple(operand.shape), x.dtype)
        return [Eqn("reshape", (x,), (rows,), {"new_sizes": row_shape, "dimensions": None, "sharding": None}, source),
                Eqn("broadcast_in_dim", (rows,), (wide,), {"shape": tuple(operand.shape),
                                                           "broadcast_dimensions": tuple(targets), "sharding": None},
                    source)], wide

    index_eqns, index = along_rows(indices)
    update_eqns, update = along_rows(updates)
    iota = Var(tuple(operand.shape), indices.dtype)
    hit = Var(tuple(operand.shape), np.dtype(np.bool_))
    eqns = [*index_eqns, *update_eqns,
            Eqn("iota", (), (iota,), {"dtype": indices.dtype, "shape": tuple(operand.shape), "dimension": axis,
                                      "sharding": None}, source),
            Eqn("eq", (iota, index), (hit,), {}, source)]
    combine = SCATTER_COMBINE[eqn.primitive]
    if combine is not None:
        combined = Var(tuple(operand.shape), operand.dtype)
        eqns.append(Eqn(combine, (operand, update), (combined,), {}, source))
        update = combined
    eqns.append(Eqn("select_n", (hit, operand, update), (out,), {}, source))
    replaced[id(eqn)] = tuple(eqns)


def _reshaped(eqn: Eqn, uses, producers, replaced) -> None:
    """A reshape of a reshape: one reshape of the first's operand (jnp.linalg.solve reshapes a
    triangular solve's result and back before the next solve; the pair was a kernel's copy
    between the two library calls, where one reshape is a view)."""
    (operand,) = eqn.inputs
    inner = producers.get(id(operand))
    inner = replaced.get(id(inner), inner)
    if (eqn.params.get("dimensions") is None and isinstance(inner, Eqn) and inner.primitive == "reshape"
            and inner.params.get("dimensions") is None and isinstance(inner.inputs[0], Var)):
        replaced[id(eqn)] = Eqn("reshape", inner.inputs, eqn.outputs, eqn.params, eqn.source)


RULES = {**{p: _unit_reduction for p in REDUCTIONS}, "transpose": _transposed, "reshape": _reshaped,
         "dot_general": _product_of_transposes,
         **{p: _row_scatter for p in SCATTER_COMBINE}}
