"""Control flow as graph rewrites, run before fusion (each a function from Graph to Graph):

  hoist_invariants   work in a loop body that depends only on the loop's consts (the LU
                     factorisation of a constant matrix) moves out of the loop, done once.
  unroll_scans       a scan chosen to unroll has its body inlined once per iteration, so
                     fusion works across iterations.
  select_branches    a cond/switch whose branches are all cheap and elementwise becomes every
                     branch and a select_n on the index.

Bodies are rewritten first, so nested loops are handled from the inside out.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from .fusion import FUSIBLE, REDUCTIONS, SCANS
from .ir import Eqn, Graph, Literal, Var, map_bodies
from .trace import effectful, eliminate_dead_code

UNROLL_MAX_EQNS = 256       # auto: unroll a scan when length * body equations stays under this
UNROLL_MAX_LENGTH = 16      # ... and it has at most this many iterations
UNROLL_LIMIT_EQNS = 20_000  # unroll=True or scan='unroll': never inline more equations than this
SELECT_MAX_EQNS = 32        # a cond becomes a select when its branches have at most this many


def fresh(v: Var) -> Var:
    return Var(v.shape, v.dtype, v.weak_type)


class Builder:
    """Equations and consts of a graph being rewritten, with a map from old atoms to new."""

    def __init__(self, graph: Graph):
        self.eqns: list[Eqn] = []
        self.consts: list = list(graph.consts)
        self.env: dict[int, object] = {}

    def read(self, atom):
        return atom if isinstance(atom, Literal) else self.env.get(id(atom), atom)

    def add(self, primitive, inputs, outputs, params, source="") -> None:
        self.eqns.append(Eqn(primitive, tuple(inputs), tuple(outputs), params, source))

    def emit(self, primitive, inputs, out_shape, dtype, params, source="", weak_type=False) -> Var:
        out = Var(tuple(out_shape), np.dtype(dtype), weak_type)
        self.add(primitive, inputs, [out], params, source)
        return out

    def inline(self, graph: Graph, inputs) -> list:
        """Copy `graph`'s equations with fresh outputs, its inputs bound to `inputs`; returns
        the atoms of its outputs.  Its consts join the graph being built."""
        env: dict[int, object] = {id(v): a for v, a in zip(graph.inputs, inputs)}
        for var, value in graph.consts:
            if all(var is not c for c, _ in self.consts):
                self.consts.append((var, value))

        def read(a):
            return a if isinstance(a, Literal) else env.get(id(a), a)

        for eqn in graph.eqns:
            outs = [fresh(v) for v in eqn.outputs]
            env.update({id(v): o for v, o in zip(eqn.outputs, outs)})
            self.add(eqn.primitive, [read(a) for a in eqn.inputs], outs, eqn.params, eqn.source)
        return [read(a) for a in graph.outputs]

    def graph(self, old: Graph) -> Graph:
        outputs = tuple(self.read(a) for a in old.outputs)
        return eliminate_dead_code(Graph(old.inputs, tuple(self.consts), tuple(self.eqns), outputs))


def rewrite(graph: Graph, rule, nested=None) -> Graph:
    """Apply `rule(builder, eqn)` to every equation (its inputs renamed, and its nested bodies
    first rewritten by `nested`); a rule returns the atoms replacing the equation's outputs,
    or None to keep the equation."""
    b = Builder(graph)
    for eqn in graph.eqns:
        eqn = dataclasses.replace(eqn, inputs=tuple(b.read(a) for a in eqn.inputs))
        if nested is not None:
            eqn = map_bodies(eqn, nested)
        replaced = rule(b, eqn)
        if replaced is None:
            b.eqns.append(eqn)
        else:
            b.env.update({id(v): a for v, a in zip(eqn.outputs, replaced)})
    return b.graph(graph)


# ---------------- pruning loops ----------------

def reads(graph: Graph) -> set[int]:
    return {id(a) for e in graph.eqns for a in e.inputs} | {id(a) for a in graph.outputs}


def prune_scan(b: Builder, eqn: Eqn, used: set[int]):
    """The scan without the stacked outputs nobody reads and the consts and xs its body
    does not read."""
    p = eqn.params
    body, nc, nk = p["body"], p["num_consts"], p["num_carry"]
    ys = [k for k, v in enumerate(eqn.outputs[nk:]) if id(v) in used]
    body = eliminate_dead_code(Graph(body.inputs, body.consts, body.eqns,
                                     body.outputs[:nk] + tuple(body.outputs[nk + k] for k in ys)))
    read = reads(body)
    keep = [k for k, v in enumerate(body.inputs) if nc <= k < nc + nk or id(v) in read]
    if len(keep) == len(body.inputs) and len(ys) == len(eqn.outputs) - nk:
        return None
    body = Graph(tuple(body.inputs[k] for k in keep), body.consts, body.eqns, body.outputs)
    params = dict(p, body=body, num_consts=sum(1 for k in keep if k < nc))
    outputs = list(eqn.outputs[:nk]) + [eqn.outputs[nk + k] for k in ys]
    b.add("scan", [eqn.inputs[k] for k in keep], outputs, params, eqn.source)
    return list(eqn.outputs)


def prune_while(b: Builder, eqn: Eqn):
    """The while loop without the consts its predicate and body do not read."""
    p = eqn.params
    nc, nb = p["cond_nconsts"], p["body_nconsts"]
    cond_read, body_read = reads(p["cond"]), reads(p["body"])
    keep_c = [k for k in range(nc) if id(p["cond"].inputs[k]) in cond_read]
    keep_b = [k for k in range(nb) if id(p["body"].inputs[k]) in body_read]
    if len(keep_c) == nc and len(keep_b) == nb:
        return None
    cond, body = p["cond"], p["body"]
    cond = Graph(tuple(cond.inputs[k] for k in keep_c) + cond.inputs[nc:], cond.consts, cond.eqns, cond.outputs)
    body = Graph(tuple(body.inputs[k] for k in keep_b) + body.inputs[nb:], body.consts, body.eqns, body.outputs)
    params = dict(p, cond=cond, body=body, cond_nconsts=len(keep_c), body_nconsts=len(keep_b))
    inputs = [eqn.inputs[k] for k in keep_c] + [eqn.inputs[nc + k] for k in keep_b] + list(eqn.inputs[nc + nb:])
    b.add("while", inputs, eqn.outputs, params, eqn.source)
    return list(eqn.outputs)


def prune_loops(graph: Graph) -> Graph:
    used = reads(graph)

    def rule(b, eqn):
        if eqn.primitive == "scan":
            return prune_scan(b, eqn, used)
        if eqn.primitive == "while":
            return prune_while(b, eqn)
        return None
    return rewrite(graph, rule, prune_loops)


# ---------------- hoisting loop invariants ----------------

def is_heavy(eqn: Eqn) -> bool:
    """Worth hoisting: a library call, a loop, a reduction; cheap elementwise work is left to
    fuse into the body's kernels (hoisting it would store a value the body could compute)."""
    return eqn.primitive not in FUSIBLE or eqn.primitive in REDUCTIONS | SCANS


