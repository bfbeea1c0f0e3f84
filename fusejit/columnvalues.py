"""Column values of map kernels over rows, on the host.

A map over rows whose operands broadcast along the rows computes, for every element, what
depends on its column alone: a batch norm's `(x - mean) * rsqrt(var + eps)` over axis 0
takes a square root and a division per element for 1000 distinct values, a softmax over axis
0 divides by its column's sum.  GCC does not hoist them (they are per column, not loop
invariant), and a vector divide or square root costs several multiplications.

Here the host computes each such value once per column, before the rows, into an array on
the stack (a loop over the columns, vectorised like the element loop), and the element body
reads it at the column: `(x - mean) * rsqrt(var + eps)` over 64 x 1000 float32 in cache went
from 0.275 to 0.096 ns an element on one Zen 4 core, a softmax's division from 0.286 to 0.25.
The values are the same bit for bit: the same statements, computed once instead of each time.

A statement is per column when it reads the column index, a load at it or another such value,
and nothing of the row or the element.  The path is taken where one of those the element
body needs is worth an array (a division, a square root, a call other than min, max and
conversions) and they fit COLUMN_BYTES.  Like the pieces path it is a host path: the GPU and
the emulation compile it out (FJ_COLUMN_VALUES is 0 there) and compute per element.
"""
from __future__ import annotations

import re

from .templates import IDENTIFIER, declaration, fill, indent

COLUMN_BYTES = 32 << 10  # the arrays' bytes on a block's stack
SIZES = {"float": 4, "double": 8, "bool": 1, "int8_t": 1, "uint8_t": 1, "int16_t": 2, "uint16_t": 2,
         "int32_t": 4, "uint32_t": 4, "int64_t": 8, "uint64_t": 8}
STORE = re.compile(r"out\d+\[[^\]]*\] = .*;$")
# worth an array: a division, a square root, a call other than the cheap ones
COSTLY = re.compile(r" / |\bfj_div\(|sqrt|\bfj_(?!max\b|min\b|select\b|add\b|sub\b|mul\b|convert\b)\w+\(")


def column_values_path(row_body: list[str], body: list[str], inner: int) -> str:
    """The column-values text for the rows template's host slot, or '' where the element
    body computes nothing per column that is worth an array (or a line is not a statement
    or a store)."""
    row_names = {"row"} | {m.group(2) for m in map(declaration, row_body) if m}
    lines = [(line, declaration(line)) for line in body]  # (line, (type, name, expression) or None)
    per_element, types, deps = set(), {}, {}  # types and deps: the per-column values'
    for line, m in lines:
        if m is None:
            if STORE.match(line):
                continue
            return ""
        name, used = m.group(2), set(IDENTIFIER.findall(m.group(3)))
        if ("col" in used or used & deps.keys()) and not used & (row_names | per_element):
            types[name], deps[name] = m.group(1), used & deps.keys()
        else:
            per_element.add(name)
    needed = []  # per-column values that a per-element statement or a store reads
    for line, m in lines:
        if m is None or m.group(2) in per_element:
            needed += [n for n in IDENTIFIER.findall(m.group(3) if m else line) if n in deps and n not in needed]
    expressions = {m.group(2): m.group(3) for _, m in lines if m}
    hoisted = [n for n in needed if any(COSTLY.search(expressions[d]) for d in _closure([n], deps))]
    bytes_ = sum(SIZES.get(types[n], COLUMN_BYTES) for n in hoisted) * inner
    if not hoisted or bytes_ > COLUMN_BYTES:
        return ""
    kept = _closure([n for n in needed if n not in hoisted], deps)  # cheap ones (loads) stay per element
    computed = _closure(hoisted, deps)
    arrays = {n: f"fj_column{k}" for k, n in enumerate(hoisted)}
    declarations = [f"{types[n]} {a}[{inner}];" for n, a in arrays.items()]
    column_body = [line for line, m in lines if m and m.group(2) in computed]
    column_body += [f"{a}[col] = {n};" for n, a in arrays.items()]
    element_body = []
    for line, m in lines:
        name = m.group(2) if m else None
        if name in arrays:
            element_body.append(f"const {types[name]} {name} = {arrays[name]}[col];")
        elif m is None or name in per_element or name in kept:
            element_body.append(line)
    return fill("column_values_path.cu.in", values=", ".join(hoisted), arrays=indent(declarations, 2),
                column_body=indent(column_body, 3), row_body=indent(row_body, 3), body=indent(element_body, 4))


def _closure(names: list, deps: dict) -> set:
    """The names and every per-column value they read, directly or not."""
    seen, todo = set(), list(names)
    while todo:
        n = todo.pop()
        if n not in seen:
            seen.add(n)
            todo += deps[n]
    return seen
