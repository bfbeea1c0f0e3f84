"""float16 and bfloat16 (fusejit/halves.py: computed in float32, each result rounded back)
against jax.jit on all paths: host, emulation under ASan, NVRTC, the interpreter."""
import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import pytest
from jax import lax

import fusejit
from fusejit import halves
from helpers import HALVES, rand, run_host_under_asan, verify

SHAPE = (7, 37)  # odd sizes; 259 elements span two GPU blocks
ids = ["float16", "bfloat16"]


UNARY = {
    "neg": lambda x: -x, "abs": jnp.abs, "sign": jnp.sign, "floor": jnp.floor, "round": jnp.round,
    "exp": jnp.exp, "log": jnp.log, "log1p": jnp.log1p, "expm1": jnp.expm1, "sin": jnp.sin, "cos": jnp.cos,
    "tanh": jnp.tanh, "sqrt": jnp.sqrt, "rsqrt": lax.rsqrt, "square": jnp.square, "logistic": jax.nn.sigmoid,
    "erf": jax.scipy.special.erf, "atan": jnp.arctan, "is_finite": jnp.isfinite, "pow3": lambda x: x ** 3, "pow5": lambda x: x ** 5, "pow_m3": lambda x: x ** -3,
    "relu": jax.nn.relu, "gelu": jax.nn.gelu, "silu": jax.nn.silu, "softplus": jax.nn.softplus,
    "chain": lambda x: jnp.exp(-x * x) * 0.5 + jnp.sin(x) / (1 + jnp.abs(x)),
}


@pytest.mark.parametrize("dtype", HALVES, ids=ids)
def test_unary_math(dtype):
    """Each function in float32 and rounded: NaN, infinities, the largest value, zeros."""
    x = rand(np.random.default_rng(1), SHAPE, dtype, special=True)
    compiled = verify(lambda x: {name: f(x) for name, f in UNARY.items()}, x)
    assert compiled.graph.inputs[0].dtype == np.dtype(dtype)


@pytest.mark.parametrize("dtype", HALVES, ids=ids)
def test_integer_powers_round_each_product(dtype):
    """JAX lowers x ** 3 to x * x * x, and XLA rounds each product to the half type; one
    rounding of the float32 cube differs (gelu's tanh approximation then differs by 7 ULP)."""
    x = rand(np.random.default_rng(13), (64, 100), dtype)
    verify(lambda x: (x ** 3, x ** -3, x ** 6, jax.nn.gelu(x)), x)


@pytest.mark.parametrize("dtype", HALVES, ids=ids)
def test_binary_arithmetic_and_promotion(dtype):
    """Half with half, with weak scalars (stays half), with float32 (becomes float32), with ints."""
    rng = np.random.default_rng(2)
    x, y = rand(rng, SHAPE, dtype, special=True), rand(rng, SHAPE, dtype)
    f = rng.standard_normal(SHAPE).astype(np.float32)
    i = rng.integers(-5, 5, SHAPE).astype(np.int32)
    verify(lambda x, y, f, i: {
        "add": x + y, "sub": x - y, "mul": x * y, "div": x / y, "max": jnp.maximum(x, y), "pow": jnp.abs(x) ** y,
        "atan2": jnp.arctan2(x, y), "rem": jnp.fmod(x, y), "scalar": x * 2.5 + 1, "f32": x * f, "int": x + i,
        "compare": (x < y) & (x != 1), "where": jnp.where(x > 0, x, y), "clip": jnp.clip(x, -1, 2)}, x, y, f, i)


