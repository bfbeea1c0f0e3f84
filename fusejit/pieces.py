"""The pieces of clamped map kernels on the host.

pad, concatenate and roll read their operands at clamped indices (every load stays in
bounds) and select the value by a condition.  A clamp of the column is a gather to the C++
compiler: the element loop runs element by element.  But a clamp of `col + c` is the
identity or a constant over whole ranges of columns: this pass cuts the columns (the
elements, in a flat loop) at the points where some clamp changes form, renders the body
again for each piece with the loop symbol's range narrowed to it, and lets the index
arithmetic drop the clamps (indexing.clamp) and the selects (shaperules.select_piece) it can
prove.  Each piece is a loop of contiguous loads the compiler vectorises.

Like the stream path it is a host path: the GPU and the emulation compile it out
(FJ_COLUMN_PIECES is 0 there) and run the element loop, whose body is unchanged.
"""
from __future__ import annotations

from .indexing import Sym, aff, delinearize
from .readhooks import render_stores
from .templates import fill, indent

MAX_PIECES = 8          # more cuts: the element loop (code size, compile time)
MAX_ROW_RANGES = 4      # ranges of rows, each with its own pieces of columns
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


def _ranges(w, render, name: str, lo: int, hi: int, limit: int) -> list[tuple[int, int, list[str]]] | None:
    """[lo, hi) cut until no clamp of the loop index changes form inside a range: (start, end,
    the range's body) each, or None past `limit` ranges.  `render(sym)` renders the body over
    the range of the loop symbol sym, which creates its clamps; a range is cut again where the
    clamps of its own rendering change form (a clamp of a clamp: reflect padding's)."""
    done, todo = [], [(lo, hi)]
    while todo:
        a, b = todo.pop(0)
        sym = Sym("loop", (name,), a, b - 1)
        body = render(sym)
        points = cuts(list(w.sym_names), sym)
        if points:
            todo = list(zip([a, *points], [*points, b])) + todo
        else:
            done.append((a, b, body))
        if len(done) + len(todo) > limit:
            return None
    return sorted(done, key=lambda r: r[0])


def pieces_path(w, rows_shape, cols_shape, inner: int | None) -> str:
    """The pieces-path text for the map template's host slot, or '' when no clamp of the
    loop index changes form inside the loop.  `rows_shape`/`cols_shape`: the output shape
    split at the row length `inner` (rows_shape empty and inner None: a flat loop).  Where
    rows are one axis, clamps of the row index cut the rows too (reflect padding's first and
    last rows): each range of rows has its own pieces of columns, chosen once per row."""
    spec = w.spec
    if w.cache is not None:
        return ""
    name = "col" if inner else "i"
    extent = inner if inner else spec.size
    rows = spec.size // inner if inner else 0
    saved = w.body, w.loads
    try:
        def row_index(lo, hi):
            return delinearize(aff(Sym("loop", ("row",), lo, hi)), rows_shape) if inner else ()

        full_cols = delinearize(aff(Sym("loop", (name,), 0, extent - 1)), cols_shape)
        row_ranges = [(0, rows)]
        if inner and len(rows_shape) == 1 and rows > 1:
            found = _ranges(w, lambda sym: render_stores(w, (aff(sym),) + full_cols, spec), "row", 0, rows, MAX_ROW_RANGES)
            if found is not None:
                row_ranges = [(a, b) for a, b, _ in found]
        ranges, lines, cut_any = [], 0, len(row_ranges) > 1
        for row_lo, row_hi in row_ranges:
            row = row_index(row_lo, row_hi - 1)
            col_ranges = _ranges(w, lambda sym: render_stores(w, row + delinearize(aff(sym), cols_shape), spec), name, 0,
                                 extent, MAX_PIECES)
            if col_ranges is None:
                return ""
            cut_any |= len(col_ranges) > 1
            pieces = []
            for lo, hi, body in col_ranges:  # each range's body as _ranges rendered it last
                lines += len(body)
                loop_line = (f"FJ_COLUMN_RANGE(idx_t, col, {lo}, {hi}) {{" if inner
                             else f"FJ_CHUNK_PIECE(idx_t, i, {lo}, {hi}) {{")
                pieces.append([f"// {name} in [{lo}, {hi})", loop_line, *indent(body, 1).splitlines(), "}"])
            ranges.append((row_lo, row_hi, [hi for _, hi, _ in col_ranges[:-1]],
                           [line for piece in pieces for line in piece]))
    finally:
        w.body, w.loads = saved
    if not cut_any or lines > MAX_PIECE_LINES:
        return ""
    if not inner:
        text = ["FJ_BLOCK_CHUNK(idx_t, i, fj_from, n)", *ranges[0][3]]
    elif len(ranges) > 1:
        body = []
        for k, (row_lo, row_hi, _, piece_lines) in enumerate(ranges):
            test = "} else {" if k == len(ranges) - 1 else f"{'if' if k == 0 else '} else if'} (row < {row_hi}) {{"
            body += [test, f"  // rows in [{row_lo}, {row_hi})", *indent(piece_lines, 1).splitlines()]
        text = ["FJ_ROWS_OF_BLOCK(idx_t, row, fj_from, n, inner) {", *indent(body + ["}"], 1).splitlines(), "}"]
    else:
        text = ["FJ_ROWS_OF_BLOCK(idx_t, row, fj_from, n, inner) {", *indent(ranges[0][3], 1).splitlines(), "}"]
    what = "columns of each row" if inner else "elements"
    column_cuts = sorted({p for _, _, points, _ in ranges for p in points})
    cut_text = ", ".join(map(str, column_cuts)) or "nowhere"
    if len(ranges) > 1:
        what = "rows and the columns of each row"
        cut_text = f"rows {', '.join(str(hi) for _, hi, _, _ in ranges[:-1])}; columns {cut_text}"
    return fill("pieces_path.cu.in", what=what, cuts=cut_text,
                loop=indent(["{", *indent(text, 1).splitlines(), "}"], 1).rstrip("\n"))
