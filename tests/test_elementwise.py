"""Every elementwise primitive, on every supported dtype, against jax.jit on all three paths."""
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

import fusejit
from helpers import FLOATS, INTS, OVERRIDES, rand, verify

SHAPE = (7, 37)  # odd sizes; 259 elements span two GPU blocks

UNARY_FLOAT = {
    "neg": lambda x: -x, "abs": jnp.abs, "sign": jnp.sign, "floor": jnp.floor, "ceil": jnp.ceil,
    "round_even": jnp.round, "round_away": lambda x: lax.round(x, lax.RoundingMethod.AWAY_FROM_ZERO),
    "exp": jnp.exp, "exp2": jnp.exp2, "log": jnp.log, "log1p": jnp.log1p, "expm1": jnp.expm1,
    "sin": jnp.sin, "cos": jnp.cos, "asin": jnp.arcsin, "acos": jnp.arccos, "atan": jnp.arctan,
    "sinh": jnp.sinh, "cosh": jnp.cosh, "tanh": jnp.tanh, "asinh": jnp.arcsinh, "acosh": jnp.arccosh,
    "atanh": jnp.arctanh, "sqrt": jnp.sqrt, "rsqrt": lax.rsqrt, "cbrt": jnp.cbrt, "square": jnp.square,
    "logistic": jax.nn.sigmoid, "erf": jax.scipy.special.erf, "erfc": jax.scipy.special.erfc,
    "is_finite": jnp.isfinite, "isnan": jnp.isnan, "pow3": lambda x: x ** 3, "pow_m2": lambda x: x ** -2,
    "pow0": lambda x: lax.integer_pow(x, 0), "relu": jax.nn.relu, "gelu": jax.nn.gelu,
    "silu": jax.nn.silu, "softplus": jax.nn.softplus,
}
# Primitives whose results differ from XLA's by more than the dtype tolerance (OVERRIDES says why).
LOOSE_FLOAT = {
    "lgamma": lax.lgamma, "digamma": lax.digamma, "erf_inv": lax.erf_inv, "tan": jnp.tan,
    "pow": lambda x: jnp.abs(x) ** 1.7,
}


@pytest.mark.parametrize("dtype", FLOATS)
def test_unary_float(dtype, x64):
    x = rand(np.random.default_rng(1), SHAPE, dtype, special=True)
    verify(lambda x: {name: f(x) for name, f in UNARY_FLOAT.items()}, x)


@pytest.mark.parametrize("name", sorted(LOOSE_FLOAT))
@pytest.mark.parametrize("dtype", FLOATS)
def test_unary_float_loose(name, dtype, x64):
    x = rand(np.random.default_rng(2), SHAPE, dtype, special=True)
    verify(LOOSE_FLOAT[name], x, **OVERRIDES[name])


@pytest.mark.parametrize("dtype", FLOATS)
def test_special_functions_jax_computes_in_python(dtype, x64):
    """igamma, igammac, regularized_incomplete_beta and bessel_i0e lower to Python functions
    in JAX (series, continued fractions, polynomials): fusejit traces the same functions.
    Their loops run to convergence, hundreds of iterations: on the host only (the emulation
    would take minutes; NVRTC still compiles every kernel)."""
    r = np.random.default_rng(35)
    a, x = np.abs(rand(r, (9, 4), dtype)) + 0.1, np.abs(rand(r, (9, 4), dtype))
    b, p = np.abs(rand(r, (9, 4), dtype)) + 0.2, r.uniform(0, 1, (9, 4)).astype(dtype)
    sp = jax.scipy.special
    verify(lambda a, x, b, p: {"gammainc": sp.gammainc(a, x), "gammaincc": sp.gammaincc(a, x),
                               "betainc": sp.betainc(a, b, p), "i0e": sp.i0e(x - 2), "i0": sp.i0(x),
                               "poisson_cdf": jax.scipy.stats.poisson.cdf(3.0, a)}, a, x, b, p,
           rtol=1e-4 if dtype == np.float32 else 1e-10, backends=("host",))


def test_float64_digamma_to_a_few_ulp(x64):
    """The asymptotic series starts where its first omitted term is below an ULP (a series cut
    short was off by 1e-11), and the reflection reduces pi x before tan (unreduced, it was off
    by 1e-6 near the poles).  Near digamma's roots only the absolute error is small, in both."""
    x = np.random.default_rng(33).uniform(-30, 40, 2000)
    verify(lax.digamma, x, rtol=1e-14, atol=1e-13)


