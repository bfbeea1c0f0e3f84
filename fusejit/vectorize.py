"""The vector path of map kernels: on the GPU, a thread takes W consecutive elements at a
time and every array read or written at the kernel's own flat index moves as one 16-byte
(or 8-byte) vector, visible in the PTX as ld.global.v4 / st.global.v4.

It is a rewrite of the kernel's element body, which is kept as the loop for the tail and
for calls whose pointers are misaligned: loads `inK[i]` become lanes of a vector loaded
once per step, stores `outK[i] = v;` lanes of a vector stored once.  Arrays read at other
indices (broadcasts, shifted slices) keep their element loads.  The host fast mode compiles
the element loop only (FJ_VECTOR_LOADS is 0 there: its compiler vectorises that loop).
"""
from __future__ import annotations

import re

from . import ops
from .templates import fill, indent

VECTOR_BYTES = 16      # one ld.global.v4.f32 / v2.f64
MAX_LANES = 8          # elements per thread and step (bounds register use): 8 only where the
                       # widest array's elements are 2 bytes or fewer (16-byte float16 vectors)
MAX_BODY_LINES = 96    # longer bodies stay element by element (code size, registers)
MAX_LANE_LINES = 192   # lanes times body lines: fewer lanes for long bodies (a loop body of
                       # 70 fused operations kept 4 lanes' values live and spilled at 128 registers)
GRID_MARGIN = 2**24    # 32-bit indices stay 32-bit only below 2**31 - 1 - GRID_MARGIN


def lanes(itemsizes) -> int:
    return min(MAX_LANES, VECTOR_BYTES // max(itemsizes))


def vector_path(w, body: list[str], own: str = "i", inner: int | None = None) -> tuple[str, str, int]:
    """(the vector-path text for the template's `vector` slot, the element loop's start,
    lanes per thread): ('', '0', 1) when the kernel has no vector path.  `own` is the text of
    the kernel's own flat address in `body`; `inner`, for a kernel over rows (`row`, `col`),
    the row length, at least the lanes: a vector's lanes are one row's columns where the
    lanes divide it, and otherwise pass into the next row at most once (a compare and two
    selects per lane, still one division per vector)."""
    spec = w.spec
    stores = [re.match(r"out(\d+)\[(.*?)\] = ", line) for line in body if line.startswith("out")]
    if not stores or any(m is None or m.group(2) != own for m in stores) or len(body) > MAX_BODY_LINES:
        return "", "0", 1
    text = "\n".join(body)
    address = re.escape(f"[{own}]")
    loaded = sorted({int(k) for k in re.findall(rf"\bin(\d+){address}", text)})
    arrays = ([(f"in{k}", spec.sources[k].dtype) for k in loaded]
              + [(f"out{k}", v.dtype) for k, v in enumerate(spec.outputs)])
    width = lanes([dtype.itemsize for _, dtype in arrays])
    # Lanes that may pass into the next row hold their own row and column: half the budget
    # (a window sum of 27 lines in 4 such lanes spilled at 127 registers).
    def budget(width):
        return MAX_LANE_LINES if inner is None or inner % width == 0 else MAX_LANE_LINES // 2
    while width > 1 and width * len(body) > budget(width):
        width //= 2
    if width < 2 or (inner is not None and inner < width):
        return "", "0", 1
    for k in loaded:
        text = re.sub(rf"\bin{k}{address}", f"fj_v_in{k}.v[lane]", text)
    text = re.sub(rf"^out(\d+){address} = ", r"fj_v_out\1.v[lane] = ", text, flags=re.M)
    if inner is None:
        step, lane = [], ["const idx_t i = i0 + (idx_t)lane;"]
    elif inner % width == 0:  # one division per vector: its lanes are consecutive columns of one row
        step = ["const idx_t row = i0 / inner;", "const idx_t col0 = i0 - row * inner;"]
        lane = ["const idx_t col = col0 + (idx_t)lane;"]
    else:  # one division per vector, whose lanes may pass into the next row (at most once: inner >= width)
        step = ["const idx_t fj_row0 = i0 / inner;", "const idx_t fj_col0 = i0 - fj_row0 * inner;"]
        lane = ["const idx_t fj_col = fj_col0 + (idx_t)lane;", "const bool fj_next = fj_col >= inner;",
                "const idx_t row = fj_next ? fj_row0 + 1 : fj_row0;",
                "const idx_t col = fj_next ? fj_col - inner : fj_col;"]
    load = [f"const fj_pack<{ops.ctype(spec.sources[k].dtype)}, {width}> fj_v_in{k} = "
            f"fj_load_pack<{width}>(in{k} + i0);" for k in loaded]
    load += [f"fj_pack<{ops.ctype(v.dtype)}, {width}> fj_v_out{k};" for k, v in enumerate(spec.outputs)]
    store = [f"fj_store_pack<{width}>(out{k} + i0, fj_v_out{k});" for k in range(len(spec.outputs))]
    aligned = " && ".join(f"fj_aligned<{width * dtype.itemsize}>({name})" for name, dtype in arrays)
    vector = fill("vector_path.cu.in", width=width, aligned=aligned, step=indent(step, 3), load=indent(load, 3),
                  lane=indent(lane, 4), body=indent(text.splitlines(), 4), store=indent(store, 3))
    return vector, "fj_from", width
