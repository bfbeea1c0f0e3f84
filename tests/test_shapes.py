"""Shape primitives fused by index arithmetic: broadcast, reshape, slice, pad, concatenate, ..."""
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from helpers import element_loop, rand, run_host_under_asan, verify


def rng(seed=0):
    return np.random.default_rng(seed)


def test_diff5_is_one_kernel_with_six_loads(x64):
    """The seed notebook's workload: 5 nested diffs -> one kernel, 6 loads, 1 store."""
    x = rand(rng(), (100_000,), np.float64)
    compiled = verify(lambda x: jnp.diff(jnp.diff(jnp.diff(jnp.diff(jnp.diff(x))))), x)
    assert compiled.kernel_count == 1
    (kernel,) = compiled.rendered
    assert (kernel.loads, kernel.stores) == (6, 1)
    text = compiled.as_text()
    assert "6 load(s), 1 store(s) per element" in text
    assert element_loop(text).count("in0[") == 6


def test_broadcast_matrix_row():
    m, r = rand(rng(1), (1000, 1000), np.float32), rand(rng(2), (1000,), np.float32)
    compiled = verify(lambda m, r: jnp.tanh(m * r + 1.0) - r[None, :] * 0.5, m, r)
    assert compiled.kernel_count == 1


@pytest.mark.parametrize("shape_a,shape_b", [((5, 1, 3), (1, 4, 1)), ((), (3, 2)), ((1,), (7,)),
                                             ((2, 3, 1), (3, 5))])
def test_broadcasting(shape_a, shape_b):
    a, b = rand(rng(3), shape_a, np.float32), rand(rng(4), shape_b, np.float32)
    verify(lambda a, b: (a + b, jnp.broadcast_to(a, jnp.broadcast_shapes(a.shape, b.shape)) * 2), a, b)


def test_reshape_transpose_chain():
    x = rand(rng(5), (6, 35), np.float32)
    verify(lambda x: (x.reshape(3, 2, 5, 7).transpose(2, 0, 3, 1).reshape(-1) * 2,
                      x.T.reshape(5, 42)[:, ::5], jnp.ravel(x.T)), x)


def test_reshape_round_trip_is_flat_index():
    """reshape(-1) of a reshape needs no division: the delinearization folds back to i."""
    x = rand(rng(6), (12, 10), np.float32)
    compiled = verify(lambda x: (x.reshape(4, 3, 10).reshape(120) + 1), x)
    loop = element_loop(compiled.rendered[0].source)
    assert "in0[i]" in loop and " / " not in loop and " % " not in loop


def test_slices_with_strides_and_negative_steps():
    x = rand(rng(7), (17, 23), np.float64)
    verify(lambda x: (x[1:-2:3, ::4], x[::-1, 3:], x[-1], x[5:6, 7], x[::-2, ::-3] + 1), x)


def test_rev_and_flip():
    x = rand(rng(8), (4, 5, 6), np.int32)
    verify(lambda x: (jnp.flip(x), jnp.flip(x, 1), lax.rev(x, (0, 2))), x)


@pytest.mark.parametrize("config", [
    ((2, 3), (0, 1)),
    ((0, 0), (4, 0)),
])
def test_jnp_pad(config):
    x = rand(rng(9), (5, 7), np.float32)
    verify(lambda x: (jnp.pad(x, config), jnp.pad(x, config, constant_values=-2.5),
                      jnp.pad(x, config, mode="edge")), x)


def test_lax_pad_negative_and_interior():
    x = rand(rng(10), (6, 9), np.float32)
    verify(lambda x: (lax.pad(x, np.float32(7), ((-2, 3, 1), (2, -4, 2))),
                      lax.pad(x, np.float32(0), ((0, 0, 3), (-1, -1, 0)))), x)


