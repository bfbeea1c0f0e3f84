"""fusejit's graph IR: small frozen data classes and a printer.

A `Graph` is a flat list of `Eqn`s over `Var`s and `Literal`s, the same shape
as a jaxpr after nested calls are inlined.  Every consumer of a graph (fusion,
codegen, the executor) walks it as an env/read/write interpreter.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Union

import numpy as np


@dataclasses.dataclass(frozen=True, eq=False)
class Var:
    """A value in a graph.  Identity is the object itself (hash by id)."""
    shape: tuple[int, ...]
    dtype: np.dtype
    weak_type: bool = False

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    @property
    def ndim(self) -> int:
        return len(self.shape)


@dataclasses.dataclass(frozen=True)
class Literal:
    """A scalar constant inlined into the graph."""
    value: Any  # a numpy scalar of `dtype`
    dtype: np.dtype

    shape: tuple[int, ...] = ()

    @property
    def size(self) -> int:
        return 1

    @property
    def ndim(self) -> int:
        return 0


Atom = Union[Var, Literal]


@dataclasses.dataclass(frozen=True, eq=False)
class Eqn:
    primitive: str
    inputs: tuple[Atom, ...]
    outputs: tuple[Var, ...]
    params: dict
    source: str = ""  # "file:line (function)" of the user's code


@dataclasses.dataclass(frozen=True, eq=False)
class Graph:
    inputs: tuple[Var, ...]
    consts: tuple[tuple[Var, np.ndarray], ...]  # closed-over arrays
    eqns: tuple[Eqn, ...]
    outputs: tuple[Atom, ...]

    def __str__(self) -> str:
        return format_graph(self)

    __repr__ = __str__


def map_bodies(eqn: Eqn, fn) -> Eqn:
    """The equation with `fn` applied to each nested Graph in its params."""
    params = dict(eqn.params)
    changed = False
    for k, v in params.items():
        if isinstance(v, Graph):
            params[k], changed = fn(v), True
        elif isinstance(v, tuple) and v and all(isinstance(g, Graph) for g in v):
            params[k], changed = tuple(fn(g) for g in v), True
    return dataclasses.replace(eqn, params=params) if changed else eqn


def dtype_str(dtype: np.dtype) -> str:
    return {
        "float32": "f32", "float64": "f64", "bool": "bool",
        "int8": "i8", "int16": "i16", "int32": "i32", "int64": "i64",
        "uint8": "u8", "uint16": "u16", "uint32": "u32", "uint64": "u64",
        "float16": "f16", "bfloat16": "bf16",
    }.get(np.dtype(dtype).name, np.dtype(dtype).name)


def type_str(atom: Atom) -> str:
    return f"{dtype_str(atom.dtype)}[{','.join(map(str, atom.shape))}]"


class Namer:
    """Gives vars short readable names (a, b, ..., z, ba, bb, ...) in order of first use."""

    def __init__(self):
        self.names: dict[int, str] = {}

    def __call__(self, var: Var) -> str:
        key = id(var)
        if key not in self.names:
            n = len(self.names)
            s = ""
            while True:
                s = chr(ord("a") + n % 26) + s
                n //= 26
                if n == 0:
                    break
            self.names[key] = s
        return self.names[key]


def format_atom(atom: Atom, name: Namer) -> str:
    if isinstance(atom, Literal):
        return f"{np.asarray(atom.value).item()!r}:{dtype_str(atom.dtype)}[]"
    return name(atom)


def format_params(params: dict, name: Namer | None = None, depth: int = 0) -> str:
    """[k=v ...]; nested Graphs (loop bodies, branches) are printed in full, indented."""
    name = name or Namer()
    pad = "  " * (depth + 3)
    simple, nested = [], []
    for k, v in sorted(params.items()):
        if v is None:
            continue
        if isinstance(v, Graph):
            nested.append(f"{pad}{k}={format_graph(v, name, depth + 3)}")
        elif isinstance(v, tuple) and v and all(isinstance(g, Graph) for g in v):
            nested += [f"{pad}{k}[{j}]={format_graph(g, name, depth + 3)}" for j, g in enumerate(v)]
        else:
            simple.append(f"{k}={v}")
    if not nested:
        return f"[{' '.join(simple)}]" if simple else ""
    return "[" + " ".join(simple) + "\n" + "\n".join(nested) + "\n" + "  " * (depth + 2) + "]"


def format_graph(graph: Graph, name: Namer | None = None, depth: int = 0) -> str:
    name = name or Namer()
    pad = "  " * depth
    consts = " ".join(f"{name(v)}:{type_str(v)}" for v, _ in graph.consts)
    ins = " ".join(f"{name(v)}:{type_str(v)}" for v in graph.inputs)
    lines = [f"{{ lambda {consts}; {ins}. let"]
    for eqn in graph.eqns:
        outs = " ".join(f"{name(v)}:{type_str(v)}" for v in eqn.outputs)
        args = " ".join(format_atom(a, name) for a in eqn.inputs)
        lines.append(f"{pad}    {outs} = {eqn.primitive}{format_params(eqn.params, name, depth)} {args}")
    outs = ", ".join(format_atom(a, name) for a in graph.outputs)
    lines.append(f"{pad}  in ({outs},) }}")
    return "\n".join(lines)
