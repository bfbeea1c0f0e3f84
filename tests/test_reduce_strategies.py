"""The reduction strategies (fusejit/reduce.py) on every dtype, row families fused into one
persistent kernel, and the numerics of long reductions, all against jax.jit."""
import os
import re
import zlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

import fusejit
from helpers import FLOATS, INTS, rand, run_host_under_asan, verify, without_host_paths

# name -> (operand shape, reduced axes, the layout the kernel must use, GPU rows per block)
STRATEGIES = {
    "rows_of_1": ((37, 1), (1,), None, None),      # a reshape, no reduction (fusejit/simplify.py)
    "rows_of_7": ((70, 7), (1,), "rows", 32),       # a team of 8 lanes per row
    "rows_of_33": ((9, 33), (1,), "rows", 8),       # a warp per row
    "rows_of_1025": ((5, 1025), (1,), "rows", 1),   # the whole block per row
    "rows_two_axes": ((6, 7, 33), (0, 2), "rows", 8),
    "columns": ((33, 41), (0,), "columns", 1),
    "columns_middle": ((5, 7, 33), (1,), "columns", 1),
    "columns_segments": ((2000, 41), (0,), "columns", 1),  # rows cut into segments (host and GPU)
    "split_full": ((9000,), (0,), "split", 1),
    "split_rows": ((3, 8200), (1,), "split", 1),
    # a few long columns: each block reads whole rows of a segment (contiguous), where a
    # block per column segment read every second element
    "columns_narrow": ((8200, 2), (0,), "columns", 1),
}


def float_reductions(x, axes):
    out = {"sum": jnp.sum(x, axes), "max": jnp.max(x, axes), "min": jnp.min(x, axes),
           "prod": jnp.prod(1 + x * 1e-3, axes), "mean": jnp.mean(x, axes, keepdims=True)}
    if len(axes) == 1:
        out |= {"argmax": jnp.argmax(x, axes[0]), "argmin": jnp.argmin(x, axes[0])}
    return out


def int_reductions(x, axes):
    out = {"sum": jnp.sum(x, axes, dtype=x.dtype), "prod": jnp.prod(x, axes, dtype=x.dtype),
           "max": jnp.max(x, axes), "min": jnp.min(x, axes), "and": lax.reduce_and(x, axes),
           "or": lax.reduce_or(x, axes), "xor": lax.reduce_xor(x, axes)}
    if len(axes) == 1:
        out |= {"argmax": jnp.argmax(x, axes[0]), "argmin": jnp.argmin(x, axes[0])}
    return out


def bool_reductions(b, axes):
    out = {"any": jnp.any(b, axes), "all": jnp.all(b, axes), "xor": lax.reduce_xor(b, axes),
           "count": jnp.sum(b, axes), "max": jnp.max(b, axes, keepdims=True)}
    if len(axes) == 1:
        out |= {"argmax": jnp.argmax(b, axes[0]), "argmin": jnp.argmin(b, axes[0])}
    return out


DTYPE_GROUPS = {"floats": (FLOATS, float_reductions), "ints": (INTS, int_reductions),
                "bool": ((np.bool_,), bool_reductions)}


@pytest.mark.parametrize("group", sorted(DTYPE_GROUPS))
@pytest.mark.parametrize("strategy", sorted(STRATEGIES))
def test_every_strategy_on_every_dtype(strategy, group, x64):
    shape, axes, kind, per_block = STRATEGIES[strategy]
    dtypes, reductions = DTYPE_GROUPS[group]
    rng = np.random.default_rng(zlib.crc32(f"{strategy} {group}".encode()))  # the same inputs every run
    inputs = [rand(rng, shape, dtype, special=group == "ints") for dtype in dtypes]
    if group == "floats":
        # Sums away from zero (as in test_sum_of_ten_million_float32_within_tolerance): a
        # float32 sum's error scales with sum(|x|), a tolerance relative to the result does not.
        inputs = [(x + 4).astype(x.dtype) for x in inputs]
    if group == "bool":
        inputs[0].reshape(-1)[: shape[-1]] = True  # a run of ties for argmax/argmin

    def f(*xs):
        return {np.dtype(x.dtype).name: reductions(x, axes) for x in xs}

    compiled = verify(f, *inputs)
    if kind is None:
        assert not any(k.spec.kind == "reduce" for k in compiled.rendered), compiled.as_text()
        return
    layouts = {(k.layout.kind, k.layout.per_block) for k in compiled.rendered}
    assert layouts == {(kind, per_block)}, layouts