def host_pieces(compiled) -> list[str]:
    """The bodies of the host's pieces of each kernel (kernels/pieces_path.cu.in), one string each."""
    out = []
    for kernel in compiled.rendered:
        src = kernel.source
        if "#if FJ_COLUMN_PIECES" in src:
            region = src[src.index("#if FJ_COLUMN_PIECES"):src.index("#else", src.index("#if FJ_COLUMN_PIECES"))]
            out += region.split("// col in ")[1:] or region.split("// i in ")[1:]
    return out


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int8, np.bool_])
def test_clamped_maps_loop_over_pieces_on_the_host(dtype, x64, tmp_path):
    """pad, concatenate and roll of rows (and of a vector) cut the columns where a clamp changes
    form: each piece loops without clamping the column (contiguous loads on the host), the
    GPU and the emulation keep the element loop; all paths match jax.jit (odd sizes, negative
    and interior padding, a reversed operand, an edge pad, a roll by more than a row)."""
    r = rng(40)
    x, y = rand(r, (67, 37), dtype), rand(r, (67, 21), dtype)
    v = rand(r, (1001,), dtype)
    compiled = verify(lambda x, y, v: (
        jnp.pad(x, ((1, 2), (3, 4))), jnp.concatenate([x, y, x], axis=1), jnp.roll(x, 40, axis=1),
        lax.pad(x[:, ::-1], jnp.zeros((), x.dtype), ((0, 0, 0), (-2, 5, 0))),
        jnp.pad(x, ((0, 0), (2, 3)), mode="edge"), jnp.concatenate([v, v[::-1]]), jnp.pad(v, (5, 7))),
        x, y, v)
    pieces = host_pieces(compiled)
    assert len(pieces) >= 10
    middle = [p for p in pieces if p.startswith("[3, 40)") or p.startswith("[5, 1006)")]
    assert middle and all("fj_clamp_index<idx_t>(col" not in p and "fj_clamp_index<idx_t>(i" not in p
                          for p in middle)
    run_host_under_asan(compiled, (x, y, v), tmp_path)  # the pieces stay in bounds
    # Interior padding's stride keeps its modulo: pieces change nothing there, and still match.
    verify(lambda x: lax.pad(x, jnp.ones((), x.dtype), ((1, 1, 0), (2, 3, 1))), x)


@pytest.mark.parametrize("dtype", [np.float32, np.int8])
def test_pads_into_power_of_two_rows_loop_over_pieces(dtype, tmp_path):
    """A gradient's assembly: blocks padded into one array whose rows are a power of two long
    (weights, a bias row, inputs cut from one parameter array).  A flat loop would index by a
    shift but clamp every load; the kernel iterates rows instead, so a clamp of the row is one
    per row and the host's pieces cut the columns where a column clamp changes form."""
    r = rng(41)
    a, b, c = rand(r, (40, 10), dtype), rand(r, (1, 128), dtype), rand(r, (33, 64), dtype)
    compiled = verify(lambda a, b, c: (jnp.pad(a, ((5, 83), (0, 118))) + jnp.pad(b, ((45, 82), (0, 0)))
                                       + jnp.pad(c, ((95, 0), (0, 64)))) * 2, a, b, c)
    pieces = host_pieces(compiled)
    # the rows cut where a block starts or ends (5, 45, 95), each range's columns at 10 and 64
    assert [p.split(")")[0] for p in pieces] == ["[0, 10", "[10, 64", "[64, 128"] * 4, pieces
    assert "cut at rows 5, 45, 95; columns 10, 64" in compiled.rendered[0].source
    assert all("fj_clamp_index<idx_t>(col" not in p and "fj_clamp_index<idx_t>(row" not in p for p in pieces)
    run_host_under_asan(compiled, (a, b, c), tmp_path)


@pytest.mark.parametrize("mode", ["reflect", "symmetric", "wrap"])
def test_reflect_padding_cuts_the_rows_too(mode, tmp_path):
    """jnp.pad's reflect, symmetric and wrap modes concatenate reversed (or shifted) slices
    along the rows and the columns: the clamps of the row index are clamps of clamps.  The
    host cuts the rows (each range once per row) and the columns of each range until no
    clamp changes form inside a piece: every piece is a plain copy, no clamp left."""
    x = rand(rng(42), (260, 300), np.float32)
    compiled = verify(lambda x: jnp.pad(x, ((2, 3), (4, 1)), mode=mode), x)
    source = compiled.rendered[0].source
    region = source[source.index("#if FJ_COLUMN_PIECES"):source.index("#else", source.index("#if FJ_COLUMN_PIECES"))]
    assert "the rows and the columns of each row cut at rows 2, 262; columns 4, 304" in region
    assert "fj_clamp_index" not in region and " ? " not in region
    run_host_under_asan(compiled, (x,), tmp_path)