def zeta_operands(rng, dtype):
    """(x, q) for zeta: random x from 0.5 to 12 (a third of them integers) and q from -4.5 to 12
    (a fifth integers, -0.0 among them), then XLA's special cases: x = 1, x < 1, x = inf, q at a
    pole with even and odd x, q <= 0 with x not an integer, q = inf, NaN."""
    x = rng.uniform(0.5, 12, SHAPE)
    x = np.where(rng.random(SHAPE) < 1 / 3, np.round(x), x)
    q = rng.uniform(-4.5, 12, SHAPE)
    q = np.where(rng.random(SHAPE) < 1 / 5, np.round(q), q)
    special_x = [1.0, 0.5, -2.0, np.inf, 2.0, 3.0, 2.5, 2.0, np.nan, 2.0, 4.0, 30.0]
    special_q = [1.0, 1.0, -4.0, 1.0, -3.0, -3.0, -1.5, np.inf, 1.0, np.nan, -0.0, 1e-3]
    x.reshape(-1)[:len(special_x)], q.reshape(-1)[:len(special_q)] = special_x, special_q
    return x.astype(dtype), q.astype(dtype)


@pytest.mark.parametrize("dtype", FLOATS)
def test_zeta_polygamma_bessel_i1e(dtype, x64):
    """The special functions XLA implements in C++ (kernels/special.h): Hurwitz zeta,
    polygamma and e^-|x| I1(x), with XLA's values at poles and outside the domain, and as
    jax.grad reaches them (the derivatives of digamma and i0e)."""
    rng = np.random.default_rng(36)
    x, q = zeta_operands(rng, dtype)
    n = rng.integers(0, 7, SHAPE).astype(np.float64)
    n = np.where(rng.random(SHAPE) < 0.9, n, rng.uniform(-2, 6, SHAPE)).astype(dtype)
    z = np.where(rng.random(SHAPE) < 0.5, rng.uniform(-40, 40, SHAPE), rng.standard_normal(SHAPE) * 3)
    z.reshape(-1)[:6] = [0.0, -0.0, np.inf, -np.inf, np.nan, 25.0]
    z = z.astype(dtype)
    sp = jax.scipy.special
    verify(lambda x, q, n, z: {
        "zeta": lax.zeta(x, q), "polygamma": lax.polygamma(n, q), "i1e": lax.bessel_i1e(z),
        "i1": sp.i1(z), "polygamma_sp": sp.polygamma(2, jnp.abs(q) + 0.25), "zeta_sp": sp.zeta(x + 1.5, jnp.abs(q)),
        "grad_digamma": jax.vmap(jax.grad(sp.digamma))(jnp.abs(z.ravel()) + 0.5),
        "grad_i0e": jax.grad(lambda v: jnp.sum(sp.i0e(v)))(z),
    }, x, q, n, z)


@pytest.mark.parametrize("dtype", FLOATS)
def test_reduce_precision_bit_exact(dtype, x64):
    """lax.reduce_precision (bfloat16, float16 and float8 roundings, ...) equals XLA's bit
    for bit on random bit patterns: every exponent, NaNs, infinities and denormals among them."""
    rng = np.random.default_rng(37)
    utype = np.uint32 if dtype == np.float32 else np.uint64
    x = rng.integers(0, np.iinfo(utype).max, (13, 31), dtype=utype, endpoint=True).view(dtype)
    x[0, :8] = [0.0, -0.0, np.inf, -np.inf, np.nan, 1.0, 65504.0, 65520.0]
    x[1] = (rng.standard_normal(31) * 1000).astype(dtype)
    formats = [(8, 7), (5, 10), (4, 3), (5, 2), (1, 0), (8, 0), (3, 22), (8, 23)]
    if dtype == np.float64:
        formats += [(11, 52), (11, 10), (10, 51)]
    verify(lambda x: {f"e{e}m{m}": lax.reduce_precision(x, e, m) for e, m in formats}, x, rtol=0.0, atol=0.0)


