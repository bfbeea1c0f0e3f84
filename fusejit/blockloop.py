"""Block loops: a scan over small arrays runs every iteration inside one block of one kernel
(kernels/block_loop.cu.in), one launch per call.

The seed notebook's loop is the example: B @ x + solve(A, x) + norm(x) on 50 elements, with
the LU factorisation hoisted out.  Its body's values live in shared memory; each *step*
computes one of them with the whole block, and a barrier separates the steps:
  map      an elementwise value that a matrix product or a solve reads (computed once)
  reduce   a reduction: a thread per output element, its elements in FJ_LANES accumulators
  dot      dot_general: a thread per output element, the contraction in order
  solve    triangular_solve (left side, one matrix): a thread per right-hand side
  carry    the new carries (into the second buffer) and this iteration's ys (to memory)
Elementwise and indexing work is fused into the steps' reads, as in any kernel.  Eligible:
the body has only those primitives, its values and carries fit in SHARED_BYTES, and an
iteration does at most WORK_MAX multiply-adds (beyond that, library calls on a GPU win).
"""
from __future__ import annotations

import math

from . import launch as launch_mod, ops
from .codegen import KernelWriter, Param, fill_kernel, indent
from .fusion import FUSIBLE, REDUCTIONS, KernelSpec, producers
from .indexing import Sym, aff, delinearize, linearize
from .ir import Literal, Var
from .launch import CUDA_BLOCK
from .devloop import one_kernel
from .accumulators import Reduction
from .templates import fill

SHARED_BYTES = 32 * 1024
WORK_MAX = 1 << 20
HEAVY = REDUCTIONS | {"dot_general", "triangular_solve"}


def loop(name: str, extent: int):
    return aff(Sym("loop", (name,), 0, max(extent - 1, 0)))


class BlockSources:
    """The writer's reads of the body's inputs and stored values: carries and stored values
    from shared memory (never loop-invariant), xs at iteration t."""

    def __init__(self, shared: dict, xs: dict, length: int):
        self.shared = shared    # value id -> shared array (a pointer for carries)
        self.xs = xs            # xs id -> parameter name
        self.t = loop("t", length)

    def load(self, w, var, idx):
        if id(var) in self.shared:
            name = self.shared[id(var)]
        elif id(var) in self.xs:
            name = self.xs[id(var)]
        else:
            return None
        address = linearize(idx, var.shape)
        if id(var) in self.xs:
            address = address + self.t * var.size
        return w.emit("x", ops.ctype(var.dtype), f"{name}[{w.index(address)}]")

    def loaded(self, w, var, idx, name):
        pass


def stored_values(body, nc: int) -> list[Var]:
    """The values steps store in shared memory, in the order computed: every output of a heavy
    primitive, and the computed operands of matrix products and solves."""
    inputs = {id(v) for v in body.inputs} | {id(v) for v, _ in body.consts}
    prod = producers(body)
    stored: dict[int, Var] = {}
    for e in body.eqns:
        if e.primitive in ("dot_general", "triangular_solve"):
            for a in e.inputs:
                if isinstance(a, Var) and id(a) not in inputs:
                    stored.setdefault(id(a), a)
        if e.primitive in HEAVY:
            for v in e.outputs:
                stored.setdefault(id(v), v)
    order = {id(e): k for k, e in enumerate(body.eqns)}
    return sorted(stored.values(), key=lambda v: order[id(prod[id(v)][0])])


def work(eqn) -> int:
    """Multiply-adds of one heavy equation."""
    if eqn.primitive == "dot_general":
        (contract, _), _ = eqn.params["dimension_numbers"]
        return eqn.outputs[0].size * math.prod(eqn.inputs[0].shape[d] for d in contract)
    if eqn.primitive == "triangular_solve":
        return eqn.inputs[0].shape[-1] ** 2 * eqn.inputs[1].size
    return eqn.inputs[0].size


def eligible(eqn) -> bool:
    p = eqn.params
    body, nc, nk = p["body"], p["num_consts"], p["num_carry"]
    if p["length"] == 0:
        return False
    for e in body.eqns:
        if e.primitive not in FUSIBLE | HEAVY:
            return False
        if e.primitive == "triangular_solve" and (not e.params["left_side"] or e.inputs[0].ndim != 2
                                                   or e.inputs[1].ndim != 2 or e.params.get("conjugate_a")):
            return False
        if e.primitive == "dot_general" and e.outputs[0].dtype.kind == "b":
            return False
    if sum(work(e) for e in body.eqns if e.primitive in HEAVY) > WORK_MAX:
        return False
    carries = body.inputs[nc:nc + nk]
    shared = sum(v.size * v.dtype.itemsize for v in stored_values(body, nc)) + \
        2 * sum(v.size * v.dtype.itemsize for v in carries)
    return shared <= SHARED_BYTES