@pytest.mark.parametrize("shape, halves", [((80, 64), None), ((128, 128), None), ((70, 100), 0), ((70, 100), 1),
                                          ((33, 1030), 0), ((33, 1030), 1)])
def test_transposed_reads_take_tiles_on_the_host(shape, halves, x64, host_defines, tmp_path):
    """A map that reads an operand transposed takes its output in 16 x 16 tiles on the host,
    each transposed operand's tile moved through registers (fusejit/transposes.py): a.T with a
    producer and a broadcast, two operands transposed, one also read as it is, 4-byte ints; a
    transpose of the last two axes of a stack of matrices (batches of tiles); columns past the
    last whole tile in a tile of fewer columns, rows past it element by element; 8-byte
    elements in four 8 x 8 transposes.  The shuffles as the compiler's own builtins and as
    32-byte halves (kernels/vector_shuffle.h, FJ_SHUFFLE_HALVES: the CPU decides), both here."""
    defines = host_defines(FJ_SHUFFLE_HALVES=halves) if halves is not None else []
    r = rng(50 + shape[1])
    a, b = rand(r, shape, np.float32), rand(r, shape, np.float32)
    i = rand(r, shape, np.int32)
    v = rand(r, (shape[0],), np.float32)
    s = rand(r, (3, shape[1], shape[0]), np.float32)
    square = a[:, :shape[0]] if shape[1] >= shape[0] else a[:shape[1], :]

    def f(a, b, i, v, s, square):
        return {"exp": jnp.exp(a * 0.1).T * v + 1.0, "two": a.T - 2 * b.T, "ints": i.T * 3 - i.T.max(),
                "stack": jnp.swapaxes(s, 1, 2) - 1.0, "both": square.T + square}

    compiled = verify(f, a, b, i, v, s, square)
    tiled = [k.source for k in compiled.rendered if "#if FJ_TRANSPOSE_TILES" in k.source]
    assert sum(source.count("fj_transpose16(") for source in tiled) >= 4, [k.source for k in compiled.rendered]
    assert any("fj_transpose16(fj_ttile1" in source for source in tiled)  # two operands in one kernel
    assert any("fj_tb" in source for source in tiled)  # the stack's batches
    # the output's columns past the last whole tile: a tile of fewer columns (shape[0] % 16)
    assert any(f"a tile of {shape[0] % 16} columns" in source for source in tiled) == (shape[0] % 16 != 0)
    run_host_under_asan(compiled, (a, b, i, v, s, square), tmp_path, defines)  # the tiles and edges stay in bounds

    compiled = verify(lambda d, q: (d.T * 2, jnp.swapaxes(q, 0, 1) + 1), a.astype(np.float64),
                      rand(r, (shape[1], shape[0], 2), np.int64))  # 8 bytes; the last axis kept: rows of 2
    assert sum("#if FJ_TRANSPOSE_TILES" in k.source for k in compiled.rendered) == 1
    run_host_under_asan(compiled, (a.astype(np.float64), rand(r, (shape[1], shape[0], 2), np.int64)), tmp_path,
                        defines)
    # a window at an offset read from data: the tile's base would need the offset, read in the body
    at = np.array([3, 5], np.int32)
    compiled = verify(lambda a, k: lax.dynamic_slice(a.T, (k[0], k[1]), (shape[1] - 5, shape[0] - 7)) * 2, a, at)
    assert not any("#if FJ_TRANSPOSE_TILES" in k.source for k in compiled.rendered)


def test_concatenate_and_stack():
    a, b, c = rand(rng(11), (3, 4), np.float32), rand(rng(12), (5, 4), np.float32), rand(rng(13), (0, 4), np.float32)
    verify(lambda a, b, c: (jnp.concatenate([a, c, b, a]), jnp.concatenate([a, a * 2], axis=1),
                            jnp.stack([a, a + 1], axis=1), jnp.hstack([a[0], b[1]])), a, b, c)


