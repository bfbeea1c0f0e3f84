"""Symbolic index arithmetic for fused kernels.

An element index into an array is a tuple of `Affine` expressions, one per
dimension, over integer symbols.  The kernel's flat loop index is the symbol
`i`; multi-dimensional indices are *delinearizations* of an affine value
(`(f / stride) % extent`), and guarded accesses use *clamps*.  Expressions are
kept in a canonical form so that the same element reached along two paths
(`x[1:][1:]` and `x[2:]`) has the same key and is loaded once, and so that
linearizing a delinearized index gives back the flat index.  Every symbol
carries its value range; ranges let codegen drop bound checks it can prove.
"""
from __future__ import annotations

import dataclasses
from typing import Optional


@dataclasses.dataclass(frozen=True)
class Sym:
    """An integer symbol.  `kind` is 'loop', 'delin', 'clamp' or 'value' (an index read from
    data at run time, such as a gather's: `args` holds the C variable); `args` define it."""
    kind: str
    args: tuple
    lo: int
    hi: int


def sort_key(sym: Sym):
    """A stable order of symbols for canonical sums."""
    return (sym.kind, repr(sym.args))


@dataclasses.dataclass(frozen=True)
class Affine:
    """sum(coeff * sym) + const, with terms sorted and no zero coefficients."""
    terms: tuple[tuple[Sym, int], ...]
    const: int

    @property
    def is_const(self) -> bool:
        return not self.terms

    @property
    def lo(self) -> int:
        return self.const + sum(c * (s.lo if c > 0 else s.hi) for s, c in self.terms)

    @property
    def hi(self) -> int:
        return self.const + sum(c * (s.hi if c > 0 else s.lo) for s, c in self.terms)

    def __add__(self, other) -> "Affine":
        other = aff(other)
        coeffs: dict[Sym, int] = {}
        for s, c in self.terms + other.terms:
            coeffs[s] = coeffs.get(s, 0) + c
        return make_affine(coeffs, self.const + other.const)

    __radd__ = __add__

    def __sub__(self, other) -> "Affine":
        return self + aff(other) * -1

    def __rsub__(self, other) -> "Affine":
        return aff(other) + self * -1

    def __mul__(self, k: int) -> "Affine":
        k = int(k)
        if k == 0:
            return aff(0)
        return Affine(tuple((s, c * k) for s, c in self.terms), self.const * k)

    __rmul__ = __mul__


def aff(x) -> Affine:
    if isinstance(x, Affine):
        return x
    if isinstance(x, Sym):
        return Affine(((x, 1),), 0)
    return Affine((), int(x))


def make_affine(coeffs: dict, const: int) -> Affine:
    coeffs = {s: c for s, c in coeffs.items() if c != 0}
    coeffs, extra = merge_delins(coeffs)
    return Affine(tuple(sorted(coeffs.items(), key=lambda t: sort_key(t[0]))), int(const) + extra)


def merge_delins(coeffs: dict) -> tuple[dict, int]:
    """Apply c*((f/s)%e1) + c*e1*((f/(s*e1))%e2) == c*((f/s)%(e1*e2)) until nothing merges.

    This is what makes linearize(delinearize(f)) == f.  Returns the merged terms and the
    constant that merging released (f itself may carry an offset)."""
    extra = 0
    changed = True
    while changed:
        changed = False
        delins = [(s, c) for s, c in coeffs.items() if s.kind == "delin"]
        for s1, c1 in delins:
            f1, st1, e1 = s1.args
            if e1 is None:
                continue
            for s2, c2 in delins:
                if s2 is s1 or s2 not in coeffs or s1 not in coeffs:
                    continue
                f2, st2, e2 = s2.args
                if f2 == f1 and st2 == st1 * e1 and c2 == c1 * e1:
                    del coeffs[s1], coeffs[s2]
                    merged = delin(f1, st1, None if e2 is None else e1 * e2)
                    for s, c in merged.terms:
                        coeffs[s] = coeffs.get(s, 0) + c * c1
                    extra += merged.const * c1
                    changed = True
                    break
            if changed:
                break
    return {s: c for s, c in coeffs.items() if c != 0}, extra


def loop_symbol(n: int) -> Affine:
    """The flat loop index of a kernel over n elements."""
    return aff(Sym("loop", ("i",), 0, max(n - 1, 0)))


def delin(f: Affine, stride: int, extent: Optional[int]) -> Affine:
    """(f / stride) % extent for f >= 0 (extent None: no modulo), simplified by f's range."""
    f = aff(f)
    assert f.lo >= 0, "delinearizing a possibly negative index"
    if extent is not None and f.hi < stride * extent:
        extent = None  # the modulo never wraps
    if f.is_const:
        q = f.const // stride
        return aff(q if extent is None else q % extent)
    if stride == 1 and extent is None:
        return f
    if extent == 1:
        return aff(0)
    if extent is None and f.hi < stride:
        return aff(0)
    hi = f.hi // stride if extent is None else min(extent - 1, f.hi // stride)
    lo = f.lo // stride if extent is None and f.lo >= 0 else 0
    if extent is not None and f.hi // stride >= extent:
        lo = 0
    return aff(Sym("delin", (f, stride, extent), lo, hi))


def clamp(f: Affine, lo: int, hi: int) -> Affine:
    """min(max(f, lo), hi), dropped when f's range already lies inside."""
    f = aff(f)
    if f.lo >= lo and f.hi <= hi:
        return f
    if f.is_const or hi <= lo:
        return aff(min(max(f.const if f.is_const else lo, lo), hi))
    if f.hi <= lo:  # below the range everywhere
        return aff(lo)
    if f.lo >= hi:  # above it everywhere
        return aff(hi)
    return aff(Sym("clamp", (f, lo, hi), max(lo, min(f.lo, hi)), min(hi, max(f.hi, lo))))


def strides_of(shape) -> tuple[int, ...]:
    strides, acc = [], 1
    for d in reversed(shape):
        strides.append(acc)
        acc *= d
    return tuple(reversed(strides))


def linearize(index, shape) -> Affine:
    """The row-major flat offset of a multi-dimensional index."""
    total = aff(0)
    for e, st, d in zip(index, strides_of(shape), shape):
        if d != 1:
            total = total + aff(e) * st
    return total


def delinearize(flat: Affine, shape) -> tuple[Affine, ...]:
    """The multi-dimensional index of a row-major flat offset (0 <= flat < prod(shape)).  An
    empty shape has no elements: its index is never used at run time."""
    if 0 in tuple(shape):
        return tuple(aff(0) for _ in shape)
    return tuple(aff(0) if d == 1 else delin(flat, st, d) for st, d in zip(strides_of(shape), shape))



def runtime_value(name: str, lo: int, hi: int) -> Affine:
    """An index computed at run time into the C variable `name`, known to lie in [lo, hi]."""
    return aff(Sym("value", (name,), lo, hi))