def test_split_reduction_is_deterministic():
    """Per-block partials combined by whichever block finishes last, in segment order: the
    same bits every run, on the host (blocks on several threads) and in the emulation."""
    x = rand(np.random.default_rng(20), (2, 50_000), np.float32)
    for backend in ("host", "emulate"):
        f = fusejit.jit(lambda x: (jnp.sum(jnp.exp(x), 1), jnp.argmax(x, 1)), backend=backend)
        assert f.lower(x).rendered[0].layout.kind == "split"
        first = f(x)
        for _ in range(3):
            again = f(x)
            assert all(np.array_equal(a, b) for a, b in zip(first, again))


def segments_of(compiled) -> list[int]:
    """The `segments` argument of each launch of a one-module program."""
    kernels = {k.name: k for k in compiled.rendered}
    return [launch.args[[p.name for p in kernels[launch.kernel].params].index("segments")].value
            for launch in compiled.program.launches]


@pytest.mark.parametrize("backend", ["host", "emulate"])
def test_column_reduction_segments_are_combined_in_order(backend):
    """A column reduction with fewer tiles of outputs than the device has cores (SMs) cuts its
    rows into segments: blocks publish partials, the last to take a tile's ticket combines
    them in segment order, so repeated calls give the same bits."""
    x = rand(np.random.default_rng(27), (3000, 37), np.float32)
    f = fusejit.jit(lambda x: (jnp.sum(x, 0), jnp.argmin(x, 0), jnp.max(x * x, 0)), backend=backend)
    compiled = f.lower(x)
    assert segments_of(compiled)[0] > 1
    report = fusejit.check(f, x)
    assert report.ok, report
    first = f(x)
    for _ in range(3):
        assert all(np.array_equal(a, b) for a, b in zip(first, f(x)))


@pytest.mark.parametrize("shape", [(1003, 10), (517, 3), (64 * 9 + 5, 12), (2000, 15), (7, 41, 2), (333, 20),
                                   (300, 16)])
def test_short_rows_take_periodic_steps_on_the_host(shape, x64, tmp_path):
    """On the host, maps over rows of up to 64 elements (not a multiple of 16) and column
    reductions over rows of up to 64 take the elements a multiple of lcm(row, 16) at a time
    (fusejit/periodic.py): what is broadcast along the rows
    is read from a table of one period, a column reduction's partials are one accumulator
    per position, folded into the columns after the block's whole chunks; the rows outside
    them, and the elements past the last chunk, as before.  Standardizing, a softmax over
    the leading axis, extremes, int and bool sums, products, float64; argmax keeps its loop
    (ties take the first index); under ASan too."""
    r = np.random.default_rng(sum(shape))
    x, d = rand(r, shape, np.float32), rand(r, shape, np.float64)
    k, b = rand(r, shape, np.int32), rand(r, shape, np.bool_)
    lead = tuple(range(len(shape) - 1))

    def f(x, d, k, b):
        return {"standardize": (x - x.mean(lead)) / x.std(lead), "softmax": jax.nn.softmax(x, axis=lead),
                "extremes": (jnp.max(x, lead), jnp.min(d, lead)), "ints": (jnp.sum(k, lead), jnp.prod(k % 3 - 1, lead)),
                "bools": (jnp.any(b, lead), jnp.sum(b, lead)), "arg": jnp.argmax(x.reshape(-1, shape[-1]), 0),
                "scaled": d * d[0] - k[-1]}

    compiled = verify(f, x, d, k, b)
    periodic = [kern for kern in compiled.rendered if "#if FJ_PERIODIC_ROWS" in kern.source]
    assert not any("fj_arg_combine" in kern.source for kern in periodic)
    if len(shape) == 2:  # maps over rows of whole vectors iterate rows, the others take periods
        kinds = {kern.layout.kind for kern in periodic}
        assert ("map" in kinds) == (shape[1] % 16 != 0), [k.source for k in compiled.rendered]
        assert "columns" in kinds or shape[1] >= 16  # from 16 on, where the accumulators fit registers:
        few = verify(lambda x: (jnp.max(x, 0), jnp.sum(x * x, 0)), x)
        assert all("#if FJ_PERIODIC_ROWS" in kern.source for kern in few.rendered)
    run_host_under_asan(compiled, (x, d, k, b), tmp_path)