BINARY_FLOAT = {
    "add": lambda x, y: x + y, "sub": lambda x, y: x - y, "mul": lambda x, y: x * y,
    "div": lambda x, y: x / y, "rem": lax.rem, "fmod": jnp.fmod, "mod": jnp.mod,
    "floor_divide": jnp.floor_divide, "max": jnp.maximum, "min": jnp.minimum,
    "atan2": jnp.arctan2, "nextafter": jnp.nextafter, "eq": lambda x, y: x == y,
    "ne": lambda x, y: x != y, "lt": lambda x, y: x < y, "le": lambda x, y: x <= y,
    "gt": lambda x, y: x > y, "ge": lambda x, y: x >= y, "where": lambda x, y: jnp.where(x > y, x, y),
    "clip": lambda x, y: jnp.clip(x, -1.0, y), "clamp": lambda x, y: lax.clamp(x.dtype.type(-1.5), x, x.dtype.type(2.0)),
    "hypot": jnp.hypot, "copysign": jnp.copysign, "logaddexp": jnp.logaddexp,
}


@pytest.mark.parametrize("dtype", FLOATS)
def test_binary_float(dtype, x64):
    rng = np.random.default_rng(3)
    x, y = rand(rng, SHAPE, dtype, special=True), rand(rng, SHAPE, dtype, special=True)
    y.reshape(-1)[:5] = x.reshape(-1)[:5]  # ties for comparisons and max/min
    verify(lambda x, y: {name: f(x, y) for name, f in BINARY_FLOAT.items()}, x, y)


def test_pow_int_exponent(x64):
    rng = np.random.default_rng(4)
    x = rand(rng, SHAPE, np.float64)
    n = rng.integers(-3, 4, SHAPE).astype(np.int32)
    verify(lambda x, n: lax.pow(x, n), x, n, **OVERRIDES["pow"])


INT_ARITH = {
    "add": lambda x, y: x + y, "sub": lambda x, y: x - y, "mul": lambda x, y: x * y,
    "div": lax.div, "rem": lax.rem, "floor_divide": jnp.floor_divide, "mod": jnp.mod,
    "max": jnp.maximum, "min": jnp.minimum, "neg": lambda x, y: -x, "abs": lambda x, y: jnp.abs(x),
    "sign": lambda x, y: jnp.sign(x), "pow3": lambda x, y: x ** 3, "square": lambda x, y: jnp.square(y),
    "eq": lambda x, y: x == y, "lt": lambda x, y: x < y, "ge": lambda x, y: x >= y,
    "where": lambda x, y: jnp.where(x < y, x, y), "clip": lambda x, y: jnp.clip(x, 3, 100),
}
INT_BITS = {
    "and": lambda x, y: x & y, "or": lambda x, y: x | y, "xor": lambda x, y: x ^ y,
    "not": lambda x, y: ~x, "popcount": lambda x, y: lax.population_count(x),
    "clz": lambda x, y: lax.clz(x),
}


def int_operands(dtype, seed):
    rng = np.random.default_rng(seed)
    x, y = rand(rng, SHAPE, dtype, special=True), rand(rng, SHAPE, dtype, special=True)
    flat_y = y.reshape(-1)
    flat_y[:7] = 0  # division and remainder by zero
    info = np.iinfo(dtype)
    x.reshape(-1)[7:10] = info.min
    if info.min < 0:
        flat_y[7:9] = -1  # MIN / -1 and MIN % -1
    return x, y


@pytest.mark.parametrize("dtype", INTS)
def test_int_arithmetic(dtype, x64):
    x, y = int_operands(dtype, 5)
    verify(lambda x, y: {name: f(x, y) for name, f in INT_ARITH.items()}, x, y)


@pytest.mark.parametrize("dtype", INTS)
def test_int_bits_and_shifts(dtype, x64):
    x, _ = int_operands(dtype, 6)
    bits = np.iinfo(dtype).bits
    shift = np.random.default_rng(7).integers(0, bits + 3, SHAPE).astype(dtype)
    if np.iinfo(dtype).min < 0:
        shift.reshape(-1)[:3] = -1  # negative shift amounts
    fns = dict(INT_BITS)
    fns.update({
        "shl": lambda x, s: lax.shift_left(x, s),
        "shr_arith": lambda x, s: lax.shift_right_arithmetic(x, s),
        "shr_logical": lambda x, s: lax.shift_right_logical(x, s),
    })
    verify(lambda x, s: {name: f(x, s) for name, f in fns.items()}, x, shift)


