"""Row groups: the host's path of row kernels over short rows.

A row kernel gives each row a team of threads (one thread on the host) that loops over the
row with a few accumulator lanes and then combines them.  For rows of a few elements (a
softmax over 10 classes, an argmax of 10 logits) that set-up and combining costs more than
the row itself, and the loop is too short to vectorise.  Here the host takes FJ_ROW_GROUP
rows at a time instead, one row per vector lane: every phase loops over the positions of
the row, and at each position over the group's rows (`FJ_GROUP_LANES`, vectorised across
rows), with one accumulator per row.  The final pass and the row stores loop the same way.

It is rendered from the same reductions and fused producers as the team code, with each
reduction's result an array over the group (`res0[g]`).  Values the team code keeps in
shared memory between passes (softmax's input and its exponentials) are kept on the stack
here, position by position (`group_cache0[r * FJ_ROW_GROUP + g]`): the first pass gathers
the group's elements from memory, later passes read whole vectors.  Like the stream path it
is a host path: the GPU and the emulation compile it out (FJ_ROW_GROUPS is 0 there).

Rows in place: where the first phase is a max, min, argmax or argmin of 4-byte inputs as they
are, a full group's rows are read where they lie instead of gathered position by position
(kernels/row_windows.h): as contiguous vectors whose overlapping windows combine in
registers where the host's 16-lane shuffles are quick (AVX-512, clang), and elsewhere turned
into columns, 8 rows at a time, whose lanes combine in one vertical chain (an argmax or
argmin of rows of 2 and 3: one scalar chain a row).  A group with a NaN, and the block's
partial last group, take the gathering code.

Flat groups: where the family's reductions are float32 max, min and sum (max and min in the
first phase), a full group keeps its values in the rows' own order instead (flat_path):
contiguous loads, stores and cache, reductions by windows of neighbouring vectors (a max or
min by columns where the host's shuffles are slow), and each row's result, or a value
computed from results alone (a log of a sum), spread back to the row's elements by permutes
(broadcast stores without AVX-512).  A softmax over rows of 10: 1067 -> 361 us on one core;
on a Zen 3 core without AVX-512, softmax over rows of 3 and 10 2.3 and 1.8 ms -> 1.3 and 1.4,
log_softmax 7.6 -> 1.4 ms (the gathering code takes a log per element there).  An input
broadcast along the rows (a bias) is read from a table of the group's positions, filled once
per block (FlatReads: argmax of x + b over rows of 10, one core, 747 -> 245 us).  Rows
of 16 to 96 elements, and families with float32 sums (accumulated in float64), fold each row
along itself instead (fj_flat_rows, `folds_rows`), a vector at a time, and the group's 16
rows' partials together, reading an input's rows or the pass's cache where the pass has them.
"""
from __future__ import annotations

import re

import numpy as np

from . import ops
from .fusion import NotPersistent
from .indexing import Sym, aff, delinearize, linearize
from .ir import Var
from .readhooks import NamedReads
from .templates import fill, indent

# Which kernels take the path, as measured here (rows of 3 to 32, 1M float32 elements): a max,
# min, argmax or argmin in the kernel (rows of 10: argmax 1.8 -> 0.4 ms, softmax 2.5 -> 0.8 ms,
# logsumexp 3.3 -> 0.7 ms) on rows up to SHORT_ROW elements, or up to MAX_ROW in a one-phase
# kernel without outputs of the operand's shape (a softmax of rows of 32 gained nothing: its
# team code vectorises along the row).  Sums alone stay with the team code, whose accumulator
# lanes along the row vectorise well enough (rows of 10: 0.24 ms against 0.49 in groups).
SHORT_ROW = 16
MAX_ROW = 32
# Flat groups that fold each row along itself (fj_flat_rows), as measured here (1M float32 on
# one core, against the team code or the windows): rows of 16 to MEDIUM_ROW (softmax over rows
# of 24 800 -> 350 us, of 96 419 -> 320; layernorm over 24 429 -> 247; a sum over 48 94 -> 55;
# from rows of 128 the team code's loop along the row is as quick or quicker: layernorm over
# 192 137 us against 307), and families with float32 sums in float64, which the windows do
# not add, from rows of FOLD_ROW (layernorm over 10 662 -> 339 us; over 2 and 3 the team code
# stays quicker), or ORDERED_FOLD_ROW with a max or min (a max, min and sum over 8 419 -> 331;
# over 6 the gathering code stays quicker, 409 against 460).  Float32 families below 16 keep
# the windows (softmax over 10 339 us against 455).
MEDIUM_ROW = 96
FOLD_ROW = 4
ORDERED_FOLD_ROW = 8
ORDERED = {"reduce_max", "reduce_min", "argmax", "argmin"}
ROW = "    const idx_t i = FJ_GROUP_ROW(idx_t, i0, g);"  # the row of lane g