@pytest.mark.parametrize("dtype", HALVES, ids=ids)
def test_conversions_to_and_from_every_dtype(dtype, x64):
    """Round to nearest even, overflow to infinity, float16's subnormals, NaN; from float64 and
    integers in one rounding; to integers saturating as from float32."""
    rng = np.random.default_rng(3)
    x = rand(rng, SHAPE, dtype, special=True)
    wide = rng.standard_normal(SHAPE) * np.float64(10.0) ** rng.integers(-9, 8, SHAPE)
    wide.reshape(-1)[:12] = [65504.0, 65520.0, 65519.99, 6e-8, 3e-8, 2.9e-8, -1e-40, 3.4e38, 1e300, np.nan,
                             1 + 2 ** -8 + 2 ** -30, 1 + 2 ** -8]  # halfway cases and just above
    ints = rng.integers(-2 ** 40, 2 ** 40, SHAPE)
    targets = (np.float32, np.float64, np.int8, np.int32, np.int64, np.uint8, np.uint32, np.bool_,
               np.float16, jnp.bfloat16)
    verify(lambda x, wide, ints: {
        **{f"to_{np.dtype(t).name}": x.astype(t) for t in targets},
        "from_f64": wide.astype(dtype), "from_f32": wide.astype(np.float32).astype(dtype),
        "from_int64": ints.astype(dtype), "from_int8": ints.astype(np.int8).astype(dtype),
        "from_bool": (ints > 0).astype(dtype)}, x, wide, ints)


@pytest.mark.parametrize("dtype", HALVES, ids=ids)
def test_bitcasts_through_the_half_type(dtype):
    """uint16 bits -> half -> float32 (NaN patterns included), and a half result's bits (of
    normal values: a NaN's payload is not a value, and XLA's CPU backend flushes subnormals)."""
    rng = np.random.default_rng(4)
    bits = rng.integers(0, 2 ** 16, (9, 37), dtype=np.uint16)
    finite = rand(rng, (9, 37), dtype).view(np.uint16)
    verify(lambda b, c: (lax.bitcast_convert_type(b, dtype).astype(jnp.float32),
                         lax.bitcast_convert_type(lax.bitcast_convert_type(c, dtype) * 2, jnp.int16)), bits, finite)


def test_random_numbers_of_half_types():
    key = jax.random.key_data(jax.random.PRNGKey(5))
    verify(lambda k: (jax.random.normal(jax.random.wrap_key_data(k), (33,), jnp.bfloat16),
                      jax.random.uniform(jax.random.wrap_key_data(k), (5, 3), jnp.float16)), key)


@pytest.mark.parametrize("dtype", HALVES, ids=ids)
def test_reductions_softmax_norms_and_matmul(dtype):
    rng = np.random.default_rng(6)
    x = rand(rng, (9, 130), dtype)
    w = rand(rng, (130, 17), dtype, scale=0.1)
    verify(lambda x, w: {
        "sum": jnp.sum(x, 1), "mean": jnp.mean(x, 0), "max": jnp.max(x, 1), "argmax": jnp.argmax(x, 0),
        "softmax": jax.nn.softmax(x, -1), "logsumexp": jax.nn.logsumexp(x, 0),
        "layer_norm": (x - x.mean(-1, keepdims=True)) * lax.rsqrt(x.var(-1, keepdims=True) + 1e-5),
        "matmul": x @ w, "matmul_f32": jnp.matmul(x, w, preferred_element_type=jnp.float32),
        "mlp": jax.nn.relu(x @ w).sum(0)}, x, w)


def test_bfloat16_result_converted_to_float32_keeps_float32_precision(x64):
    """XLA computes bfloat16 arithmetic in float32 and drops a float32 -> bfloat16 -> float32
    pair of converts: `(x * 3).astype(float32)` is the float32 product, not the rounded one.
    A conversion the program writes itself, and a float16 result, are rounded."""
    rng = np.random.default_rng(7)
    x = rand(rng, (64, 33), jnp.bfloat16)
    h = rand(rng, (64, 33), np.float16)
    f = rng.standard_normal((64, 33)).astype(np.float32)
    def fn(x, h, f):
        return {"excess": (x * 3 + 1).astype(jnp.float32), "sum": jnp.sum((x * 3).astype(jnp.float32), 1),
                "explicit": (f * 1.001).astype(jnp.bfloat16).astype(jnp.float32),
                "float16": (h * 3 + 1).astype(jnp.float32), "to_f64": (x * 3).astype(jnp.float64)}
    verify(fn, x, h, f)
    got = np.asarray(fusejit.jit(fn)(x, h, f)["excess"])
    def rounded(v):
        return v.astype(jnp.bfloat16).astype(np.float32)
    product = rounded(x.astype(np.float32) * 3)  # read by the add: rounded
    assert not np.array_equal(rounded(product + 1), product + 1)  # the test can tell
    np.testing.assert_array_equal(got, product + 1)


