"""Reductions fused with their producers: every reduction, dtype, odd row length and axis choice."""
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

import fusejit
from fusejit import backends, templates
from helpers import FLOATS, INTS, OVERRIDES, rand, run_host_under_asan, verify


@pytest.mark.parametrize("row", [1, 31, 33, 1025])
def test_inner_axis_rows_float32(row):
    # No NaN, inf or +-max here: XLA:CPU's vectorised max can drop a NaN in long rows (fusejit
    # propagates it, see test_footguns.py) and a sum of +max and -max is all cancellation.
    # test_nan_propagation covers special values.
    x = rand(np.random.default_rng(row), (5, row), np.float32)
    compiled = verify(lambda x: (jnp.sum(x, 1), jnp.max(x, 1), jnp.min(jnp.sin(x), 1), jnp.prod(x[:, :7], 1),
                                 jnp.mean(x * 2, axis=1, keepdims=True)), x)
    # (rows of 1: reshapes, no reduction kernel, as XLA's; fusejit/simplify.py)
    assert any(k.spec.reduce_axes == (1,) for k in compiled.rendered) == (row > 1)


@pytest.mark.parametrize("dtype", FLOATS)
def test_axes_keepdims_and_where(dtype, x64):
    x = rand(np.random.default_rng(3), (6, 7, 33), dtype)
    mask = np.random.default_rng(4).random((6, 7, 33)) < 0.7
    verify(lambda x, m: {
        "outer": jnp.sum(x, 0), "middle": jnp.max(x, 1), "multi": jnp.sum(x, (0, 2)),
        "full": jnp.sum(x), "keep": jnp.min(x, (1, 2), keepdims=True),
        "where": jnp.sum(x, 2, where=m), "where_max": jnp.max(x, 0, where=m, initial=-5.0),
        "prod": jnp.prod(x[:, :, :4] * 0.5, -1),
    }, x, mask)


@pytest.mark.parametrize("dtype", INTS)
def test_integer_reductions_wrap_like_xla(dtype, x64):
    x = rand(np.random.default_rng(5), (9, 37), dtype, special=True)
    verify(lambda x: (jnp.sum(x, 1, dtype=x.dtype), jnp.prod(x, 0, dtype=x.dtype), jnp.max(x, 1),
                      jnp.min(x, 0), lax.reduce_and(x, (1,)), lax.reduce_or(x, (0,)),
                      lax.reduce_xor(x, (1,))), x)


def test_bool_reductions():
    b = rand(np.random.default_rng(6), (11, 65), np.bool_)
    b[3] = True
    verify(lambda b: (jnp.all(b, 1), jnp.any(b, 0), jnp.any(b), jnp.all(b), lax.reduce_xor(b, (1,)),
                      jnp.sum(b, 1), jnp.count_nonzero(b, 0), jnp.max(b, 1)), b)


def test_empty_reductions_give_the_identity(x64):
    e = np.zeros((4, 0), np.float64)
    i = np.zeros((0, 3), np.int16)
    verify(lambda e, i: (jnp.sum(e, 1), jnp.prod(e, 1), lax.reduce_max(e, (1,)), lax.reduce_min(e, (1,)),
                         jnp.sum(i, 0), lax.reduce_and(i, (0,)), jnp.all(e > 0, 1)), e, i)


def test_nan_propagation():
    x = rand(np.random.default_rng(7), (4, 40), np.float32)
    x[1, 5] = np.nan
    x[2, 39] = np.inf
    x[3, 0] = -np.inf
    verify(lambda x: (jnp.max(x, 1), jnp.min(x, 1), jnp.sum(x, 1), jnp.prod(x[:, :3], 1)), x)


