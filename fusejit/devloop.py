"""Device loops: a loop whose body is elementwise in its carries runs every iteration inside
one kernel (kernels/loop.cu.in), one launch per call.

Eligible: a scan or a while loop whose body is fusible (elementwise and shape primitives),
whose non-scalar carries (and a scan's stacked outputs) share one shape, and which reads each
non-scalar carry only at the element being computed; a while loop's predicate, besides,
reads scalars only (a counter against a bound).  Each thread then keeps its elements'
carries in registers; consts are read from memory at any index, a scan's xs at iteration t.
Scalar carries (a loop counter) are computed by every thread alike and stored by the first,
so every thread computes the same predicate and runs the same number of iterations.
"""
from __future__ import annotations

import numpy as np

from . import launch as launch_mod
from . import ops
from . import codegen
from .codegen import KernelWriter, Param, fill_kernel, indent, needs_index64
from .control import Builder, fresh
from .fusion import FUSIBLE, KernelSpec, producers
from .indexing import Sym, aff, delinearize, linearize, loop_symbol
from .ir import Graph, Var
from .launch import CUDA_BLOCK, Arg, Launch, Layout
from .templates import IDENTIFIER, declaration, fill


MAX_HOISTED = 16  # values kept per lane across iterations (registers on the GPU)


def hoist_invariants(body: list[str], variant: set[str]) -> tuple[dict, list[str], list[str]]:
    """Split the loop body into what no iteration changes and the rest: (the kept values' C
    types by name, statements computed once per tile in the lane loop, the iteration's body).
    A declaration is invariant when no name it reads is in `variant` (the iteration counters,
    the carries) or declared by a variant statement.  Invariant values the iteration reads are
    kept per lane in arrays of a tile's `lanes`; at most MAX_HOISTED of them, else nothing moves."""
    variant = set(variant)
    once, steps, kept = [], [], {}
    for line in body:
        m = declaration(line)
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


def _iteration_shape(shapes) -> tuple | None:
    """The one shape of the non-scalar carries and stacked outputs (() if none), or None."""
    shapes = {shape for shape in shapes if shape != ()}
    if len(shapes) > 1:
        return None
    return shapes.pop() if shapes else ()


def eligible(eqn) -> tuple | None:
    """The iteration shape of a device loop for this scan, or None."""
    p = eqn.params
    body, nk = p["body"], p["num_carry"]
    if any(e.primitive not in FUSIBLE for e in body.eqns):
        return None
    return _iteration_shape([v.shape for v in eqn.outputs[:nk]] + [v.shape[1:] for v in eqn.outputs[nk:]])


def eligible_while(eqn) -> tuple | None:
    """The iteration shape of a device loop for this while loop, or None: its predicate must
    read scalars only, so that every thread computes it alike, and a loop over no elements
    runs on the host (its scalar carries still iterate)."""
    p = eqn.params
    cond, body = p["cond"], p["body"]
    if any(e.primitive not in FUSIBLE for e in (*cond.eqns, *body.eqns)):
        return None
    if any(isinstance(a, Var) and a.shape != () for e in cond.eqns for a in (*e.inputs, *e.outputs)):
        return None
    shape = _iteration_shape([v.shape for v in eqn.outputs])
    return None if shape is None or 0 in shape else shape


def while_graph(eqn) -> Graph:
    """A while loop's predicate and body as one graph: inputs (the predicate's consts, the
    body's consts, the carries), outputs (the predicate, then the new carries)."""
    p = eqn.params
    nc, nb, cond, body = p["cond_nconsts"], p["body_nconsts"], p["cond"], p["body"]
    inputs = tuple(fresh(v) for v in (*cond.inputs[:nc], *body.inputs))
    consts, carries = list(inputs[:nc + nb]), list(inputs[nc + nb:])
    b = Builder(Graph(inputs, (), (), ()))
    predicate = b.inline(cond, consts[:nc] + carries)
    new = b.inline(body, consts[nc:] + carries)
    return Graph(inputs, tuple(b.consts), tuple(b.eqns), (*predicate, *new))