@pytest.mark.parametrize("dtype", HALVES, ids=ids)
def test_loops_carry_half_values(dtype):
    """A scan's carry and outputs, a while loop's, and a cond's branches in a half type."""
    rng = np.random.default_rng(8)
    x = rand(rng, (13, 21), dtype, scale=0.5)

    def f(x):
        carry, ys = lax.scan(lambda c, r: (c * 0.9 + r, jnp.tanh(c).sum()), jnp.zeros(x.shape[1], x.dtype), x)
        n, y = lax.while_loop(lambda s: s[0] < 5, lambda s: (s[0] + 1, s[1] * 1.5 - 0.25), (0, x[0]))
        z = lax.cond(x[0, 0] > 0, lambda v: v * 2, lambda v: v - 1, x[1])
        return carry, ys, y, z
    verify(f, x, scan="loop")
    verify(f, x, scan="unroll")


@pytest.mark.parametrize("dtype", HALVES, ids=ids)
def test_scalars_empty_arrays_and_identity(dtype):
    s = np.asarray(1.5, dtype)
    e = np.zeros((0, 3), dtype)
    x = rand(np.random.default_rng(9), (5,), dtype)
    verify(lambda s, e, x: (s * 2, jnp.exp(e), e.sum(0), x, x[::-1], jnp.asarray(0.1, dtype)), s, e, x)


@pytest.mark.parametrize("dtype", HALVES, ids=ids)
def test_cumulative_sums_are_more_accurate_than_xla(dtype):
    """A deliberate difference: XLA accumulates a half-precision cumsum in the half type,
    fusejit in float32, rounding each output once.  fusejit's is within the half type's
    rounding of the exact sums, never farther from them than XLA's, and within the half
    type's error of a running sum of |x| from XLA's."""
    x = rand(np.random.default_rng(10), (6, 300), dtype, scale=1.0)
    got = np.asarray(fusejit.jit(lambda x: jnp.cumsum(x, 1))(x)).astype(np.float64)
    want = np.asarray(jax.jit(lambda x: jnp.cumsum(x, 1))(x)).astype(np.float64)
    exact = np.cumsum(x.astype(np.float64), 1)
    eps = float(ml_dtypes.finfo(dtype).eps)
    scale = np.cumsum(np.abs(x.astype(np.float64)), 1)
    assert np.abs(got - exact).max() <= np.abs(want - exact).max()
    # the half type's rounding of the exact sum, plus float32's accumulation error
    assert np.all(np.abs(got - exact) <= eps / 2 * np.abs(exact) + 2 ** -20 * scale)
    assert np.all(np.abs(got - want) <= 4 * eps * scale + eps)


def test_the_kernels_meet_half_types_only_in_conversions():
    """After the pass, float16 and bfloat16 values are only inputs, outputs and the operands or
    results of convert_element_type and bitcast_convert_type."""
    x = np.ones((4, 5), jnp.bfloat16)
    graph = fusejit.make_graph(lambda x: (jnp.exp(x) @ x.T, lax.scan(lambda c, r: (c + r, c), x[0], x)))(x)

    def check(g):
        for e in g.eqns:
            touched = [a for a in e.inputs + e.outputs if halves.is_half(a.dtype)]
            assert not touched or e.primitive in ("convert_element_type", "bitcast_convert_type"), e
            for value in e.params.values():
                for body in value if isinstance(value, tuple) else (value,):
                    if isinstance(body, fusejit.ir.Graph):
                        assert not any(halves.is_half(v.dtype) for v in body.inputs + body.outputs)
                        check(body)
    check(graph)
    assert graph.outputs[0].dtype == np.dtype(jnp.bfloat16)


