"""Fusion: partition a Graph into kernels.

Every elementwise and shape primitive is *fusible*: a kernel computes it inline,
reading the inputs it needs at mapped indices.  A value is *stored* when it is a
graph output or a cut (a value too costly to recompute, chosen by
`plan_kernels`).  A value is a *source* of a kernel when the kernel reads it from
memory: a graph input, a constant, or a cut.  Stored values are grouped into one
kernel per (stage, shape), where the stage counts the cuts between a value and
the graph's inputs, so several outputs of one shape come from one kernel.

Reductions of one operand shape over the same axes form a *row family*: the
reductions of later stages (softmax's sum after its max), the elementwise values of
the operand's shape computed from them (softmax's quotient) and those of the rows'
shape (the epilogue: `mean = sum / n`) join the first reduction's kernel, which
computes them phase by phase, one row per team of threads.
"""
from __future__ import annotations

import dataclasses

from .errors import UnsupportedError
from .ir import Eqn, Graph, Var
from . import ops
from .topk import MAX_TOP_K
from .scatter import COMBINE, fusible_scatter
from .windowmaps import WINDOW_REDUCTIONS, fusible_window

SHAPE_PRIMITIVES = {
    "broadcast_in_dim", "reshape", "squeeze", "expand_dims", "slice", "rev", "transpose",
    "concatenate", "stack", "pad", "iota", "tile", "split",
    # indexing with indices read at run time: still a load at a computed index
    "gather", "dynamic_slice", "dynamic_update_slice",
}
# Reductions: computed by a block-cooperative kernel that fuses the operand's producers.
REDUCTIONS = {"reduce_sum", "reduce_max", "reduce_min", "reduce_prod", "reduce_and", "reduce_or",
              "reduce_xor", "argmax", "argmin"}
# Cumulative ops: a block-per-row scan kernel that fuses the operand's producers.
SCANS = {"cumsum", "cumprod", "cummax", "cummin", "cumlogsumexp"}
# Selections: a thread-per-row top-k kernel that fuses the operand's producers (topk.py).
SELECTIONS = {"top_k"}
# Scatters: one block applies the updates in order, fusing the operand's, the indices' and
# the updates' producers (scatter.py); a large one or another form is a library call.
SCATTERS = set(COMBINE)
FUSIBLE = set(ops.ELEMENTWISE) | ops.EXPANDED | SHAPE_PRIMITIVES
SUPPORTED = FUSIBLE | REDUCTIONS | SCANS | SELECTIONS


