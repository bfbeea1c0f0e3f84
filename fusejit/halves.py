"""float16 and bfloat16: computed in float32, each result rounded back, as XLA's CPU does.

`widen(graph)` is a pass from a graph with half-precision values to one that holds them in
float32: every equation that computes a float16 or bfloat16 result computes it in float32
instead and rounds it to the half type and back: a `round_to_half` equation, fusejit's own
primitive (`fj_round_to_half` in kernels/common.h rounds in float32's bits).  Equations
whose results are some of their operands' values (reshapes, slices, selections, max, the
loops, whose bodies round) need no rounding.  The graph keeps its half-precision inputs and outputs: an
input is converted to float32 where the graph starts, an output back where it ends, so
kernels load and store the 2-byte types (kernels/common.h) and nothing else meets them.
An output that only moves the inputs' values (MOVES: a pad, a concatenation, a transpose)
is computed in the half type instead, with no conversion at all.
Loop and branch bodies are widened whole, their carries and results in float32.  A
bitcast_convert_type from or to a half type goes through the half type itself.  An
integer_pow is the chain of products JAX lowers it to, each rounded.

One rounding per equation is what XLA's CPU backend computes, with one exception that this
pass copies: a bfloat16 result converted to float32 is not rounded for that use (XLA
computes bfloat16 arithmetic in float32 and then removes each float32 -> bfloat16 ->
float32 pair of converts, its xla_allow_excess_precision), so `(x * 3).astype(float32)`
of a bfloat16 x is the float32 product.  A float16 result, or a bfloat16 one converted to
float64, is rounded as usual.  Where XLA's transcendental functions differ from fusejit's
in float32's last bits, the rounding to the half type can still differ by an ULP of the
half type: the tolerances in fusejit.check allow for it.
"""
from __future__ import annotations

import ml_dtypes
import numpy as np

from .errors import UnsupportedError
from .ir import Eqn, Graph, Literal, Var, map_bodies

HALF = frozenset({np.dtype(np.float16), np.dtype(ml_dtypes.bfloat16)})
F32 = np.dtype(np.float32)
BF16 = np.dtype(ml_dtypes.bfloat16)

# Primitives whose results are values of their operands (or exact functions of them with no
# rounding: a sign, a floor): a half type's value stays one, so no rounding follows them.
EXACT = frozenset({
    "broadcast_in_dim", "reshape", "squeeze", "expand_dims", "transpose", "rev", "slice",
    "dynamic_slice", "dynamic_update_slice", "concatenate", "pad", "gather", "select_n", "clamp",
    "max", "min", "reduce_max", "reduce_min", "neg", "abs", "sign", "floor", "ceil", "round",
    "sort", "cummax", "cummin", "top_k", "split", "scan", "while", "cond", "copy", "copy_p",
    "reduce_and", "reduce_or", "argmax", "argmin",
})


# Primitives that only move values: each element of the result is an element of an array
# operand or the padding value.  A half-typed result of them whose half-typed operands are
# the function's inputs (or such results, or literals) is returned as it is computed, in the
# half type: loads and stores of the 2-byte values, no conversion to float32 and back (a
# float16 pad of 1024 x 1000 on one core: 507 us through float32, 70 as it is, jax.jit's
# 57-73; a roll 539 and 88, jax.jit's 141).
MOVES = frozenset({
    "broadcast_in_dim", "reshape", "squeeze", "expand_dims", "transpose", "rev", "slice",
    "dynamic_slice", "dynamic_update_slice", "concatenate", "pad", "tile", "split", "copy", "copy_p",
})


def is_half(dtype) -> bool:
    return np.dtype(dtype) in HALF


def has_halves(graph: Graph) -> bool:
    def atoms(g: Graph):
        yield from g.inputs
        yield from (v for v, _ in g.consts)
        for e in g.eqns:
            yield from e.inputs
            yield from e.outputs
            for value in e.params.values():
                for body in value if isinstance(value, tuple) else (value,):
                    if isinstance(body, Graph):
                        yield from atoms(body)
    return any(is_half(a.dtype) for a in atoms(graph))


def _param(value):
    """A param with every half dtype in it made float32 (convert's new_dtype, iota's dtype,
    dot_general's preferred_element_type)."""
    if isinstance(value, np.dtype) or isinstance(value, type) and issubclass(value, np.generic):
        return F32 if is_half(value) else value
    return value


