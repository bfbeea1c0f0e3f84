"""The half-tile path of map kernels: on the host, a kernel that loads float16 inputs or
stores float16 outputs at its own elements converts them a tile at a time (FJ_STREAM_TILE
elements, in L1), with the F16C instructions (kernels/half_tiles.h), instead of element by
element with the integer code that GCC vectorises (it vectorises no _Float16 conversion
without AVX512-FP16): each such input is widened into a float tile before the tile's loop,
which reads it there, and each such output is written to a float tile that is narrowed after
the loop.  A float16 `x * 2 + 1` over 1024 x 1000 took 678 us on one Zen 4 core element by
element, 194 us in tiles.

Like the stream path it is a rewrite of the element body (fusejit/halves.py leaves the
half types only at the graph's ends, so an input's one use is its conversion to float32
and an output is a conversion from float32): `const fj_f16 xN = inK[own];` becomes
`const float xN = fj_wideK[i - fj_i0];` (the conversion that reads xN is then float to
float), and `outK[own] = vM;`, where `vM = fj_convert<fj_f16>(v)` of a float v, becomes
`fj_tileK[i - fj_i0] = v;` (and vM's line goes where that was its one use).  Any other
input or output keeps its load or store.  A kernel whose outputs are large enough for the
stream path takes this path instead when it has float16 to convert (ordinary stores); a
map with clamped loads (pad, concatenate, roll) keeps its pieces (fusejit/codegen.py).  The
GPU and the emulation compile it out (FJ_HALF_TILES is 0 there).

Half vectors: where every line of the rewritten body is arithmetic on the body's own float
values and float literals, or a one-argument float function of one (fj_tanh, fj_exp: each
lane in turn, which GCC vectorises), the tile is computed FJ_HALF_TILE_LANES elements at a
time instead, each input loaded and widened, each output narrowed and stored, and each
rounding to float16 done, in registers (kernels/half_vectors.cu.in): no float tile at all.
The tiles stay the path of a CPU without F16C (FJ_HALF_TILE_LANES 1).
"""
from __future__ import annotations

import re

from . import ops
from .streamstores import stores_only_at, tile_loop
from .templates import fill, indent


def half_tile_path(w, body: list[str], own: str, inner: int | None = None) -> str:
    """The half-tile text for the template's `stream` slot, or '' when the kernel converts
    no float16 at its own elements or stores anywhere but at its own flat address `own`.
    `inner`: the row length of a kernel over rows (`row`, `col`)."""
    spec = w.spec
    if not stores_only_at(body, own):
        return ""
    text = "\n".join(body)
    index, first, start, what, loop = tile_loop(inner)
    at = re.escape(f"[{own}]")
    widened, narrowed = [], []
    for k, v in enumerate(spec.sources):
        if ops.ctype(v.dtype) != "fj_f16":
            continue
        load = re.search(rf"^const fj_f16 (x\d+) = in{k}{at};(?:  //.*)?$", text, re.M)
        if not load:
            continue
        name = load.group(1)
        # every other use of the loaded value is its conversion to float
        if len(re.findall(rf"\b{name}\b", text)) == 1 + text.count(f"fj_convert<float>({name})"):
            text = text.replace(load.group(0), f"const float {name} = fj_wide{k}[{index} - {first}];")
            widened.append(k)
    for k, v in enumerate(spec.outputs):
        if ops.ctype(v.dtype) != "fj_f16":
            continue
        store = re.search(rf"^out{k}{at} = (\w+);$", text, re.M)
        narrowing = store and re.search(rf"^const fj_f16 {store.group(1)} = fj_convert<fj_f16>\((\w+)\);.*$", text,
                                        re.M)
        if narrowing and re.search(rf"^const float {narrowing.group(1)} = ", text, re.M):
            text = text.replace(store.group(0), f"fj_tile{k}[{index} - {first}] = {narrowing.group(1)};")
            if not re.search(rf"\b{store.group(1)}\b", text.replace(narrowing.group(0), "")):
                text = text.replace(narrowing.group(0) + "\n", "")  # its one use was the store
            narrowed.append(k)
    if not widened and not narrowed:
        return ""
    tiles = ([f"float fj_wide{k}[FJ_TILE_SPACE];" for k in widened]
             + [f"float fj_tile{k}[FJ_TILE_SPACE];" for k in narrowed])
    widen = [f"fj_widen_tile(in{k} + {start}, fj_wide{k}, width);" for k in widened]
    narrow = [f"fj_narrow_tile(fj_tile{k}, out{k} + {start}, width);" for k in narrowed]
    converted = " and ".join(part for part in (
        f"input(s) {', '.join(f'in{k}' for k in widened)}" if widened else "",
        f"output(s) {', '.join(f'out{k}' for k in narrowed)}" if narrowed else "") if part)
    vectors = half_vectors(text, index, first, start, widened, narrowed)
    return fill("half_tiles.cu.in", what=what, converted=converted, tiles=indent(tiles, 2), loop=loop,
                widen=indent(widen, 3), index=index, first=first, body=indent(text.splitlines(), 4),
                narrow=indent(narrow, 3),
                vectors=fill("half_vectors.cu.in", loop=loop, body=indent(vectors, 4)) if vectors else "",
                vectors_end="#endif\n" if vectors else "")


