"""The pipeline from a Graph to a runnable Compiled: fusion -> codegen -> backend compile -> launch plan."""
from __future__ import annotations

import dataclasses
import re

from . import config
from .codegen import KernelTooLarge, render_kernel, render_module
from .fusion import FusionPlan, NotPersistent, check_supported, format_plan, plan_kernels, producers
from .ir import Graph, Namer, format_graph
from .launch import CUDA_BLOCK, Program, build_program

MAX_CUTS = 256


@dataclasses.dataclass(eq=False)
class Compiled:
    graph: Graph
    plan: FusionPlan
    rendered: tuple
    source: str
    program: Program
    backend: object
    module: object
    consts: tuple  # constants already on the backend's device
    out_tree: object = None

    def run(self, flat_args):
        return self.program.run(self.backend, self.module, flat_args, self.consts)

    @property
    def kernel_count(self) -> int:
        return len(self.program.launches)

    def as_text(self) -> str:
        name = Namer()
        parts = ["=== fusejit graph ===", format_graph(self.graph, name), "",
                 f"=== fusion plan: {len(self.plan.kernels)} kernel(s) ===", format_plan(self.plan, name)]
        for k in self.rendered:
            parts.append(f"  {k.name}: {k.loads} load(s), {k.stores} store(s) per element, "
                         f"{'64' if k.index64 else '32'}-bit indexing")
        for k in self.rendered:
            parts += ["", f"=== kernel {k.name} (CUDA source) ===", k.source.rstrip()]
        return "\n".join(parts) + "\n"


def identifier(name: str) -> str:
    text = re.sub(r"\W+", "_", name).strip("_") or "fn"
    return text if not text[0].isdigit() else f"f_{text}"


def compile_graph(graph: Graph, backend, name: str = "fn", force_index64: bool = False) -> Compiled:
    check_supported(graph, backend.name)
    device = backend.device_info()
    prod = producers(graph)
    cuts: frozenset = frozenset()
    separate: frozenset = frozenset()
    limits: dict = {}
    prefix = f"fj_{identifier(name)}"
    while True:
        plan = plan_kernels(graph, cuts, prefix, separate, limits)
        try:
            # Every backend compiles the same text: launch bounds are the GPU's block size.
            rendered = tuple(render_kernel(spec, prod, CUDA_BLOCK, force_index64=force_index64)
                             for spec in plan.kernels if spec.size > 0)
            break
        except KernelTooLarge as e:
            if len(cuts) >= MAX_CUTS or id(e.var) in cuts:
                raise
            cuts = cuts | {id(e.var)}
        except NotPersistent as e:  # the row family runs as one kernel per phase (or less) instead
            config.debug(3, f"row family of {name} split: {e}")
            if e.fit is not None and limits.get(e.family, e.fit + 1) > e.fit:
                limits[e.family] = e.fit
            elif e.family in separate:
                raise RuntimeError(f"row family {e.family} could not be split: {e}") from e
            separate = separate | {e.family}
    config.debug(2, f"graph of {name}:\n{format_graph(graph)}")
    config.debug(3, f"fusion plan of {name}:\n{format_plan(plan)}")
    source = render_module(rendered)
    module = backend.compile(source, [k.name for k in rendered]) if rendered else None
    program = build_program(graph, plan, rendered, device)
    consts = tuple(backend.upload(arr) for _, arr in program.consts)
    return Compiled(graph, plan, rendered, source, program, backend, module, consts)
