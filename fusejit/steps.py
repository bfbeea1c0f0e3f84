"""Steps that are not fused kernels: one object per equation, built by a rule in STEP_RULES.

  library calls   dot_general, factorisations, sort, gather/scatter (library.py): NumPy on the
                  CPU backends, CuPy (cuBLAS/cuSOLVER) on the GPU
  scan            a host loop over the compiled body (jax's unroll=k: k iterations per step),
                  or a device loop: one kernel runs every iteration (devloop.py)
  while           a host loop (the predicate is computed on the device and read back), or a
                  device loop when the predicate reads scalar carries only (devloop.py)
  cond            the branch chosen on the host from the index read back

Loops preallocate their carries twice (the body reads one set and writes the other) and
their stacked outputs once; each iteration's body writes in place, so no iteration
allocates or copies.  Every step has `run(backend, arrays) -> list of arrays` and
`describe() -> str` (for as_text), and `children` (compiled bodies).
"""
from __future__ import annotations

import dataclasses

import numpy as np

from . import blockloop, devloop, graphs, jaxcompat, launch, library
from .control import blocked_body
from .errors import UnsupportedError
from .ir import Eqn


@dataclasses.dataclass(frozen=True)
class Context:
    """What building a step needs: `compile(graph, name)` compiles a body like the caller."""
    backend: object
    name: str       # an identifier, unique in the program
    compile: object
    scan: str
    index64: bool = False


class LibraryCall:
    library_call = True  # (the runner counts these)

    def __init__(self, eqn: Eqn, backend: str):
        self.primitive = eqn.primitive
        self.rule = library.rule_of(eqn.primitive, backend)
        self.params = eqn.params
        self.out_avals = [(tuple(v.shape), np.dtype(v.dtype)) for v in eqn.outputs]
        self.in_shapes = [tuple(a.shape) for a in eqn.inputs]
        self.children = ()

    def run(self, backend, arrays):
        launch.counter["library"] += 1
        return library.run(self.rule, backend.lib, self.params, self.out_avals, *arrays)

    def prepare(self, backend):
        """`run` as a function of the arrays alone (the program's runner holds np.errstate
        and counts the calls)."""
        return library.prepared(self.primitive, backend.lib, self.params, self.out_avals, self.in_shapes)

    def describe(self) -> str:
        return "library call"


def loop_buffers(backend, vars_, copies: int):
    return [[backend.empty(v.shape, v.dtype) for v in vars_] for _ in range(copies)]


def fresh_outputs(backend, values, inputs):
    """Loop results, copied where they are still the loop's own inputs (no iteration ran)."""
    return [backend.copy(v) if any(v is a for a in inputs) else v for v in values]


