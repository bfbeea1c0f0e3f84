"""Tiered execution: first calls in the interpreter while the kernels compile, then the kernels.

The rest of the suite runs with FUSEJIT_TIERED=0 (conftest.py) and helpers.verify checks the
interpreter's values on every graph it covers; these tests turn tiering on and check the
switch: which calls are interpreted, that the compiled program takes over, that a module in
a cache is never interpreted, and that errors and results behave as the compiled path's.
"""
from __future__ import annotations

import concurrent.futures
import os
import subprocess
import sys
import threading

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

import fusejit
from fusejit import backends, cache, chunked, interpret, launch, tiered, ufuncs
from fusejit.check import compare
from fusejit.compiler import Compiled, RenderedGraph
from fusejit.errors import CompileError
from helpers import bitwise_equal, rand, verify


@pytest.fixture
def tiering(monkeypatch):
    monkeypatch.setenv("FUSEJIT_TIERED", "1")
    ufuncs.wait(backends.get("host"))


def fresh_function(seed):
    """A function whose module no cache holds yet (its constant is new)."""
    c = float(np.random.default_rng(seed).uniform(1.5, 2.5)) + seed * 1e-3

    def f(x, y):
        return jnp.tanh(x) * c - y[:, None], jnp.exp(-x) + c
    return f


def test_first_call_is_interpreted_then_the_kernels_take_over(tiering):
    rng = np.random.default_rng(1)
    x, y = rand(rng, (37, 11), np.float32), rand(rng, (37,), np.float32)
    f = fusejit.jit(fresh_function(int(rng.integers(1 << 30))), backend="host")
    before = launch.counter["interpreted"]
    first = f(x, y)
    assert launch.counter["interpreted"] == before + 1
    assert compare(f.reference(x, y), first).ok
    compiled = f.lower(x, y)  # waits for the background compile
    assert isinstance(compiled, Compiled)
    assert all(isinstance(v, Compiled) for v in f.cache.values())
    kernels = launch.counter["kernels"]
    second = f(x, y)
    assert launch.counter["interpreted"] == before + 1
    assert launch.counter["kernels"] > kernels
    for a, b in zip(first, second):  # elementwise: the interpreter's values are the kernels'
        assert bitwise_equal(np.asarray(a), np.asarray(b))


def test_module_in_a_cache_is_loaded_not_interpreted(tiering, monkeypatch):
    rng = np.random.default_rng(2)
    x, y = rand(rng, (5, 3), np.float32), rand(rng, (5,), np.float32)
    fn = fresh_function(int(rng.integers(1 << 30)))
    fusejit.jit(fn, backend="host").lower(x, y)
    before = launch.counter["interpreted"]
    fusejit.jit(fn, backend="host")(x, y)  # in the backend's memory
    backend = backends.get("host")
    monkeypatch.setattr(backend, "modules", {})
    disk = cache.stats["disk_hits"]
    fusejit.jit(fn, backend="host")(x, y)  # on disk only
    assert cache.stats["disk_hits"] == disk + 1
    assert launch.counter["interpreted"] == before


def test_graphs_the_interpreter_does_not_cover_compile_first(tiering, monkeypatch):
    def loop(x):
        return jax.lax.scan(lambda c, v: (c + v, c * v), 0.0, x)

    x = rand(np.random.default_rng(3), (7,), np.float32)
    before = launch.counter["interpreted"]
    f = fusejit.jit(loop, backend="host")
    assert compare(f.reference(x), f(x)).ok
    assert isinstance(next(iter(f.cache.values())), Compiled)
    # Too much work to interpret: the kernels are quicker to compile.
    monkeypatch.setattr(tiered, "INTERPRET_ELEMENTS", 10)
    g = fusejit.jit(fresh_function(4), backend="host")
    g(x[:, None] * np.ones((7, 3), np.float32), x)
    assert isinstance(next(iter(g.cache.values())), Compiled)
    assert launch.counter["interpreted"] == before


def test_tiering_off_compiles_first(monkeypatch):
    monkeypatch.setenv("FUSEJIT_TIERED", "0")
    x, y = np.ones((3, 2), np.float32), np.ones(3, np.float32)
    before = launch.counter["interpreted"]
    f = fusejit.jit(fresh_function(5), backend="host")
    f(x, y)
    assert isinstance(next(iter(f.cache.values())), Compiled)
    assert launch.counter["interpreted"] == before