def test_roll_tile_repeat_split():
    x = rand(rng(14), (6, 5), np.int16)
    verify(lambda x: (jnp.roll(x, 2, axis=0), jnp.roll(x, -3), jnp.tile(x, (2, 3)),
                      jnp.repeat(x, 2, axis=1), *jnp.split(x, [1, 4], axis=0)), x)


def test_iota_arange_eye_tri():
    x = rand(rng(15), (5, 7), np.float32)
    verify(lambda x: (x + jnp.arange(7), jnp.eye(5, 7) * x, jnp.triu(x), jnp.tril(x, -1),
                      jnp.arange(12, dtype=jnp.int32).reshape(3, 4)), x)


def test_squeeze_expand_dims():
    x = rand(rng(16), (1, 4, 1, 3), np.float32)
    verify(lambda x: (jnp.squeeze(x), jnp.squeeze(x, 2), jnp.expand_dims(x[0, :, 0], (0, 2)) + 1), x)


def test_zero_d_inputs_and_outputs(x64):
    s, v = np.float64(1.5), rand(rng(17), (4,), np.float64)
    verify(lambda s, v: (s * 2, jnp.sin(s) + v, v[2], jnp.float64(3.0), s > 0), s, v)


def test_empty_arrays():
    e, x = rand(rng(18), (0, 3), np.float32), rand(rng(19), (2, 3), np.float32)
    compiled = verify(lambda e, x: (e + 1, jnp.concatenate([e, x]) * 2, x[:, 3:], jnp.sin(e).T), e, x)
    assert compiled.kernel_count == 1  # only the concatenate has elements


def test_size_one_dims_and_scalar_outputs():
    x = rand(rng(20), (1, 1, 9), np.float32)
    verify(lambda x: (x * 2, x[0, 0, 4], jnp.broadcast_to(x, (3, 1, 9)) + x), x)


def test_outputs_that_are_inputs_or_constants():
    x = rand(rng(21), (3,), np.float32)
    verify(lambda x: (x, 2.0, jnp.zeros(4), jnp.array([1.0, 2.0, 3.0]) + x, {"same": x}), x)


def test_captured_constants():
    const = np.linspace(0, 1, 11).astype(np.float32)
    x = rand(rng(22), (11,), np.float32)
    verify(lambda x: x * const + np.array(2.0, np.float32), x)


def test_many_outputs_of_several_shapes_in_few_kernels():
    x = rand(rng(23), (8, 9), np.float32)
    compiled = verify(lambda x: (jnp.sin(x), jnp.cos(x), x.sum if False else x[0] * 2, x[1] + 1, x.T), x)
    shapes = sorted(tuple(k.spec.shape) for k in compiled.rendered)
    assert shapes == [(8, 9), (9,), (9, 8)]  # one kernel per output shape


def test_index64_forced_on_small_arrays():
    """The int64 index path of arrays with 2**31+ elements, exercised on small ones."""
    import fusejit
    x = rand(rng(24), (5, 33), np.float32)

    def f(x):
        return jnp.pad(x, ((1, 1), (0, 2)))[::-1, 2:] + jnp.arange(33) * x.reshape(-1)[:33]

    for backend in ("host", "emulate"):
        jitted = fusejit.jit(f, backend=backend, index64=True)
        report = fusejit.check(jitted, x)
        assert report.ok, str(report)
        compiled = jitted.lower(x)
        assert all(k.index64 for k in compiled.rendered)
        assert "typedef long long idx_t;" in compiled.source


def test_too_long_kernel_is_split_by_storing_an_intermediate():
    """70 nested neighbour sums would need ~2500 statements in one kernel: fusion stores an
    intermediate and continues in a second kernel."""
    def f(x):
        for _ in range(70):
            x = x[1:] * 0.5 + x[:-1] * 0.5
        return x

    x = rand(rng(25), (300,), np.float32)
    compiled = verify(f, x, backends=("host",))
    assert compiled.kernel_count >= 2
    assert compiled.plan.cuts


def test_elementwise_operands_broadcast_size_one_dimensions():
    """lax.add of f32[1] and f32[5] (jnp emits it after a slice to one element): the size-1
    operand is read at index 0 for every output element (found by the random programs)."""
    x = np.arange(5, dtype=np.float32) - 2.0
    compiled = verify(lambda x: lax.add(x[4:], x) * lax.mul(x[:1, None] + x[None, :1], x[:, None]), x)
    assert "in0[i + 4]" not in compiled.source