@pytest.mark.parametrize("dtype", HALVES, ids=ids)
def test_half_kernels_under_address_sanitizer(dtype, tmp_path):
    rng = np.random.default_rng(11)
    x = rand(rng, (3, 1037), dtype)
    compiled = fusejit.jit(lambda x: (jax.nn.softmax(x, -1), x.astype(jnp.float32) * 2, x[:, ::-1] + 1),
                           backend="host").lower(x)
    run_host_under_asan(compiled, [x], tmp_path)


def test_bfloat16_arrays_on_an_old_cupy_are_a_clear_error():
    """CuPy before 14 has no bfloat16 arrays: the cuda backend names the problem before it
    compiles (its class carries the conservative list, so this runs without a GPU); float16
    passes."""
    from fusejit.backends.cuda import CudaBackend
    graph = fusejit.make_graph(lambda x, h: (x * 2, h * 2))(np.ones(3, jnp.bfloat16), np.ones(3, np.float16))
    with pytest.raises(fusejit.UnsupportedError, match="backend 'cuda' cannot hold bfloat16 arrays.*upgrade CuPy"):
        halves.check_backend(graph, CudaBackend)
    halves.check_backend(fusejit.make_graph(lambda h: h * 2)(np.ones(3, np.float16)), CudaBackend)
    halves.check_backend(graph, fusejit.backends.get("host"))


def test_cupy_14_holds_bfloat16():
    """A cuda backend takes bfloat16 in and out where its CuPy holds it (14 or later, with
    NumPy 2.1.2 or later): the rule by versions, and the installed CuPy's own type map (which
    needs no GPU) agreeing with it."""
    import cupy
    from cupy._core import _scalar
    from fusejit.backends.cuda import missing_dtypes
    assert missing_dtypes("13.6.0", "2.4.0") == {"bfloat16"}
    assert missing_dtypes("14.0.0", "2.1.1") == {"bfloat16"}
    assert missing_dtypes("14.0.0rc1", "2.1.2") == frozenset()
    assert missing_dtypes("15.1", "2.10.0") == frozenset()
    installed = missing_dtypes(cupy.__version__, np.__version__)
    try:
        known = _scalar.get_typename(np.dtype(jnp.bfloat16)) == "bfloat16"
    except ValueError:  # CuPy's "Unsupported dtype"
        known = False
    assert known == ("bfloat16" not in installed), (cupy.__version__, np.__version__)


@pytest.mark.parametrize("dtype", HALVES, ids=ids)
def test_constants_scatters_and_gradients(dtype):
    """Captured half constants (widened when the graph is built, folded conversions of
    constants), a scatter-add (rounded) and a gradient of a half-precision loss."""
    rng = np.random.default_rng(12)
    x = rand(rng, (6, 40), dtype, scale=0.5)
    table = rand(rng, (40,), dtype)
    table32 = rng.standard_normal(40).astype(np.float32)
    idx = rng.integers(0, 6, 17)

    def f(x):
        y = x * jnp.asarray(table) + jnp.asarray(table32).astype(dtype)
        z = x.at[idx].add(y[idx] * 0.5)
        loss = jax.grad(lambda w: jnp.sum(jnp.tanh(w * y) ** 2).astype(jnp.float32))(x)
        return y, z, loss
    verify(f, x)


@pytest.mark.parametrize("dtype", HALVES, ids=ids)
def test_rounding_in_float32_bits_equals_the_conversions(dtype):
    """round_to_half (fj_round_to_half, in float32's bits) against ml_dtypes' conversion to
    the half type and back, and against the kernels' own conversions (output in the half
    type): a stride through every float32 bit pattern, with the halfway cases, the overflow
    threshold and the subnormal range."""
    from helpers import bitwise_equal
    bits = np.concatenate([np.arange(0, 2 ** 32, 4099, dtype=np.uint64),
                           [0x477fefff, 0x477ff000, 0x477fe000, 0x38800000, 0x387fffff, 0x33000000, 0x33000001,
                            0x3f808000, 0x3f818000, 0x3f800fff, 0x3f801000, 0x3f803000, 0x7f7f8000, 0x7f7fffff,
                            0x7f800000, 0x7fc00000, 0xff800001, 0x80000000, 0x00000001]]).astype(np.uint32)
    x = bits.view(np.float32)
    rounded, narrow = fusejit.jit(lambda x: (x.astype(dtype).astype(jnp.float32), x.astype(dtype)))(x)
    assert "round_to_half" in str(fusejit.make_graph(lambda x: x.astype(dtype).astype(jnp.float32))(x))
    with np.errstate(over="ignore", invalid="ignore"):  # (overflow to infinity is the point)
        want = x.astype(dtype)
    assert np.asarray(narrow).dtype == np.dtype(dtype)  # (a pooled buffer, over 1 MiB)
    assert bitwise_equal(np.asarray(narrow), want)
    assert bitwise_equal(np.asarray(rounded), want.astype(np.float32))