@pytest.mark.parametrize("row", [20, 33, 100])
def test_maps_over_rows_of_partial_vectors_take_periodic_chunks_on_the_host(row, tmp_path):
    """A map over rows that are not whole vectors ends each row in a partial vector, which
    GCC finished element by element (an exp over rows of 20 was 7x slower than over rows of
    16): on the host it takes its elements lcm(row, 16) at a time, with or without tables of
    what is broadcast along the rows; the elements past the last whole chunk as before.  A
    clamped map (a pad) keeps the pieces path."""
    r = np.random.default_rng(row)
    x = rand(r, (16 * 9 + 3, row), np.float32)  # at least 8 whole chunks, and some elements past them
    compiled = verify(lambda x: (jnp.exp(x * 0.5), jnp.tanh(x) * x[0]), x)
    assert all("#if FJ_PERIODIC_ROWS" in kern.source for kern in compiled.rendered)
    run_host_under_asan(compiled, (x,), tmp_path)
    padded = verify(lambda x: jnp.pad(x, ((1, 2), (3, 1))) * 2, x)
    assert not any("#if FJ_PERIODIC_ROWS" in kern.source for kern in padded.rendered)


def test_host_column_tile_matches_its_prelude():
    """The launch plan sizes a column reduction's tickets from DeviceInfo.columns: it must be
    the FJ_COLUMNS the host kernels are compiled with (and the GPU's, 32, in gpu_loops.h)."""
    import re
    from fusejit.backends import host
    from fusejit.launch import EMULATED_GPU
    from fusejit.templates import kernels_dir

    def columns(header):
        with open(os.path.join(kernels_dir(), header)) as f:
            return int(re.search(r"#define FJ_COLUMNS (\d+)", f.read()).group(1))
    assert host.HostBackend().device_info().columns == columns("host_launch.h") == host.HOST_COLUMNS
    assert EMULATED_GPU.columns == columns("gpu_loops.h")


def test_sum_of_ten_million_float32_within_tolerance():
    """10**7 float32 elements: float64 accumulation keeps sum, mean, variance and norm within
    the float32 tolerance of jax.jit (README: accumulation).  The host runs it (the emulation
    runs the same split kernel in test_every_strategy_on_every_dtype[split_full-*])."""
    x = rand(np.random.default_rng(21), (10**7,), np.float32) + 1.0
    compiled = verify(lambda x: (jnp.sum(x), jnp.mean(x), jnp.var(x), jnp.linalg.norm(x), jnp.max(x)), x,
                      backends=("host",))
    assert {k.layout.kind for k in compiled.rendered} == {"split"}


def sum_block() -> int:
    """FJ_SUM_BLOCK of kernels/common.h: the terms of a blocked sum's float32 partial."""
    from fusejit.templates import kernels_dir
    with open(os.path.join(kernels_dir(), "common.h")) as f:
        return int(re.search(r"#define FJ_SUM_BLOCK (\d+)", f.read()).group(1))