class Steps:
    """Renders the steps of one iteration with one writer."""

    def __init__(self, w: KernelWriter, buffers: dict):
        self.w = w
        self.buffers = buffers  # stored value id -> shared array name

    def scope(self):
        self.w.new_scope()
        self.w.body = []
        return self.w.body

    def map_step(self, v: Var, target: str, comment: str) -> str:
        w = self.w
        body = self.scope()
        idx = delinearize(loop("e", v.size), v.shape)
        body.append(f"{target}[{w.index(linearize(idx, v.shape))}] = {w.read_output(v, idx)};")
        return fill("block_step_map.cu.in", comment=comment, size=str(v.size), body=indent(body, 4))

    def reduce_step(self, k: int, v: Var, eqn) -> str:
        w = self.w
        red = Reduction(k, v, eqn, None)
        axes = tuple(sorted(int(a) for a in eqn.params["axes"]))
        operand = eqn.inputs[0]
        count = math.prod(operand.shape[a] for a in axes)
        out_idx = iter(delinearize(loop("e", v.size), v.shape))
        red_idx = iter(delinearize(loop("r", count), tuple(operand.shape[a] for a in axes)))
        element = tuple(next(red_idx) if d in axes else next(out_idx) for d in range(operand.ndim))
        body = self.scope()
        body.append(red.step(*red.lane("l"), red.read(w, element)))
        rest_body = self.scope()
        rest_body.append(red.step(*red.lane("0"), red.read(w, element)))
        finish = red.fold_lanes() + red.result() + [f"{self.buffers[id(v)]}[e] = res{k};"]
        return fill("block_step_reduce.cu.in", comment=eqn.primitive, size=str(v.size), count=str(count),
                    init=indent(red.declare_lanes(), 4), body=indent(body, 6), rest_body=indent(rest_body, 5),
                    finish=indent(finish, 4))

    def dot_step(self, k: int, v: Var, eqn) -> str:
        w = self.w
        lhs, rhs = eqn.inputs
        (lc, rc), (lb, rb) = eqn.params["dimension_numbers"]
        lf = [d for d in range(lhs.ndim) if d not in lc and d not in lb]
        rf = [d for d in range(rhs.ndim) if d not in rc and d not in rb]
        count = math.prod(lhs.shape[d] for d in lc)
        out = list(delinearize(loop("e", v.size), v.shape))
        contraction = list(delinearize(loop("r", count), tuple(lhs.shape[d] for d in lc)))
        li, ri = [aff(0)] * lhs.ndim, [aff(0)] * rhs.ndim
        for j, (a, b) in enumerate(zip(lb, rb)):
            li[a] = ri[b] = out[j]
        for j, d in enumerate(lf):
            li[d] = out[len(lb) + j]
        for j, d in enumerate(rf):
            ri[d] = out[len(lb) + len(lf) + j]
        for j, (a, b) in enumerate(zip(lc, rc)):
            li[a] = ri[b] = contraction[j]
        t = ops.ctype(v.dtype)
        body = self.scope()
        x, y = w.read(lhs, tuple(li)), w.read(rhs, tuple(ri))
        x = x if lhs.dtype == v.dtype else f"fj_convert<{t}>({x})"
        y = y if rhs.dtype == v.dtype else f"fj_convert<{t}>({y})"
        if ops.is_float(v.dtype):
            body.append(f"acc{k} = acc{k} + {x} * {y};  // dot_general")
        else:
            body.append(f"acc{k} = fj_add(acc{k}, fj_mul({x}, {y}));  // dot_general")
        return fill("block_step_dot.cu.in", comment="dot_general", size=str(v.size), count=str(count),
                    init=indent([f"{t} acc{k} = {ops.c_literal(0, v.dtype)};"], 4), body=indent(body, 5),
                    finish=indent([f"{self.buffers[id(v)]}[e] = acc{k};"], 4))

    def solve_step(self, k: int, v: Var, eqn) -> str:
        """op(A) X = B for X (left side): rows in order (lower) or in reverse (upper)."""
        w = self.w
        a, b = eqn.inputs
        p = eqn.params
        rows, columns = b.shape
        lower = bool(p["lower"]) != bool(p["transpose_a"])  # the triangle op(A) has
        transpose = bool(p["transpose_a"])
        row = aff(Sym("loop", ("row",), 0, rows - 1))
        col = aff(Sym("loop", ("col",), 0, columns - 1))
        kk = aff(Sym("loop", ("k",), 0, rows - 1))
        w.variant |= {"row", "col", "k", "s", "q", "acc"}
        t = ops.ctype(v.dtype)
        rhs = self.scope()
        b_value = w.read(b, (row, col))
        body = self.scope()
        a_value = w.read(a, (kk, row) if transpose else (row, kk))
        diagonal = []
        result = "acc"
        if not p["unit_diagonal"]:
            diagonal = self.scope()
            d_value = w.read(a, (row, row))
            result = f"acc / {d_value}"
        out = self.buffers[id(v)]
        return fill("block_step_solve.cu.in", comment="triangular_solve", order="forward" if lower else "backward",
                    columns=str(columns), rows=str(rows), row="s" if lower else f"{rows - 1} - s",
                    k="q" if lower else f"{rows - 1} - q", rhs=indent(rhs, 5), acc_t=t, b=b_value,
                    body=indent(body, 6), a=a_value, x=f"{out}[k * {columns} + col]", diagonal=indent(diagonal, 5),
                    out=out, result=result)