class HostScan:
    """A scan run by the host: the body (or a body of k iterations) launched per step."""

    def __init__(self, eqn: Eqn, body, blocked=None, k: int = 1):
        p = eqn.params
        self.eqn, self.body, self.blocked, self.k = eqn, body, blocked, k
        self.length, self.reverse = p["length"], p["reverse"]
        self.nc, self.nk = p["num_consts"], p["num_carry"]
        self.children = (body,) + ((blocked,) if blocked is not None else ())
        self.replayed = (graphs.Replayed() if self.length > 0 and all(graphs.capturable(c) for c in self.children)
                         else None)

    def schedule(self):
        """(compiled body, first iteration, iterations) in the order they run."""
        blocks = self.length // self.k if self.blocked is not None else 0
        rest = range(blocks * self.k, self.length)
        if self.reverse:
            plan = [(self.blocked, self.length - (b + 1) * self.k, self.k) for b in range(blocks)]
            return plan + [(self.body, t, 1) for t in range(self.length - blocks * self.k - 1, -1, -1)]
        return [(self.blocked, b * self.k, self.k) for b in range(blocks)] + [(self.body, t, 1) for t in rest]

    def run(self, backend, arrays):
        if self.replayed is not None and graphs.enabled(backend):
            results = self.replayed.run(backend, arrays, self.allocate, self.iterate)
            if results is not None:
                return results
        state, results = self.allocate(backend, arrays)
        self.iterate(state)
        nk = self.nk
        return fresh_outputs(backend, results[:nk], arrays) + results[nk:]

    def allocate(self, backend, arrays):
        """(state, results): the carries twice, the ys, each body's workspace; the buffers
        that will hold the results once `iterate(state)` has run."""
        nk = self.nk
        buffers = loop_buffers(backend, self.eqn.outputs[:nk], 2)
        ys = [backend.empty(v.shape, v.dtype) for v in self.eqn.outputs[nk:]]
        workspaces = {id(c): c.workspace() for c in self.children}
        steps = len(self.schedule())
        final = buffers[(steps - 1) % 2] if steps else list(arrays[self.nc:self.nc + nk])
        return (arrays, buffers, ys, workspaces), final + ys

    def iterate(self, state):
        arrays, buffers, ys, workspaces = state
        nc, nk = self.nc, self.nk
        consts, carry, xs = list(arrays[:nc]), list(arrays[nc:nc + nk]), arrays[nc + nk:]
        runs = {id(c): c.iteration() for c in self.children}
        for step, (body, t, count) in enumerate(self.schedule()):
            # x[t, ...] is a view even when x[t] would be a scalar (an array of one dimension)
            at = (t, Ellipsis) if count == 1 and body is self.body else slice(t, t + count)
            out = buffers[step % 2] + [y[at] for y in ys]
            runs[id(body)](consts + carry + [x[at] for x in xs], out, workspaces[id(body)])
            carry = buffers[step % 2]

    def describe(self) -> str:
        blocks = f", {self.k} iterations per step" if self.blocked is not None else ""
        replay = "; its launches captured once and replayed as a graph" if self.replayed is not None else ""
        return (f"host loop of {self.length} iteration(s){' (reversed)' if self.reverse else ''}{blocks}: "
                f"{self.body.kernel_count} kernel(s) and {self.body.call_count} other step(s) per iteration"
                f"{replay}")


class WhileLoop:
    """A while loop run by the host: the predicate is read back before every iteration."""

    def __init__(self, eqn: Eqn, cond, body):
        self.eqn, self.cond, self.body = eqn, cond, body
        self.nc, self.nb = eqn.params["cond_nconsts"], eqn.params["body_nconsts"]
        self.children = (cond, body)

    def run(self, backend, arrays):
        nc, nb = self.nc, self.nb
        cond_consts, body_consts, carry = list(arrays[:nc]), list(arrays[nc:nc + nb]), list(arrays[nc + nb:])
        buffers = loop_buffers(backend, self.eqn.outputs, 2)
        cond_space, body_space = self.cond.workspace(), self.body.workspace()
        step = 0
        cond, body = self.cond.iteration(), self.body.iteration()
        while backend.item(cond(cond_consts + carry, None, cond_space)[0]):
            body(body_consts + carry, buffers[step % 2], body_space)
            carry = buffers[step % 2]
            step += 1
        return fresh_outputs(backend, carry, arrays)

    def describe(self) -> str:
        return (f"host while loop: predicate ({self.cond.kernel_count} kernel(s)) read back each iteration, "
                f"body of {self.body.kernel_count} kernel(s) and {self.body.call_count} other step(s)")


class Branch:
    """cond/switch: the index is read back and the chosen branch's program runs."""

    def __init__(self, eqn: Eqn, branches):
        self.branches = tuple(branches)
        self.children = self.branches

    def run(self, backend, arrays):
        index = min(max(int(backend.item(arrays[0])), 0), len(self.branches) - 1)
        return self.branches[index].run_into(list(arrays[1:]), None)

    def describe(self) -> str:
        return f"branch chosen on the host among {len(self.branches)}"


