"""Device loops: a scan whose body is elementwise in its carries runs every iteration inside
one kernel (kernels/loop.cu.in), one launch per call.

Eligible: the body is fusible (elementwise and shape primitives), its non-scalar carries and
stacked outputs share one shape, and it reads each non-scalar carry only at the element being
computed.  Each thread then keeps its elements' carries in registers; consts are read from
memory at any index, xs at iteration t.  Scalar carries (a loop counter) are computed by every
thread alike and stored by the first.
"""
from __future__ import annotations

import re

import numpy as np

from . import launch as launch_mod
from . import ops
from . import codegen
from .codegen import KernelWriter, Param, fill_kernel, indent, needs_index64
from .fusion import FUSIBLE, KernelSpec, producers
from .indexing import Sym, aff, delinearize, linearize, loop_symbol
from .ir import Var
from .launch import CUDA_BLOCK, Arg, Launch, Layout
from .templates import fill


MAX_HOISTED = 16  # values kept per lane across iterations (registers on the GPU)
DECLARATION = re.compile(r"const (.+) (\w+) = (.*);")
IDENTIFIER = re.compile(r"\b[A-Za-z_]\w*\b")


def hoist_invariants(body: list[str], variant: set[str]) -> tuple[dict, list[str], list[str]]:
    """Split the loop body into what no iteration changes and the rest: (the kept values' C
    types by name, statements computed once per tile in the lane loop, the iteration's body).
    A declaration is invariant when no name it reads is in `variant` (the iteration counters,
    the carries) or declared by a variant statement.  Invariant values the iteration reads are
    kept per lane in arrays of a tile's `lanes`; at most MAX_HOISTED of them, else nothing moves."""
    variant = set(variant)
    once, steps, kept = [], [], {}
    for line in body:
        m = DECLARATION.fullmatch(line.split("  //")[0])
        reads = set(IDENTIFIER.findall(m.group(3) if m else line.split("  //")[0]))
        if m and not reads & variant:
            once.append(line)
            kept[m.group(2)] = m.group(1)
            continue
        steps.append(line)
        if m:
            variant.add(m.group(2))
    used = {name for line in steps for name in IDENTIFIER.findall(line.split("  //")[0])}
    kept = {name: ctype for name, ctype in kept.items() if name in used}
    if not once or len(kept) > MAX_HOISTED:
        return {}, [], body
    once += [f"{name}_lanes[lane] = {name};" for name in kept]
    steps = [f"const {ctype} {name} = {name}_lanes[lane];" for name, ctype in kept.items()] + steps
    return kept, once, steps


class NotDeviceLoop(Exception):
    """The body reads a carry at another element's index: it needs a host loop."""


class LoopSources:
    """How the kernel reads the body's inputs: carries from registers, xs at iteration t."""

    def __init__(self, carries: dict, xs: set, length: int):
        self.carries = carries  # id(var) -> (register name, the address of the element's own value)
        self.xs = xs
        self.t = aff(Sym("loop", ("t",), 0, max(length - 1, 0)))

    def load(self, w, var, idx):
        if id(var) not in self.carries and id(var) not in self.xs:
            return None
        address = linearize(idx, var.shape)
        if id(var) in self.carries:
            name, own = self.carries[id(var)]
            if address != own:
                raise NotDeviceLoop("a carry is read at another element's index")
            return name
        address = address + self.t * var.size  # xs: this iteration's row
        name = w.emit("x", ops.ctype(var.dtype), f"{w.source_names[id(var)]}[{w.index(address)}]")
        w.loads += 1
        return name

    def loaded(self, w, var, idx, name):
        pass


def eligible(eqn) -> tuple | None:
    """The iteration shape of a device loop for this scan, or None."""
    p = eqn.params
    body, nk = p["body"], p["num_carry"]
    if any(e.primitive not in FUSIBLE for e in body.eqns):
        return None
    shapes = {v.shape for v in eqn.outputs[:nk] if v.shape != ()}
    shapes |= {v.shape[1:] for v in eqn.outputs[nk:] if v.shape[1:] != ()}
    if len(shapes) > 1:
        return None
    return shapes.pop() if shapes else ()


