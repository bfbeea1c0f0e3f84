"""The pipeline from a Graph to a runnable Compiled:
control-flow rewrites -> fusion -> codegen -> backend compile -> steps -> launch plan."""
from __future__ import annotations

import contextlib
import dataclasses
import functools
import operator
import re
import sys
import threading

import jax
import numpy as np

from . import codegen, config, control, steps
from .codegen import KernelTooLarge, render_kernel
from .cse import eliminate_common_subexpressions
from .errors import DeviceMemoryError
from .fold import fold_constants
from .fusion import FusionPlan, NotPersistent, check_supported, format_plan, plan_kernels, producers
from .ir import Eqn, Graph, Namer, format_graph
from .launch import CUDA_BLOCK, Program, build_program
from .ranges import mark_nonpositive_exps

MAX_CUTS = 256
SCAN_STRATEGIES = ("auto", "unroll", "loop")


def _to_jax(x):
    """A result as a JAX array: CuPy's through DLPack (no copy), NumPy's as they are."""
    return jax.dlpack.from_dlpack(x) if type(x).__module__.startswith("cupy") else x


def make_unflatten(tree, key_dtypes=()):
    """A function from flat results to the pytree `tree`, wrapping typed-key results."""
    if tree == jax.tree_util.tree_structure(0):  # a single array
        unflatten = operator.itemgetter(0)
    else:
        unflatten = functools.partial(jax.tree_util.tree_unflatten, tree)
    if any(d is not None for d in key_dtypes):
        def unflatten(flat, base=unflatten):
            return base([x if d is None else jax.random.wrap_key_data(_to_jax(x), impl=d._impl)
                         for x, d in zip(flat, key_dtypes)])
    return unflatten


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
    ops: dict      # id(eqn) -> the step running each equation that is not a kernel
    name: str = "fn"
    out_tree: object = None
    key_inputs: frozenset = frozenset()  # positions of typed PRNG key arguments (passed as their data)
    folded: tuple = ()  # the library calls on constants computed when the program was built (fold.py)

    def __post_init__(self):
        self.bound = self.program.bind(self.backend, self.module)
        self.runner = self.program.runner(self.backend, self.bound, self.consts)
        self.loop_runner = None  # built by `iteration()`, for the programs that loops run
        self.unflatten = list

    def set_out_tree(self, tree, key_dtypes=()) -> None:
        """The pytree of the function's results: `unflatten` turns the flat results into it.
        `key_dtypes`: per result, the PRNG key dtype of a result that is typed keys (the
        program computes their data), else None."""
        self.out_tree = tree
        self.key_dtypes = tuple(key_dtypes)
        self.unflatten = make_unflatten(tree, key_dtypes)

    def run(self, flat_args, debug=None):
        try:
            if (config.call_options().debug if debug is None else debug) < 1:
                return self.runner(flat_args)
            return self.program.run(self.backend, self.bound, flat_args, self.consts, debug=debug)
        except MemoryError as e:
            raise self.out_of_memory(e) from e

    def run_into(self, flat_args, out, workspace=None):
        """Run with the outputs written into `out` (one array or None per output) and the other
        values into `workspace` (from `workspace()`)."""
        return self.program.run(self.backend, self.bound, flat_args, self.consts, out, workspace)

    def iteration(self):
        """`run(flat_args, out, workspace)`, what a loop calls every iteration: `run_into` with
        `out` None or an array for every output and `workspace` from `workspace()`, as one
        straight-line function (Program.loop_runner), or `run_into` itself when FUSEJIT_DEBUG
        asks for each launch to be printed."""
        if config.call_options().debug >= 1:
            return self.run_into
        if self.loop_runner is None:
            self.loop_runner = self.program.loop_runner(self.backend, self.bound, self.consts)
        return self.loop_runner

    def out_of_memory(self, e: MemoryError) -> DeviceMemoryError:
        """The error for a call whose buffers the device could not hold (CuPy's
        OutOfMemoryError and NumPy's MemoryError are both MemoryErrors)."""
        if isinstance(e, DeviceMemoryError):
            return e
        need = sum(int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
                   for _, shape, dtype, _ in self.program.allocs)
        where = "the GPU" if self.backend.name == "cuda" else "host memory"
        hint = ("free device arrays you no longer need (CuPy keeps freed blocks in its pool: "
                "cupy.get_default_memory_pool().free_all_blocks())" if self.backend.name == "cuda"
                else "free arrays you no longer need")
        return DeviceMemoryError(
            f"{where} ran out of memory running '{self.name}': {e}. Its outputs and intermediates "
            f"take {need:,} bytes per call ({len(self.program.allocs)} buffer(s), besides the inputs "
            f"and what its library calls and loops allocate); {hint}, or split the work into smaller calls.")

    def workspace(self) -> dict:
        return self.program.workspace(self.backend)

    def modules(self):
        """The source of every module this program compiles: its own and its steps'."""
        if self.rendered:
            yield self.source
        for op in self.ops.values():
            if getattr(op, "module_source", None):
                yield op.module_source
            for child in op.children:
                yield from child.modules()

    @property
    def kernel_count(self) -> int:
        """Kernel launches of one call, outside loops and branches."""
        return len(self.program.launches)

    @property
    def call_count(self) -> int:
        """Other steps (library calls, loops, branches) of one call, outside loops and branches."""
        return len(self.program.steps) - len(self.program.launches)

    def as_text(self, name: Namer | None = None, title: str = "fusejit graph") -> str:
        name = name or Namer()
        parts = [f"=== {title} ===", format_graph(self.graph, name), "",
                 f"=== fusion plan: {len(self.plan.kernels)} kernel(s)"
                 f"{f', {self.call_count} other step(s)' if self.call_count else ''} ===",
                 format_plan(self.plan, name, lambda e: self.ops[id(e)].describe())]
        if self.folded:
            parts.append(f"folded when built (calls on constants, now constants): {', '.join(self.folded)}")
        for k in self.rendered:
            parts.append(f"  {k.name}: {k.loads} load(s), {k.stores} store(s) per element, "
                         f"{'64' if k.index64 else '32'}-bit indexing")
        for k in self.rendered:
            parts += ["", f"=== kernel {k.name} (CUDA source) ===", k.source.rstrip()]
        for e in self.plan.steps:
            if isinstance(e, Eqn):
                op = self.ops[id(e)]
                if getattr(op, "source", None):
                    parts += ["", f"=== {e.primitive}: kernel {op.launch.kernel} (CUDA source) ===", op.source.rstrip()]
                for child in op.children:
                    parts += ["", child.as_text(name, f"{e.primitive} body {child.name}").rstrip()]
        return "\n".join(parts) + "\n"