def blocked_sums(x):
    """Split reductions of non-negative float32 terms (blocked: float32 partials), beside a
    signed sum in the same kernel (not blocked) and one over a slice (no vector path on the GPU,
    so the emulation runs the blocks' loop too)."""
    return {"norm": jnp.linalg.norm(x), "squares": jnp.sum(x * x), "abs_and_signed": (jnp.sum(jnp.abs(x)), jnp.sum(x)),
            "exp": jnp.sum(jnp.exp(x)), "sliced": jnp.sum(jnp.square(x[1:]))}


@pytest.mark.parametrize("lanes", [16, 32])
@pytest.mark.parametrize("n", [8193, 20_011, 100_003])
def test_split_sums_of_non_negative_terms_take_float32_partials(n, lanes, host_defines, tmp_path):
    """A float32 sum of terms never negative (a 2-norm's squares) adds FJ_SUM_BLOCK terms at a
    time into float32 partials, then each partial into its float64 lane: the same results as
    jax.jit on the host (16 and 32 lanes, whichever the CPU takes), in the emulation and under
    AddressSanitizer, and within FJ_SUM_BLOCK float32 roundings of the exact sum."""
    defines = host_defines(FJ_SPLIT_LANES=lanes)
    x = rand(np.random.default_rng(n + lanes), (n,), np.float32)
    compiled = verify(blocked_sums, x)
    assert {k.layout.kind for k in compiled.rendered} == {"split"}
    source = compiled.source
    assert source.count("FJ_SUM_BLOCK; ++s") == len(compiled.rendered), source  # every kernel has blocks
    # Four blocked sums (|x|, exp, x * x, the slice's squares) and the signed one in its lanes
    assert source.count("(double)part") == 4, source
    blocks = source[source.index("FJ_SUM_BLOCK; ++s"):source.index("(double)part")]
    assert len(re.findall(r"lanes\d+\[l\] = fj_op_sum\(\)\(lanes\d+\[l\], \(double\)x\d+\)", blocks)) == 1, blocks
    run_host_under_asan(compiled, (x,), tmp_path, defines)
    exact = np.sum(np.square(x.astype(np.float64)))
    got = fusejit.jit(blocked_sums)(x)["squares"]
    assert abs(float(got) - exact) <= sum_block() * 2.0**-24 * exact