def half_tiles(compiled) -> str:
    """The host source's half-tile text of its one kernel, half vectors included ('' where it
    has none): from `#if FJ_HALF_TILES` to its own `#else`."""
    (kernel,) = compiled.rendered
    source = kernel.source
    start = source.find("#if FJ_HALF_TILES")
    if start < 0:
        return ""
    depth, lines = 0, []
    for line in source[start:].splitlines():
        depth += line.startswith("#if") - line.startswith("#endif")
        if depth == 1 and line.startswith("#else"):
            return "\n".join(lines)
        lines.append(line)
    raise AssertionError("no #else closes the half tiles")


def test_every_float16_through_the_host_half_tiles():
    """Every float16 bit pattern widened a tile at a time (F16C on the host: fusejit/halftiles.py,
    kernels/half_tiles.h) and narrowed back: float32 results equal to jax.jit's, float16
    results equal to the inputs (NaN payloads aside), with rows of 1000 (tiles of 1000, tails
    of 8) and a flat kernel of 4099 elements."""
    from helpers import bitwise_equal
    every = np.arange(2 ** 16, dtype=np.uint16).view(np.float16)
    for x in (every[:64000].reshape(64, 1000), np.concatenate([every, every[:4099 - 2 ** 16 % 4099]])[:4099]):
        wide = fusejit.jit(lambda x: x.astype(jnp.float32))
        assert "fj_widen_tile(in0" in half_tiles(wide.lower(x))
        assert bitwise_equal(np.asarray(wide(x)), np.asarray(jax.jit(lambda x: x.astype(jnp.float32))(x)))
        back = fusejit.jit(lambda x: x.astype(jnp.float32).astype(jnp.float16))
        text = half_tiles(back.lower(x))  # vectors where F16C is, tiles elsewhere
        assert "fj_half_load(in0" in text and "fj_narrow_tile(fj_tile0, out0" in text
        assert bitwise_equal(np.asarray(back(x)), x)
    rest = every[64000:]
    assert bitwise_equal(np.asarray(fusejit.jit(lambda x: x.astype(jnp.float32))(rest)), rest.astype(np.float32))


@pytest.mark.parametrize("shape", [(64, 1000), (4099,), (3, 1029), (7,)])
def test_float16_arithmetic_takes_the_half_vectors(shape, tmp_path):
    """A float16 map whose body is arithmetic (+ - * / and negations, the roundings to float16
    between them) and one-argument float functions (tanh, exp) computes 8 or 16 elements at a
    time with every conversion in registers (kernels/half_tiles.h: fj_half_load,
    fj_half_round, fj_half_each, fj_half_store), each tile's last vector partial; the results
    are jax.jit's, and the interpreter's bit for bit (verify).  A body with a compare and a
    select, or a value from outside the element, keeps the tiles."""
    rng = np.random.default_rng(len(shape) * 100 + shape[-1])
    x, y = rand(rng, shape, np.float16, special=True), rand(rng, shape, np.float16)
    compiled = verify(lambda x, y: (x * 2 + 1, (x - y) / (y * y + 0.5), -jnp.tanh(x) * 3.0, jax.nn.gelu(y)), x, y)
    text = half_tiles(compiled)
    for part in ("fj_half_load(in0", "fj_half_round(", "fj_half_each(", "fj_half_store(out3"):
        assert part in text, text
    run_host_under_asan(compiled, (x, y), tmp_path)  # the partial loads and stores stay in bounds
    for other in (lambda x, y: jnp.where(x > y, x, y * 2), lambda x, y: x * y[..., :1]):
        text = half_tiles(verify(other, x, y))
        assert "fj_widen_tile(in0" in text and "fj_half_load" not in text, text