def split_invariant(body: Graph, n_consts: int) -> tuple[list[Eqn], list[Eqn]]:
    """(hoisted, kept): the heavy equations of `body` that read only its first n_consts inputs
    (and other such equations), with what they need; the rest stays."""
    invariant = {id(v) for v in body.inputs[:n_consts]} | {id(v) for v, _ in body.consts}
    inv_eqns = []
    for e in body.eqns:
        if all(isinstance(a, Literal) or id(a) in invariant for a in e.inputs) and not effectful(e):
            invariant.update(id(v) for v in e.outputs)
            inv_eqns.append(e)
    producer = {id(v): e for e in inv_eqns for v in e.outputs}
    hoist: set[int] = set()

    def need(e):
        if id(e) in hoist:
            return
        hoist.add(id(e))
        for a in e.inputs:
            if isinstance(a, Var) and id(a) in producer:
                need(producer[id(a)])

    for e in inv_eqns:
        if is_heavy(e):
            need(e)
    hoisted = [e for e in body.eqns if id(e) in hoist]
    kept = [e for e in body.eqns if id(e) not in hoist]
    return hoisted, kept


def hoist_from(b: Builder, body: Graph, n_consts: int, const_atoms) -> tuple[Graph, list, tuple] | None:
    """Hoist `body`'s invariant work into the graph `b` builds.  Returns the new body (the
    hoisted values become consts after the old ones), the outer atoms of those values, and the
    hoisted primitives; None when nothing is worth hoisting."""
    hoisted, kept = split_invariant(body, n_consts)
    if not hoisted:
        return None
    produced = {id(v) for e in hoisted for v in e.outputs}
    used = []
    for a in [a for e in kept for a in e.inputs] + list(body.outputs):
        if isinstance(a, Var) and id(a) in produced and all(a is not u for u in used):
            used.append(a)
    part = Graph(body.inputs[:n_consts], body.consts, tuple(hoisted), tuple(used))
    outer = b.inline(part, const_atoms)
    new_body = Graph(body.inputs[:n_consts] + tuple(used) + body.inputs[n_consts:], body.consts, tuple(kept),
                     body.outputs)
    return new_body, outer, tuple(e.primitive for e in hoisted)