def widen(graph: Graph) -> Graph:
    """The graph with its half-precision values held in float32 (see the module's doc)."""
    return _widen(graph, top=True) if has_halves(graph) else graph


def _widen(graph: Graph, top: bool) -> Graph:
    env: dict[int, object] = {}
    eqns: list[Eqn] = []

    def wide_var(v: Var) -> Var:
        return Var(v.shape, F32, v.weak_type) if is_half(v.dtype) else v

    def read(atom):
        if isinstance(atom, Literal):
            if is_half(atom.dtype):
                return Literal(np.float32(atom.value), F32, atom.shape)
            return atom
        return env.get(id(atom), atom)

    def emit(primitive, inputs, outputs, params, source):
        eqns.append(Eqn(primitive, tuple(inputs), tuple(outputs), params, source))

    def convert(atom, dtype, source, weak=False) -> Var:
        out = Var(atom.shape, np.dtype(dtype), weak)
        emit("convert_element_type", [atom], [out], {"new_dtype": np.dtype(dtype), "weak_type": weak}, source)
        return out

    before_rounding: dict[int, object] = {}  # a rounded float32 value -> the value it rounds

    def rounded(value, half, source, weak=False) -> Var:
        """`value` rounded to `half` and widened again: one round_to_half of a float32 value
        (in float32's bits), or the conversion to the half type and back (of a float64 or an
        integer, rounded once from it)."""
        if np.dtype(value.dtype) != F32:
            return convert(convert(value, half, source), F32, source, weak)
        wide = Var(value.shape, F32, weak)
        emit("round_to_half", [value], [wide], {"dtype": np.dtype(half)}, source)
        before_rounding[id(wide)] = value
        return wide

    excess: set[int] = set()  # rounded bfloat16 results, which a conversion to float32 reads unrounded

    def result(value: Var, like: Var, source) -> Var:
        """An equation's float32 result `value` rounded to like's half type (a bfloat16 one
        remembered unrounded, for a conversion to float32)."""
        narrow = rounded(value, like.dtype, source, like.weak_type)
        if np.dtype(like.dtype) == BF16:
            excess.add(id(narrow))
        return narrow

    def binary(primitive, a, b, like: Var, source) -> Var:
        """`primitive` of a and b in float32, rounded to like's half type."""
        out = Var(like.shape, F32, like.weak_type)
        emit(primitive, [a, b], [out], {}, source)
        return result(out, like, source)

    def integer_pow(x, y: int, like: Var, source) -> Var:
        """x ** y as JAX lowers it (squarings and products), each product rounded to the half
        type as XLA rounds each multiplication of that type (x^3 rounded once differs)."""
        acc, n = None, abs(y)
        while n > 0:
            if n & 1:
                acc = x if acc is None else binary("mul", acc, x, like, source)
            n >>= 1
            if n > 0:
                x = binary("mul", x, x, like, source)
        return binary("div", Literal(np.float32(1), F32), acc, like, source) if y < 0 else acc

    # Top level: the half-typed results of MOVES equations on the inputs (and of conversions
    # to a half type), by id, each with the equation that computes it; `in_half` emits the
    # chain again in the half type for an output that is one of them.
    given = {id(v) for v in graph.inputs}
    moves: dict[int, Eqn] = {}
    made: dict[int, object] = {}

    def movable(eqn: Eqn) -> bool:
        """A half-typed move of half-typed atoms at hand, or a conversion to a half type of
        another type's value (a pad's zero: one rounding either way)."""
        if not top or not any(is_half(v.dtype) for v in eqn.outputs):
            return False
        if eqn.primitive == "convert_element_type":
            return not is_half(eqn.inputs[0].dtype)
        return eqn.primitive in MOVES and all(
            isinstance(a, Literal) or not is_half(a.dtype) or id(a) in given or id(a) in moves for a in eqn.inputs)

    def in_half(atom):
        if isinstance(atom, Literal) or id(atom) in given:
            return atom
        if not is_half(atom.dtype):
            return read(atom)
        if id(atom) not in made:
            eqn = moves[id(atom)]
            outs = [Var(v.shape, v.dtype, v.weak_type) for v in eqn.outputs]
            emit(eqn.primitive, [in_half(a) for a in eqn.inputs], outs, dict(eqn.params), eqn.source)
            made.update({id(v): o for v, o in zip(eqn.outputs, outs)})
        return made[id(atom)]

    inputs = []
    for v in graph.inputs:
        if not is_half(v.dtype):
            inputs.append(v)
        elif top:  # the caller's array: converted where the graph starts
            inputs.append(v)
            env[id(v)] = convert(v, F32, "", v.weak_type)
        else:  # a body's parameter: the loop carries it in float32
            inputs.append(wide_var(v))
            env[id(v)] = inputs[-1]
    consts = []
    for v, value in graph.consts:
        w = wide_var(v)
        consts.append((w, np.asarray(value).astype(w.dtype) if w is not v else value))
        env[id(v)] = w
    for eqn in graph.eqns:
        if movable(eqn):
            moves.update({id(v): eqn for v in eqn.outputs})
        ins = [read(a) for a in eqn.inputs]
        eqn = map_bodies(eqn, lambda body: _widen(body, top=False))
        params = {k: _param(v) for k, v in eqn.params.items()}
        p = eqn.primitive
        if p == "convert_element_type" and np.dtype(eqn.outputs[0].dtype) == F32 and id(ins[0]) in excess:
            env[id(eqn.outputs[0])] = before_rounding[id(ins[0])]  # XLA's excess precision (module doc)
            continue
        if p == "convert_element_type" and is_half(eqn.outputs[0].dtype):
            out = eqn.outputs[0]
            env[id(out)] = rounded(ins[0], out.dtype, eqn.source, out.weak_type)
            continue
        if p == "bitcast_convert_type" and (is_half(eqn.inputs[0].dtype) or is_half(eqn.outputs[0].dtype)):
            source_atom = ins[0]
            if is_half(eqn.inputs[0].dtype):  # float32 holding a half value: the half type's bits
                source_atom = convert(source_atom, eqn.inputs[0].dtype, eqn.source)
            out = eqn.outputs[0]
            bits = Var(out.shape, out.dtype, out.weak_type)
            emit(p, [source_atom], [bits], dict(eqn.params), eqn.source)
            env[id(out)] = convert(bits, F32, eqn.source, out.weak_type) if is_half(out.dtype) else bits
            continue
        if p == "integer_pow" and is_half(eqn.outputs[0].dtype) and int(eqn.params["y"]) != 0:
            env[id(eqn.outputs[0])] = integer_pow(ins[0], int(eqn.params["y"]), eqn.outputs[0], eqn.source)
            continue
        outs = [wide_var(v) for v in eqn.outputs]
        emit(p, ins, outs, params, eqn.source)
        for v, w in zip(eqn.outputs, outs):
            if w is v:
                continue
            env[id(v)] = w if p in EXACT else result(w, v, eqn.source)
    outputs = []
    for original in graph.outputs:
        if top and is_half(original.dtype):  # back to the caller's type where the graph ends
            returned = isinstance(original, Var) and id(original) in given  # an input as it came
            atom = read(original)
            if returned:
                outputs.append(original)
            elif isinstance(original, Var) and id(original) in moves:  # moved, never computed on
                outputs.append(in_half(original))
            else:  # (the conversion rounds: a value rounded just before it is converted unrounded)
                outputs.append(convert(before_rounding.get(id(atom), atom), original.dtype, ""))
        else:
            outputs.append(read(original))
    return Graph(tuple(inputs), tuple(consts), tuple(eqns), tuple(outputs))


def check_backend(graph: Graph, backend) -> None:
    """Raise UnsupportedError if the graph's inputs or outputs have a dtype the backend's
    arrays cannot hold (bfloat16 on CuPy before 14)."""
    missing = getattr(backend, "missing_dtypes", frozenset())
    for what, atoms in (("input", graph.inputs), ("output", graph.outputs)):
        for atom in atoms:
            if np.dtype(atom.dtype).name in missing:
                raise UnsupportedError(
                    f"backend '{backend.name}' cannot hold {np.dtype(atom.dtype).name} arrays (an {what} of the "
                    f"function): this CuPy has no {np.dtype(atom.dtype).name} arrays (CuPy 14 with NumPy 2.1.2 or later "
                    f"has them); upgrade CuPy, convert to float32 or float16 outside the function, or use "
                    f"backend='host'")