def test_bool_ops():
    rng = np.random.default_rng(8)
    a, b = rand(rng, SHAPE, np.bool_), rand(rng, SHAPE, np.bool_)
    verify(lambda a, b: {
        "and": a & b, "or": a | b, "xor": a ^ b, "not": ~a, "eq": a == b, "ne": a != b, "lt": a < b,
        "where": jnp.where(a, b, ~b), "any2": jnp.logical_or(a, b), "max": jnp.maximum(a, b),
        "to_int": a.astype(jnp.int32) + b, "to_float": a * 1.5,
    }, a, b)


TOTAL_ORDER = {"eq_to": lax.eq_to_p, "lt_to": lax.lt_to_p, "le_to": lax.le_to_p}


@pytest.mark.parametrize("dtype", [*FLOATS, np.int8, np.int64, np.uint32, np.bool_])
def test_total_order_comparisons(dtype, x64):
    """eq_to/lt_to/le_to (jnp.searchsorted's and jnp.interp's): -NaN < -inf < ... < -0 < +0 <
    ... < inf < NaN, every ordered pair of special values and random ones."""
    rng = np.random.default_rng(31)
    values = rand(rng, (40,), dtype, special=True)
    if np.dtype(dtype).kind == "f":
        specials = np.array([np.nan, -np.nan, np.inf, -np.inf, 0.0, -0.0, 1.0, -1.0], dtype)
        values = np.concatenate([values, specials])
    x, y = (a.reshape(-1) for a in np.meshgrid(values, values))
    verify(lambda x, y: {name: p.bind(x, y) for name, p in TOTAL_ORDER.items()}, x, y)


def test_searchsorted_interp_digitize():
    rng = np.random.default_rng(32)
    grid = np.sort(rand(rng, (23,), np.float32))
    q = rand(rng, (9, 5), np.float32, special=True)
    verify(lambda g, q: {"left": jnp.searchsorted(g, q), "right": jnp.searchsorted(g, q, side="right"),
                         "interp": jnp.interp(q, g, g * 2 + 1), "digitize": jnp.digitize(q, g)}, grid, q)


CONVERT_TARGETS = (np.float32, np.float64, np.int8, np.int16, np.int32, np.int64,
                   np.uint8, np.uint16, np.uint32, np.uint64, np.bool_)


@pytest.mark.parametrize("src", FLOATS + (np.int8, np.int64, np.uint32, np.bool_))
def test_convert_element_type(src, x64):
    """Float -> int saturates and sends NaN to 0; int -> int wraps; anything -> bool is x != 0."""
    rng = np.random.default_rng(9)
    x = rand(rng, SHAPE, src, special=True)
    if np.dtype(src).kind == "f":
        x.reshape(-1)[10:20] = np.array([3e9, -3e9, 1e20, -1e20, 255.5, -128.7, 65535.9, 0.5, -0.5, 2**63],
                                        dtype=src)
        x.reshape(-1)[20:24] = np.array([2.0**31, -2.0**31, 2.0**32, 2.0**31 - 128], dtype=src)  # int32's bounds
    verify(lambda x: {np.dtype(t).name: x.astype(t) for t in CONVERT_TARGETS}, x)


def test_weak_typed_scalars_and_promotion(x64):
    rng = np.random.default_rng(10)
    x = rand(rng, SHAPE, np.float32)
    i = rand(rng, SHAPE, np.int16)
    verify(lambda x, i, s: (x * 2 + 1, i + 3, i * 2.5, x + i, s * x, i.astype(jnp.uint8) - 1), x, i, 0.75)