def test_split_sums_blocks_run_in_the_emulation(monkeypatch):
    """The GPU's blocks of FJ_SUM_BLOCK steps (its element loops: a sum over a slice has no
    vector path) run in the emulation, under AddressSanitizer, when its segments are that long:
    on an emulated GPU of 2 SMs, 8 segments of 12,500 elements, each a block of 256 threads with
    4 lanes of 8 steps (8,192 elements) and then the element loops."""
    from fusejit.backends import emulate
    from fusejit.launch import DeviceInfo
    gpu = emulate.EMULATED_GPU
    monkeypatch.setattr(emulate.EmulateBackend, "device_info",
                        lambda self: DeviceInfo("emulate", gpu.arch, 2, gpu.block, gpu.blocks_per_unit))
    x = rand(np.random.default_rng(29), (100_001,), np.float32)
    f = fusejit.jit(lambda x: (jnp.sum(jnp.square(x[1:])), jnp.sum(x[1:]), jnp.sum(jnp.exp(x[1:]))), backend="emulate")
    compiled = f.lower(x)
    assert "Vector path" not in compiled.source and "FJ_SUM_BLOCK; ++s" in compiled.source
    assert all(-(-100_000 // s) >= gpu.block * 4 * sum_block() for s in segments_of(compiled))
    report = fusejit.check(f, x)
    assert report.ok, report


def row_sums(x):
    """Row reductions over rows longer than SHORT_ROW with float32 sums of non-negative terms
    (blocked), and a signed sum beside them."""
    return {"softmax": jax.nn.softmax(x, axis=1), "logsumexp": jax.nn.logsumexp(x, axis=1),
            "norm": jnp.linalg.norm(x, axis=1), "squares_and_signed": (jnp.sum(x * x, 1), jnp.sum(x, 1))}


@pytest.mark.parametrize("shape", [(9, 3001), (70, 8195)])
def test_long_row_sums_of_non_negative_terms_take_float32_partials(shape, tmp_path):
    """Rows longer than SHORT_ROW sum their non-negative float32 terms (softmax's exponentials,
    squares) in blocks of float32 partials too, on the host and, for rows of 8195 (no vector
    path: 4 does not divide them), in the emulation's element loops (256 threads of 4 lanes, 8
    steps: one block of 8192 a row); within FJ_SUM_BLOCK roundings of the exact sums."""
    x = rand(np.random.default_rng(shape[1]), shape, np.float32)
    compiled = verify(row_sums, x)
    assert {k.layout.kind for k in compiled.rendered} == {"rows"}
    assert "FJ_SUM_BLOCK; ++s" in compiled.source and "(double)part" in compiled.source
    assert "Vector path" not in compiled.source  # odd rows: the GPU's element loops take them
    run_host_under_asan(compiled, (x,), tmp_path)
    exact = np.sum(np.square(x.astype(np.float64)), 1)
    got = np.asarray(fusejit.jit(row_sums)(x)["squares_and_signed"][0])
    assert np.all(np.abs(got - exact) <= sum_block() * 2.0**-24 * exact)


def test_split_sums_of_other_types_keep_their_lanes(x64):
    """Only float32 sums take float32 partials: float64, float16 and integer sums of squares
    keep their accumulators, and match jax.jit."""
    rng = np.random.default_rng(28)
    for dtype in (np.float64, np.float16, np.int32):
        x = rand(rng, (9001,), dtype)
        compiled = verify(lambda x: jnp.sum(x * x), x, backends=("host",))
        assert {k.layout.kind for k in compiled.rendered} == {"split"}
        assert "FJ_SUM_BLOCK" not in compiled.source, dtype


@pytest.mark.filterwarnings("error::RuntimeWarning")
def test_split_sum_whose_float32_partial_overflows_is_inf():
    """Squares near float32's largest value: a partial of FJ_SUM_BLOCK of them overflows to inf,
    as the float64 total converted to float32 would, and as jax.jit's sum does.  The
    interpreter (first calls) gives the same inf without a NumPy warning, as jax.jit does."""
    x = np.full(10_000, 1.5e19, np.float32)
    x[::7] = -2.0
    compiled = verify(lambda x: (jnp.sum(x * x), jnp.linalg.norm(x)), x)
    assert "FJ_SUM_BLOCK" in compiled.source
    assert np.isinf(fusejit.jit(lambda x: jnp.sum(x * x))(x))


def test_many_reductions_are_spread_over_kernels_that_fit_shared_memory():
    """A float32 column max takes 1 KB of shared memory per block: 60 of them do not fit in
    48 KB, so the plan gives them to two kernels (NVRTC would refuse the one kernel)."""
    x = rand(np.random.default_rng(26), (60, 33, 41), np.float32)
    compiled = verify(lambda x: [jnp.max(x[k] * (k + 1), 0) for k in range(60)], x, backends=("host",))
    assert compiled.kernel_count == 2


# ---- row families: reduce, broadcast back, elementwise, reduce again, in one kernel ----

def layer_norm(x, gamma, beta):
    mean = jnp.mean(x, -1, keepdims=True)
    var = jnp.mean(jnp.square(x - mean), -1, keepdims=True)
    return (x - mean) * lax.rsqrt(var + 1e-5) * gamma + beta


FAMILIES = {
    "softmax": lambda x, g, b: jax.nn.softmax(x),
    "log_softmax": lambda x, g, b: jax.nn.log_softmax(x, axis=-1),
    "logsumexp": lambda x, g, b: jax.nn.logsumexp(x, axis=-1),
    "standardize": lambda x, g, b: jax.nn.standardize(x, axis=-1),
    "layer_norm": layer_norm,
    "mean_var": lambda x, g, b: (jnp.mean(x, -1), jnp.var(x, -1)),
}


@pytest.mark.parametrize("row", [1, 7, 33, 1025])
@pytest.mark.parametrize("dtype", FLOATS)
def test_row_families_run_as_one_kernel(dtype, row, x64):
    rng = np.random.default_rng(row)
    x, g, b = (rand(rng, (13, row), dtype), rand(rng, (row,), dtype), rand(rng, (row,), dtype))

    def f(x, g, b):
        return {name: fn(x, g, b) for name, fn in FAMILIES.items()}

    compiled = verify(f, x, g, b)
    if row == 1:  # reductions over one element are reshapes (fusejit/simplify.py): map kernels
        assert all(k.spec.kind == "map" for k in compiled.rendered), compiled.as_text()
        return
    # Every family reduces x over its rows: they share one kernel that reads x once.
    assert compiled.kernel_count == 1, compiled.as_text()
    (kernel,) = compiled.rendered
    assert len(kernel.spec.phases) >= 2 and kernel.layout.kind == "rows"
    # In the team code, x is loaded from global memory only in phase 0 (its main loop, the
    # rest of each row, and over rows longer than SHORT_ROW its blocks' loop where phase 0 sums
    # squares); later phases read it from the shared-memory cache.  (The host's row groups of
    # short rows load it again in each pass, from the cache lines just read.)
    team = without_host_paths(kernel.source)
    loops = 3 if "FJ_SUM_BLOCK; ++s, rest0" in team else 2
    assert team.count("in0[") == loops and "in0[" not in team[team.index("// phase 1"):] and "cache0[" in team
    assert "phases" in compiled.as_text()


def test_softmax_reads_each_element_once_and_stores_only_the_result():
    x = rand(np.random.default_rng(22), (64, 1024), np.float32)
    compiled = verify(jax.nn.softmax, x)
    (kernel,) = compiled.rendered
    assert kernel.loads == 1 and kernel.stores == 1  # max and sum stay in registers
    assert kernel.layout.per_block == 8  # a warp per row, eight rows per block


def test_family_whose_rows_do_not_fit_runs_as_separate_kernels():
    """Rows of 10000 float32 (40 KB) do not fit in the shared-memory cache: with a few rows the
    family falls back to one kernel per phase (each splits its rows across blocks), with the
    same results."""
    x = rand(np.random.default_rng(23), (3, 10000), np.float32)
    compiled = verify(jax.nn.softmax, x, backends=("host",))
    assert compiled.kernel_count == 3
    assert all(len(k.spec.phases) <= 1 for k in compiled.rendered)


@pytest.mark.parametrize("rows", [64, 65])
def test_family_whose_rows_do_not_fit_reads_them_again_in_one_kernel(rows):
    """With rows enough to give every block one (64 or more), a family over rows too long for
    the cache stays one kernel whose later phases read the row again from global memory
    (a log_softmax over 65 x 16000: three kernels took 1.4 ms on one core, one 0.55)."""
    x = rand(np.random.default_rng(23), (rows, 10000), np.float32)
    compiled = verify(jax.nn.log_softmax, x, backends=("host", "emulate"))
    (kernel,) = compiled.rendered
    assert len(kernel.spec.phases) == 2 and kernel.layout.kind == "rows"
    assert "cache0[" not in kernel.source and without_host_paths(kernel.source).count("in0[") >= 3


def test_family_reading_another_rows_result_is_split():
    """A phase that reads a reduction result at another row's index cannot run in the row's
    team: fusejit splits the family instead of computing a wrong value."""
    x = rand(np.random.default_rng(24), (9, 40), np.float32)
    compiled = verify(lambda x: jnp.sum(x - jnp.max(x, 1)[::-1, None], 1), x)
    assert compiled.kernel_count == 2


def test_family_on_outer_axis_runs_phase_by_phase():
    """Families need the innermost axis reduced (a row per team); over axis 0 each phase is
    a column kernel of its own."""
    x = rand(np.random.default_rng(25), (40, 9), np.float32)
    compiled = verify(lambda x: jax.nn.softmax(x, axis=0), x)
    assert {k.layout.kind for k in compiled.rendered} <= {"columns", "map"}
    assert compiled.kernel_count == 3
