"""indexvalues: integer values a kernel knows as affine functions of its loop indices.

jnp writes index arithmetic into the program.  `jnp.take(a, jnp.arange(0, n, 3), axis=1)` is
an iota, a multiplication, the normalisation of negative indices (`select_n(i < 0, i, i + n)`)
and a gather that clamps its index or checks that it fits; `x[jnp.arange(n), labels]` and
`a[jnp.arange(n - 1, -1, -2)]` are the same with other arithmetic.  The kernel computed each
step per element and read the operand at an index it could not see through: a scalar load
per element behind a clamp, a compare and a select.

codegen knows an iota's value as an `Affine` of the loop symbols, with its range.  This
module carries that form through integer add, sub, neg, multiplication by a constant and
conversions between integer types (where the range fits the result's type, so C's
arithmetic, which wraps, computes the exact value), and decides the compares, min, max, rem
and selects whose outcome the ranges prove.  A gather (or dynamic slice) whose start is such
a value reads the operand at the affine index itself, with no clamp and no fill select where
the range fits the operand: `in0[row * 1000 + col * 3]`.

Each rule is one row of RULES (primitive -> rule on the operands' forms); a rule returns an
`Affine` (the result's form), a decided operand's position (`Pick`), or None (unknown).
"""
from __future__ import annotations

import dataclasses

import numpy as np

from . import ops
from .indexing import Affine, aff
from .ir import Literal


@dataclasses.dataclass(frozen=True)
class Pick:
    """The result is the operand at this position (a decided select, min or max)."""
    position: int


def known(w, atom, text: str) -> Affine | None:
    """The affine form of an operand (its atom, and the C text codegen read it as)."""
    if isinstance(atom, Literal):
        dtype = np.dtype(atom.dtype)
        if dtype.kind in "iub" and np.ndim(atom.value) == 0:
            return aff(int(np.asarray(atom.value)))
        return None
    return w.affine.get(text)


def fits(f: Affine, dtype) -> bool:
    """Whether every value of f is representable in the integer type `dtype`."""
    dtype = np.dtype(dtype)
    if dtype.kind == "b":
        return 0 <= f.lo and f.hi <= 1
    if dtype.kind not in "iu":
        return False
    info = np.iinfo(dtype)
    return int(info.min) <= f.lo and f.hi <= int(info.max)


def _decided(true: bool, false: bool) -> Affine | None:
    return aff(1) if true else aff(0) if false else None


def _compare(decide):
    def rule(forms, params):
        a, b = forms
        if a is None or b is None:
            return None
        d = a - b
        return decide(d)
    return rule


def _linear(combine):
    def rule(forms, params):
        return None if any(f is None for f in forms) else combine(*forms)
    return rule


def _mul(forms, params):
    a, b = forms
    if a is None or b is None or not (a.is_const or b.is_const):
        return None
    return a * b.const if b.is_const else b * a.const


def _extreme(larger: bool):
    def rule(forms, params):
        a, b = forms
        if a is None or b is None:
            return None
        d = a - b
        if d.lo >= 0:  # a >= b everywhere
            return Pick(0 if larger else 1)
        if d.hi <= 0:
            return Pick(1 if larger else 0)
        return None
    return rule


def _rem(forms, params):
    a, b = forms
    if a is None or b is None or not b.is_const or b.const == 0:
        return None
    k = abs(b.const)
    return Pick(0) if a.lo >= 0 and a.hi < k else None  # C's remainder of a value in [0, k)


def _select_n(forms, params):
    pred = forms[0]
    if pred is None or not pred.is_const or not 0 <= pred.const < len(forms) - 1:
        return None
    return Pick(1 + pred.const)


def _convert(forms, params):
    return forms[0]


RULES = {
    "add": _linear(lambda a, b: a + b), "sub": _linear(lambda a, b: a - b), "neg": _linear(lambda a: a * -1),
    "mul": _mul, "convert_element_type": _convert,
    "lt": _compare(lambda d: _decided(d.hi < 0, d.lo >= 0)), "le": _compare(lambda d: _decided(d.hi <= 0, d.lo > 0)),
    "gt": _compare(lambda d: _decided(d.lo > 0, d.hi <= 0)), "ge": _compare(lambda d: _decided(d.lo >= 0, d.hi < 0)),
    "eq": _compare(lambda d: _decided(d.is_const and d.const == 0, d.lo > 0 or d.hi < 0)),
    "ne": _compare(lambda d: _decided(d.lo > 0 or d.hi < 0, d.is_const and d.const == 0)),
    "max": _extreme(True), "min": _extreme(False), "rem": _rem, "select_n": _select_n,
}


def evaluate(w, eqn, args: list) -> tuple[str | None, Affine | None]:
    """For an elementwise equation on integer or bool values (its operands read as `args`):
    (the C text of its result where the forms decide it, else None; the result's affine form
    where known).  Only integer and bool operands and results take part (a float's value is
    never an index), and a select's predicate (its cases may be of any type)."""
    rule = RULES.get(eqn.primitive)
    out = eqn.outputs[0]
    typed = eqn.inputs[:1] if eqn.primitive == "select_n" else (*eqn.inputs, out)  # a select's cases: any type
    if rule is None or any(np.dtype(a.dtype).kind not in "iub" for a in typed):
        return None, None
    result = rule([known(w, atom, text) for atom, text in zip(eqn.inputs, args)], eqn.params)
    if isinstance(result, Pick):
        atom, text = eqn.inputs[result.position], args[result.position]
        return text, known(w, atom, text) if np.dtype(atom.dtype).kind in "iub" else None
    if result is None or not fits(result, out.dtype):
        return None, None
    if result.is_const:
        return ops.c_literal(result.const, out.dtype), result
    return None, result


def note(w, name: str, form: Affine | None) -> str:
    """Record that the C value `name` is `form` (when known); returns the name."""
    if form is not None:
        w.affine[name] = form
    return name
