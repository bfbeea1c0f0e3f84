"""Fusion: partition a Graph into kernels.

Every elementwise and shape primitive is *fusible*: a kernel computes it inline,
reading the inputs it needs at mapped indices.  A value is *stored* when it is a
graph output or a cut (a value too costly to recompute, chosen by
`plan_kernels`).  A value is a *source* of a kernel when the kernel reads it from
memory: a graph input, a constant, or a cut.  Stored values are grouped into one
kernel per (stage, shape), where the stage counts the cuts between a value and
the graph's inputs, so several outputs of one shape come from one kernel.
"""
from __future__ import annotations

import dataclasses

from .errors import UnsupportedError
from .ir import Eqn, Graph, Var
from . import ops

SHAPE_PRIMITIVES = {
    "broadcast_in_dim", "reshape", "squeeze", "expand_dims", "slice", "rev", "transpose",
    "concatenate", "stack", "pad", "iota", "tile", "split",
}
# Reductions: computed by a block-cooperative kernel that fuses the operand's producers.
# Their results are stored and read by consumers from memory.
REDUCTIONS = {"reduce_sum", "reduce_max", "reduce_min", "reduce_prod", "reduce_and", "reduce_or",
              "reduce_xor", "argmax", "argmin"}
# Cumulative ops: a block-per-row scan kernel that fuses the operand's producers.
SCANS = {"cumsum", "cumprod", "cummax", "cummin", "cumlogsumexp"}
FUSIBLE = set(ops.ELEMENTWISE) | ops.EXPANDED | SHAPE_PRIMITIVES
SUPPORTED = FUSIBLE | REDUCTIONS | SCANS