def render(eqn, name: str, index64_forced: bool):
    p = eqn.params
    body, length, nc, nk = p["body"], p["length"], p["num_consts"], p["num_carry"]
    shape = eligible(eqn)
    carries_in, xs_in = body.inputs[nc:nc + nk], body.inputs[nc + nk:]
    read_inputs = {id(a) for e in body.eqns for a in e.inputs} | {id(a) for a in body.outputs}
    sources = tuple(v for v in body.inputs if id(v) in read_inputs or v in carries_in) + tuple(v for v, _ in body.consts)
    outs = [Var(v.shape, v.dtype) for v in eqn.outputs]  # parameters only: dtypes matter
    spec = KernelSpec(name, "map", shape, tuple(outs), sources, body.eqns)
    size = int(np.prod(shape, dtype=np.int64))
    w = KernelWriter(spec, producers(body), index64_forced or needs_index64(spec)
                     or size * max(length, 1) > 2**31 - 1)
    w.var_by_id = {id(v): v for e in body.eqns for v in e.outputs}
    idx = delinearize(loop_symbol(size), shape)
    own = linearize(idx, shape)
    registers = {}
    declare, load, store = [], [], []
    for k, v in enumerate(carries_in):
        reg = f"carry{k}[lane]"
        registers[id(v)] = (reg, own if v.shape else aff(0))
        w.variant.add(reg)
        source = w.source_names[id(v)]
        declare.append(f"{ops.ctype(v.dtype)} carry{k}[lanes];")
        load.append(f"{reg} = {source}[{'i' if v.shape else '0'}];")
    w.variant |= {"t", "step", "lane"}
    w.cache = LoopSources(registers, {id(v) for v in xs_in}, length)
    w.body = []
    new_values = []
    for k, out in enumerate(body.outputs):
        value = w.read(out, idx if out.shape else ()) if isinstance(out, Var) else ops.c_literal(out.value, out.dtype)
        new_values.append(value)
    updates = []
    for k, (v, value) in enumerate(zip(carries_in, new_values[:nk])):
        nxt = f"next{k}"
        w.body.append(f"const {ops.ctype(v.dtype)} {nxt} = {value};")
        updates.append(f"carry{k}[lane] = {nxt};")
    for j, (y, value) in enumerate(zip(eqn.outputs[nk:], new_values[nk:])):
        target = f"out{nk + j}[{w.index(w.cache.t * size + own) if y.shape[1:] else 't'}] = {value};"
        w.body.append(target if y.shape[1:] else f"if (i == 0) {target}")
    w.body += updates
    kept, once, steps = hoist_invariants(w.body, {"t", "step"} | {f"carry{k}" for k in range(len(carries_in))})
    declare += [f"{ctype} {name}_lanes[lanes];" for name, ctype in kept.items()]
    load += once
    state = [ops.ctype(v.dtype) for v in carries_in] + list(kept.values())
    for k, v in enumerate(carries_in):
        store.append(f"out{k}[i] = carry{k}[lane];" if v.shape else f"if (i == 0) out{k}[0] = carry{k}[lane];")
    params = w.buffer_params() + [Param("scalar", "n", w.index_ctype, value=size),
                                  Param("scalar", "length", w.index_ctype, value=length)]
    tile = {"declare": indent(declare, 0), "load": indent(load, 1), "body": indent(steps, 2),
            "store": indent(store, 1), "iteration": "length - 1 - step" if p["reverse"] else "step"}
    source = fill_kernel(
        w, "loop.cu.in", f"{length} iteration(s){' (reversed)' if p['reverse'] else ''} of a scan over "
        f"{list(shape)}, {len(carries_in)} carry(ies) in registers", CUDA_BLOCK, params,
        state=" + ".join(f"sizeof({ctype})" for ctype in state) or "0",
        full=indent(fill("loop_tile.cu.in", width="full", **tile).splitlines(), 3),
        partial=indent(fill("loop_tile.cu.in", width="width", **tile).splitlines(), 3))
    return spec, source, params, w.index64, size


def one_kernel(backend, spec, source, params, index64, size, grid):
    """A module of one kernel, compiled, with its launch bound: (module source, module, launch,
    call).  Its buffers are the non-scalar params in order (env slots 0, 1, ...); `grid(device)`
    gives the blocks."""
    module_source = codegen.render_module([codegen.RenderedKernel(
        spec, source, tuple(params), index64, 0, 0, CUDA_BLOCK, Layout("map", size))])
    module = backend.compile(module_source, [spec.name])
    device = backend.device_info()
    block = 1 if device.kind == "host" else CUDA_BLOCK
    index_dtype = np.dtype(np.int64 if index64 else np.int32)
    buffers = [p for p in params if p.kind != "scalar"]
    args = tuple(Arg(slot=k) for k in range(len(buffers))) + tuple(
        Arg(dtype=index_dtype, value=p.value) for p in params if p.kind == "scalar")
    outputs = tuple(k for k, p in enumerate(buffers) if p.kind == "out")
    launch = Launch(spec.name, grid(device), block, args, size, outputs)
    return module_source, module, launch, backend.bind(module, launch)


class DeviceScan:
    """A scan run by one kernel launch."""

    def __init__(self, eqn, backend, spec, source, params, index64, size):
        self.eqn, self.source, self.size = eqn, source, size
        self.module_source, self.module, self.launch, self.call = one_kernel(
            backend, spec, source, params, index64, size, lambda device: device.grid(size))
        self.inputs = [k for k, v in enumerate(eqn.params["body"].inputs) if any(v is s for s in spec.sources)]
        self.consts = [backend.upload(arr) for _, arr in eqn.params["body"].consts]
        self.children = ()

    def run(self, backend, arrays):
        outs = [backend.empty(v.shape, v.dtype) for v in self.eqn.outputs]
        if self.size == 0:
            return outs
        env = [arrays[k] for k in self.inputs] + self.consts + outs
        launch_mod.counter["kernels"] += 1
        self.call(env)
        return outs

    def describe(self) -> str:
        p = self.eqn.params
        return f"device loop: {p['length']} iteration(s) in one kernel ({self.launch.kernel})"


def build(eqn, ctx):
    """A DeviceScan for this scan, or None when its body needs a host loop."""
    if eligible(eqn) is None or eqn.params["length"] == 0:
        return None
    try:
        rendered = render(eqn, f"fj_{ctx.name}_loop", ctx.index64)
    except NotDeviceLoop:
        return None
    return DeviceScan(eqn, ctx.backend, *rendered)
