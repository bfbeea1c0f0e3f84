"""Maps over short rows on the host: operands broadcast along the rows read from tables.

A map over rows of fewer than 16 elements (a matrix of 10 features, standardized by its
column means: (x - x.mean(0)) / x.std(0)) runs a flat loop, and an operand broadcast along
the rows is read at the flat index modulo the row length: a division and a gather per
element; over rows that are not whole vectors (20, 33, 100), each row's loop ends in a
partial vector, which GCC finishes element by element (an exp over rows of 20: 1.2 ms for
1M floats, 0.17 over rows of 16).  Here the host takes the elements P at a time instead (P = lcm(row, 16):
80 for rows of 10), each chunk a vectorised loop over positions e < P; the row of position e
is 8 q + e / 10 and its column e % 10, so an operand read at an address that depends on e
alone (the column) is read from a table of P values filled once per block before the
chunks (`fj_ptab0[e]`), and the loop's other loads are contiguous.  The elements past the
last whole chunk run the element loop's body.

A column reduction over rows of up to 64 (x.max(0), x.std(0) of 10 or 20 features) takes the
rows the same way (`periodic_columns`): P accumulators (P a multiple of lcm(row, 16), at least
64; for rows of 16 or more, their bytes at most 16 vector registers), one per position of a chunk of P / row rows,
each chunk one vectorised step, folded into the row's columns after the block's chunks,
instead of a loop of `row` columns per row through the partials in memory.

Like the pieces path it is a host path: the GPU and the emulation compile it out
(FJ_PERIODIC_ROWS is 0 there) and run the element loop.
"""
from __future__ import annotations

import math

from . import ops
from .indexing import Sym, aff, delin, delinearize, linearize
from .readhooks import NamedReads, render_stores
from .templates import fill, indent

LANES = 16        # a vector of 4-byte elements
MAX_PERIOD = 1024  # a map's chunk, lcm(row, 16) (its tables: a few KiB of stack)
MAX_COLUMNS = 64  # a column reduction's row of up to this many (from 16: its loop along the row
ACCUMULATOR_BYTES = 1024  # vectorises; only where the period's accumulators fit 16 registers)
MIN_LANES = 64  # a column reduction's accumulators: at least 4 vectors
MIN_CHUNKS = 8    # fewer whole chunks: the element loop
MAX_TABLES = 8
MAX_LINES = 256


def depends_on(f, sym) -> bool:
    """Whether the affine index f depends on the loop symbol sym (through delinearisations
    and clamps of its terms too)."""
    return any(s == sym or (s.kind in ("delin", "clamp") and depends_on(aff(s.args[0]), sym)) for s, _ in f.terms)


class ColumnTables(NamedReads):
    """codegen's read hook (KernelWriter.cache) for a chunk's body: an input read at an
    address that depends on the chunk position e alone (and on no data) is read from a table
    of the chunk's P positions.  Its arrays: (input name, address) -> table name."""

    def __init__(self, q: Sym, e: Sym):
        super().__init__("fj_ptab", MAX_TABLES)
        self.q, self.e = q, e
        self.gathers = False  # a load along the chunk that is neither a table nor contiguous

    def load(self, w, var, idx):
        if id(var) not in w.source_names:
            return None
        address = linearize(idx, var.shape)
        if depends_on(address, self.q) or not depends_on(address, self.e) or not only_loops(address):
            # Read at e + (a term of q alone) it is contiguous; any other use of e (a reversed
            # or strided row: a division and a gather per element) is left to the rows loop.
            along = [(s, c) for s, c in address.terms if depends_on(aff(s), self.e)]
            self.gathers |= only_loops(address) and bool(along) and along != [(self.e, 1)]
            return None
        table = self.array((w.source_names[id(var)], address))
        return None if table is None else w.emit("x", ops.ctype(var.dtype), f"{table}[fj_e]")

    def fills(self, w, spec, period: int) -> list[str]:
        """Each table's declaration and the loop that fills it, once per block."""
        lines = []
        for (source, address), name in self.arrays.items():
            t = next(ops.ctype(v.dtype) for k, v in enumerate(spec.sources) if f"in{k}" == source)
            w.body = []
            w.new_scope()
            at = w.index(address)
            lines += [f"{t} {name}[{period}];", f"for (int fj_e = 0; fj_e < {period}; ++fj_e) {{",
                      *indent([*w.body, f"{name}[fj_e] = {source}[{at}];"], 1).splitlines(), "}"]
        return lines