def build_scan(eqn: Eqn, ctx: Context):
    p = eqn.params
    device = devloop.build(eqn, ctx) or blockloop.build(eqn, ctx)
    if device is not None:
        return device
    body = ctx.compile(p["body"], f"{ctx.name}_body")
    k = min(p["unroll"], p["length"])
    if k > 1:
        return HostScan(eqn, body, ctx.compile(blocked_body(eqn, k), f"{ctx.name}_body{k}"), k)
    return HostScan(eqn, body)


def build_while(eqn: Eqn, ctx: Context):
    p = eqn.params
    device = devloop.build_while(eqn, ctx)
    if device is not None:
        return device
    return WhileLoop(eqn, ctx.compile(p["cond"], f"{ctx.name}_cond"), ctx.compile(p["body"], f"{ctx.name}_body"))


def build_cond(eqn: Eqn, ctx: Context):
    return Branch(eqn, [ctx.compile(g, f"{ctx.name}_branch{k}") for k, g in enumerate(eqn.params["branches"])])


class Reshape:
    """A reshape between steps (fusion.step_views): a view of its operand, no copy."""

    def __init__(self, eqn: Eqn):
        self.shape = tuple(eqn.outputs[0].shape)
        self.children = ()

    def run(self, backend, arrays):
        return list(self.prepare(backend)(arrays[0]))

    def prepare(self, backend):
        shape = self.shape
        return lambda x: (x.reshape(shape),)

    def describe(self) -> str:
        return "reshape (a view)"


class Slice:
    """A slice with unit strides that products read (fusion.step_views): a strided view of
    its operand, no copy."""

    def __init__(self, eqn: Eqn):
        self.window = tuple(slice(int(a), int(b)) for a, b in
                            zip(eqn.params["start_indices"], eqn.params["limit_indices"]))
        self.children = ()

    def run(self, backend, arrays):
        return list(self.prepare(backend)(arrays[0]))

    def prepare(self, backend):
        window = self.window
        return lambda x: (x[window],)

    def describe(self) -> str:
        return "slice (a view)"


class HostCallback:
    """A callback into Python (jax.debug.print, debug.callback, pure_callback, io_callback):
    its inputs come to the host as NumPy arrays, JAX's own implementation of the primitive
    calls the user's function, and its results go back to the backend."""

    def __init__(self, eqn: Eqn):
        self.primitive, self.params = eqn.primitive, eqn.params
        self.out_avals = [(v.shape, v.dtype) for v in eqn.outputs]
        self.children = ()

    def run(self, backend, arrays):
        launch.counter["callback"] += 1
        outs = jaxcompat.run_callback(self.primitive, self.params, [backend.to_host(a) for a in arrays])
        for o, (shape, dtype) in zip(outs, self.out_avals):
            if o.shape != tuple(shape) or o.dtype != dtype:
                raise TypeError(f"{self.primitive} returned {o.dtype.name}{list(o.shape)} where its "
                                f"result_shape_dtypes say {np.dtype(dtype).name}{list(shape)}")
        return [backend.asarray(o, dtype) for o, (_, dtype) in zip(outs, self.out_avals)]

    def describe(self) -> str:
        return "callback into Python on the host"


# primitive -> rule(eqn, context) -> step
STEP_RULES = {"scan": build_scan, "while": build_while, "cond": build_cond,
              "reshape": lambda eqn, ctx: Reshape(eqn), "slice": lambda eqn, ctx: Slice(eqn)}
STEP_RULES.update({prim: (lambda eqn, ctx: LibraryCall(eqn, ctx.backend.name)) for prim in library.LIBRARY})
STEP_RULES.update({prim: (lambda eqn, ctx: HostCallback(eqn)) for prim in jaxcompat.CALLBACKS})


def build_step(eqn: Eqn, ctx: Context):
    rule = STEP_RULES.get(eqn.primitive)
    if rule is None:
        raise UnsupportedError(f"fusejit has no rule for primitive '{eqn.primitive}' (backend '{ctx.backend.name}')",
                               primitive=eqn.primitive, source=eqn.source)
    return rule(eqn, ctx)