def takes_groups(spec, phases, row_len: int) -> bool:
    ordered = any(red.eqn.primitive in ORDERED for reds in phases for red in reds)
    if folds_rows(spec, phases, row_len):
        return True
    return ordered and (row_len <= SHORT_ROW or (row_len <= MAX_ROW and len(phases) == 1 and not spec.full))


def folds_rows(spec, phases, row_len: int) -> bool:
    """Whether a flat group folds each row along itself (fj_flat_rows) rather than by windows
    (fj_flat_sum, fj_flat_extreme): rows longer than a vector, and families with float64
    accumulators (windows add float32).  Families with an argmax or argmin do not fold."""
    if not flat_eligible(spec, phases, row_len) or any(red.is_arg for reds in phases for red in reds):
        return False
    wide = any(np.dtype(red.acc_dtype) == np.float64 for reds in phases for red in reds)
    ordered = any(red.eqn.primitive in ORDERED for reds in phases for red in reds)
    return row_len >= SHORT_ROW or (wide and row_len >= (ORDERED_FOLD_ROW if ordered else FOLD_ROW))


def window_sources(spec, w, reds, row_len: int) -> dict | None:
    """{id(source): parameter name} of the first phase's operands if the phase can read the
    rows in place (kernels/row_windows.h), else None: every reduction a max, min,
    argmax or argmin of an input's elements as they are (4 bytes each, the operand's shape,
    the reduced axes innermost, so a group's rows are contiguous in it)."""
    nd = len(spec.in_shape)
    if not 2 <= row_len <= MAX_ROW or tuple(spec.reduce_axes) != tuple(range(nd - len(spec.reduce_axes), nd)):
        return None
    sources = {}
    for red in reds:
        v = red.operand
        if (red.eqn.primitive not in ORDERED or id(v) not in w.source_names or tuple(v.shape) != tuple(spec.in_shape)
                or v.dtype.itemsize != 4 or v.dtype.kind not in "fiu" or red.acc_dtype != v.dtype
                or (not red.is_arg and red.out.dtype != v.dtype)):
            return None
        sources[id(v)] = w.source_names[id(v)]
    return sources


def window_phase(reds, sources: dict, row_len: int) -> list[str]:
    """The first phase on the rows in place (fj_flat_extreme, fj_flat_arg: windows where the
    host's shuffles are quick, columns elsewhere), in a full group whose elements have no NaN:
    the opening of an `if` whose `else` is the gathering code."""
    lines = ["// rows read in place: windows or columns, without gathers (kernels/row_windows.h)"]
    starts = {name: f"{name} + (size_t)i0 * {row_len}" for name in sources.values()}
    clean = " && ".join(f"!fj_flat_has_nan<{row_len}>({at})" for at in starts.values())
    lines.append(f"if (FJ_GROUP_FULL(i0) && {clean}) {{")
    for red in reds:
        name = sources[id(red.operand)]
        highest = "true" if red.eqn.primitive in ("reduce_max", "argmax") else "false"
        call = "fj_flat_arg" if red.is_arg else "fj_flat_extreme"
        lines.append(f"  {call}<{row_len}, {highest}>(res{red.k}, {starts[name]});  // {red.eqn.primitive}")
    return lines