def only_loops(f) -> bool:
    """Whether f is built from loop symbols alone (no index read from data)."""
    return all(s.kind == "loop" or (s.kind in ("delin", "clamp") and only_loops(aff(s.args[0]))) for s, _ in f.terms)


def periodic_path(w, rows_shape: tuple, cols_shape: tuple, tables_only: bool) -> str:
    """The periodic-rows text for the map template's host slot, or '' where the kernel's rows
    (`cols_shape`: the elements of one) are not short or are a whole number of vectors, or,
    with `tables_only` (a flat loop, which has no partial vector per row), where it reads
    nothing broadcast along them."""
    spec = w.spec
    row = math.prod(cols_shape)
    if w.cache is not None or not rows_shape or row < 2 or row % LANES == 0:
        return ""
    period = row * LANES // math.gcd(row, LANES)
    chunks = spec.size // period
    if period > MAX_PERIOD or chunks < MIN_CHUNKS:
        return ""
    q = Sym("loop", ("fj_q",), 0, chunks - 1)
    e = Sym("loop", ("fj_e",), 0, period - 1)
    rows_per_chunk = period // row
    leading = delinearize(aff(q) * rows_per_chunk + delin(aff(e), row, None), rows_shape)
    idx = leading + delinearize(delin(aff(e), 1, row), cols_shape)
    shape = spec.shape
    tables = ColumnTables(q, e)
    saved = w.body, w.loads, w.cache, w.memo, w.sym_names, set(w.variant)
    w.variant |= {"fj_q", "fj_e", "i"}
    try:
        w.cache = tables
        body = list(render_stores(w, idx, spec))  # names the tables it reads
        if (tables_only and not tables.arrays) or tables.gathers or any(sym.kind == "clamp" for sym in w.sym_names):
            return ""  # (clamps: pad, concatenate take the pieces path)
        fills = tables.fills(w, spec, period)
        w.cache = None
        rest = list(render_stores(w, delinearize(aff(Sym("loop", ("i",), chunks * period, spec.size - 1)), shape), spec))
    finally:
        w.body, w.loads, w.cache, w.memo, w.sym_names, w.variant = saved
    if len(body) + len(rest) > MAX_LINES:
        return ""
    loop = [*fills,
            f"FJ_BLOCK_LOOP(idx_t, fj_q, {chunks}) {{",
            f"  _Pragma(\"omp simd\") for (int fj_e = 0; fj_e < {period}; ++fj_e) {{",
            *indent(body, 2).splitlines(), "  }", "}"]
    if rest:
        loop += [f"if (blockIdx.x == gridDim.x - 1) {{  // elements {chunks * period} on: past the last whole chunk",
                 f"  for (idx_t i = {chunks * period}; i < {spec.size}; ++i) {{", *indent(rest, 2).splitlines(), "  }", "}"]
    names = ", ".join(sorted({source for source, _ in tables.arrays}))
    read = f": {names}, broadcast along the rows, read from tables of one period (fj_ptab)" if names else ""
    return fill("periodic_path.cu.in", row=str(row), period=str(period), tables=read,
                loop=indent(["{", *indent(loop, 1).splitlines(), "}"], 1).rstrip("\n"))


