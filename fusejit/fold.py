"""fold: library calls on constants run once, when the program is built.

A library call (a factorisation, a triangular solve, a matrix product, a sort, ...) whose
operands are all constants (arrays the function captured, literals, or values computed from
them) computes the same values on every call.  `fold_constants` runs it once, on the host,
through the library rule the host backend calls at run time (so its values are those the host
program computes, and jax.jit's CPU lowering: the same LAPACK), and its results become
constants of the graph.  The LU factorisation of a captured matrix inside a loop, which
control.hoist_invariants moves out of the loop, is then not computed at run time at all.

The operands may be computed from constants by shape equations (a transpose, a broadcast, a
slice: the interpreter's NumPy rules) and by elementwise arithmetic that IEEE rounds exactly
(EXACT: NumPy's result is the kernels'), as jnp.linalg.cholesky's and eigh's symmetrisation
(a + a.T) / 2 is; those equations fold with the call.  Other equations on constants stay in
the kernels, which compute them at no extra pass.

Folded values are kept in the disk cache beside the kernels, keyed by the call (primitive,
parameters, result types) and the bytes of its operands, so a new process loads them rather
than computing them again (and importing scipy.linalg to do so).

What is not folded: an equation whose operands and results exceed FOLD_MAX_BYTES (folded
values stay in memory for the life of the compiled program), and one whose results have many
more elements than its operands (an outer product, a broadcast: computing it in the program
is cheaper than keeping it).
"""
from __future__ import annotations

import functools
import hashlib
import importlib.util
import os

import numpy as np

from . import cache, config, interpret, library
from .ir import Eqn, Graph, Literal
from .trace import eliminate_dead_code

FOLD_MAX_BYTES = 64 << 20  # operands and results of one equation together
GROWTH = 2                 # results may have at most this many times the operands' elements (plus SLACK)
SLACK = 4096

# Calls whose results come from scipy.linalg (LAPACK); the key names the SciPy build too.
LAPACK = frozenset({"lu", "triangular_solve", "cholesky", "qr", "svd", "eigh"})

# Elementwise primitives NumPy computes as the kernels do, correctly rounded (division and the
# square root for floats only: integer division rounds otherwise in NumPy).
EXACT = {
    "add": np.add, "sub": np.subtract, "mul": np.multiply, "neg": np.negative, "abs": np.absolute,
    "max": np.maximum, "min": np.minimum, "eq": np.equal, "ne": np.not_equal, "lt": np.less,
    "le": np.less_equal, "gt": np.greater, "ge": np.greater_equal, "and": np.bitwise_and,
    "or": np.bitwise_or, "xor": np.bitwise_xor, "not": np.invert,
}
FLOAT_ONLY = {"div": np.true_divide, "sqrt": np.sqrt}
SHAPES = {**interpret.SHAPES, "select_n": interpret.select_n}


def fold_constants(graph: Graph) -> tuple[Graph, tuple[str, ...]]:
    """`graph` with every library call on constants, and what computes its operands from
    constants, replaced by constants of their results; and the primitives of the folded calls."""
    constant = {id(v) for v, _ in graph.consts}
    producer = {}
    for eqn in graph.eqns:
        if all(isinstance(a, Literal) or id(a) in constant for a in eqn.inputs) and _foldable(eqn):
            constant.update(id(v) for v in eqn.outputs)
            producer.update((id(v), eqn) for v in eqn.outputs)
    # The library calls on constants, and the equations their operands come from.
    folded: set[int] = set()
    for eqn in reversed(graph.eqns):
        if id(eqn) in folded or (eqn.primitive in library.LIBRARY and producer.get(id(eqn.outputs[0])) is eqn):
            folded.add(id(eqn))
            folded.update(id(producer[id(a)]) for a in eqn.inputs if id(a) in producer)
    if not folded:
        return graph, ()
    known = dict(graph.consts)
    consts = list(graph.consts)
    for eqn in graph.eqns:
        if id(eqn) not in folded:
            continue
        for var, value in zip(eqn.outputs, _evaluate(eqn, [interpret.read(a, known) for a in eqn.inputs])):
            known[var] = value
            consts.append((var, value))
    kept = tuple(e for e in graph.eqns if id(e) not in folded)
    calls = tuple(e.primitive for e in graph.eqns if id(e) in folded and e.primitive in library.LIBRARY)
    return eliminate_dead_code(Graph(graph.inputs, tuple(consts), kept, graph.outputs)), calls