def group_path(w, spec, ix, phases, slots) -> str:
    """The row-groups text for the row template's `groups` slot ('' when the kernel does not
    take the path).  `phases`: the reductions of each phase (accumulators.reductions_of); `slots`:
    (dtype, value ids) of each array of values the team code keeps between passes (its
    shared-memory cache): here arrays on the stack, position by position, so a later pass
    reads the group's values at a position as one vector."""
    from .accumulators import reduce_count
    from .reduce import RowCache, epilogue_index
    row_len = reduce_count(spec)
    if not takes_groups(spec, phases, row_len):
        return ""
    saved = w.body, w.loads, w.cache, w.row_body
    names = {i: f"group_cache{k}" for k, (_, ids) in enumerate(slots) for i in ids} if row_len else {}
    cache = RowCache(tuple(ix.element), spec.in_shape, names, row_len, position="r * FJ_ROW_GROUP + g")
    w.cache, w.row_body = cache, None
    try:
        lines, results = [], {}
        if names:
            lines += [f"{ops.ctype(dtype)} group_cache{k}[{row_len} * FJ_ROW_GROUP];"
                      for k, (dtype, _) in enumerate(slots)]
        # Rows longer than a vector take the flat groups where they can (fj_flat_rows reads each
        # row once; the windows' steps walk the whole group once per step).
        folds = folds_rows(spec, phases, row_len)
        windows = window_sources(spec, w, phases[0], row_len) if not names and not folds else None
        for reds in phases:
            for red in reds:
                t = red.arg_t if red.is_arg else ops.ctype(red.out.dtype)
                lines.append(f"{t} res{red.k}[FJ_ROW_GROUP];")
        flat = flat_path(w, spec, phases, names, row_len, ix) if not windows else None
        head, lines = lines, []
        for p, reds in enumerate(phases):
            lines.append(f"// phase {p}: {', '.join(red.eqn.primitive for red in reds)}")
            gather = []
            for red in reds:
                gather += red.declare_lanes("FJ_ROW_GROUP")
            cache.begin_pass(p)
            w.new_scope(results)
            w.body = []
            for red in reds:
                w.body.append(red.step(*red.lane("g"), red.read(w, ix.element)))
            cache.flush(w)
            gather += ["for (idx_t r = 0; r < reduce_n; ++r) {", "  FJ_GROUP_LANES(g) {",
                       ROW, *indent(w.body, 2).splitlines(), "  }", "}"]
            for red in reds:
                t = red.arg_t if red.is_arg else ops.ctype(red.out.dtype)
                value = f"lanes_arg{red.k}[g]" if red.is_arg else f"fj_convert<{t}>(lanes{red.k}[g])"
                gather.append(f"FJ_GROUP_LANES(g) res{red.k}[g] = {value};")
                results[(id(red.out), ix.out)] = f"res{red.k}[g]"
            if p == 0 and windows:
                lines += window_phase(reds, windows, row_len)
                lines += ["} else {", *indent(gather, 1).splitlines(), "}"]
            else:
                lines += gather
        if spec.full:
            cache.begin_pass(len(phases))
            w.new_scope(results)
            w.body = []
            for k, out in enumerate(spec.outputs):
                if id(out) in spec.full:
                    value = w.read_output(out, ix.element)
                    w.body.append(f"out{k}[{w.index(linearize(ix.element, out.shape))}] = {value};")
            cache.flush(w)
            lines += ["// final pass: the outputs of the operand's shape", "for (idx_t r = 0; r < reduce_n; ++r) {",
                      "  FJ_GROUP_LANES(g) {", ROW,
                      *indent(w.body, 2).splitlines(), "  }", "}"]
        lines = head + (flat[0] + ["if (fj_flat) {", *indent(flat[1], 1).splitlines(), "} else {",
                               *indent(lines, 1).splitlines(), "}"] if flat else lines)
        cache.begin_pass(len(phases) + 1)
        w.new_scope(results)
        w.body = []
        address = w.index(ix.row_address)
        for red in (red for reds in phases for red in reds):
            if red.store is not None:
                w.body.append(f"out{red.store}[{address}] = res{red.k}[g];")
        for k, out in enumerate(spec.outputs):
            if id(out) in spec.epilogue:
                w.body.append(f"out{k}[{address}] = {w.read_output(out, epilogue_index(ix, out))};")
        body = indent(w.body, 2).splitlines()
        lines += ["if (FJ_GROUP_FULL(i0)) {  // the group's rows are i0 + g: contiguous stores",
                  "  FJ_GROUP_LANES(g) {", "    const idx_t i = i0 + (idx_t)g;", *body, "  }",
                  "} else {", "  FJ_GROUP_LANES(g) {", ROW, *body, "  }", "}"]
    finally:
        w.body, w.loads, w.cache, w.row_body = saved
    tables = indent(["// operands broadcast along the rows, by the flat groups' positions (FlatReads)", *flat[2]], 1) \
        if flat and flat[2] else ""
    return fill("row_groups.cu.in", row_len=row_len, tables=tables, body=indent(lines, 2))


# ---- flat groups ----

SPREAD = re.compile(r"fj_flat_spread<\d+>\((\w+), \w+\);$")  # a spread and its array's declaration
SPREAD_ARRAY = re.compile(r"\w+ (spread\w*)\[FJ_ROW_GROUP \* \d+\];$")
FLAT = {"reduce_max": "fj_flat_extreme<{L}, true>", "reduce_min": "fj_flat_extreme<{L}, false>",
        "argmax": "fj_flat_arg<{L}, true>", "argmin": "fj_flat_arg<{L}, false>", "reduce_sum": "fj_flat_sum<{L}>"}
