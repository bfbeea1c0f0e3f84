"""The table from elementwise primitive to C expression, and C spellings of dtypes and literals.

One row per primitive.  A rule receives the operands' C expressions, the operand
dtypes, the result dtype and the equation's params, and returns one C expression.
CUDA and the host compile the same expressions; the few helpers they call
(`fj_*`) live in kernels/common.h.
"""
from __future__ import annotations

import math

import numpy as np

from . import halves

CTYPES = {
    "float32": "float", "float64": "double", "bool": "bool",
    "int8": "int8_t", "int16": "int16_t", "int32": "int32_t", "int64": "int64_t",
    "uint8": "uint8_t", "uint16": "uint16_t", "uint32": "uint32_t", "uint64": "uint64_t",
    "float16": "fj_f16", "bfloat16": "fj_bf16",  # storage only (kernels/common.h, fusejit/halves.py)
}


def ctype(dtype) -> str:
    return CTYPES[np.dtype(dtype).name]


def is_float(dtype) -> bool:
    return np.dtype(dtype).kind == "f"


def is_bool(dtype) -> bool:
    return np.dtype(dtype).kind == "b"


def c_literal(value, dtype) -> str:
    """An exact C literal of `dtype`."""
    dtype = np.dtype(dtype)
    if halves.is_half(dtype):
        bits = int(np.asarray(value, dtype).view(np.uint16))
        return f"fj_half_bits<{ctype(dtype)}>({bits:#06x}u)"
    if dtype.kind == "b":
        return "true" if bool(value) else "false"
    if dtype.kind in "iu":
        v = int(value)
        if dtype == np.int64 and v == -2**63:
            return "(int64_t)(-9223372036854775807LL - 1)"
        if dtype == np.int32 and v == -2**31:
            return "(-2147483647 - 1)"
        if dtype.name in ("int32", "uint32"):
            return f"{v}{'U' if dtype.kind == 'u' else ''}"
        # int64_t is `long` on LP64 hosts and `long long` under NVRTC: spell the type, not a suffix.
        suffix = {"int64": "LL", "uint64": "ULL"}.get(dtype.name, "")
        return f"({ctype(dtype)}){v}{suffix}"
    v = float(value)
    f32 = dtype == np.float32
    if math.isnan(v):
        return "fj_nan_f()" if f32 else "fj_nan()"
    if math.isinf(v):
        inf = "fj_inf_f()" if f32 else "fj_inf()"
        return inf if v > 0 else f"(-{inf})"
    text = repr(v)
    if "e" not in text and "." not in text:
        text += ".0"
    exact = float(np.float32(float(text))) == v if f32 else float(text) == v
    if not exact:
        text = v.hex()
    return text + ("f" if f32 else "")


def fsuffix(dtype) -> str:
    return "f" if np.dtype(dtype) == np.float32 else ""


def _math(name):
    def rule(a, ins, out, params):
        return f"{name}{fsuffix(out)}({', '.join(a)})"
    return rule


def _helper(name):
    def rule(a, ins, out, params):
        return f"{name}({', '.join(a)})"
    return rule


def _exp(a, ins, out, params):
    """e^x; of a value fusejit/ranges.py proved non-positive, without the overflow branch."""
    return f"{'fj_exp_nonpositive' if params.get('nonpositive') else 'fj_exp'}({a[0]})"


def _infix(op, int_helper=None):
    """A binary operator; integer arithmetic that can overflow goes through a wrapping helper."""
    def rule(a, ins, out, params):
        if int_helper and not is_float(out) and not is_bool(out):
            return f"{int_helper}({a[0]}, {a[1]})"
        return f"{a[0]} {op} {a[1]}"
    return rule


def _compare(op):
    def rule(a, ins, out, params):
        return f"{a[0]} {op} {a[1]}"
    return rule


def _bitwise(op, logical):
    """Bools combine without short-circuiting (`&`, `|`): GCC made `a || b` a select of
    bools that its vectoriser rejects (jnp.hypot's loop ran element by element, 40x slower)."""
    def rule(a, ins, out, params):
        if is_bool(out):
            return f"(bool)({a[0]} {logical} {a[1]})"
        return f"({ctype(out)})({a[0]} {op} {a[1]})"
    return rule


def _not(a, ins, out, params):
    return f"!{a[0]}" if is_bool(out) else f"({ctype(out)})(~{a[0]})"


def _neg(a, ins, out, params):
    return f"-{a[0]}" if is_float(out) else f"fj_neg({a[0]})"


def _abs(a, ins, out, params):
    return f"fabs{fsuffix(out)}({a[0]})" if is_float(out) else f"fj_abs({a[0]})"


def _div(a, ins, out, params):
    return f"{a[0]} / {a[1]}" if is_float(out) else f"fj_div({a[0]}, {a[1]})"


def _rem(a, ins, out, params):
    return f"fmod{fsuffix(out)}({a[0]}, {a[1]})" if is_float(out) else f"fj_rem({a[0]}, {a[1]})"


def _pow(a, ins, out, params):
    exponent = a[1] if np.dtype(ins[1]) == np.dtype(out) else f"({ctype(out)}){a[1]}"
    return f"pow{fsuffix(out)}({a[0]}, {exponent})"


def _reduce_precision(a, ins, out, params):
    return f"fj_reduce_precision({a[0]}, {int(params['exponent_bits'])}, {int(params['mantissa_bits'])})"