def test_numerics_jnp_functions(x64):
    x = rand(np.random.default_rng(8), (17, 129), np.float32)
    v = rand(np.random.default_rng(9), (1001,), np.float32)
    verify(lambda x, v: {
        "softmax": jax.nn.softmax(x), "log_softmax": jax.nn.log_softmax(x, axis=0),
        "logsumexp": jax.nn.logsumexp(x, axis=1), "standardize": jax.nn.standardize(x, axis=-1),
        "var": jnp.var(x, 0), "std": jnp.std(x), "mean": jnp.mean(x, 1),
        "norm2": jnp.linalg.norm(v), "norm1": jnp.linalg.norm(v, 1), "norm_inf": jnp.linalg.norm(v, jnp.inf),
        "norm_ninf": jnp.linalg.norm(v, -jnp.inf), "norm0": jnp.linalg.norm(v, 0),
        "norm3": jnp.linalg.norm(v, 3), "fro": jnp.linalg.norm(x, "fro"),
    }, x, v)


def test_mean_and_variance_share_one_kernel():
    x = rand(np.random.default_rng(10), (64, 257), np.float32)
    compiled = verify(lambda x: (jnp.sum(x, 1), jnp.sum(x * x, 1), jnp.max(x, 1)), x)
    reductions = [k for k in compiled.rendered if k.spec.reduce_axes is not None]
    assert len(reductions) == 1 and reductions[0].stores == 3
    assert reductions[0].loads == 1  # x is read once per element for all three


def test_large_sum_float32_accuracy():
    x = rand(np.random.default_rng(11), (10**6,), np.float32) + 1.0
    verify(lambda x: (jnp.sum(x), jnp.mean(x * x)), x, backends=("host",))


def test_reduction_is_deterministic():
    x = rand(np.random.default_rng(12), (3, 5000), np.float32)
    f = fusejit.jit(lambda x: jnp.sum(jnp.exp(x), 1), backend="emulate")
    assert np.array_equal(f(x), f(x))


@pytest.mark.parametrize("dtype", FLOATS + (np.int8, np.uint16, np.int64, np.bool_))
def test_argmax_argmin_first_index_and_nan(dtype, x64):
    rng = np.random.default_rng(14)
    x = rand(rng, (9, 1025), dtype)
    if np.dtype(dtype).kind == "f":
        x[1, 600] = x[1, 30] = np.nan  # the first NaN wins
        x[2, :] = 7.0                  # all ties: index 0
    else:
        x[2, :] = x[2, 0]
    verify(lambda x: (jnp.argmax(x, 1), jnp.argmin(x, 1), jnp.argmax(x[:, :40], 0), jnp.argmin(x),
                      jnp.argmax(x[:, :33], 1, keepdims=True)), x)