FLAT_KIND = {"reduce_sum": 0, "reduce_max": 1, "reduce_min": 2}  # fj_flat_rows's Kind


def flat_eligible(spec, phases, row_len: int) -> bool:
    """A family of float32 max, min and sum reductions (max and min in the first phase only)
    over short contiguous rows (softmax, log_softmax, logsumexp over 10 classes; a max and a
    sum of one row), or an argmax or argmin of float32 values computed in the kernel (of a
    bias add, of a scaled input) over rows of up to SHORT_ROW, in the first phase, with
    4-byte indices."""
    nd = len(spec.in_shape)
    if not 2 <= row_len <= MEDIUM_ROW or tuple(spec.reduce_axes) != tuple(range(nd - len(spec.reduce_axes), nd)):
        return False
    for p, reds in enumerate(phases):
        for red in reds:
            if red.is_arg:
                if (p > 0 or row_len > SHORT_ROW or np.dtype(red.operand.dtype) != np.float32
                        or np.dtype(red.out.dtype).itemsize != 4):
                    return False
                continue
            # float32 sums accumulate in float64 (accumulators.accumulator_dtype): fj_flat_rows only
            accumulators = (np.float32, np.float64) if red.eqn.primitive == "reduce_sum" else (np.float32,)
            if (red.eqn.primitive not in FLAT or (p > 0 and red.eqn.primitive != "reduce_sum")
                    or not all(np.dtype(d) == np.float32 for d in (red.operand.dtype, red.out.dtype))
                    or np.dtype(red.acc_dtype) not in accumulators):
                return False
    return True


def _rows_in_place(body: list, reds, L: int) -> dict:
    """{reduction k: where its operand's values for the group lie in the rows' order}, for the
    reductions of a flat pass whose operand is an input as it is (`const float x = in0[f];`:
    the input's rows from the group's first) or a value the pass keeps in a cache array
    (`group_cache0[e] = v;`), so that fj_flat_rows reads them there instead of a copy.  Maps
    the line `flat_vals{k}[e] = value;` of each (or `= (double)value;`: fj_flat_rows converts
    float32 to a float64 accumulator itself) to its place."""
    places = {}
    for line in body:
        load = re.fullmatch(r"const float (\w+) = (in\d+)\[f\];", line)
        if load:
            places.setdefault(load.group(1), f"{load.group(2)} + i0 * {L}")
        kept = re.fullmatch(r"(group_cache\d+)\[e\] = (\w+);", line)
        if kept:
            places.setdefault(kept.group(2), kept.group(1))
    found = {}
    for red in reds:
        copy = next((re.fullmatch(rf"flat_vals{red.k}\[e\] = (?:\(double\))?(\w+);", line) for line in body
                     if line.startswith(f"flat_vals{red.k}[e] = ")), None)
        if copy and copy.group(1) in places:
            found[red.k] = places[copy.group(1)]
    return found


def row_values(spec, producers, ready: set) -> list:
    """The kernel's values of one element per row (the rows' shape, kept dims or not) computed
    from the reductions in `ready` alone (softmax's log of a row's sum), in order."""
    from .fusion import REDUCTIONS
    rows = spec.size
    kept = tuple(1 if d in spec.reduce_axes else n for d, n in enumerate(spec.in_shape))
    level, values = set(ready), []
    for e in spec.eqns:
        ins = [a for a in e.inputs if isinstance(a, Var)]
        if (e.primitive in REDUCTIONS or len(e.outputs) != 1
                or tuple(e.outputs[0].shape) not in (tuple(spec.shape), kept) or e.outputs[0].size != rows
                or not all(id(a) in level or a.size == 1 for a in ins)):
            continue
        level.add(id(e.outputs[0]))
        values.append(e.outputs[0])
    return values


MAX_TABLES = 8  # row tables of one flat kernel (FJ_ROW_GROUP * L values each, on the stack)


def _periodic_in(address, f: Sym, L: int) -> bool:
    """Whether the address depends on the flat index f through (f / s) % m terms alone whose
    period s m divides the row length L: the same at f and at f's position in its group."""
    return bool(address.terms) and all(
        s.kind == "delin" and s.args[0] == aff(f) and s.args[2] is not None and L % (s.args[1] * s.args[2]) == 0
        for s, _ in address.terms)