def test_reduction_of_a_concatenate_of_empty_arrays():
    """sum(concatenate([x, x[::-1]])) with x of size 0: the reduction's operand has no piece to
    read (found by the random programs)."""
    x = np.zeros((0,), np.float32)
    verify(lambda x: (jnp.sum(jnp.concatenate([jnp.sin(x), x[::-1]])), jnp.sum(jnp.stack([x, x]), 1)), x)


@pytest.mark.parametrize("shape", [(1,), (9,), (64,), (65,), (8, 8), (8, 9), (3, 0)])
def test_small_kernels_compile_at_O1(shape):
    """A map or reduction over at most SMALL_KERNEL_ELEMENTS elements sits between
    FJ_SMALL_KERNEL_BEGIN/END (the host compiles it at -O1); either side of the boundary, a map
    and a row reduction of the same operand match jax.jit on every path."""
    from fusejit.codegen import SMALL_KERNEL_ELEMENTS
    x = rand(rng(sum(shape)), shape, np.float32)
    compiled = verify(lambda x: (jnp.sin(x) * jnp.exp(x), jnp.sum(jnp.tanh(x), axis=-1)), x)
    assert compiled.rendered
    for kernel in compiled.rendered:
        assert kernel.small == (np.prod(shape) <= SMALL_KERNEL_ELEMENTS)
    text = "".join(compiled.modules())
    wrapped = sum(k.small for k in compiled.rendered)
    assert text.count("FJ_SMALL_KERNEL_BEGIN\n") == text.count("FJ_SMALL_KERNEL_END\n") == wrapped


@pytest.mark.parametrize("shape", [(2, 1030), (5, 4099), (63, 1040)])
def test_few_long_rows_iterate_rows_with_per_row_values_hoisted(shape, tmp_path):
    """Fewer than 64 rows of 1024 or more elements are rows too (a flip, shifted slices and a
    per-row operand were gathered element by element in a flat loop), each block taking an
    even share of the elements whatever the row count (partial rows at its ends); what
    depends on the row alone (the per-row load, its log) is computed once per row on the
    host, between FJ_ROW_SEGMENTS and FJ_ROW_COLUMNS."""
    x, s = rand(rng(60), shape, np.float32), np.abs(rand(rng(61), shape[:1] + (1,), np.float32)) + 0.5

    def f(x, s):
        return {"flip": jnp.flip(x, 1) * 2.0, "log": x - jnp.log(s), "shifted": x[:, 2:] * s + x[:, :-2]}

    compiled = verify(f, x, s)
    for kernel in compiled.rendered:
        source = kernel.source
        assert "FJ_ROW_SEGMENTS(" in source, source
        if "log" in kernel.spec.name or "fj_log(" in source:
            hoisted = source[source.index("FJ_ROW_SEGMENTS("):source.index("FJ_ROW_COLUMNS(")]
            assert "fj_log(" in hoisted and "in1[row]" in hoisted
    run_host_under_asan(compiled, (x, s), tmp_path)  # the partial rows at the blocks' ends stay in bounds


def test_reversed_short_rows_take_the_rows_loop_not_periodic_gathers():
    """A periodic chunk reads an operand reversed along short rows (jnp.flip over rows of 63)
    with a division and a gather per element (0.66 ms for 1M floats on one core); the rows
    loop reads each row's reversed run (0.13 ms).  Periodic chunks keep contiguous reads and
    tables only."""
    x = rand(rng(62), (1000, 63), np.float32)
    compiled = verify(lambda x: jnp.flip(x, 1) * 2.0, x)
    (kernel,) = compiled.rendered
    assert "FJ_PERIODIC_ROWS" not in kernel.source and "FJ_ROW_SEGMENTS(" in kernel.source
    compiled = verify(lambda x, b: x * b + 1.0, x, rand(rng(63), (63,), np.float32))
    assert "FJ_PERIODIC_ROWS" in compiled.rendered[0].source  # a broadcast row: a table, still periodic
