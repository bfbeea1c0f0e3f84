"""Tiered execution: a program's first calls run in the interpreter while its kernels compile.

On the host backend, when a new specialization's module is in neither cache, `compile_tiered`
hands the module to the C++ compiler on a background thread and returns a `Tiered`: its calls
run the graph in the interpreter (fusejit/interpret.py) until the compiled program is ready,
then run that, and the caller's caches take the compiled program in its place.  Only graphs
the interpreter covers entirely, and small enough that interpreting them is quicker than
compiling (INTERPRET_ELEMENTS; MAP_ELEMENTS for a map graph, run a block of rows at a time by
chunked.py), are tiered; an interpreted call also gives way to the compiled program if
that is ready first, while the call has done less than GIVE_WAY_BEFORE of its work (past
that, finishing costs less than the kernels' whole pass, on fresh outputs).  The process
waits for compiles under way when it exits, so their modules reach the disk cache.

FUSEJIT_TIERED=0 turns it off: every first call waits for the compiler.
"""
from __future__ import annotations

import concurrent.futures
import threading

from . import chunked, config, interpret, ufuncs
from .backends.cpu_arrays import to_numpy
from .backends.host import usable_cores
from .compiler import Compiled, compile_graph, deep_recursion, make_unflatten, render_graph
from .fusion import REDUCTIONS, SCANS
from .ir import Eqn, Graph, Literal

# Elements an interpreted call may write or reduce over, summed over its equations: about
# 30 ms of interpretation on one core, less than a module's compile.  A map graph, which the
# interpreter runs a block of rows at a time in the caches (chunked.py), may do eight times
# as much in that time.
INTERPRET_ELEMENTS = 1 << 25
MAP_ELEMENTS = 1 << 28
VIEWS = {"broadcast_in_dim", "reshape", "squeeze", "expand_dims", "slice", "rev", "transpose", "copy", "copy_p",
         "stop_gradient"}

_executor = None
_executor_lock = threading.Lock()


def executor() -> concurrent.futures.ThreadPoolExecutor:
    """The compile thread (Python waits for its work when it exits)."""
    global _executor
    with _executor_lock:
        if _executor is None:
            _executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="fusejit-compile")
        return _executor


def enabled() -> bool:
    return config.env("FUSEJIT_TIERED").strip().lower() not in ("0", "false", "no", "off")


GIVE_WAY_BEFORE = 0.5  # the fraction of an interpreted call's work after which it no longer gives way

# A cumulative op counts as this many elements per element: NumPy runs it on one thread, one
# element after another (a float32 sum through a float64 copy), where the library's loops are
# vectorised and run on every core.
CUMULATIVE_WEIGHT = 4
# A sort or a top_k counts as this many elements per element of its operands: the library
# sorts every row (NumPy's argsort, 30 to 40 ns an element here), where the compiled top_k
# reads each element once.
SORT_WEIGHT = 32


def eqn_work(eqn: Eqn) -> int:
    """Elements the interpreter writes for the equation, or reads through a reduction."""
    if eqn.primitive in VIEWS:
        return 0
    if eqn.primitive in ("sort", "top_k"):
        return SORT_WEIGHT * sum(a.size for a in eqn.inputs if not isinstance(a, Literal))
    weight = CUMULATIVE_WEIGHT if eqn.primitive in SCANS else 1
    total = weight * sum(v.size for v in eqn.outputs)
    if eqn.primitive in REDUCTIONS:
        total += sum(a.size for a in eqn.inputs if not isinstance(a, Literal))
    return total


def work(graph: Graph) -> int:
    """The interpreter's work over the whole graph (eqn_work)."""
    return sum(eqn_work(eqn) for eqn in graph.eqns)


class Tiered:
    """A specialization whose kernels are compiling: calls run the interpreter until they are
    ready.  `on_ready(compiled)` is called once the compiled program takes over."""

    def __init__(self, graph: Graph, lib, future: concurrent.futures.Future, name: str, map_plan=None):
        self.graph, self.lib, self.future, self.name = graph, lib, future, name
        self.map_plan = map_plan
        self.key_inputs = frozenset()
        self.out_tree, self.key_dtypes = None, ()
        self.unflatten = list
        self.on_ready = None
        self._compiled = None

    def set_out_tree(self, tree, key_dtypes=()) -> None:
        self.out_tree, self.key_dtypes = tree, tuple(key_dtypes)
        self.unflatten = make_unflatten(tree, key_dtypes)

    def wait(self) -> Compiled:
        """The compiled program (waiting for the compiler; its error, if it failed)."""
        if self._compiled is None:
            compiled = self.future.result()
            compiled.key_inputs = self.key_inputs
            compiled.set_out_tree(self.out_tree, self.key_dtypes)
            self._compiled = compiled
            if self.on_ready is not None:
                self.on_ready(compiled)
        return self._compiled

    def run(self, flat_args, debug=None):
        if self.future.done():
            return self.wait().run(flat_args, debug)
        args = [to_numpy(x, v.dtype) for x, v in zip(flat_args, self.graph.inputs)]
        # One core stays with the compiler, which would otherwise share it with a loop thread.
        self.lib.set_threads(max(1, usable_cores() - 1))
        try:
            outs = self.interpreted(args)
        finally:
            self.lib.set_threads(0)
        if outs is None:  # given up: the kernels run the call (after the interpreter's buffers are freed)
            return self.wait().run(flat_args, debug)
        if (debug if debug is not None else config.debug_level()) >= 1:
            config.debug(1, f"{self.name}: interpreted (its kernels are compiling)")
        return outs

    def gives_way(self, done: float) -> bool:
        """Whether an interpreted call that has done `done` of its work stops for the kernels."""
        return done < GIVE_WAY_BEFORE and self.future.done()

    def interpreted(self, args):
        """The interpreter's results, or None where it gave the call up: the kernels became
        ready (they finish it sooner), or it ran out of memory (the fused kernels keep fewer
        values, so they may fit)."""
        try:
            if self.map_plan is not None:
                return chunked.run(self.map_plan, self.graph, self.lib, args, stop=self.gives_way)
            return interpret.run(self.graph, self.lib, args, stop=self.gives_way, work=eqn_work)
        except (interpret.Stopped, MemoryError):
            return None

    # What the compiled program answers (lower(), as_text(), counts) waits for it.
    def __getattr__(self, name):
        if name.startswith("_") or name in ("graph", "lib", "future", "name", "map_plan", "interpreted"):
            raise AttributeError(name)
        return getattr(self.wait(), name)


def compile_tiered(graph: Graph, backend, name: str = "fn", force_index64: bool = False, scan: str = "auto"):
    """A Compiled, or a Tiered whose module compiles in the background (see the module's doc)."""
    if backend.name != "host" or not enabled() or not interpret.interpretable(graph):
        return compile_graph(graph, backend, name, force_index64, scan)
    map_plan = chunked.plan(graph)
    if work(graph) > (INTERPRET_ELEMENTS if map_plan is None else MAP_ELEMENTS):
        return compile_graph(graph, backend, name, force_index64, scan)
    lib = ufuncs.ready(backend)
    if lib is None:  # the library is still building (once per machine)
        return compile_graph(graph, backend, name, force_index64, scan)
    rendered = render_graph(graph, backend, name, force_index64, scan)
    if rendered.module_cached():
        return rendered.build(rendered.compile_module())

    def compile_and_build():
        with deep_recursion():
            return rendered.build(rendered.compile_module())

    config.debug(1, f"{name}: compiling in the background; calls run in the interpreter until it is done")
    return Tiered(graph, lib, executor().submit(compile_and_build), name, map_plan)
