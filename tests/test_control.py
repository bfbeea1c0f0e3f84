"""scan, fori_loop, while_loop, cond and switch against jax.jit: every scan strategy, loops
whose trip count depends on the data, hoisting, and the no-allocation host loop."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

import fusejit
from fusejit import backends, launch
from helpers import FLOATS, rand, verify

STRATEGIES = ("auto", "unroll", "loop")


def calls(f, *args):
    """Kernel launches and library calls of one call of the jitted f."""
    f(*args)
    before = dict(launch.counter)
    f(*args)
    return {k: launch.counter[k] - before.get(k, 0) for k in ("kernels", "library")}


def pytree_scan(xs, init, w):
    """Consts (w), two carries (one a pytree), xs as a pytree, ys as a pytree."""
    def body(carry, x):
        (a, b), n = carry
        a = a * 0.5 + x["u"] * w
        b = jnp.tanh(b + x["v"].sum())
        return ((a, b), n + 1), {"a": a * 2.0, "both": (b, a.sum())}
    return lax.scan(body, (init, 0), xs)


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("dtype", FLOATS)
def test_scan_strategies_with_pytrees(dtype, strategy, reverse, x64):
    rng = np.random.default_rng(1)
    xs = {"u": rand(rng, (6, 3, 5), dtype), "v": rand(rng, (6, 4), dtype)}
    init = (rand(rng, (3, 5), dtype), rand(rng, (), dtype))
    w = rand(rng, (5,), dtype)

    def f(xs, init, w):
        return pytree_scan(xs, init, w) if not reverse else lax.scan(
            lambda c, x: (c * 0.9 + x["u"], c), init[0], xs, reverse=True)

    compiled = verify(f, xs, init, w, scan=strategy)
    scans = [e for e in compiled.graph.eqns if e.primitive == "scan"]
    assert len(scans) == {"unroll": 0, "loop": 1}.get(strategy, len(scans))


def test_scan_length_without_xs_and_of_zero(x64):
    def f(c):
        a = lax.scan(lambda c, _: (c * 1.5 + 1.0, c), c, None, length=7)
        b = lax.scan(lambda c, _: (c + 1.0, c), c, None, length=0)
        return a, b

    for strategy in STRATEGIES:
        verify(f, rand(np.random.default_rng(2), (4,), np.float64), scan=strategy)


def test_scan_strategy_from_the_environment(monkeypatch):
    def f(x):
        return lax.scan(lambda c, x: (c + x, c), x[0], x)[0]

    x = rand(np.random.default_rng(3), (5, 3), np.float32)
    monkeypatch.setenv("FUSEJIT_SCAN", "unroll")
    assert "scan" not in fusejit.jit(f).lower(x).as_text()
    monkeypatch.setenv("FUSEJIT_SCAN", "loop")
    text = fusejit.jit(f).lower(x).as_text()
    assert "device loop" in text
    # The argument wins over the environment.
    assert "scan" not in fusejit.jit(f, scan="unroll").lower(x).as_text()
    with pytest.raises(ValueError, match="scan must be one of"):
        fusejit.jit(f, scan="sideways")


def test_unroll_parameter_is_honoured(x64):
    """jax's unroll=k: the host loop runs a body of k iterations per step (and the rest one by
    one).  (The sort, a library call, keeps the body on the host.)"""
    def f(x, m):
        def body(c, x):
            return jnp.sort(m @ c) + x, jnp.sum(c)
        return lax.scan(body, x[0], x, unroll=3)

    rng = np.random.default_rng(4)
    x, m = rand(rng, (8, 5), np.float64), rand(rng, (5, 5), np.float64) * 0.2
    compiled = verify(f, x, m, backends=("host",), scan="loop")
    assert "3 iterations per step" in compiled.as_text()
    compiled = verify(lambda x, m: lax.scan(lambda c, x: (jnp.sort(m @ c) + x, c), x[0], x, unroll=True), x, m,
                      backends=("host",))
    assert "scan" not in [e.primitive for e in compiled.graph.eqns]


def test_elementwise_recurrence_is_one_device_loop_kernel():
    """The body is elementwise in the carry: every iteration runs in one kernel launch."""
    def f(x, a):
        def body(c, _):
            u, k = c
            return (jnp.tanh(u * a) * 0.5 + 0.25 * u, k + 1), None
        return lax.scan(body, (x, 0), None, length=50)[0]

    x = rand(np.random.default_rng(5), (3, 37), np.float32)
    a = np.float32(0.9)
    compiled = verify(f, x, a, scan="loop")
    text = compiled.as_text()
    assert "device loop: 50 iteration(s) in one kernel" in text and "=== scan: kernel" in text
    assert calls(fusejit.jit(f, scan="loop"), x, a) == {"kernels": 1, "library": 0}


def test_device_loop_with_xs_ys_and_reverse(x64):
    def f(x, xs):
        return lax.scan(lambda c, t: (c * 0.99 + jnp.sin(t), (c * t, c.sum() if False else c * 2)), x, xs,
                        reverse=True)

    rng = np.random.default_rng(6)
    verify(f, rand(rng, (4, 9), np.float64), rand(rng, (11, 4, 9), np.float64), scan="loop")


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int32, np.uint8])
@pytest.mark.parametrize("rows", [1, 3, 41])
def test_device_loop_computes_what_no_iteration_changes_once(dtype, rows, x64):
    """Consts read at the element's own index (y) and broadcast along rows (b) feed values that
    no iteration changes: they are computed once per tile and kept per lane.  Row counts give
    host tiles that are all partial, full and partial, and several full ones."""
    def f(x, y, b):
        def body(c, _):
            return c * 3 - (y * y + b) // 2 if np.dtype(dtype).kind in "iu" else c * 0.5 + (y * y + b), None
        return lax.scan(body, x, None, length=7)[0]

    rng = np.random.default_rng(16)
    x, y, b = rand(rng, (rows, 37), dtype), rand(rng, (rows, 37), dtype), rand(rng, (37,), dtype)
    compiled = verify(f, x, y, b, scan="loop")
    source = compiled.as_text()
    assert "device loop" in source and "_lanes[lane] = " in source  # kept per lane, read each step


def test_device_loop_over_several_host_blocks_with_too_many_invariants_to_keep():
    """20 values no iteration changes are more than a tile keeps per lane: they are computed
    every step instead; the host splits 80,000 elements over its cores in tiles."""
    def f(x, y):
        def body(c, _):
            return sum((jnp.sin(y * k) for k in range(1, 21)), c * 0.5), None
        return lax.scan(body, x, None, length=3)[0]

    rng = np.random.default_rng(17)
    x, y = rand(rng, (80_003,), np.float32), rand(rng, (80_003,), np.float32)
    compiled = verify(f, x, y, scan="loop", backends=("host",))
    assert "device loop" in compiled.as_text() and "_lanes[lane] = " not in compiled.as_text()
    small = verify(f, x[:300], y[:300], scan="loop", backends=("emulate",))
    assert "_lanes[lane] = " not in small.as_text()


def test_body_reading_another_elements_carry_runs_as_a_block_loop():
    """x[::-1] of the carry couples elements: no device loop (a thread per element), but a
    block loop (the block shares the carry in shared memory)."""
    def f(x):
        return lax.scan(lambda c, _: (c[::-1] * 0.5 + 1.0, None), x, None, length=9)[0]

    compiled = verify(f, rand(np.random.default_rng(7), (5,), np.float32), scan="loop")
    assert "block loop: 9 iteration(s)" in compiled.as_text()


def test_body_with_a_library_call_runs_as_a_host_loop():
    def f(x):
        return lax.scan(lambda c, _: (jnp.sort(c[::-1] * 0.5 + 1.0), None), x, None, length=9)[0]

    compiled = verify(f, rand(np.random.default_rng(7), (5,), np.float32), scan="loop")
    assert "host loop of 9 iteration(s)" in compiled.as_text()


def test_host_loop_allocates_nothing_per_iteration(monkeypatch):
    """Carries are double-buffered, ys written in place, and the body's intermediates reuse one
    workspace: a call allocates as much for 10 iterations as for 40."""
    def allocations(length):
        m = rand(np.random.default_rng(8), (4, 4), np.float32) * 0.1
        x = rand(np.random.default_rng(9), (4,), np.float32)
        g = fusejit.jit(lambda x, m: lax.scan(lambda c, _: (jnp.sort(jnp.tanh(m[:3, :3] @ c[:3])).sum() + c, c.sum()),
                                              x, None, length=length), scan="loop")
        g(x, m)
        host = backends.get("host")
        count = {"n": 0}
        empty = host.empty

        def counting(shape, dtype):
            count["n"] += 1
            return empty(shape, dtype)

        monkeypatch.setattr(host, "empty", counting)
        g(x, m)
        monkeypatch.undo()
        assert "host loop" in g.lower(x, m).as_text()
        return count["n"]

    assert allocations(10) == allocations(40)


def test_host_loop_iterations_run_straight_line_runners(monkeypatch, x64):
    """Each iteration of a host loop calls its body's straight-line runner
    (Program.loop_runner), with outputs of every kind: computed by a kernel (written in place),
    a carry passed through (copied), a literal (filled), a predicate with no `out`.  The same
    results with FUSEJIT_DEBUG=1, where iterations take the general Program.run."""
    def f(x, n):
        def body(c, _):
            a, b = c
            return (jnp.sort(a[::-1] * 0.5 + 1.0), b), (a.sum(), jnp.float32(2.5), b)
        ys = lax.scan(body, (x, x[0] * 2), None, length=7)
        w = lax.while_loop(lambda c: jnp.max(c[1]) < n, lambda c: (c[0], jnp.sort(c[1]) * 2.0 + 1.0), (x[0], x))
        return ys, w

    rng = np.random.default_rng(23)
    x, n = np.abs(rand(rng, (5, 6), np.float32)) + 0.5, np.float32(300.0)
    compiled = verify(f, x, n, scan="loop", backends=("host",))
    loops = [s.op for s in compiled.program.steps if isinstance(s, launch.Call) and hasattr(s.op, "children")]
    assert len(loops) == 2 and all(c.loop_runner is not None for loop in loops for c in loop.children)
    assert {"slot", "input", "literal"} <= {o[0] for loop in loops for c in loop.children for o in c.program.outputs}
    assert all("for " not in c.loop_runner.source for loop in loops for c in loop.children)
    jitted = fusejit.jit(f, scan="loop")
    fast = jitted(x, n)
    monkeypatch.setenv("FUSEJIT_DEBUG", "1")
    slow = jitted(x, n)
    for a, b in zip(jax.tree_util.tree_leaves(fast), jax.tree_util.tree_leaves(slow)):
        np.testing.assert_array_equal(a, b)


def test_hoisting_moves_the_lu_factorisation_out_of_the_loop(x64):
    """solve(A, x) with A an argument the loop does not change: lu(A) runs once, before the
    loop; as_text shows it.  (With A a captured constant, lu(A) is folded: tests/test_fold.py.)"""
    B = jnp.eye(6) * 0.3

    def f(x, A):
        def body(c, _):
            return B @ c + jnp.linalg.solve(A, c) + jnp.linalg.norm(c), None
        return lax.scan(body, x, None, length=5)[0]

    rng = np.random.default_rng(10)
    A = np.eye(6) * 2.0 + rand(rng, (6, 6), np.float64) * 0.1
    compiled = verify(f, rand(rng, (6,), np.float64), A, scan="loop", backends=("host",))
    text = compiled.as_text()
    assert "hoisted=('lu',)" in text
    outer = [e.primitive for e in compiled.graph.eqns]
    assert outer.index("lu") < outer.index("scan")
    body = next(e for e in compiled.graph.eqns if e.primitive == "scan").params["body"]
    assert "lu" not in [e.primitive for e in body.eqns]


@pytest.mark.parametrize("dtype", FLOATS)
def test_fori_loop_static_and_data_dependent_trip_counts(dtype, x64):
    rng = np.random.default_rng(11)
    x = rand(rng, (3, 7), dtype)

    def f(x, n):
        a = lax.fori_loop(0, 6, lambda i, c: c * 0.5 + i, x)        # static bounds: a scan
        b = lax.fori_loop(0, n, lambda i, c: c + jnp.sin(c) * i, x)   # traced bound: a while loop
        return a, b

    compiled = verify(f, x, np.int32(5))
    assert "while" in [e.primitive for e in compiled.graph.eqns]


def test_while_loop_whose_trip_count_depends_on_the_data():
    """Halve until every element is below 1: the predicate is a reduction, read back per iteration."""
    def f(x):
        return lax.while_loop(lambda c: jnp.max(jnp.abs(c[0])) >= 1.0,
                              lambda c: (c[0] * 0.5, c[1] + 1), (x, 0))

    x = rand(np.random.default_rng(12), (4, 33), np.float32) * 100
    compiled = verify(f, x)
    assert "predicate" in compiled.as_text()
    jitted = fusejit.jit(f)
    small, big = jitted(x * 0.01), jitted(x)
    assert int(small[1]) < int(big[1])  # the same program runs different numbers of iterations


def test_integer_while_loop_collatz():
    def steps(n):
        def body(c):
            n, k = c
            return jnp.where(n % 2 == 0, n // 2, 3 * n + 1), k + 1
        return lax.while_loop(lambda c: c[0] != 1, body, (n, 0))[1]

    for n in (1, 6, 27):
        verify(steps, np.int32(n), backends=("host",))


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int32, np.bool_])
def test_while_loop_on_a_counter_is_one_device_loop_kernel(dtype, x64):
    """A predicate that reads scalar carries only (a counter against a bound passed in) and a
    body elementwise in the other carries: every thread computes the same predicate, so the
    loop runs in one kernel; consts read at the element's index and broadcast along rows."""
    def f(x, y, b, n):
        def body(c):
            k, u, s = c
            if np.dtype(dtype) == np.bool_:
                return k + 1, (u ^ y) | b, s * 2 + 1
            if np.dtype(dtype).kind == "f":  # (a contraction: no cancellation grows over the steps)
                return k + 1, u * 0.75 + y - b * k, s * 2 + 1
            return k + 1, u * 3 - y + b * k, s * 2 + 1
        return lax.while_loop(lambda c: c[0] < n + c[2] % 2, body, (0, x, jnp.int32(0)))

    rng = np.random.default_rng(21)
    x, y, b = rand(rng, (41, 37), dtype), rand(rng, (41, 37), dtype), rand(rng, (37,), dtype)
    for n in (5, 0, -2):  # iterations, none, none
        compiled = verify(f, x, y, b, np.int32(n))
    text = compiled.as_text()
    assert "device while loop" in text and "host while loop" not in text
    assert calls(fusejit.jit(f), x, y, b, np.int32(5)) == {"kernels": 1, "library": 0}