def periodic_columns(w, spec, reds, outside: list) -> str:
    """The periodic-rows text for the column reduction template's host slot (the block's
    rows of its segment [begin, end), the tile's partials `part{k}[0][c]` updated; `outside`:
    the loop's body, for the rows outside the block's whole chunks), or ''
    where the kept axes are not innermost, their elements are not a short row, or a
    reduction carries an index (argmax, argmin: ties take the first)."""
    from .accumulators import reduce_count
    nd = len(spec.in_shape)
    kept = tuple(d for d in range(nd) if d not in spec.reduce_axes)
    if w.cache is not None or any(red.is_arg for red in reds) or kept != tuple(range(nd - len(kept), nd)):
        return ""
    row = spec.size
    if not 2 <= row <= MAX_COLUMNS:
        return ""
    period = row * LANES // math.gcd(row, LANES)
    period *= -(-MIN_LANES // period)  # independent accumulators, not one chain per vector
    per_chunk = period // row  # rows of a chunk
    reduce_n = reduce_count(spec)
    chunks = reduce_n // per_chunk
    registers = period * sum(red.acc_dtype.itemsize for red in reds) <= ACCUMULATOR_BYTES
    if (row >= LANES and not registers) or period > MAX_PERIOD or chunks < MIN_CHUNKS:
        return ""
    q = Sym("loop", ("fj_q",), 0, chunks - 1)
    e = Sym("loop", ("fj_e",), 0, period - 1)
    reduced = iter(delinearize(aff(q) * per_chunk + delin(aff(e), row, None), spec.reduce_shape))
    columns = iter(delinearize(delin(aff(e), 1, row), spec.shape))
    element = tuple(next(reduced) if d in spec.reduce_axes else next(columns) for d in range(nd))
    tables = ColumnTables(q, e)
    saved = w.body, w.loads, w.cache, w.memo, w.sym_names, set(w.variant)
    w.variant |= {"fj_q", "fj_e"}
    try:
        w.cache = tables
        w.body = []
        w.new_scope()
        for red in reds:
            w.body.append(red.step(f"fj_lanes{red.k}[fj_e]", "", red.read(w, element)))
        body = list(w.body)
        fills = tables.fills(w, spec, period)
    finally:
        w.body, w.loads, w.cache, w.memo, w.sym_names, w.variant = saved
    if len(body) > MAX_LINES:
        return ""
    lanes = []
    for red in reds:
        lanes += [f"{red.acc_t} fj_lanes{red.k}[{period}];",
                  f"for (int fj_e = 0; fj_e < {period}; ++fj_e) fj_lanes{red.k}[fj_e] = {red.ident};"]
    fold = [red.merge(f"part{red.k}[0][fj_e % {row}]", "", f"fj_lanes{red.k}[fj_e]", "") for red in reds]
    text = [*fills, *lanes,
            f"const idx_t fj_q0 = (begin + {per_chunk - 1}) / {per_chunk};  // the block's whole chunks",
            f"const idx_t fj_q1 = end / {per_chunk} > fj_q0 ? end / {per_chunk} : fj_q0;",
            "for (idx_t fj_q = fj_q0; fj_q < fj_q1; ++fj_q) {",
            f"  _Pragma(\"omp simd\") for (int fj_e = 0; fj_e < {period}; ++fj_e) {{",
            *indent(body, 2).splitlines(), "  }", "}",
            f"for (int fj_e = 0; fj_e < {period}; ++fj_e) {{  // position e's partial into column e % {row}",
            *indent(fold, 1).splitlines(), "}",
            f"const idx_t fj_before = fj_q0 * {per_chunk} < end ? fj_q0 * {per_chunk} : end;  // rows outside them",
            f"const idx_t fj_after = fj_q1 * {per_chunk} > fj_before ? fj_q1 * {per_chunk} : fj_before;"]
    return fill("periodic_columns.cu.in", row=str(row), period=str(period), text=indent(text, 3).rstrip("\n"),
                body=indent(outside, 6))