@pytest.mark.parametrize("row", [3, 5, 10, 17, 40, 64, 129])
def test_short_rows_keep_fewer_lanes(row, x64):
    """A row shorter than twice FJ_LANES keeps fewer accumulators per thread (fj_row_lanes: 1, 2,
    4, 8, 16 and 32 lanes on the host for these lengths), folded pairwise: sums, max, arg
    reductions with ties and NaNs (the first wins, whichever lanes hold them), and softmax
    over each row."""
    rng = np.random.default_rng(15 + row)
    x = rand(rng, (37, row), np.float64)
    x[1, :] = 2.5                              # all ties: index 0
    x[2, row // 2] = x[2, row - 1] = np.nan    # the first NaN wins
    x[3, -1] = x[3, 0] = x[3].max() + 1        # a tie between the first and last elements
    x[4, -2] = x[4, row // 3] = x[4].max() + 1  # a tie between other lanes and steps
    finite = np.where(np.isnan(x), 0.0, x)
    verify(lambda x, f: (jnp.argmax(x, 1), jnp.argmin(x, 1), jnp.max(f, 1), jnp.sum(f, 1),
                         jax.nn.softmax(f, axis=1), jax.nn.logsumexp(f.astype(jnp.float32), axis=1)), x, finite)


@pytest.mark.parametrize("row", [1, 10, 16, 17, 33])
def test_short_rows_with_an_ordered_reduction_run_in_row_groups_on_the_host(row, x64, tmp_path):
    """On the host, a kernel with a max, min, argmax or argmin over rows of up to 16 elements
    (up to 32 in one phase without outputs of the operand's shape) takes FJ_ROW_GROUP rows at
    a time, one per vector lane (fusejit/rowgroups.py); a kernel of sums alone, and longer
    rows, keep the team code.  37 rows: the last group of each block repeats its last row.
    Ties and NaNs (the first wins), ints and bools, epilogue values, two reduced axes."""
    rng = np.random.default_rng(70 + row)
    x = rand(rng, (37, row), np.float32)
    x[1, :] = 2.5
    x[2, row // 2] = x[2, row - 1] = np.nan
    i = rand(rng, (37, row), np.int16, special=True)
    s = rand(rng, (37, row), np.float64)
    t = rand(rng, (37, 2, (row + 1) // 2), np.float64)
    finite = np.where(np.isnan(x), 0.0, x)

    def f(x, i, s, t, finite):
        return {"arg": (jnp.argmax(x, 1), jnp.argmin(x, 1)),
                "ints": (jnp.max(i, 1, keepdims=True) - jnp.min(i, 1, keepdims=True), jnp.argmax(i > 0, 1)),
                "two_axes": jnp.max(t, (1, 2)) * 2,
                "family": (jax.nn.softmax(finite, axis=1), jax.nn.logsumexp(finite, axis=1)),
                "sums": (jnp.sum(s, 1), jnp.mean(s * s, 1))}

    compiled = verify(f, x, i, s, t, finite)
    grouped = {k.spec.name for k in compiled.rendered if "#if FJ_ROW_GROUPS" in k.source}
    for kernel in compiled.rendered:
        prims = {e.primitive for e in kernel.spec.eqns}
        ordered = bool(prims & {"reduce_max", "reduce_min", "argmax", "argmin"})
        one_pass = len(kernel.spec.phases) == 1 and not kernel.spec.full
        expect = kernel.layout.kind == "rows" and ordered and (row <= 16 or (row <= 32 and one_pass))
        assert (kernel.spec.name in grouped) == expect, (row, prims, kernel.source)
    assert grouped if row <= 16 else not grouped or row <= 32
    run_host_under_asan(compiled, (x, i, s, t, finite), tmp_path)  # the groups stay in bounds


@pytest.mark.parametrize("row, windows", [(2, None), (3, None), (4, None), (10, None), (16, None), (17, None),
                                          (32, None), (3, 1), (17, 1), (10, 0), (3, 0), (17, 0)])
def test_short_rows_read_straight_from_an_input_take_row_windows_on_the_host(row, windows, host_defines, tmp_path):
    """On the host, a max, min, argmax or argmin over short rows of a 4-byte input, as it is,
    reads each full group of rows in place (kernels/row_windows.h): as whole vectors whose
    overlapping windows combine where the host's shuffles are quick, else as columns of 8
    rows (an argmax or argmin of rows of 2 and 3: one scalar chain a row).  A group with a NaN and the block's
    partial last group gather as before.  Ties (small integers, +-0: max and min keep the
    last, argmax and argmin the first index), infinities and NaNs in some groups only;
    16 * 6 + 7 rows.  Producers, 8-byte elements and families keep the gathering code.  Both
    the windows and the columns are compiled in whether the host takes them or not
    (FJ_ROW_WINDOWS: the CPU decides, `windows` None); both ways run here, whatever the CPU."""
    defines = host_defines(FJ_ROW_WINDOWS=windows) if windows is not None else []
    rng = np.random.default_rng(90 + row)
    rows = 16 * 6 + 7
    x = rng.integers(-3, 4, (rows, row)).astype(np.float32)  # many ties
    x[1] = rng.standard_normal(row)
    x[4, ::2], x[4, 1::2] = 0.0, -0.0
    x[5, row // 2:] = np.inf
    x[6, row - 1] = -np.inf
    x[40, row // 2] = np.nan  # one group with a NaN
    i = rng.integers(-2, 3, (rows, row)).astype(np.int32)
    u = rand(rng, (rows, row), np.uint32, special=True)
    y = rand(rng, (rows, row), np.float32)

    def windowed(x, i, u, y):
        return {"x": (jnp.max(x, 1), jnp.min(x, 1), jnp.argmax(x, 1), jnp.argmin(x, 1)),
                "ints": (jnp.argmax(i, 1), jnp.max(i, 1), jnp.argmin(u, 1), jnp.min(u, 1)),
                "pair": (jnp.max(y, 1), jnp.argmax(y, 1), jnp.min(x, 1, keepdims=True) * 2)}

    compiled = verify(windowed, x, i, u, y)
    for kernel in compiled.rendered:
        assert "if (FJ_GROUP_FULL(i0) && !fj_flat_has_nan<" in kernel.source, kernel.source
        assert f"fj_flat_arg<{row}, " in kernel.source, kernel.source
    run_host_under_asan(compiled, (x, i, u, y), tmp_path, defines)

    # a max or min alone
    compiled = verify(lambda x, i, u: (jnp.max(x, 1), jnp.min(i, 1), jnp.max(u, 1), jnp.min(x, 1)), x, i, u)
    for kernel in compiled.rendered:
        assert "if (FJ_GROUP_FULL(i0) && !fj_flat_has_nan<" in kernel.source, kernel.source
        assert f"fj_flat_extreme<{row}, " in kernel.source, kernel.source
    run_host_under_asan(compiled, (x, i, u), tmp_path, defines)

    compiled = verify(lambda x: jnp.max(jnp.abs(x), 1), x)  # a producer
    assert not any("!fj_flat_has_nan<" in kernel.source for kernel in compiled.rendered)


@pytest.mark.parametrize("row, windows", [(2, None), (3, None), (7, None), (8, None), (10, None), (13, None), (16, None),
                                          (7, 1), (13, 1), (10, 0)])
def test_short_row_families_keep_their_rows_flat_on_the_host(row, windows, x64, host_defines, tmp_path):
    """On the host, float32 max, min and sum families over rows of up to 16 (softmax,
    log_softmax, logsumexp, a max and a sum of one row) keep a full group's values in the
    rows' own order: contiguous loads and stores, windowed maxima and pairwise sums in
    registers, each row's result spread back to its elements, and per-row values (the log of
    a sum) computed once per row (fusejit/rowgroups.flat_path).  Groups with a NaN and the
    partial last group gather as before; infinities, -inf rows and ties; two leading axes;
    under ASan too.  Maxima and minima by windows and results spread by permutes where the
    host's shuffles are quick (AVX-512: FJ_ROW_WINDOWS=1, FJ_FOLD_BYTES=64), by columns and
    broadcast stores elsewhere (the CPU decides, `windows` None); both ways run here,
    whatever the CPU."""
    defines = (host_defines(FJ_ROW_WINDOWS=windows, FJ_FOLD_BYTES=64 if windows else 32)
               if windows is not None else [])
    rng = np.random.default_rng(100 + row)
    rows = 16 * 5 + 9
    x = rand(rng, (rows, row), np.float32)
    x[3] = -np.inf                              # a row of -inf: softmax NaN, logsumexp -inf
    x[5, row // 2] = np.inf
    x[7, :] = 1.5                               # ties
    x[50, 0] = x[66, row // 2] = x[67, row - 1] = np.nan  # groups with a NaN gather
    y = rand(rng, (3, 7, row), np.float32)

    def family(x, y):
        return {"softmax": jax.nn.softmax(x, axis=1), "log_softmax": jax.nn.log_softmax(x, axis=1),
                "logsumexp": jax.nn.logsumexp(x, axis=1), "max_sum": (jnp.min(x, 1), jnp.sum(jnp.exp(x), 1)),
                "leading": jax.nn.softmax(y * 2, axis=-1)}

    compiled = verify(family, x, y)
    flat = [k for k in compiled.rendered if "(flat)" in k.source]
    assert len(flat) == len(compiled.rendered), [k.spec.eqns for k in compiled.rendered]
    assert all(("fj_flat_sum" if row < 16 else "fj_flat_rows<") in k.source for k in flat)  # rows of 16: folded
    log_softmax = [k for k in flat if "fj_log(rowv" in k.source]
    assert log_softmax and all("fj_log(spread" not in k.source for k in flat)  # logs once per row
    for k in flat:
        assert "bool fj_flat = FJ_GROUP_FULL(i0);" in k.source, k.source
    run_host_under_asan(compiled, (x, y), tmp_path, defines)

    compiled = verify(lambda d: jax.nn.softmax(d, axis=1), x.astype(np.float64))  # 8 bytes: gathers
    assert not any("(flat)" in k.source for k in compiled.rendered)


@pytest.mark.parametrize("row, windows", [(3, None), (10, None), (16, None), (10, 1)])
def test_short_row_argmax_of_computed_values_keeps_rows_flat_on_the_host(row, windows, host_defines, tmp_path):
    """An argmax or argmin of float32 values the kernel computes (a scaled input, a shifted
    one beside its max, a biased one) over rows of up to 16 takes the flat groups on the
    host: the group's values computed in the rows' order, then fj_flat_arg (windows, or
    columns where the host's shuffles are slow: both ways run here).  An operand broadcast
    along the rows (the bias; a row of weights, reversed, in a log_softmax) is read from a
    table of the group's positions (rowgroups.FlatReads).  Ties (a row of equal values, +-0), a
    -inf row, NaNs in some groups (they gather, and a NaN wins), the partial last group;
    int64 indices and rows of 17 gather; under ASan too."""
    defines = (host_defines(FJ_ROW_WINDOWS=windows, FJ_FOLD_BYTES=64 if windows else 32)
               if windows is not None else [])
    rng = np.random.default_rng(110 + row)
    x = rand(rng, (16 * 4 + 5, row), np.float32)
    x[3] = -np.inf
    x[5] = 1.5
    x[6, ::2], x[6, 1::2] = 0.0, -0.0
    x[20, row // 2] = x[50, 0] = np.nan
    b = rand(rng, (row,), np.float32)

    def args(x, b):
        return {"scaled": jnp.argmax(x * 2.0, 1), "shifted": (jnp.argmin(x + 1.0, 1), jnp.max(x + 1.0, 1)),
                "biased": jnp.argmax(x + b, 1), "weighted": jax.nn.log_softmax(x * b[::-1], 1)}

    compiled = verify(args, x, b)
    assert compiled.rendered and all("(flat)" in k.source for k in compiled.rendered), compiled.rendered
    for k in compiled.rendered:
        args_ = [e for e in k.spec.eqns if e.primitive in ("argmax", "argmin")]
        assert bool(args_) == (f"fj_flat_arg<{row}, " in k.source), k.source
        # b, broadcast along the rows (reversed too), is read from a table of the group's positions
        reads_b = "in1" in k.source.split("{", 1)[0]
        assert reads_b == ("fj_ftab0[e]" in k.source), k.source
    run_host_under_asan(compiled, (x, b), tmp_path, defines)
    longer = rand(rng, (37, 17), np.float32)
    compiled = verify(lambda y: jnp.argmax(y * 2.0, 1), longer)
    assert not any("(flat)" in k.source for k in compiled.rendered)
    with jax.enable_x64(True):
        compiled = verify(lambda x: jnp.argmax(x * 2.0, 1), x)
    assert not any("(flat)" in k.source for k in compiled.rendered)


@pytest.mark.parametrize("row", [17, 24, 31, 33, 48, 64, 96, 97])
def test_medium_row_families_fold_rows_in_groups_on_the_host(row, tmp_path):
    """On the host, float32 max, min and sum families over rows longer than a vector (17 to
    96: softmax, log_softmax, logsumexp, layernorm's float64 sums, a max or a min and a sum)
    fold each row a vector at a time and the group's 16 rows together (kernels/row_windows.h
    fj_flat_rows), reading an input's rows or the pass's cache in place; rows of 97 keep the
    team code.  NaN, inf and -inf rows,
    ties, the partial last group of each block; under ASan too (the group's last row is not
    read past its end)."""
    rng = np.random.default_rng(140 + row)
    rows = 16 * 5 + 9
    x = rand(rng, (rows, row), np.float32)
    x[3] = -np.inf                              # softmax NaN, logsumexp -inf
    x[5, row // 2] = np.inf
    x[7, :] = 1.5                               # ties
    x[50, 0] = x[66, row - 1] = np.nan          # NaN rows (the elementwise steps propagate them)
    y = rand(rng, (rows, row), np.float32)      # no NaN: XLA's max can lose one (test_footguns)
    y[9, :] = -0.0
    z = rand(rng, (2, 9, row), np.float32)

    def family(x, y, z):
        mean = jnp.mean(y, -1, keepdims=True)
        return {"softmax": jax.nn.softmax(x, axis=1), "log_softmax": jax.nn.log_softmax(x, axis=1),
                "logsumexp": jax.nn.logsumexp(x, axis=1),
                "layernorm": (y - mean) / jnp.sqrt(jnp.var(y, -1, keepdims=True) + 1e-5),
                "max": jnp.max(y, 1), "min_sum": jnp.min(y * 2, 1) * jnp.sum(jnp.exp(-y * y), 1),
                "leading": jax.nn.softmax(z * 2, axis=-1)}

    compiled = verify(family, x, y, z)
    folded = [k for k in compiled.rendered if "fj_flat_rows<" in k.source]
    if row <= 96:
        assert len(folded) == len(compiled.rendered), [k.spec.eqns for k in compiled.rendered]
        assert any("fj_flat_rows<{}, 0, double>".format(row) in k.source for k in folded)  # layernorm's mean
        assert any(", in0 + i0 * {});".format(row) in k.source for k in folded)  # an input's rows in place
    else:
        assert not folded
    run_host_under_asan(compiled, (x, y, z), tmp_path)

    alone = verify(lambda y: jnp.sum(y, 1), y)  # float32 in float64, alone
    assert any("fj_flat_rows<{}, 0, double>(res0, in0 + i0 * {});".format(row, row) in k.source
               for k in alone.rendered) == (row <= 96)


@pytest.mark.parametrize("row, width", [(24, 32), (33, 32), (24, 64)])
def test_folded_rows_take_either_vector_width(row, width, host_defines, tmp_path):
    """The folded rows' vectors of partials are 64 bytes with AVX-512 and 32 without
    (FJ_FOLD_BYTES; float64 partials keep 8 lanes either way): both widths run here, whatever
    the CPU, on float32 max, min and sum families (16 or 8 lanes of float32, 8 of float64;
    logsumexp's max spread back to the row by permutes or by broadcast stores, which the same
    switch picks), NaN, inf and tied rows, the block's partial last group, and under ASan."""
    defines = host_defines(FJ_FOLD_BYTES=width)
    rng = np.random.default_rng(150 + row)
    rows = 16 * 4 + 5
    y = rand(rng, (rows, row), np.float32)
    y[2] = -np.inf
    y[6, row // 3] = np.inf
    y[9, :] = 2.5
    y[20, 0] = y[41, row - 1] = np.nan

    def family(y):
        return {"max": jnp.max(y, 1), "min_sum": jnp.min(y * 2, 1) * jnp.sum(y, 1),
                "logsumexp": jax.nn.logsumexp(y, axis=1)}

    compiled = verify(family, y)
    assert all("fj_flat_rows<" in k.source for k in compiled.rendered), [k.spec.eqns for k in compiled.rendered]
    run_host_under_asan(compiled, (y,), tmp_path, defines)


@pytest.mark.parametrize("row", [2, 4, 5, 7, 8, 10, 13])
def test_short_row_float32_sums_fold_rows_in_groups_on_the_host(row, tmp_path):
    """On the host, families with float32 sums (accumulated in float64, which the windows do
    not add) over rows of 4 to 15 fold each row in groups too (fj_flat_rows): layernorm, a
    mean and variance, a sum alone; with a max or min from rows of 8 (below, the gathering
    code); rows of 2 keep the team code.  Rows whose last vector would pass the group's end
    read the vector that ends with them; under ASan too."""
    rng = np.random.default_rng(160 + row)
    rows = 16 * 5 + 9
    y = rand(rng, (rows, row), np.float32)
    y[4] = -0.0
    y[6, row // 2] = np.inf
    y[8, 0] = np.nan

    def sums(y):
        mean = jnp.mean(y, -1, keepdims=True)
        return {"layernorm": (y - mean) / jnp.sqrt(jnp.var(y, -1, keepdims=True) + 1e-5),
                "mean_var": (jnp.mean(y * 3, 1), jnp.var(y * 3, 1)), "sum": jnp.sum(y, 1)}

    compiled = verify(sums, y)
    folded = [k for k in compiled.rendered if "fj_flat_rows<" in k.source]
    assert len(folded) == (len(compiled.rendered) if row >= 4 else 0), [k.spec.eqns for k in compiled.rendered]
    ordered = verify(lambda y: jnp.max(y, 1) - jnp.min(y, 1) * jnp.sum(y, 1), y)
    assert all(("fj_flat_rows<" in k.source) == (row >= 8) for k in ordered.rendered)
    run_host_under_asan(compiled, (y,), tmp_path)


def test_short_rows_of_8_byte_elements_gather(x64):
    """Rows in place take 4-byte elements (16 lanes of a vector): float64 and int64 rows keep
    the gathering code (and int64 indices come out of the 4-byte windows and columns)."""
    rng = np.random.default_rng(96)
    d = rand(rng, (37, 10), np.float64, special=True)
    q = rand(rng, (37, 10), np.int64)
    compiled = verify(lambda d, q: (jnp.argmin(d, 1), jnp.max(q, 1)), d, q)
    assert not any("fj_flat_has_nan" in kernel.source for kernel in compiled.rendered)
    x = rng.standard_normal((37, 10)).astype(np.float32)
    compiled = verify(lambda x: jnp.argmax(x, 1), x)
    assert all("fj_flat_arg<10, true>(res" in kernel.source for kernel in compiled.rendered)


@pytest.mark.parametrize("dtype", FLOATS)
def test_cumulative_ops_float(dtype, x64):
    x = rand(np.random.default_rng(15), (5, 1030), dtype)
    verify(lambda x: {
        "cumsum": jnp.cumsum(x, 1), "cumsum0": jnp.cumsum(jnp.sin(x[:, :40]), 0),
        "reverse": lax.cumsum(x[:, :33], 1, reverse=True), "cumprod": jnp.cumprod(x[:, :31] * 0.5, 1),
        "cummax": lax.cummax(x, 1), "cummin": lax.cummin(x[:, :40], 0, reverse=True),
        "cumlogsumexp": lax.cumlogsumexp(x, 1), "flat": jnp.cumsum(x[:2]),
    }, x, **OVERRIDES["cumsum"])


@pytest.mark.parametrize("dtype", (np.int8, np.int32, np.uint16, np.int64))
def test_cumulative_ops_int_and_bool(dtype, x64):
    x = rand(np.random.default_rng(16), (9, 37), dtype, special=True)
    verify(lambda x: (jnp.cumsum(x, 1, dtype=x.dtype), jnp.cumprod(x, 0, dtype=x.dtype), lax.cummax(x, 1),
                      lax.cummin(x, 0, reverse=True), jnp.cumsum(x > 0, 1)), x)


def test_cumulative_empty_and_single():
    e, s = np.zeros((0, 5), np.float32), rand(np.random.default_rng(17), (4, 1), np.float32)
    verify(lambda e, s: (jnp.cumsum(e, 1), jnp.cumsum(e, 0), jnp.cumsum(s, 1), lax.cummax(s, 0)), e, s)


# A deliberately broken copy of kernels/ per case: a barrier removed from a cooperative step.
BROKEN_BARRIERS = {
    # the block reduction (rows of 1025: a whole block per row) reads the warps' partials early
    "block_reduce": ("block_reduce.h", "    __syncthreads();  // every warp's partial is in shared memory\n",
                     lambda x: jnp.sum(x, 1), (96, 1025)),
    # the column reduction combines its slices' partials before they are all written
    "columns": ("reduce_columns.cu.in", "    __syncthreads();  // every slice's partials are in shared memory\n",
                lambda x: jnp.sum(x, 0), (1025, 96)),
}


@pytest.fixture(params=sorted(BROKEN_BARRIERS))
def kernels_without_a_barrier(request, tmp_path, monkeypatch):
    """A copy of kernels/ with one __syncthreads removed; yields the function and input shape
    that exercise it."""
    filename, marker, fun, shape = BROKEN_BARRIERS[request.param]
    broken = tmp_path / "kernels"
    shutil.copytree(templates.kernels_dir(), broken)
    path = broken / filename
    text = path.read_text()
    assert marker in text
    path.write_text(text.replace(marker, ""))
    monkeypatch.setenv("FUSEJIT_KERNELS_DIR", str(broken))
    monkeypatch.setenv("FUSEJIT_CACHE_DIR", str(tmp_path / "cache"))

    def reset():
        for fn in (templates.kernels_dir, templates.template, templates.kernels_hash):
            fn.cache_clear()
        backends._instances.clear()

    reset()
    yield fun, shape
    monkeypatch.undo()
    reset()


def test_emulation_catches_a_missing_syncthreads(kernels_without_a_barrier):
    f, shape = kernels_without_a_barrier
    x = rand(np.random.default_rng(13), shape, np.float32) + 2.0
    # The host fast mode runs one thread per block and cannot see the race ...
    assert fusejit.check(fusejit.jit(f, backend="host"), x).ok
    # ... the GPU-faithful emulation runs 256 threads per block and does.
    report = fusejit.check(fusejit.jit(f, backend="emulate"), x)
    assert not report.ok, str(report)


def test_elementwise_consumers_run_in_the_reduction_epilogue():
    """mean = sum / n, sqrt(sum(x*x)) * 2 and logsumexp's log(sum) + max are computed by the
    reduction kernel after its phases (max, then the sum of exponentials): one kernel that
    reads x once per element."""
    x = rand(np.random.default_rng(18), (40, 257), np.float32)
    compiled = verify(lambda x: (jnp.mean(x, 1), jnp.sqrt(jnp.sum(x * x, 1)) * 2.0,
                                 jax.nn.logsumexp(x, axis=1)), x)
    assert compiled.kernel_count == 1
    (kernel,) = compiled.rendered
    assert len(kernel.spec.phases) == 2 and len(kernel.spec.epilogue) == 3 and kernel.loads == 1


def test_per_row_values_are_computed_once_per_row():
    """log_softmax subtracts log(sum of exponentials), one value per row, from every element:
    the kernel computes it before the loop over the row (it was in every element's
    statements, where its double-precision log kept the host compiler from vectorising the
    loop), and the max the exponentials subtract before the loop of that phase."""
    x = rand(np.random.default_rng(19), (33, 300), np.float32, special=True)
    x[5] = -np.inf
    x[6, :7] = np.inf
    compiled = verify(lambda x: (jax.nn.log_softmax(x, axis=1), jax.nn.softmax(x * 2, axis=1)), x)
    per_row = [line for line in compiled.source.splitlines()
               if "fj_log(res" in line or "fj_max((-fj_inf_f()), res" in line]
    assert len(per_row) >= 3
    # in the loop over rows (4 spaces deep), not in a loop over a row's elements (6 or more)
    assert all(line.startswith("    const ") for line in per_row), "\n".join(per_row)


def test_fixed_counts_are_constants_except_in_row_reductions():
    """Element and row counts fixed by the specialization are constants in a column reduction
    (the host's compiler knows its loop bounds) and stay arguments of a row reduction; both
    match jax.jit on every path."""
    x = rand(np.random.default_rng(41), (37, 203), np.float32)
    columns = verify(lambda x: jnp.sum(x * 2.0, axis=0), x)
    text = "".join(columns.modules())
    assert "const int reduce_n = 37;  // fixed by the specialization" in text
    assert "const int /* reduce_n */" in text
    y = rand(np.random.default_rng(42), (513, 96), np.float32)
    rows = verify(lambda y: (jnp.mean(y, axis=1), jnp.var(y, axis=1)), y)
    text = "".join(rows.modules())
    assert "a team of" in text  # the row strategy
    assert "const int reduce_n)" in text and "fixed by the specialization" not in text