def hoist_rule(b: Builder, eqn: Eqn):
    if eqn.primitive == "scan":
        n = eqn.params["num_consts"]
        done = hoist_from(b, eqn.params["body"], n, eqn.inputs[:n])
        if done is None:
            return None
        body, outer, prims = done
        params = dict(eqn.params, body=body, num_consts=n + len(outer),
                      hoisted=eqn.params.get("hoisted", ()) + prims)
        b.add("scan", list(eqn.inputs[:n]) + outer + list(eqn.inputs[n:]), eqn.outputs, params, eqn.source)
        return list(eqn.outputs)
    if eqn.primitive == "while":
        p = dict(eqn.params)
        nc, nb = p["cond_nconsts"], p["body_nconsts"]
        cond_consts, body_consts, carries = eqn.inputs[:nc], eqn.inputs[nc:nc + nb], eqn.inputs[nc + nb:]
        hoisted = ()
        done = hoist_from(b, p["cond"], nc, cond_consts)
        if done is not None:
            p["cond"], extra, prims = done
            cond_consts, hoisted = tuple(cond_consts) + tuple(extra), hoisted + prims
            p["cond_nconsts"] = len(cond_consts)
        done = hoist_from(b, p["body"], nb, body_consts)
        if done is not None:
            p["body"], extra, prims = done
            body_consts, hoisted = tuple(body_consts) + tuple(extra), hoisted + prims
            p["body_nconsts"] = len(body_consts)
        if not hoisted:
            return None
        p["hoisted"] = p.get("hoisted", ()) + hoisted
        b.add("while", list(cond_consts) + list(body_consts) + list(carries), eqn.outputs, p, eqn.source)
        return list(eqn.outputs)
    return None


def hoist_invariants(graph: Graph) -> Graph:
    return rewrite(graph, hoist_rule, hoist_invariants)


# ---------------- unrolling scans ----------------

def body_size(graph: Graph) -> int:
    """Equations of a graph, counting nested bodies."""
    n = 0
    for e in graph.eqns:
        n += 1
        for v in e.params.values():
            for g in (v if isinstance(v, tuple) else (v,)):
                if isinstance(g, Graph):
                    n += body_size(g)
    return n


def scan_mode(eqn: Eqn, strategy: str) -> str:
    """'unroll' or 'loop' for a scan: jax's unroll >= length, or strategy 'unroll', unrolls;
    'auto' unrolls short loops of cheap bodies."""
    p = eqn.params
    length, size = p["length"], body_size(p["body"])
    if length * size > UNROLL_LIMIT_EQNS:
        return "loop"
    if strategy == "unroll" or p["unroll"] >= max(length, 2):
        return "unroll"
    if strategy == "auto" and length <= UNROLL_MAX_LENGTH and length * size <= UNROLL_MAX_EQNS:
        return "unroll"
    return "loop"


def take(b: Builder, x, t: int, source: str):
    """x[t] along the leading axis."""
    shape = x.shape[1:]
    part = b.emit("slice", [x], (1,) + shape, x.dtype,
                  dict(start_indices=(t,) + (0,) * len(shape), limit_indices=(t + 1,) + shape, strides=None),
                  source, x.weak_type)
    return b.emit("squeeze", [part], shape, x.dtype, dict(dimensions=(0,)), source, x.weak_type)


def stack(b: Builder, parts, var: Var, source: str):
    """The values `parts` stacked along a new leading axis, as `var` (shape and dtype)."""
    rows = []
    for p in parts:
        shape = (1,) + tuple(p.shape)
        rows.append(b.emit("broadcast_in_dim", [p], shape, var.dtype,
                           dict(shape=shape, broadcast_dimensions=tuple(range(1, len(shape))), sharding=None),
                           source, var.weak_type))
    if not rows:
        zero = Literal(np.zeros((), var.dtype)[()], var.dtype)
        return b.emit("broadcast_in_dim", [zero], var.shape, var.dtype,
                      dict(shape=var.shape, broadcast_dimensions=(), sharding=None), source, var.weak_type)
    if len(rows) == 1:
        return rows[0]
    return b.emit("concatenate", rows, var.shape, var.dtype, dict(dimension=0), source, var.weak_type)