@dataclasses.dataclass(frozen=True, eq=False)
class KernelSpec:
    name: str
    shape: tuple[int, ...]
    outputs: tuple[Var, ...]      # values the kernel stores, in order
    sources: tuple[Var, ...]      # values the kernel loads, in order of first use
    eqns: tuple[Eqn, ...]         # the fused equations, in graph order
    reduce_axes: tuple[int, ...] | None = None   # a reduction kernel: the operand axes reduced
    reduce_shape: tuple[int, ...] = ()           # ... and their extents
    scan_reverse: bool | None = None             # a scan kernel (reduce_axes holds its axis)
    epilogue: frozenset = frozenset()            # ids of outputs computed after a reduction

    @property
    def size(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n


@dataclasses.dataclass(frozen=True, eq=False)
class FusionPlan:
    graph: Graph
    kernels: tuple[KernelSpec, ...]   # in launch order
    cuts: frozenset                   # ids of values materialized for cost reasons

    def __str__(self) -> str:
        return format_plan(self)


def check_supported(graph: Graph, backend: str) -> None:
    """Raise UnsupportedError for the first primitive no kernel can compute."""
    for eqn in graph.eqns:
        if eqn.primitive not in SUPPORTED:
            raise UnsupportedError(
                f"fusejit has no rule for primitive '{eqn.primitive}' (backend '{backend}')",
                primitive=eqn.primitive, source=eqn.source)


def producers(graph: Graph) -> dict[int, tuple[Eqn, int]]:
    return {id(v): (eqn, k) for eqn in graph.eqns for k, v in enumerate(eqn.outputs)}


def plan_kernels(graph: Graph, cuts: frozenset = frozenset(), prefix: str = "fj") -> FusionPlan:
    prod = producers(graph)
    base_sources = {id(v) for v in graph.inputs} | {id(v) for v, _ in graph.consts}

    reduced = {id(v) for e in graph.eqns if e.primitive in REDUCTIONS | SCANS for v in e.outputs}
    materialized = set(cuts) | reduced

    def is_source(v: Var) -> bool:
        return id(v) in base_sources or id(v) in materialized

    stage_memo: dict[int, int] = {}

    def stage(v: Var) -> int:
        """1 + the deepest stage of the cuts v's fused computation reads (0: reads only inputs)."""
        key = id(v)
        if key in stage_memo:
            return stage_memo[key]
        eqn, _ = prod[key]
        deepest = 0
        for a in eqn.inputs:
            if isinstance(a, Var) and id(a) not in base_sources:
                deepest = max(deepest, stage(a) + 1 if id(a) in materialized else stage(a))
        stage_memo[key] = deepest
        return deepest

    stored: list[Var] = []
    seen: set[int] = set()
    candidates = [o for o in graph.outputs if isinstance(o, Var)]
    candidates += [v for e in graph.eqns for v in e.outputs if id(v) in materialized]
    for v in candidates:
        if id(v) in seen or id(v) in base_sources:
            continue
        seen.add(id(v))
        stored.append(v)

    # Elementwise kernels group by (stage, shape); reduction kernels by (stage, operand shape,
    # axes), so reductions of one input over the same axes (mean and variance) share a kernel.
    groups: dict[tuple, list[Var]] = {}
    for v in stored:
        if id(v) in reduced and prod[id(v)][0].primitive in SCANS:
            eqn, _ = prod[id(v)]
            key = (int(eqn.params["axis"]), bool(eqn.params.get("reverse", False)))
            groups.setdefault((stage(v), "scan", v.shape, key), []).append(v)
        elif id(v) in reduced:
            eqn, _ = prod[id(v)]
            axes = tuple(sorted(int(a) for a in eqn.params["axes"]))
            groups.setdefault((stage(v), "reduce", eqn.inputs[0].shape, axes, v.shape), []).append(v)
        else:
            groups.setdefault((stage(v), "map", v.shape), []).append(v)

    # Elementwise consumers of one reduction kernel's results, of the results' shape, are
    # computed by that kernel after its block reduction (an epilogue) instead of by a kernel
    # of their own: `mean = sum / n` costs no launch.
    home_of = {id(v): key for key, vs in groups.items() if key[1] == "reduce" for v in vs}
    epilogue: set[int] = set()
    for key in [k for k in groups if k[1] == "map"]:
        for v in list(groups[key]):
            home = epilogue_home(v, prod, is_source, home_of, base_sources)
            if home is not None:
                groups[key].remove(v)
                groups[home].append(v)
                epilogue.add(id(v))
        if not groups[key]:
            del groups[key]

    order = {id(e): k for k, e in enumerate(graph.eqns)}
    kernels = []
    for k, (key, outs) in enumerate(sorted(groups.items(), key=lambda kv: kv[0][0])):
        if key[1] != "reduce":
            eqns, sources = cone(outs, prod, is_source)
            eqns.sort(key=lambda e: order[id(e)])
        if key[1] == "scan":
            _, _, shape, (axis, reverse) = key
            kernels.append(KernelSpec(f"{prefix}_k{k}", shape, tuple(outs), tuple(sources), tuple(eqns),
                                      (axis,), (shape[axis],), reverse))
        elif key[1] == "reduce":
            _, _, in_shape, axes, shape = key
            reductions = [v for v in outs if id(v) not in epilogue]
            epi = [v for v in outs if id(v) in epilogue]
            eqns, sources = cone(reductions, prod, is_source)
            more_eqns, more_sources = cone(epi, prod, is_source, provided={id(v) for v in reductions})
            eqns += [e for e in more_eqns if e not in eqns]
            sources += [s for s in more_sources if s not in sources]
            eqns.sort(key=lambda e: order[id(e)])
            kernels.append(KernelSpec(f"{prefix}_k{k}", shape, tuple(reductions + epi), tuple(sources),
                                      tuple(eqns), axes, tuple(in_shape[a] for a in axes),
                                      epilogue=frozenset(id(v) for v in epi)))
        else:
            kernels.append(KernelSpec(f"{prefix}_k{k}", key[2], tuple(outs), tuple(sources), tuple(eqns)))
    return FusionPlan(graph, tuple(kernels), frozenset(cuts))


def epilogue_home(v, prod, is_source, home_of, base_sources):
    """The reduction kernel (its group key) that can compute v after its block reduction: v
    is elementwise in that kernel's results (of v's shape) and in inputs of v's size or of one
    element.  Reshapes, squeezes and broadcasts that keep the element count map an index to
    the same element, so they may stand between."""
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
    return home if home[4] == v.shape else None


def cone(outputs, prod, is_source, provided=frozenset()):
    """The equations computing `outputs` from sources, and the sources in order of first use;
    values in `provided` are computed by the kernel itself and are neither."""
    eqns, sources, seen = [], [], set(provided)

    def visit(v):
        if id(v) in seen:
            return
        seen.add(id(v))
        if is_source(v):
            sources.append(v)
            return
        eqn, _ = prod[id(v)]
        if id(eqn) not in seen:
            seen.add(id(eqn))
            eqns.append(eqn)
            for a in eqn.inputs:
                if isinstance(a, Var):
                    visit(a)

    for v in outputs:
        if is_source(v):
            seen.add(id(v))  # a cut output is computed from its own producer
            eqn, _ = prod[id(v)]
            if id(eqn) not in seen:
                seen.add(id(eqn))
                eqns.append(eqn)
                for a in eqn.inputs:
                    if isinstance(a, Var):
                        visit(a)
        else:
            visit(v)
    return eqns, sources


def format_plan(plan: FusionPlan, name=None) -> str:
    from .ir import Namer
    name = name or Namer()
    lines = []
    for k in plan.kernels:
        prims = ", ".join(dict.fromkeys(e.primitive for e in k.eqns)) or "copy"
        if k.scan_reverse is not None:
            kind = f"scan along axis {k.reduce_axes[0]}{' (reversed)' if k.scan_reverse else ''}, "
        elif k.reduce_axes is not None:
            kind = f"reduce axes {list(k.reduce_axes)}{f' + {len(k.epilogue)} epilogue' if k.epilogue else ''}, "
        else:
            kind = ""
        lines.append(
            f"{k.name}: {kind}shape={list(k.shape)} loads {', '.join(name(v) for v in k.sources) or '-'}"
            f" -> stores {', '.join(name(v) for v in k.outputs)}; fuses {len(k.eqns)} eqns ({prims})")
    return "\n".join(lines) if lines else "(no kernels)"