@dataclasses.dataclass(frozen=True, eq=False)
class KernelSpec:
    name: str
    kind: str                     # 'map' | 'reduce' | 'scan' | 'top_k' | 'scatter'
    shape: tuple[int, ...]        # the iteration shape: map/scan/top_k outputs, reduce rows
    outputs: tuple[Var, ...]      # values the kernel stores, in order
    sources: tuple[Var, ...]      # values the kernel loads, in order of first use
    eqns: tuple[Eqn, ...]         # the fused equations, in graph order
    reduce_axes: tuple[int, ...] | None = None   # reduce: the operand axes reduced; scan, top_k: (axis,)
    reduce_shape: tuple[int, ...] = ()           # ... and their extents
    scan_reverse: bool | None = None             # a scan kernel's direction
    phases: tuple = ()            # reduce: the reductions of each phase (stored or not), in order
    full: frozenset = frozenset()      # reduce: ids of outputs of the operand's shape
    epilogue: frozenset = frozenset()  # reduce: ids of outputs of the rows' shape
    family: tuple = ()            # reduce: the key that `separate` names to split the family

    @property
    def size(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n

    @property
    def in_shape(self) -> tuple[int, ...]:
        """A reduction's (or top_k's) operand shape."""
        return self.family[1]


@dataclasses.dataclass(frozen=True, eq=False)
class FusionPlan:
    graph: Graph
    kernels: tuple[KernelSpec, ...]   # in launch order
    cuts: frozenset                   # ids of values materialized for cost reasons
    steps: tuple = ()                 # kernels (KernelSpec) and other steps (Eqn: library calls,
                                      # loops, branches) in the order they run

    def __str__(self) -> str:
        return format_plan(self)


@dataclasses.dataclass(eq=False)
class Group:
    """Stored values that one kernel computes, while the plan is being made."""
    kind: str                  # 'map' | 'reduce' | 'scan' | 'top_k' | 'scatter'
    stage: int
    shape: tuple               # map/scan/top_k: output shape; reduce: rows' shape
    outputs: list              # map/scan/top_k outputs
    in_shape: tuple = ()       # reduce, top_k: operand shape
    axes: tuple = ()           # reduce: reduced axes; scan, top_k: (axis,)
    reverse: bool = False      # scan
    phases: list = dataclasses.field(default_factory=list)
    full: list = dataclasses.field(default_factory=list)
    epilogue: list = dataclasses.field(default_factory=list)

    @property
    def family(self) -> tuple:
        return (self.stage, self.in_shape, self.axes, self.shape)

    def reductions(self) -> list:
        return [v for phase in self.phases for v in phase]


class NotPersistent(Exception):
    """Codegen cannot compute a row family in one kernel; `family` is split up instead, into
    kernels of at most `fit` reductions each when that many is the limit."""

    def __init__(self, family: tuple, why: str, fit: int | None = None):
        self.family = family
        self.fit = fit
        super().__init__(why)


def fusible(eqn: Eqn) -> bool:
    """A kernel computes the equation (a gather in ONE_HOT mode, a top_k of a large k and a
    window reduction over a large or base-dilated window are left to a step)."""
    if eqn.primitive == "gather" and "ONE_HOT" in str(eqn.params.get("mode")):
        return False
    if eqn.primitive == "top_k":
        return int(eqn.params["k"]) <= MAX_TOP_K
    if eqn.primitive in WINDOW_REDUCTIONS:
        return fusible_window(eqn)
    if eqn.primitive in SCATTERS:
        return fusible_scatter(eqn)
    return eqn.primitive in SUPPORTED


def check_supported(graph: Graph, backend: str, steps=frozenset()) -> None:
    """Raise UnsupportedError for the first primitive that neither a kernel nor a step (a
    library call, a loop: `steps`) can compute."""
    for eqn in graph.eqns:
        if not fusible(eqn) and eqn.primitive not in steps:
            raise UnsupportedError(
                f"fusejit has no rule for primitive '{eqn.primitive}' (backend '{backend}')",
                primitive=eqn.primitive, source=eqn.source)
        for value in eqn.params.values():  # loop bodies and branches
            for body in value if isinstance(value, tuple) else (value,):
                if isinstance(body, Graph):
                    check_supported(body, backend, steps)


def producers(graph: Graph) -> dict[int, tuple[Eqn, int]]:
    return {id(v): (eqn, k) for eqn in graph.eqns for k, v in enumerate(eqn.outputs)}


# Steps that read a strided operand as it is: NumPy's and CuPy's matmul take any strides
# (BLAS reads a unit-stride slice of rows and columns in place).
VIEW_READERS = frozenset({"dot_general"})


def step_views(graph: Graph, steps: list[Eqn]) -> set[int]:
    """ids of the reshapes and slices that run as a step (a view of their operand:
    steps.Reshape, steps.Slice) instead of a kernel's copy.  Both take a graph input, a
    constant or a result of `steps`, and are not a graph output (which would share its
    memory).  A reshape is read by another step (a transformer's heads split); a slice with
    unit strides is read by matrix products only (VIEW_READERS), which take a strided operand
    as it is: a small network's weights and inputs cut from one array.  Kernels read
    contiguous arrays, so a slice a kernel reads stays a kernel's copy."""
    stepped = {id(v) for e in steps for v in e.outputs}
    stepped |= {id(v) for v in graph.inputs} | {id(v) for v, _ in graph.consts}
    read_by_steps = {id(a) for e in steps for a in e.inputs if isinstance(a, Var)}
    outputs = {id(v) for v in graph.outputs if isinstance(v, Var)}
    readers: dict[int, set] = {}
    for e in graph.eqns:
        for a in e.inputs:
            if isinstance(a, Var):
                readers.setdefault(id(a), set()).add(e.primitive)

    def viewed(e: Eqn) -> bool:
        if e.primitive == "reshape":
            return e.params.get("dimensions") is None and id(e.outputs[0]) in read_by_steps
        if e.primitive == "slice":
            return (all(int(k) == 1 for k in e.params.get("strides") or ())
                    and readers.get(id(e.outputs[0]), {""}) <= VIEW_READERS)
        return False

    return {id(e) for e in graph.eqns
            if e.primitive in ("reshape", "slice") and isinstance(e.inputs[0], Var)
            and id(e.inputs[0]) in stepped and id(e.outputs[0]) not in outputs and viewed(e)}


def row_family_eligible(g: Group) -> bool:
    """A family computes a row per team: the operand's innermost axis must be reduced."""
    return bool(g.in_shape) and (len(g.in_shape) - 1) in g.axes


def plan_kernels(graph: Graph, cuts: frozenset = frozenset(), prefix: str = "fj",
                 separate: frozenset = frozenset(), limits: dict | None = None) -> FusionPlan:
    """The kernels computing `graph`; `cuts` are values to store, `separate` row families
    (by their first reduction's key) that codegen could not compute in one kernel, `limits`
    the most reductions one kernel of a family may compute (shared memory)."""
    prod = producers(graph)
    base_sources = {id(v) for v in graph.inputs} | {id(v) for v, _ in graph.consts}
    reduced = {id(v) for e in graph.eqns if e.primitive in REDUCTIONS | SCANS | SELECTIONS | SCATTERS and fusible(e)
               for v in e.outputs}
    # Equations no kernel computes (library calls, loops) run as steps between kernels: they
    # read stored values and their results are sources of later kernels.  So do reshapes of
    # such results (or of inputs) that steps read, and slices that products read (`views`).
    opaque = [e for e in graph.eqns if not fusible(e)]
    views = step_views(graph, opaque)
    opaque = [e for e in graph.eqns if id(e) in views or not fusible(e)]
    opaque_out = {id(v) for e in opaque for v in e.outputs}
    opaque_in = {id(a) for e in opaque for a in e.inputs if isinstance(a, Var)}
    materialized = set(cuts) | reduced | opaque_out | opaque_in

    def is_source(v: Var) -> bool:
        return id(v) in base_sources or id(v) in materialized

    # The stage of a value: 1 + the deepest stage of the stored values its fused computation
    # reads (0: it reads only inputs).  Equations come in topological order.
    stages: dict[int, int] = {}
    eqn_stages: dict[int, int] = {}  # (also of equations without results: a debug print)
    for eqn in graph.eqns:
        deepest = 0
        for a in eqn.inputs:
            if isinstance(a, Var) and id(a) not in base_sources:
                deepest = max(deepest, stages[id(a)] + 1 if id(a) in materialized else stages[id(a)])
        eqn_stages[id(eqn)] = deepest
        for v in eqn.outputs:
            stages[id(v)] = deepest

    def stage(v: Var) -> int:
        return stages[id(v)]

    stored: list[Var] = []
    seen: set[int] = set()
    candidates = [o for o in graph.outputs if isinstance(o, Var)]
    candidates += [v for e in graph.eqns for v in e.outputs if id(v) in materialized]
    for v in candidates:
        if id(v) in seen or id(v) in base_sources or id(v) in opaque_out:
            continue
        seen.add(id(v))
        stored.append(v)

    # Map kernels group by (stage, shape); reductions by (stage, operand shape, axes), so
    # reductions of one input over the same axes (mean and variance) share a kernel.
    groups: dict[tuple, Group] = {}
    for v in stored:
        s = stage(v)
        eqn = prod[id(v)][0]
        if id(v) in reduced and eqn.primitive in SCANS:
            axis, reverse = int(eqn.params["axis"]), bool(eqn.params.get("reverse", False))
            g = groups.setdefault((s, "scan", v.shape, axis, reverse),
                                  Group("scan", s, v.shape, [], axes=(axis,), reverse=reverse))
            g.outputs.append(v)
        elif id(v) in reduced and eqn.primitive in SELECTIONS:  # one kernel per equation
            operand = eqn.inputs[0]
            axis = int(eqn.params.get("axis", operand.ndim - 1)) % operand.ndim
            g = groups.setdefault((s, "top_k", id(eqn)),
                                  Group("top_k", s, v.shape, [], in_shape=operand.shape, axes=(axis,)))
            g.outputs.append(v)
        elif id(v) in reduced and eqn.primitive in SCATTERS:  # one kernel per equation
            g = groups.setdefault((s, "scatter", id(eqn)), Group("scatter", s, v.shape, []))
            g.outputs.append(v)
        elif id(v) in reduced:
            axes = tuple(sorted(int(a) for a in eqn.params["axes"]))
            in_shape = eqn.inputs[0].shape
            g = groups.setdefault((s, "reduce", in_shape, axes, v.shape),
                                  Group("reduce", s, v.shape, [], in_shape=in_shape, axes=axes, phases=[[]]))
            g.phases[0].append(v)
        else:
            g = groups.setdefault((s, "map", v.shape), Group("map", s, v.shape, []))
            g.outputs.append(v)
    order = []
    for g in sorted(groups.values(), key=lambda g: g.stage):  # stable: first use breaks ties
        most = (limits or {}).get(g.family) if g.kind == "reduce" else None
        if most is None or len(g.phases[0]) <= most:
            order.append(g)
            continue
        reductions = g.phases[0]
        for start in range(0, len(reductions), most):
            order.append(dataclasses.replace(g, phases=[reductions[start:start + most]], full=[], epilogue=[]))

    def sources_of(vs):
        return cone(vs, prod, is_source)[1]

    # Row families: later reductions of the same rows, and values of the operand's shape
    # computed from the family's reductions, join the family's first kernel.  Everything
    # they read must be the family's own reductions or values stored by earlier kernels.
    for g in order:
        if g.kind != "reduce" or not g.phases or g.family in separate or not row_family_eligible(g):
            continue
        members = {id(v) for v in g.reductions()}

        def ready(vs):
            return all(id(s) in base_sources or id(s) in members or stage(s) < g.stage
                       for s in sources_of(vs))

        for h in order:
            if h is g or h.stage <= g.stage:
                continue
            if (h.kind == "reduce" and h.phases and (h.in_shape, h.axes, h.shape) == (g.in_shape, g.axes, g.shape)
                    and ready(h.reductions())):
                g.phases += h.phases
                members |= {id(v) for v in h.reductions()}
                h.phases = []
            elif h.kind == "map" and h.shape == g.in_shape:
                for v in [v for v in h.outputs if ready([v])]:
                    h.outputs.remove(v)
                    g.full.append(v)
    order = [g for g in order if g.outputs or g.phases]

    # Elementwise consumers of one reduction kernel's results, of the rows' shape, are
    # computed by that kernel after its reductions (an epilogue) instead of by a kernel
    # of their own: `mean = sum / n` costs no launch.
    home_of = {id(v): g for g in order if g.kind == "reduce" for v in g.reductions()}
    for g in [g for g in order if g.kind == "map"]:
        for v in list(g.outputs):
            home = epilogue_home(v, prod, is_source, home_of, base_sources)
            if home is not None:
                g.outputs.remove(v)
                home.epilogue.append(v)
    order = [g for g in order if g.outputs or g.phases]

    eqn_order = {id(e): k for k, e in enumerate(graph.eqns)}
    cones = []
    for g in order:
        if g.kind == "reduce":
            reductions = g.reductions()
            eqns, sources = cone(reductions, prod, is_source)
            more_eqns, more_sources = cone(g.full + g.epilogue, prod, is_source,
                                           provided={id(v) for v in reductions})
            eqns += [e for e in more_eqns if e not in eqns]
            sources += [s for s in more_sources if s not in sources]
        else:
            eqns, sources = cone(g.outputs, prod, is_source)
        eqns.sort(key=lambda e: eqn_order[id(e)])
        cones.append((eqns, sources))
    # A reduction that only its own kernel reads (softmax's max and sum) is not stored.
    needed = {id(o) for o in graph.outputs} | {id(s) for _, sources in cones for s in sources} | opaque_in
    kernels = []
    for k, (g, (eqns, sources)) in enumerate(zip(order, cones)):
        name = f"{prefix}_k{k}"
        if g.kind == "scan":
            kernels.append(KernelSpec(name, "scan", g.shape, tuple(g.outputs), tuple(sources), tuple(eqns),
                                      g.axes, (g.shape[g.axes[0]],), g.reverse))
        elif g.kind == "scatter":
            kernels.append(KernelSpec(name, "scatter", g.shape, tuple(g.outputs), tuple(sources), tuple(eqns)))
        elif g.kind == "top_k":
            kernels.append(KernelSpec(name, "top_k", g.shape, tuple(g.outputs), tuple(sources), tuple(eqns),
                                      g.axes, (g.in_shape[g.axes[0]],), family=g.family))
        elif g.kind == "reduce":
            stored_reductions = [v for v in g.reductions() if id(v) in needed]
            kernels.append(KernelSpec(
                name, "reduce", g.shape, tuple(stored_reductions + g.full + g.epilogue), tuple(sources),
                tuple(eqns), g.axes, tuple(g.in_shape[a] for a in g.axes), phases=tuple(tuple(p) for p in g.phases),
                full=frozenset(id(v) for v in g.full), epilogue=frozenset(id(v) for v in g.epilogue),
                family=g.family))
        else:
            kernels.append(KernelSpec(name, "map", g.shape, tuple(g.outputs), tuple(sources), tuple(eqns)))
    # A step of stage s reads only values of earlier stages: kernels and other steps of one
    # stage are independent, and stages run in order.
    steps = [(g.stage, 0, k, spec) for k, (g, spec) in enumerate(zip(order, kernels))]
    steps += [(eqn_stages[id(e)], 1, k, e) for k, e in enumerate(opaque)]
    steps.sort(key=lambda t: t[:3])
    return FusionPlan(graph, tuple(kernels), frozenset(cuts), tuple(t[3] for t in steps))


def epilogue_home(v, prod, is_source, home_of, base_sources):
    """The reduction kernel (its Group) that can compute v after its reductions: v is
    elementwise in that kernel's results (one per row, in any shape of that size: keepdims)
    and in inputs of v's size or of one element.  Reshapes, squeezes and broadcasts that keep
    the element count map a flat index to the same element, so they may stand between."""
    eqns, sources = cone([v], prod, is_source)
    allowed = set(ops.ELEMENTWISE) | ops.EXPANDED | {"reshape", "squeeze", "expand_dims", "broadcast_in_dim"}
    if not eqns or any(e.primitive not in allowed for e in eqns):
        return None
    if any(isinstance(a, Var) and a.size not in (v.size, 1) for e in eqns for a in e.inputs + e.outputs):
        return None
    if any(e.primitive == "broadcast_in_dim" and e.inputs[0].size != e.outputs[0].size and e.inputs[0].ndim
           for e in eqns):
        return None
    homes = set()
    for s in sources:
        if id(s) in home_of:
            homes.add(home_of[id(s)])
        elif id(s) not in base_sources or s.size not in (v.size, 1):
            return None
    if len(homes) != 1:
        return None
    home = homes.pop()
    size = 1
    for d in home.shape:
        size *= d
    return home if size == v.size else None


def cone(outputs, prod, is_source, provided=frozenset()):
    """The equations computing `outputs` from sources, and the sources in order of first use;
    values in `provided` are computed by the kernel itself and are neither."""
    eqns, sources, seen = [], [], set(provided)

    def visit(root, own: bool):
        """Depth first from `root` (an explicit stack: chains can be thousands deep); `own`: a
        stored output is computed from its producer even when it is also a source."""
        stack = [(root, own)]
        while stack:
            v, own = stack.pop()
            if id(v) in seen and not own:
                continue
            seen.add(id(v))
            if is_source(v) and not own:
                sources.append(v)
                continue
            eqn, _ = prod[id(v)]
            if id(eqn) in seen:
                continue
            seen.add(id(eqn))
            eqns.append(eqn)
            stack.extend((a, False) for a in reversed(eqn.inputs) if isinstance(a, Var))

    for v in outputs:
        visit(v, is_source(v))
    return eqns, sources


def format_plan(plan: FusionPlan, name=None, describe_step=None) -> str:
    """One line per step: each kernel's shape, loads, stores and fused primitives; each other
    step as `describe_step(eqn)` says."""
    from .ir import Namer
    name = name or Namer()
    lines = []
    for k in plan.steps or plan.kernels:
        if isinstance(k, Eqn):
            outs = ", ".join(name(v) for v in k.outputs)
            ins = ", ".join(name(a) if isinstance(a, Var) else repr(a.value) for a in k.inputs)
            lines.append(f"{k.primitive}: {ins or '-'} -> {outs}"
                         + (f"; {describe_step(k)}" if describe_step else ""))
            continue
        prims = ", ".join(dict.fromkeys(e.primitive for e in k.eqns)) or "copy"
        if k.kind == "scan":
            kind = f"scan along axis {k.reduce_axes[0]}{' (reversed)' if k.scan_reverse else ''}, "
        elif k.kind == "top_k":
            kind = f"top_k along axis {k.reduce_axes[0]}, "
        elif k.kind == "scatter":
            kind = "scatter, "
        elif k.kind == "reduce":
            extra = [f"{len(k.phases)} phases"] if len(k.phases) > 1 else []
            extra += [f"{len(k.full)} full"] if k.full else []
            extra += [f"{len(k.epilogue)} epilogue"] if k.epilogue else []
            kind = f"reduce axes {list(k.reduce_axes)}{' + ' + ', '.join(extra) if extra else ''}, "
        else:
            kind = ""
        lines.append(
            f"{k.name}: {kind}shape={list(k.shape)} loads {', '.join(name(v) for v in k.sources) or '-'}"
            f" -> stores {', '.join(name(v) for v in k.outputs)}; fuses {len(k.eqns)} eqns ({prims})")
    return "\n".join(lines) if lines else "(no kernels)"