def identifier(name: str) -> str:
    text = re.sub(r"\W+", "_", name).strip("_") or "fn"
    return text if not text[0].isdigit() else f"f_{text}"


_recursion = {"depth": 0, "before": 0}
_recursion_lock = threading.Lock()


@contextlib.contextmanager
def deep_recursion(limit: int = 50_000):
    """Codegen recurses along chains of fused equations (an unrolled loop's are long).  The
    limit is the process's: raised by the first of any overlapping compiles (a background
    one and the caller's), restored by the last."""
    with _recursion_lock:
        if _recursion["depth"] == 0:
            _recursion["before"] = sys.getrecursionlimit()
            sys.setrecursionlimit(max(_recursion["before"], limit))
        _recursion["depth"] += 1
    try:
        yield
    finally:
        with _recursion_lock:
            _recursion["depth"] -= 1
            if _recursion["depth"] == 0:
                sys.setrecursionlimit(_recursion["before"])


def compile_graph(graph: Graph, backend, name: str = "fn", force_index64: bool = False,
                  scan: str = "auto") -> Compiled:
    """Compile `graph` for `backend`: its kernels into one module, its other equations into
    steps (library calls, loops, whose bodies compile the same way)."""
    with deep_recursion():
        rendered = render_graph(graph, backend, name, force_index64, scan)
        return rendered.build(rendered.compile_module())


@dataclasses.dataclass(eq=False)
class RenderedGraph:
    """A graph after fusion and code generation: its module's source, not yet compiled."""
    graph: Graph  # after the control-flow rewrites
    plan: FusionPlan
    rendered: tuple
    source: str
    backend: object
    name: str
    force_index64: bool
    scan: str
    folded: tuple = ()

    @property
    def kernel_names(self) -> list[str]:
        return [k.name for k in self.rendered]

    def module_cached(self) -> bool:
        """Whether compiling the module only loads it (from memory or the disk cache)."""
        return not self.rendered or self.backend.is_cached(self.source)

    def compile_module(self):
        return self.backend.compile(self.source, self.kernel_names) if self.rendered else None

    def build(self, module) -> Compiled:
        """The runnable program around the compiled module: steps, launch plan, constants."""
        backend, force_index64, scan = self.backend, self.force_index64, self.scan

        def compile_body(body: Graph, body_name: str) -> Compiled:
            return compile_graph(body, backend, body_name, force_index64, scan)

        with deep_recursion():
            ops = {}
            for k, e in enumerate(e for e in self.plan.steps if isinstance(e, Eqn)):
                ops[id(e)] = steps.build_step(e, steps.Context(
                    backend, f"{identifier(self.name)}_{identifier(e.primitive)}{k}", compile_body, scan, force_index64))
            program = build_program(self.graph, self.plan, self.rendered, backend.device_info(), ops)
        consts = tuple(backend.upload(arr) for _, arr in program.consts)
        return Compiled(self.graph, self.plan, self.rendered, self.source, program, backend, module, consts, ops,
                        self.name, folded=self.folded)


def render_graph(graph: Graph, backend, name: str = "fn", force_index64: bool = False,
                 scan: str = "auto") -> RenderedGraph:
    """Control-flow rewrites, fusion and code generation: everything up to the compiler."""
    if scan not in SCAN_STRATEGIES:
        raise ValueError(f"scan strategy must be one of {', '.join(SCAN_STRATEGIES)}, not {scan!r}")
    prefix = f"fj_{identifier(name)}"
    check_supported(graph, backend.name, steps.STEP_RULES)
    graph, folded = fold_constants(eliminate_common_subexpressions(control.lower_control(graph, scan)))
    graph = mark_nonpositive_exps(graph)
    prod = producers(graph)
    cuts: frozenset = frozenset()
    separate: frozenset = frozenset()
    limits: dict = {}
    with deep_recursion():
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
    source = codegen.render_module(rendered)
    return RenderedGraph(graph, plan, rendered, source, backend, name, force_index64, scan, folded)
