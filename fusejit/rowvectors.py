"""The vector path of row kernels (reduce.render_rows): on the GPU, a thread of a row's team
takes W consecutive elements of the row at a time, and every array read or written at the
row's own element moves as one 16-byte (or 8-byte) vector, visible in the PTX as
ld.global.nc.v4 / st.global.v4 (and ld.shared.v4 for the values a pass keeps for the next).

Like the map kernels' vector path (vectorize.py) it is a rewrite of a pass's element body,
which stays as the loop for calls whose pointers are misaligned: a load `inK[i * L + r]` (the
operand's element) or `inK[r]` (an operand broadcast along the rows, read at the column)
becomes a lane of a vector loaded once per step, a store `outK[i * L + r] = v;` a lane of a
vector stored once, and so do the reads and writes of the shared arrays of cached values.
Each row starts on a vector only when W divides the row length L.  Arrays read at other
indices keep their element loads.  The host fast mode compiles the element loops only
(FJ_VECTOR_LOADS is 0 there: each thread has whole rows, whose loops its compiler vectorises).

Within a step the reads come first (each pack is loaded before the lanes run) and the
writes last, as in the element body, where the row cache's writes follow every read
(reduce.RowCache.flush): a pass that reads one cached value and writes another to the same
array reads the old values.  A reduction's lane l takes the step's elements l, l + lanes,
...: the accumulators and their count are the element loop's.
"""
from __future__ import annotations

import dataclasses
import re

from . import ops
from .templates import fill, indent
from .vectorize import MAX_LANE_LINES, MAX_LANES, VECTOR_BYTES

ELEMENT = r"(?:i \* (\d+(?:LL)?) \+ )?r"   # the row's own element, or its column alone


@dataclasses.dataclass
class PassVectors:
    """One pass's element body rewritten for the vector path: `arrays` maps each array it
    moves as vectors to (the vector's address at the step's first column, dtype)."""
    body: list[str]
    arrays: dict
    read: list[str]
    written: list[str]


def rewrite_pass(w, body: list[str], row_len: int, lanes: str | None) -> PassVectors | None:
    """`body`, one pass's element body at column `r` of row `i`, with its reads and writes at
    the row's own element made lanes of vectors (None when it has none, or writes elsewhere);
    `lanes`: the count of the accumulators `lanesK[l]` it adds to (None: it has none)."""
    text = "\n".join(body)
    arrays: dict[str, tuple[str, object]] = {}
    for m in re.finditer(rf"\b(in|out)(\d+)\[{ELEMENT}\]", text):
        kind, k, stride = m.group(1), int(m.group(2)), m.group(3)
        if stride is not None and int(stride.rstrip("L")) != row_len:
            return None
        dtype = w.spec.sources[k].dtype if kind == "in" else w.spec.outputs[k].dtype
        at = f"i * {stride} + fj_r0" if stride else "fj_r0"
        arrays[f"{kind}{k}"] = (f"{kind}{k} + ({at})" if stride else f"{kind}{k} + {at}", dtype)
    position = rf"slot \* {row_len}u \+ r"
    for name in re.findall(rf"\b(cache\d+)\[{position}\]", text):
        arrays[name] = (f"{name} + (slot * {row_len}u + fj_r0)", w.cache_dtypes[name])
    if not arrays:
        return None
    lines, written = [], []
    for line in body:
        store = re.match(rf"(out\d+|cache\d+)\[(?:{ELEMENT}|{position})\] = (.*)$", line)
        if store is not None:
            written.append(store.group(1))
            line = f"fj_w_{store.group(1)}.v[fj_l] = {store.group(3)}"
        line = re.sub(rf"\b(in\d+|cache\d+)\[(?:{ELEMENT}|{position})\]", r"fj_v_\1.v[fj_l]", line)
        if lanes:
            line = re.sub(r"\b(lanes(?:_arg)?\d+)\[l\]", rf"\1[fj_l % {lanes}]", line)
        lines.append(line)
    rewritten = "\n".join(lines)
    if re.search(r"\b(?:out|cache)\d+\[", rewritten):  # a write elsewhere: keep the element loops
        return None
    read = [name for name in arrays if re.search(rf"\bfj_v_{name}\b", rewritten)]
    return PassVectors(lines, arrays, read, sorted(set(written)))


def vector_paths(passes: list[PassVectors | None], fits, loop) -> tuple[int, list[str]]:
    """(the vector width, the vector-path text of each pass of a reduction kernel): all or
    none of them ((1, '' each)), in one width under one alignment condition, so that every
    pass gives each thread the same elements of the row (a pass reads the cached values that
    the thread itself wrote in an earlier one, with no barrier between).  `fits(width)`:
    whether the strategy's rows or segments start on vectors of that width; `loop(width, k)`:
    pass k's template slots `before`, `first`, `end`, `step` (the vector loop's) and `after`."""
    if not passes or any(p is None for p in passes):
        return 1, [""] * len(passes)
    itemsizes = [dtype.itemsize for p in passes for _, dtype in p.arrays.values()]
    width = min(MAX_LANES, VECTOR_BYTES // max(itemsizes))
    longest = max(len(p.body) for p in passes)
    while width > 1 and width * longest > MAX_LANE_LINES:
        width //= 2
    if width < 2 or not fits(width):
        return 1, [""] * len(passes)
    pointers = {n: dtype for p in passes for n, (_, dtype) in p.arrays.items() if not n.startswith("cache")}
    aligned = " && ".join(f"fj_aligned<{width * dtype.itemsize}>({n})" for n, dtype in pointers.items()) or "true"
    texts = []
    for k, p in enumerate(passes):
        def pack(n):
            return f"fj_pack<{ops.ctype(p.arrays[n][1])}, {width}>"
        load = [f"const {pack(n)} fj_v_{n} = fj_load_pack<{width}>({p.arrays[n][0]});" for n in p.read]
        load += [f"{pack(n)} fj_w_{n};" for n in p.written]
        store = [f"fj_store_pack<{width}>({p.arrays[n][0]}, fj_w_{n});" for n in p.written]
        slots = loop(width, k)
        texts.append(fill("vector_reduce_path.cu.in", width=width, aligned=aligned, load=indent(load, 4),
                          before=indent([slots["before"]] if slots.get("before") else [], 3),
                          first=slots["first"], end=slots["end"], step=slots["step"], after=slots["after"],
                          body=indent(p.body, 5), store=indent(store, 4)))
    return width, texts
