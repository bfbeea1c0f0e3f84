"""Transposed reads of map kernels on the host.

A map that reads an operand transposed (a.T + 1, jnp.swapaxes, a gradient's transposes) reads,
for each row of its output, one element of each of many rows of the operand, a whole row of it
apart.  Where that distance is a multiple of 4 KiB (a row of 1024 float32) the elements share
a cache set and evict each other before the next output row comes to their neighbours:
a.T + 1 over 1024 x 1024 took 3.3 ms against 0.5 ms over 1024 x 1000.  Here the host takes
the output 16 x 16 elements at a time (`TILE`): each operand read transposed is moved into a
tile on the stack by sixteen loads of one cache line each and a transpose in registers
(kernels/transpose_tiles.h), and the body reads the tile at [r][c], its other operands as
before.  Leading axes of the output are batches of tiles (a transpose of the last two axes of
a stack of matrices).  The columns past the last whole tile are one more tile of fewer
columns (the loads of the missing ones left out: a.T + 1 over 63 x 16000, whose 63 output
columns leave 15 past three whole tiles, went from about 1 ms to 0.55 with it, jax.jit 0.42-0.5
in that run on a loaded machine; the loads' prefetches then took the tile loop itself from
190 to 124 us: kernels/transpose_tiles.h); the rows past the last whole tile run the body
element by element.

Like the pieces path it is a host path: the GPU and the emulation compile it out
(FJ_TRANSPOSE_TILES is 0 there) and run the rows loop.
"""
from __future__ import annotations

import math

from . import ops
from .indexing import Affine, Sym, aff, delinearize, linearize, make_affine
from .readhooks import NamedReads, render_stores
from .templates import fill, indent

TILE = 16  # FJ_TRANSPOSE_TILE: 16 lanes of 4 bytes (two vectors of 8-byte elements)
MIN_STRIDE = TILE  # operand elements between a tile's consecutive loads (at least a tile's row)
MAX_TILES = 4  # operands moved through tiles
MAX_LINES = 256  # body lines over the tile and edge bodies


def built_from(f: Affine, syms: set) -> bool:
    """Whether the affine index f depends on the loop symbols `syms` alone, through the
    delinearisations and clamps of its terms too (not on the element's row and column in
    the tile, nor on a value read from data)."""
    return all(s in syms or (s.kind in ("delin", "clamp") and built_from(aff(s.args[0]), syms)) for s, _ in f.terms)


class TransposedReads(NamedReads):
    """codegen's read hook (KernelWriter.cache) for the tile's body: a 4- or 8-byte input read at
    `base + r + stride * c` (r, c: the element's row and column in the tile; base a function
    of the tile's batch, row and column alone; stride at least MIN_STRIDE) is read from a
    tile, tile[r * TILE + c].  Its arrays: (input name, base, stride) -> tile name."""

    def __init__(self, r: Sym, c: Sym, outer: set):
        super().__init__("fj_ttile", MAX_TILES)
        self.r, self.c = r, c
        self.outer = outer  # the loop symbols a tile's base may depend on: its batch, row and column

    def load(self, w, var, idx):
        if id(var) not in w.source_names or var.dtype.itemsize not in (4, 8):
            return None
        address = linearize(idx, var.shape)
        coeffs = dict(address.terms)
        stride = coeffs.pop(self.c, None)
        if coeffs.pop(self.r, None) != 1 or stride is None or stride < MIN_STRIDE:
            return None
        base = make_affine(coeffs, address.const)
        tile = self.array((w.source_names[id(var)], base, stride)) if built_from(base, self.outer) else None
        return None if tile is None else w.emit("x", ops.ctype(var.dtype), f"{tile}[fj_r * {TILE} + fj_c]")