def inline_scan(b: Builder, eqn: Eqn) -> list:
    """The scan's iterations inlined one after another; returns its outputs' atoms."""
    p = eqn.params
    body, length = p["body"], p["length"]
    nc, nk = p["num_consts"], p["num_carry"]
    consts, carry, xs = list(eqn.inputs[:nc]), list(eqn.inputs[nc:nc + nk]), eqn.inputs[nc + nk:]
    ys_vars = eqn.outputs[nk:]
    ys_parts = [[] for _ in ys_vars]
    order = range(length - 1, -1, -1) if p["reverse"] else range(length)
    for t in order:
        x_t = [take(b, x, t, eqn.source) if isinstance(x, Var) else x for x in xs]
        outs = b.inline(body, consts + carry + x_t)
        carry = outs[:nk]
        for parts, y in zip(ys_parts, outs[nk:]):
            parts.append(y)
    if p["reverse"]:
        ys_parts = [parts[::-1] for parts in ys_parts]
    return carry + [stack(b, parts, v, eqn.source) for parts, v in zip(ys_parts, ys_vars)]


def unroll_scans(graph: Graph, strategy: str) -> Graph:
    def rule(b, eqn):
        if eqn.primitive == "scan" and scan_mode(eqn, strategy) == "unroll":
            return inline_scan(b, eqn)
        return None
    return rewrite(graph, rule, lambda g: unroll_scans(g, strategy))


def blocked_body(eqn: Eqn, k: int) -> Graph:
    """A body that runs k iterations of the scan `eqn`: inputs consts, carries and xs blocks
    of k rows; outputs carries and ys blocks.  A host loop with jax's unroll=k runs it."""
    p = eqn.params
    body, nc, nk = p["body"], p["num_consts"], p["num_carry"]
    inputs = [fresh(v) for v in body.inputs[:nc + nk]]
    xs = []
    for v in body.inputs[nc + nk:]:
        xs.append(Var((k,) + v.shape, v.dtype, v.weak_type))
    ys = [Var((k,) + v.shape, v.dtype, getattr(v, "weak_type", False)) for v in body.outputs[nk:]]
    outs = [fresh(v) if isinstance(v, Var) else Var((), v.dtype) for v in body.outputs[:nk]] + ys
    inner = Eqn("scan", tuple(inputs + xs), tuple(outs), dict(p, length=k, unroll=1), eqn.source)
    g = Graph(tuple(inputs + xs), (), (inner,), tuple(outs))
    return rewrite(g, inline_scan)


# ---------------- cond as a select ----------------

def select_rule(b: Builder, eqn: Eqn):
    if eqn.primitive != "cond":
        return None
    branches = eqn.params["branches"]
    if isinstance(eqn.inputs[0], Literal):  # a known branch (platform_index): inline it
        index = min(max(int(eqn.inputs[0].value), 0), len(branches) - 1)
        return b.inline(branches[index], list(eqn.inputs[1:]))
    cheap = all(e.primitive in FUSIBLE for g in branches for e in g.eqns)
    if not cheap or sum(len(g.eqns) for g in branches) > SELECT_MAX_EQNS:
        return None
    index, operands = eqn.inputs[0], list(eqn.inputs[1:])
    results = [b.inline(g, operands) for g in branches]
    outs = []
    for k, v in enumerate(eqn.outputs):
        cases = [r[k] for r in results]
        if len(cases) == 1:
            outs.append(cases[0])
            continue
        cases = [c if c.shape == v.shape else b.emit(
            "broadcast_in_dim", [c], v.shape, v.dtype, dict(shape=v.shape, broadcast_dimensions=(), sharding=None))
                 for c in cases]
        outs.append(b.emit("select_n", [index] + cases, v.shape, v.dtype, {}, eqn.source, v.weak_type))
    return outs


def select_branches(graph: Graph) -> Graph:
    return rewrite(graph, select_rule, select_branches)


def lower_control(graph: Graph, strategy: str) -> Graph:
    """Every rewrite, in order: branches to selects, invariants out of loops, loops pruned of
    what they do not read or produce for nobody, scans unrolled."""
    return unroll_scans(prune_loops(hoist_invariants(select_branches(graph))), strategy)