def test_host_half_tiles_leave_other_reads_and_uses_alone():
    """Only float16 read or written at the kernel's own element goes through the tiles: a
    row broadcast along the rows and a 0-d scale stay element loads, a float32 or int16
    output keeps its store (a bitcast of the input goes through a float16 rounded from the
    widened value, fusejit/halves.py); a pad keeps its pieces; a kernel large enough for the
    stream path takes the half tiles instead; odd tails everywhere."""
    rng = np.random.default_rng(21)
    m, r = rand(rng, (65, 1037), np.float16), rand(rng, (1037,), np.float16)
    s = np.asarray(rand(rng, (), np.float16))
    compiled = verify(lambda m, r, s: (m * r + s, (m * 2).astype(jnp.float32)), m, r, s)
    text = half_tiles(compiled)
    assert "fj_widen_tile(in0" in text and "fj_widen_tile(in1" not in text and "fj_widen_tile(in2" not in text
    assert "fj_narrow_tile(fj_tile0, out0" in text and "out1[" in text
    x = rand(rng, (4099,), np.float16)
    compiled = verify(lambda x: (x + 1, lax.bitcast_convert_type(x, jnp.int16) >> 1), x)
    text = half_tiles(compiled)
    assert "fj_widen_tile(in0" in text and "fj_narrow_tile(fj_tile0, out0" in text and "out1[i] = " in text
    padded = verify(lambda a: jnp.pad(a, ((1, 2), (3, 0))), rand(rng, (64, 1000), np.float16))
    source = padded.rendered[0].source  # clamped loads: the pieces, not the half tiles
    assert "#if FJ_COLUMN_PIECES" in source and "#if FJ_HALF_TILES" not in source
    big = rand(rng, (2048, 2050), np.float16)
    compiled = verify(lambda x: jnp.tanh(x) * 0.5, big)
    assert "fj_widen_tile(in0" in half_tiles(compiled) and "fj_stream_store" not in compiled.rendered[0].source


@pytest.mark.parametrize("dtype", HALVES, ids=ids)
def test_moved_half_values_stay_in_the_half_type(dtype):
    """Outputs that only move the inputs' values (pad, concatenate, roll, transpose, reflect
    padding, dynamic slices and updates, broadcasts, reshapes, tiles, splits) are computed in the half
    type, with no conversion to float32 and back (fusejit/halves.py, MOVES); one that
    computes on a value (a * 2 concatenated) still goes through float32 and is rounded once."""
    x = rand(np.random.default_rng(22), (37, 129), dtype)

    def moves(a):
        return (jnp.pad(a, ((1, 2), (3, 0))), jnp.concatenate([a, a[::-1]], 1), jnp.roll(a, 3, axis=1), a.T,
                jnp.pad(a, 2, mode="reflect"), lax.dynamic_slice(a, (3, 4), (5, 6)),
                lax.dynamic_update_slice(a, jnp.ones((3, 3), a.dtype), (2, 2)), jnp.broadcast_to(a[0], (4, 129)),
                a.reshape(129, 37)[::2], jnp.tile(a, (2, 1)), *jnp.split(a, [10, 20], axis=1))
    graph = fusejit.make_graph(moves)(x)
    assert not any(e.primitive in ("convert_element_type", "round_to_half") and not halves.is_half(e.outputs[0].dtype)
                   for e in graph.eqns), graph
    compiled = verify(moves, x)
    assert not any("fj_convert<float>" in k.source for k in compiled.rendered)
    computed = fusejit.make_graph(lambda a: jnp.concatenate([a, a * 2], 1))(x)
    assert any(e.primitive == "round_to_half" for e in computed.eqns)
    verify(lambda a: jnp.concatenate([a, a * 2], 1), x)