def _foldable(eqn: Eqn) -> bool:
    """Whether the equation, its operands being constants, may fold (rule and size)."""
    p = eqn.primitive
    kinds = [np.dtype(a.dtype).kind for a in eqn.inputs[:1] + eqn.outputs[:1]]
    if p in FLOAT_ONLY:
        rule = kinds[-1] == "f"
    elif p == "convert_element_type":  # not a float to an integer: NumPy converts NaN and overflow otherwise
        rule = not (kinds[0] == "f" and kinds[-1] in "iu")
    elif p == "reshape":
        rule = eqn.params.get("dimensions") is None
    else:
        rule = p in library.LIBRARY or p in SHAPES or p in EXACT
    if not rule:
        return False
    in_elements = sum(a.size for a in eqn.inputs)
    out_elements = sum(v.size for v in eqn.outputs)
    size = sum(a.size * np.dtype(a.dtype).itemsize for a in eqn.inputs + eqn.outputs)
    return size <= FOLD_MAX_BYTES and out_elements <= GROWTH * in_elements + SLACK


def _evaluate(eqn: Eqn, operands: list) -> list[np.ndarray]:
    """The equation's results, each a contiguous array of its result type."""
    p = eqn.primitive
    if p in library.LIBRARY:
        return _values(eqn, [np.asarray(a, order="C") for a in operands])  # (0-d stays 0-d)
    if p in SHAPES:
        values = SHAPES[p](None, eqn, operands)
    elif p == "convert_element_type":
        values = [operands[0]]
    else:
        with np.errstate(all="ignore"):
            values = [(EXACT.get(p) or FLOAT_ONLY[p])(*operands)]
    return [np.asarray(np.broadcast_to(np.asarray(value, v.dtype), v.shape), order="C")
            for value, v in zip(values, eqn.outputs)]


def _values(eqn: Eqn, operands: list) -> list[np.ndarray]:
    """The call's results: from the disk cache, or computed (and stored there)."""
    key = _key(eqn, operands)
    if key is not None:
        path = cache.lookup("folded", key, ".npy", stat="fold_hits")
        if path is not None:
            values = _load(path, eqn)
            if values is not None:
                config.debug(3, f"folded {eqn.primitive} of constants: loaded from the disk cache")
                return values
    out_avals = [(v.shape, v.dtype) for v in eqn.outputs]
    values = [np.asarray(a, order="C") for a in library.call(eqn.primitive, library.host_lib(), eqn.params,
                                                                   out_avals, *operands)]
    config.debug(3, f"folded {eqn.primitive} of constants: computed{'' if key else ' (not cacheable)'}")
    cache.stats["folds"] += 1
    if key is not None and cache.enabled():
        cache.store("folded", key, ".npy", lambda out: _save(out, values), stat="fold_stores")
    return values


def _save(path: str, values: list[np.ndarray]) -> None:
    """The results one after another in one file, each in NumPy's .npy format."""
    with open(path, "wb") as f:
        for value in values:
            np.save(f, value, allow_pickle=False)


def _load(path: str, eqn: Eqn) -> list[np.ndarray] | None:
    """The stored results, or None (to be computed and stored again) if they do not have the
    equation's result types."""
    try:
        with open(path, "rb") as f:
            values = [np.load(f, allow_pickle=False) for _ in eqn.outputs]
    except (ValueError, EOFError, OSError):
        return None
    if [(a.shape, a.dtype) for a in values] != [(v.shape, v.dtype) for v in eqn.outputs]:
        return None
    return values


def _key(eqn: Eqn, operands: list) -> str | None:
    """The disk cache key of the call's results, or None where its parameters have no stable
    text (an object printed by address)."""
    params = repr(sorted(eqn.params.items()))
    if " at 0x" in params:
        return None
    parts = ["folded", eqn.primitive, params, [(v.shape, v.dtype.str) for v in eqn.outputs], np.__version__]
    if eqn.primitive in LAPACK:
        parts.append(_scipy_build())
    for a in operands:
        parts.append((a.shape, a.dtype.str, hashlib.sha256(a).hexdigest()))
    return cache.make_key(*parts)


@functools.lru_cache(maxsize=None)
def _scipy_build() -> bytes:
    """SciPy's version file, read without importing SciPy (which a process loading folded
    values would otherwise import for this alone)."""
    spec = importlib.util.find_spec("scipy")
    if spec is None or not spec.origin:
        return b"(no scipy)"
    try:
        with open(os.path.join(os.path.dirname(spec.origin), "version.py"), "rb") as f:
            return f.read()
    except OSError:
        return spec.origin.encode()