def _setup(name: str, graph: Graph, shape: tuple, outputs, carries_in, xs_in, length: int, index64_forced: bool):
    """The kernel writer of a loop over `graph` with its carries in registers: (spec, writer,
    the element's index, size, register declarations, loads, stores)."""
    read_inputs = {id(a) for e in graph.eqns for a in e.inputs} | {id(a) for a in graph.outputs}
    carry_ids = {id(v) for v in carries_in}
    sources = tuple(v for v in graph.inputs if id(v) in read_inputs or id(v) in carry_ids) + tuple(
        v for v, _ in graph.consts)
    outs = [Var(v.shape, v.dtype) for v in outputs]  # parameters only: dtypes matter
    spec = KernelSpec(name, "map", shape, tuple(outs), sources, graph.eqns)
    size = int(np.prod(shape, dtype=np.int64))
    w = KernelWriter(spec, producers(graph), index64_forced or needs_index64(spec)
                     or size * max(length, 1) > 2**31 - 1)
    w.var_by_id = {id(v): v for e in graph.eqns for v in e.outputs}
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
        store.append(f"out{k}[i] = carry{k}[lane];" if v.shape else f"if (i == 0) out{k}[0] = carry{k}[lane];")
    w.variant |= {"t", "step", "lane"}
    w.cache = LoopSources(registers, {id(v) for v in xs_in}, length)
    w.body = []
    return spec, w, idx, size, declare, load, store


def _read_all(w, outputs, idx) -> list[str]:
    return [w.read(out, idx if out.shape else ()) if isinstance(out, Var) else ops.c_literal(out.value, out.dtype)
            for out in outputs]


def _next_values(carries_in, ks, values, register: str = "carry{k}[lane]") -> tuple[list[str], list[str]]:
    """The carries ks's next values, declared once every value of the iteration is computed,
    and the statements that put them in their registers."""
    declared = [f"const {ops.ctype(carries_in[k].dtype)} next{k} = {value};" for k, value in zip(ks, values)]
    return declared, [f"{register.format(k=k)} = next{k};" for k in ks]


def _source(w, carries_in, declare, load, store, params, description: str, tile_template: str,
            lane_state=None, **slots) -> str:
    """The kernel's source: values no iteration changes computed once per tile, the tile
    template filled for full and partial tiles.  `lane_state`: the C types of the carries
    kept per lane (default: every carry's)."""
    kept, once, steps = hoist_invariants(w.body, {"t", "step"} | {f"carry{k}" for k in range(len(carries_in))})
    declare = declare + [f"{ctype} {name}_lanes[lanes];" for name, ctype in kept.items()]
    state = (lane_state if lane_state is not None else [ops.ctype(v.dtype) for v in carries_in]) + list(kept.values())
    tile = {"declare": indent(declare, 0), "load": indent(load + once, 1), "body": indent(steps, 2),
            "store": indent(store, 1), **slots}
    return fill_kernel(
        w, "loop.cu.in", description, CUDA_BLOCK, params,
        state=" + ".join(f"sizeof({ctype})" for ctype in state) or "0",
        full=indent(fill(tile_template, width="full", **tile).splitlines(), 3),
        partial=indent(fill(tile_template, width="width", **tile).splitlines(), 3))


def render(eqn, name: str, index64_forced: bool):
    p = eqn.params
    body, length, nc, nk = p["body"], p["length"], p["num_consts"], p["num_carry"]
    shape = eligible(eqn)
    carries_in, xs_in = body.inputs[nc:nc + nk], body.inputs[nc + nk:]
    spec, w, idx, size, declare, load, store = _setup(name, body, shape, eqn.outputs, carries_in, xs_in, length,
                                                      index64_forced)
    own = linearize(idx, shape)
    new_values = _read_all(w, body.outputs, idx)
    ys = []
    for j, (y, value) in enumerate(zip(eqn.outputs[nk:], new_values[nk:])):
        target = f"out{nk + j}[{w.index(w.cache.t * size + own) if y.shape[1:] else 't'}] = {value};"
        ys.append(target if y.shape[1:] else f"if (i == 0) {target}")
    declared, updates = _next_values(carries_in, range(nk), new_values[:nk])
    w.body += declared + ys + updates
    params = w.buffer_params() + [Param("scalar", "n", w.index_ctype, value=size),
                                  Param("scalar", "length", w.index_ctype, value=length)]
    source = _source(w, carries_in, declare, load, store, params,
                     f"{length} iteration(s){' (reversed)' if p['reverse'] else ''} of a scan over {list(shape)}, "
                     f"{len(carries_in)} carry(ies) in registers", "loop_tile.cu.in",
                     iteration="length - 1 - step" if p["reverse"] else "step")
    return spec, source, params, w.index64, size