def _round(a, ins, out, params):
    # rounding_method 0: half away from zero (round); 1: half to even (rint, default FP mode)
    method = int(params.get("rounding_method", 0))
    return f"{'rint' if method == 1 else 'round'}{fsuffix(out)}({a[0]})"


def _select_n(a, ins, out, params):
    pred, cases = a[0], a[1:]
    if len(cases) == 1:
        return cases[0]
    if is_bool(ins[0]):
        if np.dtype(out).kind == "f":
            return f"fj_select({pred}, {cases[1]}, {cases[0]})"
        return f"{pred} ? {cases[1]} : {cases[0]}"
    expr = cases[-1]
    for k in range(len(cases) - 2, -1, -1):
        expr = f"{pred} == {k} ? {cases[k]} : {expr}"
    return expr


def _convert(a, ins, out, params):
    src, dst = np.dtype(ins[0]), np.dtype(out)
    if src == dst:
        return a[0]
    return f"fj_convert<{ctype(dst)}>({a[0]})"


def _round_to_half(a, ins, out, params):
    """A float32 value rounded to float16 or bfloat16 and widened again (fusejit/halves.py)."""
    return f"fj_round_to_half({a[0]}, {ctype(params['dtype'])}())"


def _bitcast(a, ins, out, params):
    return f"fj_bitcast<{ctype(out)}>({a[0]})"


def _identity(a, ins, out, params):
    return a[0]


def _square(a, ins, out, params):
    return f"{a[0]} * {a[0]}" if is_float(out) else f"fj_mul({a[0]}, {a[0]})"


def conjunction(conditions) -> str:
    """C conditions joined by a bitwise AND of bools: GCC made `a && b` a branch, which kept a
    dynamic_update_slice's loop from vectorising (4x slower)."""
    return " & ".join(f"({c})" for c in conditions) if len(conditions) > 1 else conditions[0]


def _logistic(a, ins, out, params):
    return f"fj_logistic({a[0]})"


def _rsqrt(a, ins, out, params):
    return f"fj_rsqrt({a[0]})"


def _clamp(a, ins, out, params):
    lo, x, hi = a
    return f"fj_min(fj_max({x}, {lo}), {hi})"


# primitive -> rule(operand C expressions, operand dtypes, result dtype, params) -> C expression
ELEMENTWISE = {
    "add": _infix("+", "fj_add"),
    "sub": _infix("-", "fj_sub"),
    "mul": _infix("*", "fj_mul"),
    "div": _div,
    "rem": _rem,
    "pow": _pow,
    "max": _helper("fj_max"),
    "min": _helper("fj_min"),
    "atan2": _helper("fj_atan2"),
    "nextafter": _math("nextafter"),
    "eq": _compare("=="), "ne": _compare("!="), "lt": _compare("<"),
    "le": _compare("<="), "gt": _compare(">"), "ge": _compare(">="),
    "eq_to": _helper("fj_eq_to"), "lt_to": _helper("fj_lt_to"), "le_to": _helper("fj_le_to"),
    "and": _bitwise("&", "&"), "or": _bitwise("|", "|"), "xor": _bitwise("^", "!="),
    "not": _not,
    "shift_left": _helper("fj_shift_left"),
    "shift_right_arithmetic": _helper("fj_shift_right_arithmetic"),
    "shift_right_logical": _helper("fj_shift_right_logical"),
    "population_count": _helper("fj_popcount"),
    "clz": _helper("fj_clz"),
    "select_n": _select_n,
    "clamp": _clamp,
    "neg": _neg,
    "abs": _abs,
    "sign": _helper("fj_sign"),
    "floor": _math("floor"), "ceil": _math("ceil"), "round": _round,
    "exp": _exp, "exp2": _helper("fj_exp2"), "log": _helper("fj_log"),
    "log1p": _helper("fj_log1p"), "expm1": _helper("fj_expm1"),
    "sin": _helper("fj_sin"), "cos": _helper("fj_cos"), "tan": _helper("fj_tan"),
    "asin": _helper("fj_asin"), "acos": _helper("fj_acos"), "atan": _helper("fj_atan"),
    "sinh": _helper("fj_sinh"), "cosh": _helper("fj_cosh"), "tanh": _helper("fj_tanh"),
    "asinh": _helper("fj_asinh"), "acosh": _helper("fj_acosh"), "atanh": _helper("fj_atanh"),
    "sqrt": _math("sqrt"), "rsqrt": _rsqrt, "cbrt": _math("cbrt"),
    "square": _square,
    "logistic": _logistic,
    "erf": _helper("fj_erf"), "erfc": _helper("fj_erfc"), "erf_inv": _helper("fj_erfinv"),
    "lgamma": _helper("fj_lgamma"), "digamma": _helper("fj_digamma"),
    "polygamma": _helper("fj_polygamma"), "zeta": _helper("fj_zeta"), "bessel_i1e": _helper("fj_bessel_i1e"),
    "reduce_precision": _reduce_precision,
    "is_finite": _helper("fj_is_finite"),
    "convert_element_type": _convert,
    "round_to_half": _round_to_half,  # fusejit's own (fusejit/halves.py)
    "bitcast_convert_type": _bitcast,
    "copy": _identity, "copy_p": _identity, "stop_gradient": _identity,
}

# integer_pow is expanded into a chain of multiplications by codegen (exactly as JAX lowers it).
EXPANDED = {"integer_pow"}