def test_float32_without_x64():
    """With x64 off, float64 and int64 inputs are canonicalized exactly as jax.jit does."""
    rng = np.random.default_rng(11)
    x, i = rng.standard_normal(SHAPE), rng.integers(-5, 5, SHAPE)
    compiled = verify(lambda x, i: (jnp.sin(x) * i, i // 2), x, i)
    assert compiled.graph.inputs[0].dtype == np.float32
    assert compiled.graph.inputs[1].dtype == np.int32


def test_float32_math_within_one_ulp_of_the_exact_result():
    """The host's vectorisable float32 exp, log, tanh, log1p, expm1, logistic, sin, cos, tan,
    erf and erfc (kernels/cpu_prelude.h, kernels/cpu_trig.h) against the float64 result rounded to float32,
    over the whole range of each function, plus the special values: at most one ULP apart,
    specials identical."""
    from bench.ulp_sweep import FUNCTIONS
    from fusejit.check import ulp_distance
    rng = np.random.default_rng(30)
    x = np.concatenate([rng.standard_normal(20000) * 10, rng.uniform(-120, 120, 20000),
                        np.exp(rng.uniform(-103, 88, 20000)), -np.exp(rng.uniform(-103, 88, 20000)),
                        [0.0, -0.0, np.inf, -np.inf, np.nan, 1e-45, -1e-45, 88.72, 88.73, -103.9, -104.0,
                         3.4e38, -3.4e38, 1e-30, -1.0, -0.999999, 1e-8, -1e-8]]).astype(np.float32)
    got = fusejit.jit(lambda x: {k: f(x) for k, (f, _) in FUNCTIONS.items()}, backend="host")(x)
    with np.errstate(all="ignore"):
        for name, (_, exact) in FUNCTIONS.items():
            want = exact(x.astype(np.float64)).astype(np.float32)
            np.testing.assert_array_equal(np.isnan(got[name]), np.isnan(want), err_msg=name)
            np.testing.assert_array_equal(got[name][np.isinf(want)], want[np.isinf(want)], err_msg=name)
            finite = np.isfinite(want)
            assert ulp_distance(got[name][finite], want[finite]).max() <= 1, name


def test_float32_math_within_one_ulp_over_a_sweep_of_all_floats():
    """Every 4093rd float32 bit pattern (a million values, both signs, denormals, infinities
    and NaNs) through bench.ulp_sweep, the check that runs over all 2^32: each function at most
    one ULP from the float64 result rounded, NaN where it is NaN."""
    from bench.ulp_sweep import FUNCTIONS, sweep
    for name in FUNCTIONS:
        worst, nan_mismatch = sweep(name, 4093)
        assert worst <= 1 and nan_mismatch == 0, (name, worst, nan_mismatch)


def test_float32_atan2_within_one_ulp_of_the_exact_result():
    """The host's float32 atan2 (kernels/cpu_prelude.h) against NumPy's float64 atan2 rounded
    to float32: random bit patterns (every sign, denormals, infinities, NaNs), magnitudes a few
    binades apart (the reduction past tan(pi/8)), exact ratios; at most one ULP apart, NaN where
    it is NaN, and every pair of zeros, infinities and ones exactly as the C library has it
    (signed zeros, +-pi, +-pi/4, +-3pi/4)."""
    from fusejit.check import ulp_distance
    rng = np.random.default_rng(41)
    bits = rng.integers(0, 2**32, (2, 200000), dtype=np.uint64).astype(np.uint32)
    y, x = bits.view(np.float32)
    near = (bits[0] & np.uint32(0x807FFFFF)) | (((bits[0] >> 23 & 0xFF).astype(np.int64)
                                                + rng.integers(-4, 5, bits.shape[1])).clip(0, 254).astype(np.uint32) << 23)
    ratio = rng.integers(-1000, 1001, (2, 20000)).astype(np.float32)
    special = np.float32([0.0, -0.0, np.inf, -np.inf, np.nan, 1.0, -1.0, 1e-45, -1e-45, 3.4e38])
    sy, sx = np.meshgrid(special, special)
    y = np.concatenate([y, bits[0].view(np.float32), ratio[0], sy.ravel()])
    x = np.concatenate([x, near.view(np.float32), ratio[1], sx.ravel()])
    got = fusejit.jit(jnp.arctan2, backend="host")(y, x)
    with np.errstate(all="ignore"):
        want = np.arctan2(y.astype(np.float64), x.astype(np.float64)).astype(np.float32)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    finite = ~np.isnan(want)
    assert ulp_distance(got[finite], want[finite]).max() <= 1
    tail = slice(-sy.size, None)
    np.testing.assert_array_equal(got[tail], want[tail])
    numbers = ~np.isnan(want[tail])  # a NaN's sign means nothing
    np.testing.assert_array_equal(np.signbit(got[tail][numbers]), np.signbit(want[tail][numbers]))


def test_float32_math_tables_are_the_fits_of_bench_fits():
    """The polynomial tables of kernels/cpu_prelude.h (logistic, erf, erfc, atan) are what
    bench/fits.py computes: a refit reproduces their values, and a table edited by one
    coefficient is reported."""
    from bench import fits
    assert fits.mismatches() == []
    text = fits.HEADER.read_text()
    table = fits.header_table("fj_erfcx_coefficients", text)
    first = repr(table[0])
    edited = text.replace(first, repr(table[0] * (1 + 1e-6)), 1)
    assert edited != text
    assert not fits.same_polynomial(fits.header_table("fj_erfcx_coefficients", edited), fits.erfcx())
    assert fits.same_polynomial(table, fits.erfcx())


def test_float32_trig_near_multiples_of_half_pi():
    """k pi/2 rounded to float32 and its two neighbours, for k from 1 to 2^126 (near the
    multiples the reduced argument keeps the fewest digits), both signs, and the edges of the
    unreduced range: sin, cos and tan within one ULP."""
    from fusejit.check import ulp_distance
    k = np.unique(np.round(np.geomspace(1, 2.0**126, 4000)))
    near = (k * (np.pi / 2)).astype(np.float32)
    x = np.concatenate([near, np.nextafter(near, np.float32(0)), np.nextafter(near, np.float32(np.inf))])
    x = np.concatenate([x, -x, np.float32([0.5, 0.78125, 0.7853981, 0.7853982, 1e-38, 1e-45])])
    got = fusejit.jit(lambda x: (jnp.sin(x), jnp.cos(x), jnp.tan(x)), backend="host")(x)
    for name, g, exact in zip(("sin", "cos", "tan"), got, (np.sin, np.cos, np.tan)):
        want = exact(x.astype(np.float64)).astype(np.float32)
        assert ulp_distance(g, want).max() <= 1, name


def _pi_bits(bits: int) -> int:
    """floor(pi 2^bits), by Machin's formula in integers."""
    def arctan_inverse(n):  # atan(1/n) 2^(bits + 16)
        total, term, k, sign = 0, (1 << (bits + 16)) // n, 1, 1
        while term:
            total, term, k, sign = total + sign * (term // k), term // (n * n), k + 2, -sign
        return total
    return (16 * arctan_inverse(5) - 4 * arctan_inverse(239)) >> 16


def test_trig_reduction_table_is_two_over_pi():
    """kernels/cpu_trig.h's rows are (2^E 2/pi) mod 4 in units of 2^-94, E = -24 .. 104, as
    three 32-bit words: recomputed here from pi with Python integers."""
    import re
    from fusejit.templates import kernels_dir
    with open(os.path.join(kernels_dir(), "cpu_trig.h")) as f:
        text = f.read()
    words = [[int(v, 16) for v in re.findall(r"0x[0-9a-f]+", re.search(
        rf"fj_two_over_pi_w{j}\[FJ_TWO_OVER_PI_ROWS\] = \{{([^}}]*)\}}", text).group(1))] for j in range(3)]
    bits = 400
    two_over_pi = (2 << (2 * bits)) // _pi_bits(bits)  # floor(2/pi 2^bits)
    rows = [(w0 << 64) | (w1 << 32) | w2 for w0, w1, w2 in zip(*words)]
    want = [((two_over_pi << (e + 94 - bits)) if e + 94 >= bits else (two_over_pi >> (bits - e - 94))) % (1 << 96)
            for e in range(-24, 105)]
    assert rows == want


@pytest.mark.parametrize("shape", [(1_000_003,), (701, 1531), (2, 300_001), (3001, 97)])
def test_large_maps_take_the_host_stream_path(shape, monkeypatch):
    """Map kernels moving FUSEJIT_STREAM_BYTES or more per call are computed in tiles on the
    host and copied out with non-temporal stores (kernels/stream_path.cu.in): flat and
    row-shaped kernels, rows longer and shorter than a tile, odd sizes (partial cache lines
    at every tile's ends), outputs of four element sizes at once."""
    monkeypatch.setenv("FUSEJIT_STREAM_BYTES", str(1 << 20))
    rng = np.random.default_rng(sum(shape))
    x, r = rand(rng, shape, np.float32), rand(rng, shape[-1:], np.float32)
    compiled = verify(lambda x, r: (jnp.tanh(x * r + 1.0) - r, (x * 3).astype(jnp.int8), x > r,
                                    (x * 100).astype(jnp.int16)),
                      x, r, backends=("host",))
    assert all("FJ_STREAM_STORES" in k.source for k in compiled.rendered)


@pytest.mark.parametrize("shape", [(1001,), (37, 29)])
def test_a_kernel_with_a_stream_path_runs_its_element_loop_on_the_gpu(shape, monkeypatch):
    """The stream path computes every element on the host, and there the element loop is
    compiled out; the GPU's build (the emulation here) has no stream path and runs the
    element loop instead."""
    monkeypatch.setenv("FUSEJIT_STREAM_BYTES", "1")
    rng = np.random.default_rng(sum(shape) + 1)
    x, r = rand(rng, shape, np.float32), rand(rng, shape[-1:], np.float32)
    compiled = verify(lambda x, r: (jnp.tanh(x * r + 1.0) - r, (x * 3).astype(jnp.int8)), x, r,
                      backends=("host", "emulate"))
    for k in compiled.rendered:
        stream, element_loop = k.source.split("#else\n")
        assert "FJ_STREAM_LOOP" in stream or "FJ_STREAM_ROWS_LOOP" in stream
        assert "_LOOP_FROM(" in element_loop and "#endif  // FJ_STREAM_STORES" in element_loop


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
@pytest.mark.parametrize("shape", [(2, 63, 64), (4099,)])
def test_tile_paths_keep_their_names_apart_from_the_body(shape, dtype, monkeypatch):
    """A pad's condition is named c0 in the element body, as the stream path's (and the half
    tiles') first column of a tile once was: the body's c0 shadowed it and sent the tile's
    stores one element before the tile (a crash on the stack).  A padded map through both
    tile paths, over rows and flat."""
    monkeypatch.setenv("FUSEJIT_STREAM_BYTES", "1")
    x = rand(np.random.default_rng(len(shape)), shape, dtype)
    padding = ((1, 0, 1),) + ((0, 0, 0),) * (len(shape) - 1)

    def f(x):
        padded = lax.pad(jnp.tanh(x), jnp.zeros((), x.dtype), padding)
        return padded - jnp.sin(padded), padded
    compiled = verify(f, x)
    (kernel,) = compiled.rendered
    assert "const bool c0 = " in kernel.source
    # (a flat float16 pad has pieces, which the stream path takes over, not the half tiles)
    assert ("FJ_HALF_TILES" if dtype == np.float16 and len(shape) > 1 else "FJ_STREAM_STORES") in kernel.source


def test_small_maps_store_as_usual(monkeypatch):
    monkeypatch.setenv("FUSEJIT_STREAM_BYTES", str(1 << 20))
    x = rand(np.random.default_rng(0), (300, 200), np.float32)
    compiled = verify(lambda x: jnp.sin(x) * 2, x, backends=("host",))
    assert not any("FJ_STREAM_STORES" in k.source for k in compiled.rendered)


def test_large_stencils_store_as_usual(monkeypatch):
    """A kernel that loads an input at several addresses (a stencil: its neighbours' lines
    come from the cache) keeps ordinary stores however large it is; one whose loads are
    each at one address, beside it in the same program, streams."""
    monkeypatch.setenv("FUSEJIT_STREAM_BYTES", str(1 << 20))
    x = rand(np.random.default_rng(5), (701, 531), np.float32)

    def f(u):
        laplacian = u[:-2, 1:-1] + u[2:, 1:-1] + u[1:-1, :-2] + u[1:-1, 2:] - 4.0 * u[1:-1, 1:-1]
        return laplacian, u * 2.0 + 1.0  # another output shape: another kernel

    compiled = verify(f, x, backends=("host",))
    streams = ["FJ_STREAM_STORES" in k.source for k in compiled.rendered if "in0[" in k.source]
    assert False in streams and True in streams


def test_the_stream_threshold_defaults_to_half_the_last_level_cache(monkeypatch):
    from fusejit import streamstores
    monkeypatch.delenv("FUSEJIT_STREAM_BYTES", raising=False)
    assert streamstores.last_level_cache_bytes() >= 1 << 16
    assert streamstores.stream_min_bytes() == streamstores.last_level_cache_bytes() // 2
