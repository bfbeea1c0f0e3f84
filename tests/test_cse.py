"""Common subexpressions (fusejit/cse.py): a computation the program spells twice runs once,
results stay those of jax.jit, effects still run once per call site, and repeated outputs are
separate arrays."""
import jax
import jax.numpy as jnp
import numpy as np

import fusejit
from fusejit.check import compare
from fusejit.cse import eliminate_common_subexpressions
from fusejit.ir import Eqn, Graph, Var
from helpers import rand, verify


def primitives(compiled) -> list[str]:
    return [e.primitive for e in compiled.graph.eqns]


def test_mean_and_var_sum_the_rows_once():
    def stats(x):
        return x.mean(-1), x.var(-1), jnp.exp(x) + jnp.exp(x) * 2.0

    x = rand(np.random.default_rng(7), (33, 257), np.float32)
    compiled = verify(stats, x)
    traced = [e.primitive for e in fusejit.make_graph(stats)(x).eqns]  # as traced, nested calls inlined
    assert traced.count("reduce_sum") == 3 and traced.count("exp") == 2
    assert primitives(compiled).count("reduce_sum") == 2  # the sum of x, and of the squares
    assert primitives(compiled).count("exp") == 1


def test_equations_that_differ_stay_apart(x64):
    def f(x, y):
        # other axes, other operands, literals of other signs (x + -0.0 keeps x's -0.0)
        return x.sum(0), x.sum(1), x * y, y * x, x + 0.0, x + (-0.0), x.astype(jnp.int32), x.astype(jnp.int64)

    x = rand(np.random.default_rng(7), (17, 5), np.float32, special=True)
    x[0, :2] = -0.0
    y = rand(np.random.default_rng(7), (17, 5), np.float32)
    compiled = verify(f, x, y)
    plus_zero, plus_negative_zero = fusejit.jit(f)(x, y)[4:6]
    assert primitives(compiled).count("reduce_sum") == 2
    assert primitives(compiled).count("add") == 2
    assert not np.signbit(plus_zero[0, 0]) and np.signbit(plus_negative_zero[0, 0])


def test_each_debug_callback_still_runs():
    seen = []

    def record(a):
        seen.append(float(a))

    def f(x):
        jax.debug.callback(record, x.sum())  # the same callback of the same value, twice
        jax.debug.callback(record, x.sum())
        return x * 2.0

    x = rand(np.random.default_rng(7), (8,), np.float32)
    fusejit.jit(f)(x)
    assert len(seen) == 2 and seen[0] == seen[1]


def test_repeated_outputs_are_separate_arrays():
    def twice(x):
        y = x * 2.0
        return y, y, x * 2.0, x.sum(), x.sum()

    x = rand(np.random.default_rng(7), (1000,), np.float32)
    results = fusejit.jit(twice)(x)
    want = jax.jit(twice)(x)
    for got, expected in zip(results, want):
        assert compare(np.asarray(expected), np.asarray(got)).ok
    for a in range(len(results)):
        for b in range(a + 1, len(results)):
            assert not np.shares_memory(results[a], results[b]), (a, b)
    results[0][:] = 0.0  # writing one leaves the others as they were
    assert compare(np.asarray(want[1]), np.asarray(results[1])).ok


def test_effects_are_never_merged():
    # jax wraps each call site's callback anew, so a traced program never repeats one exactly;
    # a graph that does keeps both calls, while a repeated pure equation goes
    x = Var((3,), np.dtype(np.float32))
    y, z = Var((3,), np.dtype(np.float32)), Var((3,), np.dtype(np.float32))
    params = {"callback": print, "partitioned": False}
    calls = [Eqn("debug_callback", (x,), (), params), Eqn("debug_callback", (x,), (), params)]
    graph = Graph((x,), (), (*calls, Eqn("neg", (x,), (y,), {}), Eqn("neg", (x,), (z,), {})), (y, z))
    kept = eliminate_common_subexpressions(graph)
    assert [e.primitive for e in kept.eqns] == ["debug_callback", "debug_callback", "neg"]
    assert kept.outputs == (y, y)