def test_a_failed_background_compile_is_raised_by_the_next_call(tiering, monkeypatch):
    first_call_done = threading.Event()

    def broken(self):
        first_call_done.wait(60)
        raise CompileError("the compiler failed", source=self.source, log="")

    monkeypatch.setattr(RenderedGraph, "compile_module", broken)
    x, y = np.ones((3, 2), np.float32), np.ones(3, np.float32)
    f = fusejit.jit(fresh_function(int(np.random.default_rng().integers(1 << 30))), backend="host")
    before = launch.counter["interpreted"]
    f(x, y)  # interpreted while the compile runs
    first_call_done.set()
    assert launch.counter["interpreted"] == before + 1
    with pytest.raises(CompileError, match="the compiler failed"):
        f.lower(x, y)
    with pytest.raises(CompileError, match="the compiler failed"):
        f(x, y)


def test_results_are_arrays_of_their_own(tiering):
    """Never an argument, a view of one, or another result (as the kernels' outputs)."""
    rng = np.random.default_rng(6)
    x = rand(rng, (6, 4), np.float32)
    c = float(rng.uniform(3, 4))
    f = fusejit.jit(lambda x: (x, x.T, x.reshape(-1)[2:5], x * c, x * c), backend="host")
    before = launch.counter["interpreted"]
    outs = f(x)
    assert launch.counter["interpreted"] == before + 1
    for k, out in enumerate(outs):
        assert out.flags.c_contiguous
        assert not np.may_share_memory(out, x)
        assert all(not np.may_share_memory(out, other) for other in outs[k + 1:])
    assert compare(f.reference(x), outs).ok


def test_an_interpreted_call_gives_way_to_ready_kernels():
    x = rand(np.random.default_rng(7), (4,), np.float32)
    compiled = fusejit.jit(lambda x: jnp.sin(x) + 1.0, backend="host").lower(x)
    lib = ufuncs.wait(backends.get("host"))
    assert interpret.interpretable(compiled.graph)
    with pytest.raises(interpret.Stopped):
        interpret.run(compiled.graph, lib, [x], stop=lambda done: True)


