"""The stream path of map kernels: on the host, a kernel whose outputs are large computes
each block's elements a tile at a time into tiles on the stack (FJ_STREAM_TILE elements of
every output, in L1) and copies each tile out with non-temporal stores (`fj_stream_store`,
host_launch.h).  An ordinary store first reads the line it writes; a non-temporal one
writes whole lines without reading them, so a map over arrays larger than the caches moves
a third fewer bytes.  Where the arrays fit in the last-level cache, ordinary stores are
faster (the lines are read from that cache, and stay there for the next reader), so only
kernels moving more than half of it per call take the path (FUSEJIT_STREAM_BYTES).  A
stencil, which loads an input at several addresses per element (its neighbours' rows come
from the cache), is faster with ordinary stores too (a 5-point Laplacian on 4096 x 4096
float32: 3.1-3.5 ms against 4.5-4.8 ms streamed), so a kernel that loads one buffer at two
addresses keeps them.

Like the vector path it is a rewrite of the element body, whose stores `outK[own] = v;`
become `fj_tileK[i - fj_i0] = v;`.  The GPU and the emulation compile it out
(FJ_STREAM_STORES is 0 there).
"""
from __future__ import annotations

import collections
import functools
import os
import re

from . import config, ops
from .templates import fill, indent

DEFAULT_LAST_LEVEL_CACHE = 32 << 20   # where the system does not say
MAX_BODY_LINES = 256                  # the body is compiled twice on the host: bound the code size


@functools.lru_cache(maxsize=None)
def last_level_cache_bytes() -> int:
    """The largest data cache of CPU 0 that Linux reports (sysfs), else 32 MiB."""
    root = "/sys/devices/system/cpu/cpu0/cache"
    best = 0
    try:
        for entry in os.listdir(root):
            try:
                with open(os.path.join(root, entry, "type")) as f:
                    if f.read().strip() == "Instruction":
                        continue
                with open(os.path.join(root, entry, "size")) as f:
                    text = f.read().strip()
            except OSError:
                continue
            scale = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(text[-1:], 1)
            digits = text.rstrip("KMG")
            if digits.isdigit():
                best = max(best, int(digits) * scale)
    except OSError:
        pass
    return best or DEFAULT_LAST_LEVEL_CACHE


def stream_min_bytes() -> int:
    """Bytes a map kernel must move per call (loads and stores) to take the stream path."""
    value = config.env("FUSEJIT_STREAM_BYTES").strip()
    return int(value) if value else last_level_cache_bytes() // 2


def stencil(body: list[str]) -> bool:
    """Whether the element body loads some input buffer at more than one address."""
    addresses = collections.defaultdict(set)
    for buffer, address in re.findall(r"\b(in\d+)\[([^\]]*)\]", "\n".join(body)):
        addresses[buffer].add(address)
    return any(len(a) > 1 for a in addresses.values())


def stores_only_at(body: list[str], own: str) -> bool:
    """Whether the element body stores, and only at its own flat address `own`, with at most
    MAX_BODY_LINES lines: the tile paths' (this one's, fusejit/halftiles.py's) condition."""
    stores = [re.match(r"out(\d+)\[(.*?)\] = ", line) for line in body if line.startswith("out")]
    return (bool(stores) and all(m is not None and m.group(2) == own for m in stores)
            and len(body) <= MAX_BODY_LINES)


def tile_loop(inner: int | None) -> tuple[str, str, str, str, str]:
    """The tile paths' loop over the block's elements, FJ_STREAM_TILE at a time: (the element
    index, the tile's first index, the tile's flat start, a description, the loop line).
    `inner`: the row length of a kernel over rows (`row`, `col`).  The names carry fj_: the
    body's own are c0, j0, v0, x0, ...; a pad's condition c0 once shadowed the tile's first
    column and sent stores before the tile."""
    if inner:
        return ("col", "fj_c0", "row * inner + fj_c0", "each row in tiles of columns",
                "FJ_STREAM_ROWS_LOOP(idx_t, row, fj_c0, width, n, inner)")
    return "i", "fj_i0", "fj_i0", "the block's elements in tiles", "FJ_STREAM_LOOP(idx_t, fj_i0, width, n)"


def stream_path(w, body: list[str], own: str, inner: int | None = None) -> str:
    """The stream-path text for the template's `stream` slot, or '' when the kernel stores
    too few bytes or stores anywhere but at its own flat address `own`.  `inner`: the row
    length of a kernel over rows (`row`, `col`)."""
    spec = w.spec
    if not stores_only_at(body, own):
        return ""
    moved = sum(v.size * v.dtype.itemsize for v in (*spec.sources, *spec.outputs))
    if moved < stream_min_bytes() or stencil(body):
        return ""
    index, first, start, what, loop = tile_loop(inner)
    text = re.sub(rf"^out(\d+){re.escape(f'[{own}]')} = ", rf"fj_tile\1[{index} - {first}] = ",
                  "\n".join(body), flags=re.M)
    tiles = [f"{ops.ctype(v.dtype)} fj_tile{k}[FJ_TILE_SPACE];" for k, v in enumerate(spec.outputs)]
    flush = [f"fj_stream_store(out{k} + {start}, fj_tile{k}, width);" for k in range(len(spec.outputs))]
    return fill("stream_path.cu.in", what=what, tiles=indent(tiles, 2), loop=loop, index=index, first=first,
                body=indent(text.splitlines(), 4), flush=indent(flush, 3))
