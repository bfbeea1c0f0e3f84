"""Constant folding (fusejit/fold.py): library calls on constants run once, when the program is
built, and their results are kept in the disk cache for the next process."""
import json
import os
import subprocess
import sys
import textwrap
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

import fusejit
from fusejit import backends, cache, fold, launch
from fusejit.check import compare
from helpers import rand, verify


@pytest.fixture
def fresh_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("FUSEJIT_CACHE_DIR", str(tmp_path / "cache"))
    backends._instances.clear()
    cache.stats.clear()
    yield tmp_path / "cache"
    backends._instances.clear()


def primitives(compiled):
    return [e.primitive for e in compiled.graph.eqns]


def library_calls(f, *args):
    """Library calls of one steady-state call of the jitted f."""
    f(*args)
    before = launch.counter["library"]
    f(*args)
    return launch.counter["library"] - before


def well_conditioned(rng, n, dtype):
    return (np.eye(n) * 3.0 + rng.uniform(-0.1, 0.1, (n, n))).astype(dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_lu_of_a_captured_matrix_is_folded(dtype, x64, fresh_cache):
    rng = np.random.default_rng(0)
    A = jnp.asarray(well_conditioned(rng, 9, dtype))

    def f(x):
        return jnp.linalg.solve(A, x) * 2.0

    x = rand(rng, (9, 3), dtype)
    compiled = verify(f, x, backends=("host",), rtol=1e-4 if dtype == np.float32 else None)
    assert "lu" not in primitives(compiled)
    assert cache.stats["folds"] == 1
    # Only the triangular solves are left to run at call time.
    assert library_calls(fusejit.jit(f), x) == primitives(compiled).count("triangular_solve")


def test_notebook_loop_runs_no_library_call(x64, fresh_cache):
    """The lu hoisted out of the loop is folded: one kernel, no library call, per call."""
    rng = np.random.default_rng(1)
    A = jnp.asarray(well_conditioned(rng, 20, np.float64))
    B = jnp.asarray(rng.uniform(-0.1, 0.1, (20, 20)))

    def f(x):
        return lax.scan(lambda c, _: (B @ c + jnp.linalg.solve(A, c) + jnp.linalg.norm(c), None), x, None,
                        length=30)[0]

    x = rand(rng, (20,), np.float64) * 1e-3
    compiled = verify(f, x, backends=("host", "emulate"))
    assert "lu" not in primitives(compiled)
    assert compiled.folded == ("lu",)
    assert "folded when built (calls on constants, now constants): lu" in compiled.as_text()
    assert library_calls(fusejit.jit(f), x) == 0


def test_a_new_function_loads_the_folded_values_from_disk(x64, fresh_cache):
    rng = np.random.default_rng(2)
    A = jnp.asarray(well_conditioned(rng, 12, np.float64))
    x = rand(rng, (12,), np.float64)

    def make():
        return fusejit.jit(lambda x: jnp.linalg.solve(A, x))

    first = make()(x)
    assert (cache.stats["folds"], cache.stats["fold_stores"], cache.stats["fold_hits"]) == (1, 1, 0)
    assert any(name.endswith(".npy") for name in os.listdir(fresh_cache / "folded"))
    backends._instances.clear()  # the modules too must come from disk
    second = make()(x)
    assert (cache.stats["folds"], cache.stats["fold_stores"], cache.stats["fold_hits"]) == (1, 1, 1)
    np.testing.assert_array_equal(first, second)
    assert compare(jax.jit(lambda x: jnp.linalg.solve(A, x))(x), second).ok


def test_other_constant_values_are_other_entries(x64, fresh_cache):
    rng = np.random.default_rng(3)
    x = rand(rng, (8,), np.float64)
    for k in range(3):
        A = jnp.asarray(well_conditioned(rng, 8, np.float64))
        got = fusejit.jit(lambda x: jnp.linalg.solve(A, x))(x)
        assert compare(jax.jit(lambda x: jnp.linalg.solve(A, x))(x), got).ok
        assert cache.stats["folds"] == k + 1 and cache.stats["fold_hits"] == 0


def test_factorisations_of_constants_fold_and_match_jax(x64, fresh_cache):
    rng = np.random.default_rng(4)
    a = rng.uniform(-1, 1, (7, 5))
    s = a.T @ a + np.eye(5)

    def f(x):
        q, r = jnp.linalg.qr(a)
        chol = jnp.linalg.cholesky(s)
        w, v = jnp.linalg.eigh(s)
        sv = jnp.linalg.svd(a, compute_uv=False)
        return q.T @ x + r.sum() + chol @ x[:5] + w.sum() + jnp.abs(v).sum() + sv.sum(), jnp.sort(x)

    compiled = verify(f, rand(rng, (7,), np.float64), backends=("host",), rtol=1e-10, atol=1e-10)
    assert not {"qr", "cholesky", "eigh", "svd"} & set(primitives(compiled))


@pytest.mark.parametrize("dtype", [np.float32, np.int32, np.uint8, np.bool_])
def test_sorts_and_slices_of_constants_fold(dtype, fresh_cache):
    rng = np.random.default_rng(5)
    c = rand(rng, (11, 6), dtype)
    empty = np.zeros((0,), dtype)

    def f(x):
        top = jnp.sort(c, axis=0)                           # sort of a constant
        window = lax.dynamic_slice(c, (2, 1), (4, 3))       # constant starts: literals
        nothing = jnp.sort(empty)                           # an empty constant
        return top[3] == x[0], window, nothing, jnp.sort(x)

    compiled = verify(f, rand(rng, (6,), dtype))
    assert "dynamic_slice" not in primitives(compiled)
    assert primitives(compiled).count("sort") == 1  # x's
    assert cache.stats["folds"] >= 3


def test_a_folded_result_returned_is_a_fresh_array_every_call(x64, fresh_cache):
    A = well_conditioned(np.random.default_rng(6), 6, np.float64)
    f = fusejit.jit(lambda x: (jnp.linalg.cholesky(A @ A.T), x + 1.0))
    x = np.ones(3)
    first, _ = f(x)
    assert "cholesky" not in primitives(f.lower(x))
    expected = np.array(first, copy=True)
    first[...] = -1.0
    second, _ = f(x)
    assert not np.shares_memory(first, second)
    np.testing.assert_array_equal(second, expected)
    assert compare(jnp.linalg.cholesky(A @ A.T), second).ok


def test_a_call_that_would_grow_its_operands_is_not_folded(fresh_cache):
    rng = np.random.default_rng(7)
    col, row = jnp.asarray(rand(rng, (300, 1), np.float32)), jnp.asarray(rand(rng, (1, 300), np.float32))
    small = jnp.asarray(rand(rng, (8, 8), np.float32))

    def f(x):
        outer = col @ row     # 90,000 results from 600 operands: computed at call time
        square = small @ small  # folded
        return outer * x, square * x[0, 0]

    compiled = verify(f, rand(rng, (300, 300), np.float32), backends=("host",))
    dots = [e for e in compiled.graph.eqns if e.primitive == "dot_general"]
    assert [d.outputs[0].shape for d in dots] == [(300, 300)]


def test_without_the_disk_cache_values_are_computed_and_nothing_is_written(fresh_cache, monkeypatch, x64):
    monkeypatch.setenv("FUSEJIT_CACHE", "0")
    A = jnp.asarray(well_conditioned(np.random.default_rng(8), 5, np.float64))
    x = np.ones(5)
    for _ in range(2):
        backends._instances.clear()
        got = fusejit.jit(lambda x: jnp.linalg.solve(A, x))(x)
    assert cache.stats["folds"] == 2 and cache.stats["fold_hits"] == 0 and cache.stats["fold_stores"] == 0
    assert not (fresh_cache / "folded").exists()
    assert compare(jnp.linalg.solve(A, x), got).ok


def test_a_corrupted_entry_is_computed_again(fresh_cache, x64):
    A = jnp.asarray(well_conditioned(np.random.default_rng(9), 5, np.float64))
    x = np.ones(5)
    fusejit.jit(lambda x: jnp.linalg.solve(A, x))(x)
    (entry,) = [p for p in (fresh_cache / "folded").iterdir() if p.suffix == ".npy"]
    entry.write_bytes(entry.read_bytes()[:40])
    with pytest.warns(UserWarning, match="corrupted or incomplete"):
        got = fusejit.jit(lambda x: jnp.linalg.solve(A, x))(x)
    assert cache.stats["folds"] == 2
    assert compare(jnp.linalg.solve(A, x), got).ok


def test_an_entry_of_other_types_is_computed_again(fresh_cache, x64):
    """An entry whose arrays do not have the call's result types (a valid file, checksum
    and all) is not used: the values are computed and the entry written again."""
    A = jnp.asarray(well_conditioned(np.random.default_rng(10), 5, np.float64))
    x = np.ones(5)
    fusejit.jit(lambda x: jnp.linalg.solve(A, x))(x)
    (entry,) = [p for p in (fresh_cache / "folded").iterdir() if p.suffix == ".npy"]
    key = entry.stem
    cache.store("folded", key, ".npy", lambda out: fold._save(out, [np.zeros(3, np.float32)]))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = fusejit.jit(lambda x: jnp.linalg.solve(A, x))(x)
    assert cache.stats["folds"] == 2 and cache.stats["fold_hits"] == 1
    assert compare(jnp.linalg.solve(A, x), got).ok
    cache.stats.clear()
    fusejit.jit(lambda x: jnp.linalg.solve(A, x) + 0.0)(x)  # the rewritten entry is used
    assert cache.stats["folds"] == 0 and cache.stats["fold_hits"] == 1


def test_a_parameter_printed_by_address_is_folded_but_not_stored():
    class Opaque:
        pass

    eqn = fold.Eqn("sort", (), (), {"comparator": Opaque()})
    assert " at 0x" in repr(sorted(eqn.params.items()))
    assert fold._key(eqn, []) is None


SCRIPT = textwrap.dedent("""
    import json, sys
    import jax, numpy as np, jax.numpy as jnp, fusejit
    jax.config.update("jax_enable_x64", True)
    rng = np.random.default_rng(11)
    A = jnp.asarray(np.eye(30) * 3 + rng.uniform(-0.1, 0.1, (30, 30)))
    B = jnp.asarray(rng.uniform(-0.1, 0.1, (30, 30)))

    def f(x):
        body = lambda c, _: (B @ c + jnp.linalg.solve(A, c) + jnp.linalg.norm(c), None)
        return jax.lax.scan(body, x, None, length=20)[0]

    x = rng.uniform(-1e-3, 1e-3, 30)
    got = fusejit.jit(f)(x)
    scipy_linalg = "scipy.linalg" in sys.modules
    from fusejit.check import compare
    ok = compare(jax.jit(f)(x), got).ok
    print(json.dumps({"stats": dict(fusejit.cache.stats), "scipy_linalg": scipy_linalg, "ok": ok}))
""")


def test_a_new_process_with_the_disk_cache_needs_no_lapack(fresh_cache):
    """The folded factorisation comes from disk: a new process's first call neither computes
    it nor imports scipy.linalg (100 ms) to do so."""
    env = dict(os.environ, FUSEJIT_CACHE_DIR=str(fresh_cache))
    runs = []
    for _ in range(2):
        proc = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
        runs.append(json.loads(proc.stdout.splitlines()[-1]))
    assert all(r["ok"] for r in runs)
    assert runs[0]["stats"].get("folds") == 1 and runs[0]["scipy_linalg"]
    assert runs[1]["stats"].get("folds", 0) == 0 and runs[1]["stats"].get("fold_hits") == 1
    assert runs[1]["stats"].get("compiles", 0) == 0
    assert not runs[1]["scipy_linalg"]


@pytest.mark.parametrize("dtype", [np.int32, np.float32])
def test_inexact_elementwise_operands_stay_in_the_program(dtype, fresh_cache):
    """Integer division and float-to-integer conversion round otherwise in NumPy than in the
    kernels: a call whose operand needs one is not folded; exact float arithmetic is."""
    rng = np.random.default_rng(12)
    c = jnp.asarray(rand(rng, (9,), dtype))

    def f(x):
        if dtype == np.int32:
            kept = jnp.sort(c // 3)                     # integer division: not folded
        else:
            kept = jnp.sort((c * 7.5).astype(jnp.int32))  # float to integer: not folded
        folded = jnp.sort(c.astype(jnp.float32) / 4.0 - 1.0)  # exact float arithmetic: folded
        return kept + x, folded * 2

    compiled = verify(f, rand(rng, (9,), np.int32))
    assert primitives(compiled).count("sort") == 1
    assert cache.stats["folds"] == 1