class FlatReads(NamedReads):
    """The flat loops' read hook: the row cache's (reduce.RowCache: `rows`), and an input read
    at an address that repeats with every row (an operand broadcast along the rows: a bias,
    a row of weights) read from a table of the group's positions (`fj_ftab0[e]`), filled
    once per block, instead of at the flat index modulo the row length (a division and a
    gather per element).  Its arrays: (input name, address) -> table name."""

    def __init__(self, rows, f: Sym, L: int):
        super().__init__("fj_ftab", MAX_TABLES)
        self.rows, self.f, self.L = rows, f, L
        self.types: dict = {}  # table name -> C type

    def load(self, w, var, idx):
        cached = self.rows.load(w, var, idx)
        if cached is not None or id(var) not in w.source_names:
            return cached
        address = linearize(idx, var.shape)
        table = self.array((w.source_names[id(var)], address)) if _periodic_in(address, self.f, self.L) else None
        if table is None:
            return None
        self.types[table] = ops.ctype(var.dtype)
        return w.emit("x", self.types[table], f"{table}[e]")

    def loaded(self, w, var, idx, name):
        self.rows.loaded(w, var, idx, name)

    def fills(self, w) -> list[str]:
        """Each table's declaration and the loop that fills it: f runs over the first group's
        positions, where the address is what it is at those positions in every group."""
        lines = []
        for (source, address), name in self.arrays.items():
            w.body = []
            w.new_scope()
            at = w.index(address)
            lines += [f"{self.types[name]} {name}[FJ_ROW_GROUP * {self.L}];",
                      f"for (int e = 0; e < FJ_ROW_GROUP * {self.L}; ++e) {{", "  const idx_t f = (idx_t)e;",
                      *indent([*w.body, f"{name}[e] = {source}[{at}];"], 1).splitlines(), "}"]
        return lines