def render_while(eqn, graph: Graph, name: str, index64_forced: bool):
    """A while loop's kernel (`graph`: its while_graph).  Its scalar carries are the same in
    every lane and thread: one variable each per tile, from which the predicate is computed
    before an iteration and their next values after it; the other carries are kept per lane."""
    shape = eligible_while(eqn)
    nconsts = eqn.params["cond_nconsts"] + eqn.params["body_nconsts"]
    carries_in = graph.inputs[nconsts:]
    spec, w, idx, size, declare, load, store = _setup(name, graph, shape, eqn.outputs, carries_in, (), 1,
                                                      index64_forced)
    scalars = [k for k, v in enumerate(carries_in) if v.shape == ()]
    scalar_load, scalar_store = [], []
    for k in scalars:
        v = carries_in[k]
        w.cache.carries[id(v)] = (f"carry{k}", aff(0))
        w.variant.add(f"carry{k}")
        declare[k] = f"{ops.ctype(v.dtype)} carry{k};"
        scalar_load.append(f"carry{k} = {w.source_names[id(v)]}[0];")
        scalar_store.append(f"if (i0 == 0) out{k}[0] = carry{k};")
    lane_only = [k for k in range(len(carries_in)) if k not in scalars]
    load, store = [load[k] for k in lane_only], [store[k] for k in lane_only]

    def lines_of(outputs, index) -> tuple[list[str], list[str]]:
        """The statements computing `outputs` and their values; a fresh scope after."""
        values = _read_all(w, outputs, index)
        lines, w.body = w.body, []
        w.memo.clear()
        return lines, values

    predicate_lines, (predicate,) = lines_of(graph.outputs[:1], ())
    scalar_lines, scalar_values = lines_of([graph.outputs[1 + k] for k in scalars], ())
    declared, updates = _next_values(carries_in, scalars, scalar_values, "carry{k}")
    scalar_lines += declared + updates
    lane_values = _read_all(w, [graph.outputs[1 + k] for k in lane_only], idx)
    declared, updates = _next_values(carries_in, lane_only, lane_values)
    w.body += declared + updates
    params = w.buffer_params() + [Param("scalar", "n", w.index_ctype, value=size)]
    source = _source(w, carries_in, declare, load, store, params,
                     f"a while loop over {list(shape)}, {len(carries_in)} carry(ies) in registers",
                     "while_tile.cu.in", lane_state=[ops.ctype(carries_in[k].dtype) for k in lane_only],
                     predicate=indent(predicate_lines + [f"go = {predicate};"], 2),
                     scalars=indent(scalar_lines, 2), scalar_load=indent(scalar_load, 0),
                     scalar_store=indent(scalar_store, 0))
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


class DeviceLoop:
    """A loop run by one kernel launch.  `inputs`: the positions, among the loop's operands,
    of the kernel's sources (then its graph's consts, then its outputs)."""

    def __init__(self, eqn, backend, spec, source, params, index64, size, graph, describe: str):
        self.eqn, self.source, self.size, self.description = eqn, source, size, describe
        self.module_source, self.module, self.launch, self.call = one_kernel(
            backend, spec, source, params, index64, size, lambda device: device.grid(size))
        self.inputs = [k for k, v in enumerate(graph.inputs) if any(v is s for s in spec.sources)]
        self.consts = [backend.upload(arr) for _, arr in graph.consts]
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
        return f"{self.description} in one kernel ({self.launch.kernel})"


def build(eqn, ctx):
    """A DeviceLoop for this scan, or None when its body needs a host loop."""
    if eligible(eqn) is None or eqn.params["length"] == 0:
        return None
    try:
        rendered = render(eqn, f"fj_{ctx.name}_loop", ctx.index64)
    except NotDeviceLoop:
        return None
    return DeviceLoop(eqn, ctx.backend, *rendered, eqn.params["body"],
                      f"device loop: {eqn.params['length']} iteration(s)")


def build_while(eqn, ctx):
    """A DeviceLoop for this while loop, or None when it needs a host loop."""
    if eligible_while(eqn) is None:
        return None
    graph = while_graph(eqn)
    try:
        rendered = render_while(eqn, graph, f"fj_{ctx.name}_loop", ctx.index64)
    except NotDeviceLoop:
        return None
    return DeviceLoop(eqn, ctx.backend, *rendered, graph, "device while loop: every iteration")