def transposes_path(w, rows_shape: tuple, cols_shape: tuple, inner: int | None) -> str:
    """The transposed-tiles text for the map template's host slot, or '' where the kernel
    reads no input transposed (or its rows or columns are fewer than a tile)."""
    spec = w.spec
    if not inner or w.cache is not None or len(cols_shape) != 1 or not rows_shape:
        return ""
    rows, cols = rows_shape[-1], cols_shape[0]
    if rows < TILE or cols < TILE:
        return ""
    batch_shape = tuple(rows_shape[:-1])
    batches = math.prod(batch_shape)
    row_tiles, col_tiles = rows // TILE, cols // TILE
    loop = {name: Sym("loop", (name,), lo, hi) for name, lo, hi in [
        ("fj_tb", 0, batches - 1), ("fj_tr", 0, row_tiles - 1), ("fj_tc", 0, col_tiles - 1),
        ("fj_r", 0, TILE - 1), ("fj_c", 0, TILE - 1), ("fj_rr", row_tiles * TILE, rows - 1),
        ("fj_col", 0, cols - 1)]}
    batch = delinearize(aff(loop["fj_tb"]), batch_shape) if batch_shape else ()
    tile_row = TILE * aff(loop["fj_tr"]) + aff(loop["fj_r"])
    outer = {loop["fj_tb"], loop["fj_tr"]}
    edge = cols % TILE
    # the columns past the last whole tile: one more tile of `edge` columns (its own column
    # symbol, whose range is the edge's, so that nothing proven of the whole tiles' columns
    # is assumed there)
    edge_c = Sym("loop", ("fj_c",), 0, edge - 1) if edge else None
    saved = w.body, w.loads, w.cache, w.memo, w.sym_names, set(w.variant)
    w.variant |= set(loop)
    try:
        whole = _tile(w, spec, batch + (tile_row, TILE * aff(loop["fj_tc"]) + aff(loop["fj_c"])), loop["fj_r"],
                      loop["fj_c"], outer | {loop["fj_tc"]}, TILE)
        if whole is None:
            return ""
        right = _tile(w, spec, batch + (tile_row, col_tiles * TILE + aff(edge_c)), loop["fj_r"], edge_c, outer,
                      edge) if edge else ([], [], [])
        bottom = list(render_stores(w, batch + (aff(loop["fj_rr"]), aff(loop["fj_col"])), spec)) if rows % TILE else []
    finally:
        w.body, w.loads, w.cache, w.memo, w.sym_names, w.variant = saved
    if right is None or len(whole[1]) + len(right[1]) + len(bottom) > MAX_LINES:
        return ""
    moves, body, sources = whole
    per_batch = row_tiles + (1 if bottom else 0)  # work items of a batch: its tile rows, then its last rows
    work = ([f"const idx_t fj_tb = fj_work / {per_batch};", f"const idx_t fj_tr = fj_work - fj_tb * {per_batch};"]
            if batches > 1 else ["const idx_t fj_tr = fj_work;"])
    tiles = [f"for (idx_t fj_tc = 0; fj_tc < {col_tiles}; ++fj_tc) {{", *_tile_loops(moves, body, TILE), "}"]
    if edge:
        tiles += [f"{{  // columns {col_tiles * TILE} to {cols - 1}: a tile of {edge} columns past the last whole one",
                  *_tile_loops(*right[:2], edge), "}"]  # (the same operands as the whole tiles)
    if bottom:
        tiles = [f"if (fj_tr < {row_tiles}) {{", *indent(tiles, 1).splitlines(),
                 f"}} else {{  // rows {row_tiles * TILE} to {rows - 1}: past the last whole tile",
                 f"  for (idx_t fj_rr = {row_tiles * TILE}; fj_rr < {rows}; ++fj_rr) {{",
                 f"    FJ_COLUMN_RANGE(idx_t, fj_col, 0, {cols}) {{", *indent(bottom, 3).splitlines(),
                 "    }", "  }", "}"]
    loop_text = [f"FJ_BLOCK_LOOP(idx_t, fj_work, {batches * per_batch}) {{", *indent(work + tiles, 1).splitlines(), "}"]
    return fill("transpose_path.cu.in", sources=", ".join(sources), tile=str(TILE),
                loop=indent(["{", *indent(loop_text, 1).splitlines(), "}"], 1).rstrip("\n"))


def _tile(w, spec, tile_idx: tuple, r: Sym, c: Sym, outer: set, count: int):
    """(the statements that move a tile of each operand read transposed, `count` columns of
    it; the body that stores the output's element [r][c] from them; the operands' names), or
    None where no operand is read transposed."""
    reads = TransposedReads(r, c, outer)
    w.cache = reads
    body = list(render_stores(w, tile_idx, spec))  # in a fresh scope; names the tiles it reads
    w.cache = None
    if not reads.arrays:
        return None
    w.body = []
    w.new_scope()  # the moves come first: no name of the body's
    moves = []
    for (source, base, stride), name in reads.arrays.items():
        t = next(ops.ctype(v.dtype) for k, v in enumerate(spec.sources) if f"in{k}" == source)
        count_arg = f", {count}" if count < TILE else ""
        moves += [f"{t} {name}[{TILE} * {TILE}];",
                  f"fj_transpose16({name}, {source} + {w.index(base)}, {stride}{count_arg});"]
    sources = list(dict.fromkeys(source for source, _, _ in reads.arrays))
    return w.body + moves, body, sources  # the base indices' own terms first


def _tile_loops(moves: list, body: list, count: int) -> list:
    """A tile's moves, then its body over its rows and `count` columns."""
    return [*indent(moves, 1).splitlines(),
            f"  for (int fj_r = 0; fj_r < {TILE}; ++fj_r) {{",
            f"    _Pragma(\"omp simd\") for (int fj_c = 0; fj_c < {count}; ++fj_c) {{",
            *indent(body, 3).splitlines(), "    }", "  }"]
