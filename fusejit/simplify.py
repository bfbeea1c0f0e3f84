"""simplify: rewrites of XLA's algebraic simplifier that remove work, on the lowered graph.

Two forms that `jax.grad` writes often and XLA rewrites before it compiles:

* A reduction over axes of extent 1 only (the gradient of a broadcast bias: a sum over the
  one row of a `[1, n]` array) is a reshape: its result is the operand's element itself,
  `-0.0` included, where a sum computed from its identity would give `0.0`.  An argmax or
  argmin over such axes is 0.  fusejit launched a kernel for each; XLA emits a bitcast.
* A transpose that swaps a matrix product's two free blocks (the gradient of `x @ w` with
  respect to `w`: `dot(g, x)` then a transpose) is the product with its operands swapped,
  `dot(x, g)`, which BLAS computes in the transposed order directly: one kernel and one pass
  over the product fewer.  Where the product has another use it is kept as it is.

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
    replaced: dict[int, Eqn | None] = {}  # id(eqn) -> its rewrite (None: dropped)
    for eqn in graph.eqns:
        rule = RULES.get(eqn.primitive)
        if rule is not None:
            rule(eqn, uses, producers, replaced)
    eqns = []
    for eqn in graph.eqns:
        eqn = replaced.get(id(eqn), eqn)
        if eqn is not None:
            eqns.append(map_bodies(eqn, simplify))
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


def _transposed_product(eqn: Eqn, uses, producers, replaced) -> None:
    """transpose(dot_general(a, b)) swapping the free blocks: dot_general(b, a)."""
    (operand,), (out,) = eqn.inputs, eqn.outputs
    dot = producers.get(id(operand))
    if dot is None or dot.primitive != "dot_general" or uses[id(operand)] != 1 or id(dot) in replaced:
        return
    (lhs_contract, rhs_contract), (lhs_batch, rhs_batch) = dot.params["dimension_numbers"]
    lhs, rhs = dot.inputs
    nb = len(lhs_batch)
    lhs_free = lhs.ndim - nb - len(lhs_contract)
    rhs_free = rhs.ndim - nb - len(rhs_contract)
    swapped = (*range(nb), *range(nb + lhs_free, nb + lhs_free + rhs_free), *range(nb, nb + lhs_free))
    if tuple(eqn.params["permutation"]) != swapped:
        return
    params = dict(dot.params, dimension_numbers=((rhs_contract, lhs_contract), (rhs_batch, lhs_batch)))
    replaced[id(dot)] = None
    replaced[id(eqn)] = Eqn("dot_general", (rhs, lhs), (out,), params, dot.source)


RULES = {**{p: _unit_reduction for p in REDUCTIONS}, "transpose": _transposed_product}