def render(eqn, name: str, index64: bool):
    p = eqn.params
    body, length, nc, nk = p["body"], p["length"], p["num_consts"], p["num_carry"]
    consts, carries, xs = body.inputs[:nc], body.inputs[nc:nc + nk], body.inputs[nc + nk:]
    stored = stored_values(body, nc)
    graph_consts = [v for v, _ in body.consts]
    sources = tuple(consts) + tuple(carries) + tuple(xs) + tuple(stored) + tuple(graph_consts)
    spec = KernelSpec(name, "map", (), (), sources, body.eqns)
    w = KernelWriter(spec, producers(body), index64)
    w.var_by_id = {id(v): v for e in body.eqns for v in e.outputs}
    w.source_names = {id(v): f"c{k}" for k, v in enumerate(tuple(consts) + tuple(graph_consts))}
    w.variant |= {"t", "step", "e", "r"}
    buffers = {id(v): f"buf{k}" for k, v in enumerate(stored)}
    shared_names = dict(buffers)
    shared_names.update({id(v): f"cur{k}" for k, v in enumerate(carries)})
    w.source_names.update({i: n for i, n in shared_names.items()})
    xs_names = {id(v): f"xs{k}" for k, v in enumerate(xs)}
    w.source_names.update(xs_names)
    w.cache = BlockSources(shared_names, xs_names, length)
    steps = Steps(w, buffers)
    shared = [f"__shared__ {ops.ctype(v.dtype)} buf{k}[{max(v.size, 1)}];" for k, v in enumerate(stored)]
    pointers, start, finish, swap = [], [], [], []
    for k, v in enumerate(carries):
        ct = ops.ctype(v.dtype)
        shared += [f"__shared__ {ct} carry{k}_a[{max(v.size, 1)}];", f"__shared__ {ct} carry{k}_b[{max(v.size, 1)}];"]
        pointers += [f"{ct}* cur{k} = carry{k}_a;", f"{ct}* next{k} = carry{k}_b;"]
        swap += [f"{ct}* const done{k} = cur{k};", f"cur{k} = next{k};", f"next{k} = done{k};"]
        start.append(outdent(fill("block_step_map.cu.in", comment=f"carry {k} from memory", size=str(v.size),
                                  body=indent([f"cur{k}[e] = init{k}[e];"], 4))))
        finish.append(outdent(fill("block_step_map.cu.in", comment=f"carry {k} to memory", size=str(v.size),
                                   body=indent([f"out{k}[e] = cur{k}[e];"], 4))))
    text = []
    prod = producers(body)
    for k, v in enumerate(stored):
        eqn_v = prod[id(v)][0]
        if eqn_v.primitive == "dot_general":
            text.append(steps.dot_step(k, v, eqn_v))
        elif eqn_v.primitive == "triangular_solve":
            text.append(steps.solve_step(k, v, eqn_v))
        elif eqn_v.primitive in HEAVY:
            text.append(steps.reduce_step(k, v, eqn_v))
        else:
            text.append(steps.map_step(v, buffers[id(v)], f"{eqn_v.primitive}: an operand kept for reuse"))
    new_carry = {}
    for k, (v, out) in enumerate(zip(carries, body.outputs[:nk])):
        new_carry[k] = carry_step(steps, v, out, f"next{k}", f"new carry {k}")
    text += list(new_carry.values())
    for j, (y, out) in enumerate(zip(eqn.outputs[nk:], body.outputs[nk:])):
        text.append(carry_step(steps, Var(y.shape[1:], y.dtype), out, f"ys{j}", f"ys {j} at iteration t", ys=True))
    params = ([Param("in", f"c{k}", f"const {ops.ctype(v.dtype)}*", v) for k, v in enumerate(list(consts) + graph_consts)]
              + [Param("in", f"init{k}", f"const {ops.ctype(v.dtype)}*", v) for k, v in enumerate(carries)]
              + [Param("in", f"xs{k}", f"const {ops.ctype(v.dtype)}*", v) for k, v in enumerate(xs)]
              + [Param("out", f"out{k}", f"{ops.ctype(v.dtype)}*", v) for k, v in enumerate(eqn.outputs[:nk])]
              + [Param("out", f"ys{j}", f"{ops.ctype(v.dtype)}*", v) for j, v in enumerate(eqn.outputs[nk:])]
              + [Param("scalar", "length", w.index_ctype, value=length)])
    source = fill_kernel(
        w, "block_loop.cu.in", f"{length} iteration(s){' (reversed)' if p['reverse'] else ''} of a scan over "
        f"small arrays in one block: {len(stored)} step(s) and the carries per iteration", CUDA_BLOCK, params,
        min_blocks=1, shared=indent(shared, 1), pointers=indent(pointers, 2), start="".join(start),
        iteration="length - 1 - step" if p["reverse"] else "step", steps="".join(text), swap=indent(swap, 3),
        finish="".join(finish))
    return spec, source, params, w.index64, stored, list(consts) + graph_consts