def test_an_interpreted_call_past_half_way_finishes():
    """The interpreters report their progress to `stop`, from 0 and rising below 1; a Tiered
    gives way to ready kernels only before GIVE_WAY_BEFORE, where they finish sooner than the
    interpreter's rest (they start over)."""
    rng = np.random.default_rng(17)
    x = rand(rng, (64, 5), np.float32)
    f = fusejit.jit(lambda x: jnp.tanh(jnp.sin(x) * 2.0 + x) - jnp.cos(x).sum(axis=1, keepdims=True), backend="host")
    compiled = f.lower(x)
    lib = ufuncs.wait(backends.get("host"))
    seen = []
    outs = interpret.run(compiled.graph, lib, [x], stop=lambda done: seen.append(done) or False, work=tiered.eqn_work)
    assert compare(f.reference(x), outs[0]).ok
    weights = [tiered.eqn_work(e) for e in compiled.graph.eqns]
    assert seen == [sum(weights[:k]) / sum(weights) for k in range(len(weights))]
    assert seen[-1] < 1 and sum(weights) == tiered.work(compiled.graph)
    g = fusejit.jit(lambda x: jnp.tanh(jnp.sin(x) * 2.0 + x), backend="host")
    y = rand(rng, (chunked.CHUNK_ELEMENTS // 5 * 3, 5), np.float32)  # three blocks
    mapped = g.lower(y)
    plan = chunked.plan(mapped.graph)
    assert plan is not None and plan.rows_per_block() < y.shape[0]
    seen.clear()
    outs = chunked.run(plan, mapped.graph, lib, [y], stop=lambda done: seen.append(done) or False)
    assert compare(g.reference(y), outs[0]).ok
    assert len(seen) > 1 and seen[0] == 0 and seen == sorted(seen) and seen[-1] < 1
    ready, pending = concurrent.futures.Future(), concurrent.futures.Future()
    ready.set_result(None)
    assert tiered.GIVE_WAY_BEFORE == 0.5
    for future, early, late in ((ready, True, False), (pending, False, False)):
        t = tiered.Tiered(mapped.graph, lib, future, "g", plan)
        assert t.gives_way(0.0) is early and t.gives_way(0.49) is early
        assert t.gives_way(0.5) is late and t.gives_way(0.9) is late


def test_verify_runs_the_interpreter():
    before = launch.counter["interpreted"]
    verify(lambda x: jnp.cos(x) * 2, rand(np.random.default_rng(8), (9,), np.float64), backends=("host",))
    assert launch.counter["interpreted"] == before + 2  # whole arrays, then block by block


@pytest.mark.parametrize("dtype", [np.float32, np.int32, np.bool_])
def test_empty_and_scalar_inputs_interpreted(tiering, dtype):
    rng = np.random.default_rng(9)
    for shape in [(0, 3), (), (1,)]:
        x = rand(rng, shape, dtype)
        f = fusejit.jit(lambda x: (x == x, jnp.sum(x, axis=0) if x.ndim else x), backend="host")
        out = f(x)
        assert compare(f.reference(x), out).ok


def test_exit_waits_for_the_compile_so_the_module_reaches_the_disk(tmp_path):
    script = (
        "import numpy as np, fusejit, jax.numpy as jnp\n"
        "from fusejit import launch\n"
        "fusejit.init('host')\n"
        "f = fusejit.jit(lambda x: jnp.tanh(x) * 3.25 + 1.0, backend='host')\n"
        "f(np.ones(100, np.float32))\n"
        "assert launch.counter['interpreted'] == 1, dict(launch.counter)\n")
    env = dict(os.environ, FUSEJIT_CACHE_DIR=str(tmp_path), FUSEJIT_TIERED="1")
    subprocess.run([sys.executable, "-c", script], check=True, env=env, timeout=300)
    assert list((tmp_path / "host").glob("*.so")), "the module compiled in the background was not stored"


def test_a_library_that_failed_to_build_is_reported_and_first_calls_compile(tiering, monkeypatch):
    failed = concurrent.futures.Future()
    failed.set_exception(CompileError("the library's compile failed", source="", log=""))
    monkeypatch.setattr(ufuncs, "_future", failed)
    monkeypatch.setattr(ufuncs, "_warned", False)
    x, y = np.ones((3, 2), np.float32), np.ones(3, np.float32)
    before = launch.counter["interpreted"]
    f = fusejit.jit(fresh_function(int(np.random.default_rng().integers(1 << 30))), backend="host")
    with pytest.warns(UserWarning, match="could not be built.*the library's compile failed"):
        assert fusejit.init("host") == "host"  # not an error
        f(x, y)
    assert isinstance(next(iter(f.cache.values())), Compiled)
    assert launch.counter["interpreted"] == before


def test_map_graphs_run_a_block_of_rows_at_a_time(tiering, monkeypatch):
    """Slices and broadcasts of inputs, scalars, literals, an input as a result, and values
    that depend on no element: the blocked interpreter gives the kernels' bits."""
    rng = np.random.default_rng(10)
    x, row, s = rand(rng, (23, 9), np.float32), rand(rng, (9,), np.float32), np.float32(rng.uniform(1, 2))
    c = float(rng.uniform(2, 3))

    def f(x, row, s):
        scale = jnp.exp(s) * c  # no element: computed once
        y = jnp.tanh(x[1:, :] * scale + row[None, :]) - x[:-1, :] ** 3
        return y, jnp.where(y > 0, y, -y * s), x[1:], s + 1

    monkeypatch.setattr(chunked, "CHUNK_ELEMENTS", 5 * 9)  # blocks of 5 rows, the last of 2
    g = fusejit.jit(f, backend="host")
    plan = chunked.plan(g.lower(x, row, s).graph)
    assert plan is not None and plan.shape == (22, 9) and plan.rows_per_block() == 5
    h = fusejit.jit(f, backend="host")
    monkeypatch.setattr(tiered, "INTERPRET_ELEMENTS", 0)  # too much for the whole-array interpreter
    before = launch.counter["interpreted"]
    first = fusejit.jit(lambda *a: f(*a), backend="host")(x, row, s)
    assert launch.counter["interpreted"] == before + 1
    kernels = h(x, row, s)
    for a, b in zip(first, kernels):
        assert bitwise_equal(np.asarray(a), np.asarray(b))
    assert compare(h.reference(x, row, s), first).ok


def test_graphs_that_are_not_maps_are_not_blocked():
    x = np.ones((6, 4), np.float32)
    for fn in (lambda x: jnp.sum(x, axis=1) + 1,      # a reduction
               lambda x: (x + 1, x.T * 2),            # results of two shapes
               lambda x: jnp.cumsum(x, axis=0) * 2,   # a cumulative op
               lambda x: (x * 2)[::-1] + 1):          # a shape change of a computed value
        graph = fusejit.jit(fn, backend="host").lower(x).graph
        assert chunked.plan(graph) is None, fn


def test_overlapping_compiles_keep_the_raised_recursion_limit():
    """A background compile and the caller's may overlap: the limit drops back only when the
    last of them ends."""
    from fusejit.compiler import deep_recursion
    base = sys.getrecursionlimit()
    outer = deep_recursion(60_000)
    outer.__enter__()
    inner = deep_recursion(60_000)
    inner.__enter__()
    outer.__exit__(None, None, None)  # the first one ends while the other still runs
    assert sys.getrecursionlimit() >= 60_000
    inner.__exit__(None, None, None)
    assert sys.getrecursionlimit() == base


def test_an_interpreted_call_out_of_memory_waits_for_the_kernels(tiering, monkeypatch):
    calls = []

    def no_memory(*args, **kwargs):
        calls.append(1)
        raise MemoryError("no room for the interpreter's values")

    monkeypatch.setattr(interpret, "run", no_memory)
    monkeypatch.setattr(chunked, "run", no_memory)
    x, y = rand(np.random.default_rng(11), (4, 3), np.float32), np.ones(4, np.float32)
    f = fusejit.jit(fresh_function(int(np.random.default_rng().integers(1 << 30))), backend="host")
    before, kernels = launch.counter["interpreted"], launch.counter["kernels"]
    assert compare(f.reference(x, y), f(x, y)).ok
    assert calls, "the first call did not go to the interpreter"
    assert launch.counter["interpreted"] == before and launch.counter["kernels"] > kernels
    assert all(isinstance(v, Compiled) for v in f.cache.values())


def test_interpreted_calls_leave_a_core_to_the_compiler(tiering, monkeypatch):
    import ctypes
    lib = ufuncs.wait(backends.get("host"))
    threads = lambda: ctypes.c_int.in_dll(lib.dll, "fj_uf_threads").value  # noqa: E731
    seen = []

    def spy(real):
        def run(*args, **kwargs):
            seen.append(threads())
            return real(*args, **kwargs)
        return run

    monkeypatch.setattr(chunked, "run", spy(chunked.run))
    monkeypatch.setattr(interpret, "run", spy(interpret.run))
    monkeypatch.setattr(tiered, "usable_cores", lambda: 4)
    x, y = np.ones((6, 2), np.float32), np.ones(6, np.float32)
    f = fusejit.jit(fresh_function(int(np.random.default_rng().integers(1 << 30))), backend="host")
    f(x, y)
    assert seen == [3] and threads() == 0


def test_cumulative_ops_count_as_more_work_than_maps():
    """NumPy's cumulative sum is sequential and single-threaded: a large one compiles first."""
    x = np.ones(1000, np.float32)
    cum = fusejit.jit(lambda x: jnp.cumsum(x), backend="host").lower(x).graph
    add = fusejit.jit(lambda x: x + 1, backend="host").lower(x).graph
    assert tiered.work(cum) == tiered.CUMULATIVE_WEIGHT * tiered.work(add) == tiered.CUMULATIVE_WEIGHT * 1000


def test_sorts_and_top_k_count_by_the_elements_they_sort():
    """The library sorts every row where the compiled top_k reads each element once: a large
    top_k (or sort) compiles first instead of being interpreted."""
    x = np.ones((10, 100), np.float32)
    top = fusejit.jit(lambda x: lax.top_k(x, 3), backend="host").lower(x).graph
    srt = fusejit.jit(lambda x: jnp.sort(x, axis=1), backend="host").lower(x).graph
    assert tiered.work(top) == tiered.work(srt) == tiered.SORT_WEIGHT * 1000
    big = np.ones((1024, 1024), np.float32)
    graph = fusejit.jit(lambda x: lax.top_k(x, 3), backend="host").lower(big).graph
    assert isinstance(tiered.compile_tiered(graph, backends.get("host"), "big"), Compiled)
