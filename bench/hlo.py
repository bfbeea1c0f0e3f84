"""Counting XLA's kernels in the optimized HLO text of `jax.jit(f).lower(*args).compile()`.

Counting rule: a *fusion* is an instruction whose opcode is `fusion` and which sits in a
computation that is not itself a fused computation (a computation named in some
fusion's `calls=`, or a reducer/comparator named in a `to_apply=`), i.e. in ENTRY or in
control flow bodies. Each such instruction is one
kernel XLA emits; fusions nested inside fused computations are part of their parent and
are not counted again. Top-level instructions that compute without being fused (copy,
dot, sort, custom-call, ...) are counted separately as `other` ops; bookkeeping opcodes
(parameter, constant, tuple, get-tuple-element, bitcast) and control flow (while,
conditional, call: their bodies are counted instead) are not counted at all.
"""
from __future__ import annotations

import dataclasses
import re

_HEADER = re.compile(r"^(?:ENTRY\s+)?%?([\w.\-]+)\s*\(.*\{\s*$")
_INSTR = re.compile(r"^\s*(?:ROOT\s+)?%?[\w.\-]+\s*=\s*(.*)$")
_CALLS = re.compile(r"calls=%?([\w.\-]+)")
_APPLIES = re.compile(r"to_apply=%?([\w.\-]+)")
_OPCODE = re.compile(r"^(?:\([^()]*\)|\S+)\s+([a-z][\w\-]*)\(")
_BOOKKEEPING = {"parameter", "constant", "tuple", "get-tuple-element", "bitcast",
                "while", "conditional", "call"}  # control flow: the bodies are counted


@dataclasses.dataclass(frozen=True)
class KernelCount:
    fusions: int
    other: int

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


def _computations(text: str) -> dict[str, list[str]]:
    """Computation name -> its instruction lines (the right-hand sides after '=')."""
    comps: dict[str, list[str]] = {}
    current = None
    for line in text.splitlines():
        if current is None:
            m = _HEADER.match(line)
            if m and not line.startswith(" "):
                current = m.group(1)
                comps[current] = []
            continue
        if line.strip() == "}":
            current = None
            continue
        m = _INSTR.match(line)
        if m:
            comps[current].append(m.group(1))
    return comps


def count_kernels(hlo_text: str) -> KernelCount:
    """Fusions and other compute ops in the non-fused computations of an HLO module."""
    comps = _computations(hlo_text)
    fused = set()
    for instrs in comps.values():
        for rhs in instrs:
            if _opcode(rhs) == "fusion":
                fused.update(_CALLS.findall(rhs))
            fused.update(_APPLIES.findall(rhs))  # reducers and comparators run inside their op
    fusions = other = 0
    for name, instrs in comps.items():
        if name in fused:
            continue
        for rhs in instrs:
            op = _opcode(rhs)
            if op == "fusion":
                fusions += 1
            elif op and op not in _BOOKKEEPING:
                other += 1
    return KernelCount(fusions, other)


def _opcode(rhs: str) -> str | None:
    m = _OPCODE.match(rhs)
    return m.group(1) if m else None