def outdent(text: str) -> str:
    """A step's text one level out (before and after the loop over iterations)."""
    return "".join(line[2:] + "\n" if line.startswith("  ") else line + "\n" for line in text.splitlines())


def carry_step(steps: Steps, shape_var: Var, out, target: str, comment: str, ys: bool = False) -> str:
    """Writes a body output (a new carry, or this iteration's ys at row t) at every element."""
    w = steps.w
    body = steps.scope()
    idx = delinearize(loop("e", shape_var.size), shape_var.shape)
    value = ops.c_literal(out.value, out.dtype) if isinstance(out, Literal) else w.read(out, idx if out.shape else ())
    address = linearize(idx, shape_var.shape)
    if ys:
        address = address + loop("t", 1 << 30) * shape_var.size
    body.append(f"{target}[{w.index(address)}] = {value};")
    return fill("block_step_map.cu.in", comment=comment, size=str(shape_var.size), body=indent(body, 4))


class BlockScan:
    """A scan run by one launch of one block."""

    def __init__(self, eqn, backend, spec, source, params, index64, stored, consts):
        self.eqn, self.source = eqn, source
        self.module_source, self.module, self.launch, self.call = one_kernel(
            backend, spec, source, params, index64, 1, lambda device: 1)
        p = eqn.params
        body, nc = p["body"], p["num_consts"]
        self.n_consts = nc
        self.graph_consts = [backend.upload(arr) for _, arr in body.consts]
        self.children = ()

    def run(self, backend, arrays):
        outs = [backend.empty(v.shape, v.dtype) for v in self.eqn.outputs]
        env = list(arrays[:self.n_consts]) + self.graph_consts + list(arrays[self.n_consts:]) + outs
        launch_mod.counter["kernels"] += 1
        self.call(env)
        return outs

    def describe(self) -> str:
        return f"block loop: {self.eqn.params['length']} iteration(s) in one block of one kernel ({self.launch.kernel})"


def build(eqn, ctx):
    """A BlockScan for this scan, or None when it is not over small arrays."""
    if not eligible(eqn):
        return None
    index64 = ctx.index64
    return BlockScan(eqn, ctx.backend, *render(eqn, f"fj_{ctx.name}_block", index64))