# The half vectors' rewrite of a tile body's line (half_tiles.h), by the line's form; a body
# with any other line (a call of several arguments, a compare, a select, a value from outside
# the body) keeps the tiles.  FLOAT: a float literal, as the ops table writes them.
_NAME = r"[vx]\d+"
_FLOAT = r"(?:\d+\.\d*(?:e[-+]?\d+)?f|0x[0-9a-f.]+p[-+]?\d+f)"
_OPERAND = rf"-?(?:{_NAME}|{_FLOAT})"
_ARITHMETIC = re.compile(rf"^const float ({_NAME}) = ({_OPERAND}(?: [-+*/] {_OPERAND})?);(  //.*)?$")
_ROUND = re.compile(rf"^const float ({_NAME}) = fj_round_to_half\(({_NAME}), fj_f16\(\)\);(  //.*)?$")
_CALL = re.compile(rf"^const float ({_NAME}) = (fj_\w+)\(({_NAME})\);(  //.*)?$")
_WIDEN = re.compile(rf"^const float ({_NAME}) = fj_convert<float>\(({_NAME})\);(  //.*)?$")


def half_vectors(text: str, index: str, first: str, start: str, widened, narrowed) -> list[str]:
    """The half vectors' body (half_tiles.h) for a tile body `text` after the half tiles'
    rewrite, or [] when a line is not arithmetic or a one-argument function of the body's
    own float values."""
    vector = "fj_half_tile_floats"
    tile_at = re.escape(f"[{index} - {first}]")
    out = []
    for line in text.splitlines():
        load = re.match(rf"^const float ({_NAME}) = fj_wide(\d+){tile_at};(  //.*)?$", line)
        store = re.match(rf"^fj_tile(\d+){tile_at} = ({_NAME});$", line)
        if load and int(load.group(2)) in widened:
            out.append(f"const {vector} {load.group(1)} = fj_half_load(in{load.group(2)} + {start} + fj_k, fj_count);")
        elif store and int(store.group(1)) in narrowed:
            out.append(f"fj_half_store(out{store.group(1)} + {start} + fj_k, {store.group(2)}, fj_count);")
        elif m := _WIDEN.match(line):
            out.append(f"const {vector} {m.group(1)} = {m.group(2)};{m.group(3) or ''}")
        elif m := _ROUND.match(line):
            out.append(f"const {vector} {m.group(1)} = fj_half_round({m.group(2)});{m.group(3) or ''}")
        elif m := _CALL.match(line):
            out.append(f"const {vector} {m.group(1)} = fj_half_each({m.group(3)}, [](float t) {{ return {m.group(2)}(t); }});"
                       f"{m.group(4) or ''}")
        elif m := _ARITHMETIC.match(line):
            out.append(f"const {vector} {m.group(1)} = {m.group(2)};{m.group(3) or ''}")
        else:
            return []
    declared = {m.group(1) for line in out if (m := re.match(rf"^const {vector} ({_NAME}) = ", line))}
    used = set(re.findall(rf"\b{_NAME}\b", "\n".join(line.split("//")[0] for line in out)))
    return out if used <= declared else []