def test_while_loops_that_stay_on_the_host(x64):
    """A predicate on a non-scalar carry (its max), a body reading another element's carry (a
    shift) and carries of no elements (the counter still iterates) run host loops."""
    def on_max(x):
        return lax.while_loop(lambda c: jnp.max(c) < 100.0, lambda c: c * 2.0 + 1.0, x)

    def shifted(x, n):
        return lax.while_loop(lambda c: c[0] < n, lambda c: (c[0] + 1, jnp.roll(c[1], 1) * 0.5), (0, x))

    rng = np.random.default_rng(22)
    x = np.abs(rand(rng, (5, 7), np.float32)) + 0.5
    for f, args in ((on_max, (x,)), (shifted, (x, np.int32(4))), (shifted, (x[:0], np.int32(4)))):
        compiled = verify(f, *args)
        assert "host while loop" in compiled.as_text() and "device while loop" not in compiled.as_text()


def test_vmapped_while_loops_run_each_row_until_its_own_predicate_fails(x64):
    """vmap of a while_loop leaves the predicate batched: the loop runs while any row's holds
    and updates only those rows (the Collatz step counts of a vector, a fori_loop with a
    batched bound, rows of a matrix carry, and a batch where no row iterates)."""
    def collatz(n):
        def body(c):
            n, k = c
            return jnp.where(n % 2 == 0, n // 2, 3 * n + 1), k + 1
        return lax.while_loop(lambda c: c[0] != 1, body, (n, 0))[1]

    n = np.random.default_rng(13).integers(1, 60, 11).astype(np.int32)
    verify(jax.vmap(collatz), n)
    verify(jax.vmap(collatz), np.ones(3, np.int32))  # no row iterates

    def halve_rows(x, limit):
        return lax.while_loop(lambda c: jnp.max(jnp.abs(c[0])) >= limit,
                              lambda c: (c[0] * 0.5, c[1] + 1.0), (x, jnp.zeros((), x.dtype)))

    r = np.random.default_rng(14)
    x = rand(r, (5, 3, 7), np.float64) * 100
    verify(jax.vmap(halve_rows), x, np.abs(rand(r, (5,), np.float64)) + 0.5)

    counts = r.integers(0, 6, 9).astype(np.int32)
    verify(jax.vmap(lambda k, v: lax.fori_loop(0, k, lambda i, c: c * 1.5 + i, v)), counts,
           rand(r, (9, 4), np.float32))


def test_cheap_cond_and_switch_become_selects():
    def f(x, i):
        a = lax.cond(i > 1, lambda v: v + 1.0, lambda v: v * 2.0, x)
        b = lax.switch(i, [lambda v: v - 1.0, jnp.sin, lambda v: v * v], x)
        return a, b

    x = rand(np.random.default_rng(13), (5, 3), np.float32)
    for i in (-1, 0, 1, 2, 7):  # switch clamps the index, as jax.lax.switch does
        compiled = verify(f, x, np.int32(i))
    prims = [e.primitive for e in compiled.graph.eqns]
    assert "cond" not in prims and "select_n" in prims


def test_expensive_branches_run_on_the_host():
    def f(x, i):
        return lax.switch(i, [lambda v: jnp.sort(v, axis=1), lambda v: jnp.cumsum(v, 1), lambda v: v @ v.T[:, :3]],
                          x)

    x = rand(np.random.default_rng(14), (3, 3), np.float32)
    for i in (0, 1, 2):
        compiled = verify(f, x, np.int32(i), backends=("host",))
    assert "branch chosen on the host among 3" in compiled.as_text()


def test_nested_loops_and_conds(x64):
    def f(x):
        def outer(c, t):
            inner = lax.fori_loop(0, 3, lambda i, v: v * 0.9 + t, c)
            c = lax.cond(jnp.sum(inner) > 0, lambda v: v - 1.0, lambda v: v + 1.0, inner)
            n = lax.while_loop(lambda s: s[0] < 4, lambda s: (s[0] + 1, s[1] * 1.1), (0, jnp.max(c)))[1]
            return c, n
        return lax.scan(outer, x[0], x)

    verify(f, rand(np.random.default_rng(15), (5, 4), np.float64), backends=("host",))


@pytest.mark.parametrize("dtype", FLOATS)
def test_scan_over_small_arrays_runs_as_one_block_loop(dtype, x64):
    """Matrix products (batched too), lower and upper triangular solves (transposed too),
    reductions, argmax, gathers and ys: every iteration in one block of one kernel."""
    rng = np.random.default_rng(16)
    a = rand(rng, (12, 12), dtype) * 0.1 + np.eye(12, dtype=dtype) * 3
    m = rand(rng, (3, 12, 12), dtype) * 0.05
    tri = np.tril(a)

    def f(x, xs):
        def body(c, t):
            lower = jax.scipy.linalg.solve_triangular(tri, c, lower=True)
            upper = jax.scipy.linalg.solve_triangular(tri, c[:, None], lower=True, trans=1)[:, 0]
            batched = jnp.einsum("bij,j->bi", m, c).sum(0)
            new = 0.5 * (lower - upper) + batched + jnp.linalg.norm(c) * 0.01 + t
            return new, (jnp.max(new), jnp.argmax(new), new[jnp.argmin(new)])
        return lax.scan(body, x, xs, reverse=True)

    x, xs = rand(rng, (12,), dtype), rand(rng, (7, 12), dtype) * 0.1
    compiled = verify(f, x, xs, scan="loop", **({"rtol": 1e-4, "atol": 1e-5} if dtype == np.float32 else {}))
    assert "block loop: 7 iteration(s) in one block" in compiled.as_text()
    assert calls(fusejit.jit(f, scan="loop"), x, xs)["kernels"] == 1


def test_notebook_loop_is_one_launch(x64):
    """The seed notebook's loop: lu hoisted and, A being a constant, folded (no library call
    at run time); the 100 iterations are one kernel."""
    rng = np.random.default_rng(17)
    A = jnp.asarray(np.eye(50) * 4 + rng.standard_normal((50, 50)) * 0.1)
    B = jnp.asarray(rng.standard_normal((50, 50)) * 0.02)

    def f(x):
        return lax.scan(lambda c, _: (B @ c + jnp.linalg.solve(A, c) + jnp.linalg.norm(c), None), x, None,
                        length=100)[0]

    x = rand(rng, (50,), np.float64) * 1e-3
    verify(f, x, backends=("host",))
    assert calls(fusejit.jit(f), x) == {"kernels": 1, "library": 0}
