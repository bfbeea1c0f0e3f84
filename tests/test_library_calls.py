"""Library calls between fused kernels, through the whole pipeline, against jax.jit: matrix
products, solves and factorisations, sort, gather, scatter and dynamic slices, with fused
producers before them and consumers after them (fusejit/library.py is tested rule by rule in
test_library.py)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

import fusejit
from helpers import FLOATS, rand, verify


@pytest.mark.parametrize("dtype", FLOATS)
def test_matrix_products_between_kernels(dtype, x64):
    rng = np.random.default_rng(1)
    a, b = rand(rng, (5, 7), dtype), rand(rng, (7, 3), dtype)
    batch, v = rand(rng, (4, 5, 7), dtype), rand(rng, (7,), dtype)
    with jax.default_matmul_precision("highest"):
        compiled = verify(lambda a, b, batch, v: {
            "matmul_epilogue": jnp.tanh(jnp.sin(a) @ b + 1.0),
            "matvec": a @ v, "vecmat": v @ b, "batched": batch @ b, "einsum": jnp.einsum("bij,kj->bik", batch, a),
            "outer": jnp.outer(v, v), "dot": jnp.dot(v, v * 2),
        }, a, b, batch, v)
    assert "dot_general" in compiled.as_text() and "library call" in compiled.as_text()


def test_reshapes_between_steps_are_views():
    """A reshape of a product's result (or of an input) that another product reads is a view
    (steps.Reshape), not a kernel's copy: a transformer's head split.  One returned to the
    caller is a copy of its own, so the caller's arrays never share memory with each other or
    with the inputs."""
    from fusejit import steps
    rng = np.random.default_rng(11)
    h, w = rand(rng, (2, 16, 32), np.float32), rand(rng, (32, 32), np.float32) * 0.2

    def heads(h, w):
        q = (h @ w).reshape(2, 16, 4, 8).transpose(0, 2, 1, 3)
        return jax.nn.softmax(q @ jnp.swapaxes(q, -1, -2), -1), h.reshape(32, 32) @ w

    compiled = verify(heads, h, w, rtol=1e-4, atol=1e-5)
    views = [s for s in compiled.program.steps if isinstance(getattr(s, "op", None), steps.Reshape)]
    assert len(views) == 2, compiled.as_text()
    assert "reshape (a view)" in compiled.as_text()
    assert not any(k.spec.kind == "map" and {e.primitive for e in k.spec.eqns} == {"reshape"}
                   for k in compiled.rendered)

    def returned(h, w):
        p = h.reshape(32, 32) @ w
        return p, p.reshape(2, 16, 32), h.reshape(32, 32)

    f = fusejit.jit(returned)
    outs = f(h, w)
    verify(returned, h, w, rtol=1e-5, atol=1e-5)
    assert not any(np.shares_memory(a, b) for k, a in enumerate(outs) for b in [*outs[k + 1:], h])


def test_slices_read_by_products_are_views():
    """A small network's weights, biases and inputs cut from one array: a slice (unit strides)
    of an input or of a product's result that only products read is a strided view
    (steps.Slice) BLAS reads in place, not a kernel's copy.  A slice a kernel also reads, one
    with strides, and one returned to the caller stay copies."""
    from fusejit import steps
    rng = np.random.default_rng(12)
    a = rand(rng, (70, 48), np.float32)

    def net(a):
        w1, x, w2 = a[:32], a[40:56, 3:35], a[56:70, :20]
        h = jnp.tanh(x @ w1)
        return h[:, 5:19] @ w2 + a[0, :20], a[::2, :8] @ a[:8], a[60:, 1:]

    compiled = verify(net, a, rtol=1e-4, atol=1e-4)
    views = [s.op for s in compiled.program.steps if isinstance(getattr(s, "op", None), steps.Slice)]
    assert len(views) == 4, compiled.as_text()  # w1, x, w2 and h[:, 5:19]
    assert "slice (a view)" in compiled.as_text()
    copies = [k for k in compiled.rendered if {e.primitive for e in k.spec.eqns} == {"slice"}]
    assert len(copies) == 2, [k.spec.eqns for k in compiled.rendered]  # a[::2, :8] and a[60:, 1:]
    f = fusejit.jit(net)
    outs = f(a)
    assert not any(np.shares_memory(o, a) for o in outs)
    from fusejit import launch
    before = launch.counter["library"]
    f(a)
    assert launch.counter["library"] - before == 3  # the products; views are not library calls


def test_integer_matmul_wraps():
    rng = np.random.default_rng(2)
    a = rand(rng, (6, 5), np.int32, special=True)
    verify(lambda a: a @ a.T, a)


@pytest.mark.parametrize("dtype", FLOATS)
def test_solves_and_factorisations(dtype, x64):
    rng = np.random.default_rng(3)
    m = rand(rng, (6, 6), dtype) + np.eye(6, dtype=dtype) * 8
    b = rand(rng, (6, 2), dtype)
    spd = m @ m.T
    tol = dict(rtol=2e-4, atol=1e-4) if dtype == np.float32 else {}
    verify(lambda m, b, spd: {
        "solve": jnp.linalg.solve(m, b), "inv": jnp.linalg.inv(m), "cholesky": jnp.linalg.cholesky(spd),
        "eigvalsh": jnp.linalg.eigvalsh(spd), "svdvals": jnp.linalg.svd(m, compute_uv=False),
        "det": jnp.linalg.det(m), "lstsq_like": jnp.linalg.solve(m.T @ m, m.T @ b),
    }, m, b, spd, **tol)


def test_qr_reconstructs_and_matches_r_up_to_signs(x64):
    """Q and R are unique up to the signs of R's diagonal; both libraries call LAPACK's
    geqrf, so fusejit matches jax.jit exactly here."""
    m = rand(np.random.default_rng(4), (7, 5), np.float64)
    verify(lambda m: jnp.linalg.qr(m), m)


@pytest.mark.parametrize("dtype", FLOATS + (np.int32, np.uint8))
def test_sort_argsort_take_and_indexing(dtype, x64):
    rng = np.random.default_rng(5)
    x = rand(rng, (6, 9), dtype, special=np.dtype(dtype).kind == "f")
    idx = rng.integers(-9, 9, size=4).astype(np.int32)
    verify(lambda x, idx: {
        "sort": jnp.sort(x, axis=1), "argsort": jnp.argsort(x, axis=0), "take": jnp.take(x, idx, axis=1),
        "fancy": x[jnp.abs(idx) % 6], "pair": x[2, jnp.abs(idx)], "along": jnp.take_along_axis(x, jnp.argsort(x, 1), 1),
        "sorted_sum": jnp.sort(x * 2, axis=1)[:, :3].sum(1) if np.dtype(dtype).kind != "u" else x[:, 0],
    }, x, idx)


@pytest.mark.parametrize("dtype", FLOATS + (np.int32,))
def test_scatters(dtype, x64):
    rng = np.random.default_rng(6)
    x = rand(rng, (7, 4), dtype)
    idx = np.array([1, 5, 1, 6, -2], np.int32)  # duplicates and a negative index
    u = rand(rng, (5, 4), dtype)
    verify(lambda x, idx, u: {
        "set": x.at[idx].set(u), "add": x.at[idx].add(u), "mul": x.at[idx, 1].mul(u[:, 0]),
        "min": x.at[idx].min(u), "max": x.at[2].max(u[0]), "oob_dropped": x.at[idx + 5].add(u),
        "then": jnp.exp(x.at[idx].add(u) * 0.1).sum(0),
    }, x, idx, u)


def test_segment_sums_and_embedding_gradients_run_the_compiled_loop():
    """jax.ops.segment_sum and the gradient of an embedding lookup are scatter-adds of whole
    rows: one of more than scatter.MAX_FUSED updates runs the elementwise library's scatter
    loop on the host (smaller ones are kernels: test_scatter_kernels.py)."""
    from fusejit import backends, launch, scatter, ufuncs
    ufuncs.wait(backends.get("host"))
    rng = np.random.default_rng(7)
    x, ids = rand(rng, (5001, 16), np.float32), rng.integers(-2, 40, 5001).astype(np.int32)
    table, idx, w = rand(rng, (60, 33), np.float32), rng.integers(0, 60, 2100).astype(np.int32), rand(rng, (2100, 33), np.float32)
    assert x.size > scatter.MAX_FUSED and w.size > scatter.MAX_FUSED
    before = launch.counter["scatter loop"]
    segments = verify(lambda x, ids: (jax.ops.segment_sum(x, ids, num_segments=37),
                                      jax.ops.segment_max(x, ids, num_segments=37)), x, ids, backends=("host",))
    grad = verify(jax.grad(lambda table, idx, w: jnp.sum(jnp.take(table, idx, axis=0) * w)), table, idx, w,
                  backends=("host",), rtol=1e-5, atol=1e-4)
    for compiled in (segments, grad):
        assert "scatter" in " ".join(s.primitive for s in compiled.plan.steps if not hasattr(s, "kind"))
        assert all(k.kind != "scatter" for k in compiled.plan.kernels)
    assert launch.counter["scatter loop"] > before


def test_dynamic_slices_in_a_loop(x64):
    """x[i] and x.at[i].set(...) with a traced i, inside a fori_loop body."""
    def f(x):
        def body(i, acc):
            row = x[i]
            return acc.at[i % 3].add(row * i)
        return lax.fori_loop(0, x.shape[0], body, jnp.zeros((3, x.shape[1])))

    verify(f, rand(np.random.default_rng(7), (8, 5), np.float64), scan="loop")


def test_library_output_feeds_a_reduction_family(x64):
    """softmax of a matrix product: one library call, then one persistent row kernel."""
    rng = np.random.default_rng(8)
    a, b = rand(rng, (9, 6), np.float64), rand(rng, (6, 33), np.float64)
    compiled = verify(lambda a, b: jax.nn.softmax(a @ b, axis=-1), a, b)
    assert compiled.kernel_count == 1 and compiled.call_count == 1


@pytest.mark.parametrize("index_dtype", (np.int8, np.int32, np.int64, np.uint8, np.uint64))
def test_gathers_and_dynamic_slices_are_fused_with_every_mode(index_dtype, x64):
    """Gathers and dynamic slices read their indices at run time inside the kernel: clamped
    (mode='clip', and XLA's dynamic slices), filled (mode='fill') or promised in bounds; out of
    range, negative and huge indices included."""
    rng = np.random.default_rng(9)
    x = rand(rng, (6, 9), np.float32)
    info = np.iinfo(index_dtype)
    idx = np.array([0, 5, 8, info.max, info.min, 3], dtype=index_dtype)
    compiled = verify(lambda x, idx: {
        "clip": jnp.take(x, idx, axis=1, mode="clip") * 2.0,
        "fill": jnp.take(x, idx, axis=0, mode="fill", fill_value=-7.0),
        "fill_default": jnp.take(x.astype(jnp.int16), idx, axis=1, mode="fill"),
        "dynamic": jax.lax.dynamic_slice(x, (idx[1], idx[3]), (2, 4)) + 1.0,
        "update": jax.lax.dynamic_update_slice(x, x[:2, :3] * -1.0, (idx[4], idx[2])),
    }, x, idx)
    assert compiled.call_count == 0  # every one fused into kernels


def test_top_k_between_kernels():
    x = rand(np.random.default_rng(34), (6, 17), np.float32, special=True)
    verify(lambda x: tuple(v * 2 for v in lax.top_k(jnp.sin(x), 5)), x)


def test_lu_factor_and_lu_solve(x64):
    """jax.scipy.linalg.lu_solve turns lu_factor's pivots into a permutation
    (lu_pivots_to_permutation: a loop of swaps, traced from JAX's own code)."""
    r = np.random.default_rng(36)
    a, b = rand(r, (6, 6), np.float64) + 6 * np.eye(6), rand(r, (6, 3), np.float64)
    verify(lambda a, b: jax.scipy.linalg.lu_solve(jax.scipy.linalg.lu_factor(a), b), a, b)
