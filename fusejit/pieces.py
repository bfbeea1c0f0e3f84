"""The pieces of clamped map kernels on the host.

pad, concatenate and roll read their operands at clamped indices (every load stays in
bounds) and select the value by a condition.  A clamp of the column is a gather to the C++
compiler: the element loop runs element by element.  But a clamp of `col + c` is the
identity or a constant over whole ranges of columns: this pass cuts the columns (the
elements, in a flat loop) at the points where some clamp changes form, renders the body
again for each piece with the loop symbol's range narrowed to it, and lets the index
arithmetic drop the clamps (indexing.clamp) and the selects (codegen.select_piece) it can
prove.  Each piece is a loop of contiguous loads the compiler vectorises.

Like the stream path it is a host path: the GPU and the emulation compile it out
(FJ_COLUMN_PIECES is 0 there) and run the element loop, whose body is unchanged.
"""
from __future__ import annotations

from .indexing import Sym, aff, delinearize, linearize
from .templates import fill, indent

MAX_PIECES = 8          # more cuts: the element loop (code size, compile time)
MAX_PIECE_LINES = 512   # body lines over all pieces


def cuts(syms, loop: Sym) -> list[int]:
    """The values of `loop` (not its first) at which a clamp of `k * loop + c` changes between
    constant and identity."""
    points = set()
    for s in syms:
        if s.kind != "clamp":
            continue
        f, lo, hi = s.args
        if len(f.terms) != 1 or f.terms[0][0] != loop:
            continue
        k, c = f.terms[0][1], f.const
        if k > 0:  # identity for ceil((lo - c) / k) <= x <= floor((hi - c) / k)
            points |= {-(-(lo - c) // k), (hi - c) // k + 1}
        else:      # identity for ceil((hi - c) / k) <= x <= floor((lo - c) / k)
            points |= {-(-(hi - c) // k), (lo - c) // k + 1}
    return sorted(p for p in points if loop.lo < p <= loop.hi)


def pieces_path(w, rows_shape, cols_shape, inner: int | None) -> str:
    """The pieces-path text for the map template's host slot, or '' when no clamp of the
    loop index changes form inside the loop.  `rows_shape`/`cols_shape`: the output shape
    split at the row length `inner` (rows_shape empty and inner None: a flat loop)."""
    spec = w.spec
    if w.cache is not None:
        return ""
    name = "col" if inner else "i"
    extent = inner if inner else spec.size
    loop = Sym("loop", (name,), 0, extent - 1)
    points = cuts(list(w.sym_names), loop)
    if not points or len(points) + 1 > MAX_PIECES:
        return ""
    bounds = [0, *points, extent]
    row = (delinearize(aff(Sym("loop", ("row",), 0, spec.size // inner - 1)), rows_shape) if inner else ())
    saved = w.body, w.loads
    pieces, lines = [], 0
    try:
        for lo, hi in zip(bounds, bounds[1:]):
            w.body = []
            w.new_scope()
            idx = row + delinearize(aff(Sym("loop", (name,), lo, hi - 1)), cols_shape)
            own = w.index(linearize(idx, spec.shape))
            for k, out in enumerate(spec.outputs):
                value = w.read_output(out, idx)
                w.body.append(f"out{k}[{own}] = {value};")
            lines += len(w.body)
            loop_line = (f"FJ_COLUMN_RANGE(idx_t, col, {lo}, {hi}) {{" if inner
                         else f"FJ_CHUNK_PIECE(idx_t, i, {lo}, {hi}) {{")
            pieces.append([f"// {name} in [{lo}, {hi})", loop_line, *indent(w.body, 1).splitlines(), "}"])
    finally:
        w.body, w.loads = saved
    if lines > MAX_PIECE_LINES:
        return ""
    if inner:
        text = ["FJ_ROWS_OF_BLOCK(idx_t, row, fj_from, n, inner) {",
                *[line for piece in pieces for line in indent(piece, 1).splitlines()], "}"]
    else:
        text = ["FJ_BLOCK_CHUNK(idx_t, i, fj_from, n)", *[line for piece in pieces for line in piece]]
    return fill("pieces_path.cu.in", what="columns of each row" if inner else "elements",
                cuts=", ".join(map(str, points)),
                loop=indent(["{", *indent(text, 1).splitlines(), "}"], 1).rstrip("\n"))
