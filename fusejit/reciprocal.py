"""reciprocal: divisions written as jax.jit computes them, some of them as multiplications.

XLA's algebraic simplifier (HandleDivide) turns two kinds of float division into a
multiplication by the divisor's reciprocal:

* `A / C => A * (1 / C)` for a constant divisor C (a literal, a captured array, or a broadcast
  of one) and a dividend that is not constant: on every device, loop bodies included.
  `x / 3.0` is `x * 0.33333334f`, `x.mean()` is `x.sum() * (1 / n)`.
* `A / broadcast(B) => A * broadcast(1 / B)` when B has no other use: on the CPU only (XLA's
  `executing_on_cpu`).  `x / y[:, None]` is `x * (1 / y)[:, None]`; a softmax divides once
  per row instead of once per element.  A loop's constants have another use in its body
  (XLA's loop state passes them through), so a closed-over divisor keeps its division there,
  as does a carried one that the body also reads elsewhere.

The product may differ from the quotient in its last bit, and a multiplication costs a
fraction of a division (a vector divide has several times a multiply's reciprocal
throughput).  `as_jax_divides` makes the same rewrites on a graph as it is lowered from the
jaxpr, the second where jax.jit runs on the CPU, so that fusejit's kernels compute what
jax.jit's do, bit for bit (tests/test_reciprocal.py).  Integer divisions, a constant
dividend (XLA folds or keeps the division) and XLA's other rewrites (A / sqrt(B) into
A * rsqrt(B), whose approximate rsqrt is the CPU's own) are left as divisions.
"""
from __future__ import annotations

from collections import Counter

import numpy as np

from .ir import Eqn, Graph, Literal, Var


def as_jax_divides(graph: Graph, on_cpu: bool | None = None) -> Graph:
    """`graph` (and its loop and branch bodies) with the divisions jax.jit multiplies by a
    reciprocal so written; `on_cpu` (default: jax.jit runs on the CPU) enables the rule for a
    broadcast divisor."""
    if on_cpu is None:
        import jax
        on_cpu = jax.default_backend() == "cpu"
    return _rewrite(graph, on_cpu, passed_through=0)


def _inverse(value, dtype):
    """1 / value in `dtype`, rounded once as IEEE divides (1/0 is inf, as XLA folds it)."""
    dtype = np.dtype(dtype)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        return np.divide(np.ones((), dtype), np.asarray(value, dtype)).astype(dtype, copy=False)


def _body_passes(eqn: Eqn, key: str) -> int:
    """How many leading inputs of `eqn`'s body `key` XLA's loop state passes through (the
    loop's constants); a scan of length 1 is no loop to XLA."""
    p = eqn.params
    if eqn.primitive == "scan" and key == "body":
        return 0 if p.get("length") == 1 else p.get("num_consts", 0)
    if eqn.primitive == "while" and key == "body":
        return p.get("body_nconsts", 0)
    return 0


def _nested(eqn: Eqn, on_cpu: bool) -> Eqn:
    params, changed = dict(eqn.params), False
    for key, value in eqn.params.items():
        if isinstance(value, Graph):
            params[key] = _rewrite(value, on_cpu, _body_passes(eqn, key))
        elif isinstance(value, tuple) and value and all(isinstance(g, Graph) for g in value):
            params[key] = tuple(_rewrite(g, on_cpu, 0) for g in value)
        else:
            continue
        changed = changed or params[key] is not value
    return Eqn(eqn.primitive, eqn.inputs, eqn.outputs, params, eqn.source) if changed else eqn