def flat_path(w, spec, phases, names: dict, row_len: int, ix):
    """A full group's phases with its values in the rows' own order (position e = g * L + r
    of the group's L vectors) instead of position by position: every load and store of the
    operand's shape is contiguous, each phase's reductions combine windows of neighbouring
    vectors in registers (kernels/row_windows.h: fj_flat_extreme, fj_flat_sum) and a later
    pass reads a row's result spread to its positions by one permute per vector
    (fj_flat_spread).  (opening lines, lines of the full group's branch, lines filling its
    row tables once per block: FlatReads), or None where the kernel does not take it; the
    `else` branch is the gathering code (a partial group, a NaN under a max or min)."""
    from .reduce import RowCache
    folds = folds_rows(spec, phases, row_len)
    if not folds and not (row_len <= SHORT_ROW and flat_eligible(spec, phases, row_len) and all(
            np.dtype(red.acc_dtype) == np.float32 for reds in phases for red in reds)):
        return None
    L = row_len
    rows = spec.size
    f = Sym("loop", ("f",), 0, max(rows * L - 1, 0))
    element = delinearize(aff(f), spec.in_shape)
    out_at = tuple(e for d, e in enumerate(element) if d not in spec.reduce_axes)
    cache = RowCache(tuple(element), spec.in_shape, names, L, position="e")
    reads = FlatReads(cache, f, L)
    saved = w.body, w.loads, w.cache, w.row_body, w.memo, w.sym_names, set(w.variant)
    w.cache, w.row_body = reads, None
    w.variant |= {"f", "e"}
    loop = [f"_Pragma(\"omp simd\") for (int e = 0; e < FJ_ROW_GROUP * {L}; ++e) {{",
            f"  const idx_t f = i0 * {L} + (idx_t)e;"]
    results: dict = {}
    opening, branch = [], []
    rows_results: dict = {}  # (value id, row index) -> its per-row array, for row_values
    spread_ids: set = set()

    def spread_row_values(ready):
        """Each row value computed once per row (16 lanes) and spread to the row's positions,
        instead of once per element (a log, a reciprocal)."""
        lines = []
        for v in row_values(spec, w.producers, ready):
            if id(v) in spread_ids or np.dtype(v.dtype).itemsize != 4:
                continue
            at_row = ix.out if tuple(v.shape) == tuple(spec.shape) else tuple(
                aff(0) if d in spec.reduce_axes else e for d, e in enumerate(ix.element))
            w.new_scope(rows_results)
            w.body = []
            value = w.read(v, at_row)
            n = len(spread_ids)
            t = ops.ctype(v.dtype)
            lines += [f"{t} rowv{n}[FJ_ROW_GROUP];", "FJ_GROUP_LANES(g) {", "  const idx_t i = i0 + (idx_t)g;",
                      *indent(w.body, 1).splitlines(), f"  rowv{n}[g] = {value};", "}",
                      f"{t} spreadv{n}[FJ_ROW_GROUP * {L}];", f"fj_flat_spread<{L}>(spreadv{n}, rowv{n});"]
            rows_results[(id(v), at_row)] = f"rowv{n}[g]"
            flat_at = out_at if tuple(v.shape) == tuple(spec.shape) else tuple(
                aff(0) if d in spec.reduce_axes else e for d, e in enumerate(element))
            results[(id(v), flat_at)] = f"spreadv{n}[e]"
            spread_ids.add(id(v))
        return lines

    try:
        for p, reds in enumerate(phases):
            if p > 0:
                branch += spread_row_values({id(red.out) for reds_ in phases[:p] for red in reds_})
            cache.begin_pass(p)
            w.new_scope(results)
            w.body = []
            for red in reds:
                value = red.read(w, element)
                w.body.append(f"flat_vals{red.k}[e] = {value};")
            cache.flush(w)
            sources = {red.k: f"flat_vals{red.k}" for red in reds}
            if folds:  # fj_flat_rows reads the rows where the pass has them already
                sources.update(_rows_in_place(w.body, reds, L))
            w.body = [line for line in w.body if not any(
                line.startswith(f"flat_vals{k}[e] = ") for k, src in sources.items() if src != f"flat_vals{k}")]
            body = [f"// phase {p} (flat): {', '.join(red.eqn.primitive for red in reds)}", *loop,
                    *indent(w.body, 1).splitlines(), "}"]
            reduce = [(f"{FLAT[red.eqn.primitive].format(L=L)}" if not folds
                       else f"fj_flat_rows<{L}, {FLAT_KIND[red.eqn.primitive]}, {ops.ctype(red.acc_dtype)}>")
                      + f"(res{red.k}, {sources[red.k]});"
                      for red in reds]
            spread = [f"fj_flat_spread<{L}>(spread{red.k}, res{red.k});" for red in reds]
            for red in reds:
                results[(id(red.out), out_at)] = f"spread{red.k}[e]"
                rows_results[(id(red.out), ix.out)] = f"res{red.k}[g]"
                if sources[red.k] == f"flat_vals{red.k}":
                    opening.append(f"float flat_vals{red.k}[FJ_ROW_GROUP * {L}];")
                t = red.arg_t if red.is_arg else "float"
                opening.append(f"{t} spread{red.k}[FJ_ROW_GROUP * {L}];")
            if p == 0:  # computed before the choice: max and min windows need values without NaN
                ordered = [red for red in reds if red.eqn.primitive != "reduce_sum" and not folds]
                nan = " || ".join(f"fj_flat_has_nan<{L}>(flat_vals{red.k})" for red in ordered)
                opening += ["bool fj_flat = FJ_GROUP_FULL(i0);", "if (fj_flat) {", *indent(body, 1).splitlines()]
                opening += ([f"  fj_flat = !({nan});"] if nan else []) + ["}"]
                branch += reduce + spread
            else:
                branch += body + reduce + spread
        if spec.full:
            branch += spread_row_values({id(red.out) for reds_ in phases for red in reds_})
            cache.begin_pass(len(phases))
            w.new_scope(results)
            w.body = []
            for k, out in enumerate(spec.outputs):
                if id(out) in spec.full:
                    value = w.read_output(out, element)
                    w.body.append(f"out{k}[{w.index(linearize(element, out.shape))}] = {value};")
            cache.flush(w)
            branch += ["// final pass (flat)", *loop, *indent(w.body, 1).splitlines(), "}"]
        fills = reads.fills(w)
    except NotPersistent:  # a result read at another row's index: the gathering code only
        return None
    finally:
        w.body, w.loads, w.cache, w.row_body, w.memo, w.sym_names, w.variant = saved
    # A row value no pass reads at its elements (softmax's max, read as max(-inf, max), or a
    # step towards another row value) is not spread.
    spreads = [m.group(1) for line in branch for m in [SPREAD.match(line)] if m]
    unread = {name for name in spreads if not any(f"{name}[e]" in line for line in branch)}
    dead = {line for line in opening + branch for m in [SPREAD.match(line) or SPREAD_ARRAY.match(line)]
            if m and m.group(1) in unread}
    return [line for line in opening if line not in dead], [line for line in branch if line not in dead], fills