def _rewrite(graph: Graph, on_cpu: bool, passed_through: int) -> Graph:
    uses = Counter(id(a) for e in graph.eqns for a in e.inputs if isinstance(a, Var))
    uses.update(id(a) for a in graph.outputs if isinstance(a, Var))
    uses.update(id(v) for v in graph.inputs[:passed_through])
    producers = {id(o): e for e in graph.eqns for o in e.outputs}
    consts = dict((id(v), (v, a)) for v, a in graph.consts)
    dead: set[int] = set()  # equations a rewrite left without a use
    eqns: list[Eqn] = []
    changed = False
    for eqn in graph.eqns:
        nested = _nested(eqn, on_cpu)
        changed = changed or nested is not eqn
        new = _divide(nested, on_cpu, uses, producers, consts, dead) if eqn.primitive == "div" else None
        eqns.extend(new or [nested])
        changed = changed or new is not None
    if not changed:
        return graph
    eqns = [e for e in eqns if id(e) not in dead]
    live = {id(a) for e in eqns for a in e.inputs} | {id(a) for a in graph.outputs}
    return Graph(graph.inputs, tuple((v, a) for v, a in consts.values() if id(v) in live),
                 tuple(eqns), graph.outputs)


def _noop_convert(eqn) -> bool:
    """A convert_element_type to the same dtype (a weak type made strong): no HLO at all."""
    return (eqn is not None and eqn.primitive == "convert_element_type"
            and np.dtype(eqn.inputs[0].dtype) == np.dtype(eqn.outputs[0].dtype))


def _divide(eqn: Eqn, on_cpu: bool, uses: Counter, producers: dict, consts: dict, dead: set):
    """The equations that compute `eqn` (a div) as jax.jit does, or None to keep it."""
    dividend, divisor = eqn.inputs
    out = eqn.outputs[0]
    dtype = np.dtype(out.dtype)
    if not np.issubdtype(dtype, np.floating) or isinstance(dividend, Literal) or id(dividend) in consts:
        return None

    def constant(atom) -> bool:
        return isinstance(atom, Literal) or id(atom) in consts

    def producer(atom):
        return producers.get(id(atom)) if isinstance(atom, Var) else None

    # B, the value XLA's broadcast stretches: the divisor itself where the division stretches
    # it (a scalar, size-1 axes: any broadcast_in_dim or reshape that made them is a reshape
    # to XLA, whose result B is), else the operand of the broadcast_in_dim that made it.
    chain, b, links = [], divisor, []
    while _noop_convert(producer(b)):
        links.append(b)
        b = producer(b).inputs[0]
    if b.size == out.size and not constant(b):
        made = producer(b)
        if made is None or made.primitive != "broadcast_in_dim" or made.inputs[0].size == b.size:
            return None
        links.append(b)
        chain, b = [made], made.inputs[0]
    if not constant(b) and _broadcast_of_constant(producer(b), constant) and b.size == 1:
        links.append(b)
        chain, b = [producer(b)] + chain, producer(b).inputs[0]
    if constant(b):  # A / C => A * (1 / C)
        if isinstance(b, Literal):
            inverse = Literal(_inverse(b.value, dtype)[()], dtype)
        else:
            var, array = consts[id(b)]
            inverse = Var(var.shape, var.dtype, var.weak_type)
            consts[id(inverse)] = (inverse, _inverse(array, dtype))
        head = []
    elif on_cpu and uses[id(b)] == 1 and all(uses[id(v)] == 1 for v in links):  # A / broadcast(B)
        inverse = Var(b.shape, b.dtype, b.weak_type)
        head = [Eqn("div", (Literal(np.ones((), dtype)[()], dtype), b), (inverse,), {}, eqn.source)]
    else:
        return None
    dead.update(id(producer(v)) for v in links if uses[id(v)] == 1)  # used only on the way here
    eqns, factor = _replay(chain, inverse)
    return head + eqns + [Eqn("mul", (dividend, factor), (out,), {}, eqn.source)]


def _broadcast_of_constant(eqn, constant) -> bool:
    return eqn is not None and eqn.primitive == "broadcast_in_dim" and constant(eqn.inputs[0])


def _replay(chain: list, start):
    """The chain's broadcasts and reshapes again, from B's reciprocal `start` outward: the
    equations and the value they end in."""
    eqns, value = [], start
    for old in reversed(chain):
        result = old.outputs[0]
        fresh = Var(result.shape, result.dtype, result.weak_type)
        eqns.append(Eqn(old.primitive, (value,), (fresh,), old.params, old.source))
        value = fresh
    return eqns, value
