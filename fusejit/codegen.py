"""Codegen: one interpreter that walks a kernel's fused equations and emits CUDA C++ strings.

`KernelWriter.read(atom, index)` returns the name of a C temporary holding `atom`'s
element at the symbolic `index`.  Shape primitives only map the index and read their
operand; elementwise primitives read their operands at the same index and emit one
statement from the table in `ops.py`.  Reads are memoised on (value, canonical index),
so common subexpressions and repeated loads are shared.  Values whose index holds no
loop symbol are loop-invariant and go before the loop.
"""
from __future__ import annotations

import collections
import dataclasses
import math

import numpy as np

from . import ops
from .errors import UnsupportedError
from .fusion import KernelSpec, NotPersistent
from .indexing import Affine, Sym, aff, delinearize, linearize, loop_symbol
from .ir import Literal, Var
from .launch import Layout
from .pieces import pieces_path
from .reduce import render_reduction
from .scan import render_scan
from .templates import fill, indent, paren
from .shaperules import RULES
from .scatter import render_scatter
from .topk import render_top_k
from .halftiles import half_tile_path
from .streamstores import stream_path
from .periodic import periodic_path
from .transposes import transposes_path
from .columnvalues import column_values_path
from .vectorize import GRID_MARGIN, vector_path

MAX_STATEMENTS = 1500
INT32_LIMIT = 2**31 - 1
# A map, scan or reduction over at most this many elements compiles at -O1 on the host
# (FJ_SMALL_KERNEL_BEGIN in kernels/cpu_prelude.h): its loops are too short for vector code to
# pay, and optimising them for speed would double the compile.
SMALL_KERNEL_ELEMENTS = 64


class KernelTooLarge(Exception):
    """The fused kernel would be too long; `var` is the value best materialized instead."""

    def __init__(self, var: Var):
        self.var = var
        super().__init__("kernel too large")


@dataclasses.dataclass(frozen=True)
class Param:
    kind: str          # 'in' | 'out' | 'scalar' | 'scratch'
    name: str
    ctype: str         # the C type of the argument's value (pointer types for buffers)
    var: Var | None = None
    value: int | None = 0  # a scalar's value (element counts); None: the launch plan sets it
    dtype: np.dtype | None = None  # a scratch buffer's element type
    extent: str = ""   # a scratch buffer's length: 'partials' (rows x segments) or 'rows'
    zero: bool = False  # a scratch buffer that must start zeroed


@dataclasses.dataclass(frozen=True, eq=False)
class RenderedKernel:
    spec: KernelSpec
    source: str
    params: tuple[Param, ...]
    index64: bool
    loads: int
    stores: int
    block: int
    layout: Layout
    small: bool = False  # compiled at -O1 on the host (SMALL_KERNEL_ELEMENTS)

    @property
    def name(self) -> str:
        return self.spec.name


ROWS_MIN_INNER = 16   # a map kernel iterates rows of at least this many elements ...
ROWS_MIN_OUTER = 64   # ... when there are at least this many rows,
FEW_ROWS_MIN_INNER = 1024  # or at least two rows of at least this many elements


def rows_split(shape) -> int | None:
    """The row length (a product of trailing dimensions, at least ROWS_MIN_INNER) of a map
    kernel iterated as rows and columns, or None for a flat loop: rows pay where a flat index
    would be divided by the row length per element, where an operand broadcast along the
    rows is read at the column alone (a contiguous vector load on the host; with a flat index,
    even a power-of-two row length's, the host gathered it: x * b[None, :] over 1024 x 1024
    290 -> 82 us on one core, gelu_bias over 8192 x 4096 12.5 -> 7.1 ms) and where the kernel
    reads at clamped indices (pad, concatenate): a clamp of the row index is then
    one per row, and the host's pieces path cuts the columns where a clamp of the column
    changes form (a gradient's pads of several blocks into one array).  A flat loop of the
    same elements is no quicker (exp over rows of 16, 32, 64: 191 against 180 us).  A few
    long rows are rows too (the host splits the elements evenly, rows or not): a flip of
    63 x 16000 floats gathered its reversed row element by element."""
    inner = 1
    for d in reversed(shape):
        if inner >= ROWS_MIN_INNER:
            break
        inner *= d
    outer = math.prod(shape) // inner if inner else 0
    if inner >= ROWS_MIN_INNER and outer >= ROWS_MIN_OUTER:
        return inner
    return inner if inner >= FEW_ROWS_MIN_INNER and outer >= 2 else None


def needs_index64(spec: KernelSpec) -> bool:
    # A grid-stride loop steps past n before it stops: 32-bit indices leave room for a step.
    return (any(v.size > INT32_LIMIT for v in spec.sources + spec.outputs)
            or spec.size > INT32_LIMIT - GRID_MARGIN)


class KernelWriter:
    def __init__(self, spec: KernelSpec, producers, index64: bool):
        self.spec = spec
        self.producers = producers
        self.index64 = index64
        self.index_ctype = "long long" if index64 else "int"
        self.source_names = {id(v): f"in{k}" for k, v in enumerate(spec.sources)}
        self.memo: dict = {}
        self.sym_names: dict[Sym, str] = {}
        self.variant: set[str] = {"i", "r"}
        self.prologue: list[str] = []
        self.body: list[str] = []
        # A row kernel's pass sets row_body to a list: values computed from the row's reduction
        # results alone (row_level names) go there, before the pass's loop over the row, not
        # into every element's statements (log_softmax's log of the row's sum).
        self.row_body: list[str] | None = None
        self.row_level: set[str] = set()
        self.counts = collections.Counter()
        self.requests = collections.Counter()
        self.loads = 0
        self.reading: list[Var] = []    # the values being computed, outermost first
        self.computed: list[Var] = []   # the values computed, in order
        self.results: set[int] = set()  # ids of values the kernel computes outside the fused loop
        self.cache = None  # a hook for what some kernels keep elsewhere (reduce.RowCache, devloop.LoopSources)
        self.affine: dict[str, Affine] = {}  # C values known as affine functions of the loop symbols (indexvalues)

    # ---- statements ----
    def emit(self, prefix: str, ctype: str, expr: str, comment: str = "", invariant: bool = False,
             row_level: bool = False) -> str:
        name = f"{prefix}{self.counts[prefix]}"
        self.counts[prefix] += 1
        line = f"const {ctype} {name} = {expr};" + (f"  // {comment}" if comment else "")
        if invariant:
            self.prologue.append(line)
        elif row_level and self.row_body is not None:
            self.row_body.append(line)
            self.row_level.add(name)
        else:
            self.body.append(line)
        if not invariant:
            self.variant.add(name)
        if len(self.prologue) + len(self.body) > MAX_STATEMENTS:
            raise KernelTooLarge(self.most_requested())
        return name

    def is_invariant(self, *exprs: str) -> bool:
        return not any(e in self.variant for e in exprs)

    def is_row_level(self, *exprs: str) -> bool:
        """Whether a value of `exprs` is the same for every element of a row kernel's row."""
        return self.row_body is not None and all(e not in self.variant or e in self.row_level for e in exprs)

    def most_requested(self) -> Var:
        """The value to store instead of recomputing: the one read most often (at several
        indices), else, in a long chain, the deepest one being computed now."""
        outputs = {id(v) for v in self.spec.outputs}
        for var_id, count in self.requests.most_common():
            if count < 2:
                break
            var = self.var_by_id.get(var_id)
            if var is not None and var_id not in outputs:
                return var
        for var in reversed(self.reading):
            if id(var) in self.var_by_id and id(var) not in outputs:
                return var
        done = [v for v in self.computed if id(v) not in outputs]
        if done:  # the chain is complete but too long: store its middle
            return done[len(done) // 2]
        raise RuntimeError("kernel too large with nothing to materialize")

    # ---- index expressions ----
    def int_text(self, v: int) -> str:
        return f"{v}LL" if abs(v) > INT32_LIMIT else str(v)

    def sym(self, s: Sym) -> str:
        if s.kind in ("loop", "value"):
            return s.args[0]
        if s in self.sym_names:
            return self.sym_names[s]
        if s.kind == "delin":
            f, stride, extent = s.args
            text = self.index(f)
            if stride != 1:
                text = f"{paren(text)} / {self.int_text(stride)}"
            if extent is not None:
                text = f"{paren(text)} % {self.int_text(extent)}"
        else:  # clamp
            f, lo, hi = s.args
            text = f"fj_clamp_index<idx_t>({self.index(f)}, {self.int_text(lo)}, {self.int_text(hi)})"
        name = f"j{self.counts['j']}"
        self.counts["j"] += 1
        inner = aff(s.args[0])
        if not inner.is_const and self.is_row_level(*self.index_names(inner)):
            self.row_body.append(f"const idx_t {name} = {text};")
            self.row_level.add(name)
        else:
            self.body.append(f"const idx_t {name} = {text};")
        self.variant.add(name)
        self.sym_names[s] = name
        return name

    def index_names(self, f: Affine) -> list[str]:
        """The names an index expression reads (its symbols', as rendered)."""
        return [self.sym(s) for s, _ in f.terms]

    def index(self, f: Affine) -> str:
        f = aff(f)
        parts = []
        for s, c in f.terms:
            name = self.sym(s)
            term = name if abs(c) == 1 else f"{name} * {self.int_text(abs(c))}"
            parts.append(("- " if c < 0 else "+ ") + term)
        if f.const or not parts:
            parts.append(("- " if f.const < 0 else "+ ") + self.int_text(abs(f.const)))
        text = " ".join(parts)
        return text[2:] if text.startswith("+ ") else "-" + text[2:]

    # ---- values ----
    def read(self, atom, idx: tuple) -> str:
        if isinstance(atom, Literal):
            return ops.c_literal(atom.value, atom.dtype)
        idx = tuple(aff(e) for e in idx)
        key = (id(atom), idx)
        if key in self.memo:
            return self.memo[key]
        self.requests[id(atom)] += 1
        cached = self.cache.load(self, atom, idx) if self.cache is not None else None
        if cached is not None:
            name = cached
        elif id(atom) in self.source_names and atom.size == 0:
            # An empty source is never read at run time (its loops have no iterations), but a
            # load at a constant index would go before the loops: read nothing.
            name = ops.c_literal(0, atom.dtype)
        elif id(atom) in self.source_names:
            address = linearize(idx, atom.shape)
            at = self.index(address)
            name = self.emit("x", ops.ctype(atom.dtype), f"{self.source_names[id(atom)]}[{at}]",
                             invariant=address.is_const,
                             row_level=not address.is_const and self.is_row_level(*self.index_names(address)))
            self.loads += 1
        elif id(atom) in self.results:
            raise NotPersistent(self.spec.family, "a reduction result is read at another row's index")
        else:
            eqn, pos = self.producers[id(atom)]
            rule = RULES.get(eqn.primitive)
            if rule is None:
                raise UnsupportedError(f"fusejit has no codegen rule for primitive '{eqn.primitive}'",
                                       primitive=eqn.primitive, source=eqn.source)
            self.reading.append(atom)
            name = rule(self, eqn, pos, idx)
            self.reading.pop()
            self.computed.append(atom)
        if cached is None and self.cache is not None:
            self.cache.loaded(self, atom, idx, name)
        self.memo[key] = name
        return name

    def new_scope(self, results: dict | None = None, keep_row: bool = False) -> None:
        """Start a new C scope (a loop or block): values computed in the last one are gone,
        loop-invariant ones (in the prologue) stay, and with `keep_row` so do the row-level
        ones (a second loop over the same row).  `results` maps (value id, index) to the
        names of values computed outside the fused code, such as reduction results."""
        def kept(name):
            return name not in self.variant or (keep_row and name in self.row_level)
        self.memo = {k: v for k, v in self.memo.items() if kept(v)}
        self.sym_names = {s: v for s, v in self.sym_names.items() if v not in self.variant}
        for key, name in (results or {}).items():
            self.memo[key] = name
            self.variant.add(name)
            self.row_level.add(name)

    def render(self, block: int) -> RenderedKernel:
        spec = self.spec
        self.var_by_id = {id(v): v for e in spec.eqns for v in e.outputs}
        n = spec.size
        inner = rows_split(spec.shape)
        if inner:  # rows of `inner` elements: a row and a column index, no per-element division
            self.variant |= {"row", "col"}
            split = len(spec.shape) - [d for d in range(len(spec.shape) + 1)
                                       if math.prod(spec.shape[len(spec.shape) - d:]) == inner][0]
            idx = (delinearize(aff(Sym("loop", ("row",), 0, n // inner - 1)), spec.shape[:split])
                   + delinearize(aff(Sym("loop", ("col",), 0, inner - 1)), spec.shape[split:]))
        else:
            idx = delinearize(loop_symbol(n), spec.shape)
        # Over rows, what depends on the row alone (a load of a per-row operand, a log of it)
        # is computed once per row on the host, before the row's loop over its columns (GCC
        # did not hoist a log out of the vectorised loop: x - m - log(s) over 32 x 32000
        # took 0.94 ms); the GPU computes it per element as before.
        if inner:
            self.row_body, self.row_level = [], {"row"}
        own = self.index(linearize(idx, spec.shape))  # the flat address of the element computed
        for k, out in enumerate(spec.outputs):
            value = self.read_output(out, idx)
            self.body.append(f"out{k}[{own}] = {value};")
        row_body, self.row_body, self.row_level = self.row_body or [], None, set()
        element_body, self.body = self.body, row_body + self.body  # the other paths' body: per element
        params = self.buffer_params() + [Param("scalar", "n", self.index_ctype, value=n)]
        if inner:
            params.append(Param("scalar", "inner", self.index_ctype, value=inner))
        vector, start, width = vector_path(self, self.body, own, inner)
        # The host's path instead of the element loop: transposed tiles (rows) or periodic rows
        # (a flat loop over short rows), else the stream path, else the pieces.
        tiles = (transposes_path(self, spec.shape[:split], spec.shape[split:], inner)
                 or periodic_path(self, spec.shape[:split], spec.shape[split:], False) if inner
                 else periodic_path(self, spec.shape[:1], spec.shape[1:], True))
        # Half tiles over the stream path, the pieces over the half tiles (a float16 pad of
        # 1024 x 1000 took 1.0 ms in half tiles, its clamps in every element, and 0.27 in
        # pieces), the stream path over the pieces.
        pieces = "" if tiles else pieces_path(self, spec.shape[:split] if inner else (),
                                              spec.shape[split:] if inner else spec.shape, inner)
        halves = "" if tiles or pieces else half_tile_path(self, self.body, own, inner)
        stream = "" if tiles or halves else stream_path(self, self.body, own, inner)
        pieces = "" if stream else pieces
        columns = ("" if tiles or halves or stream or pieces or not inner
                   else column_values_path(row_body, element_body, inner))
        if vector or stream or pieces or tiles or halves or columns:  # paths that leave the element loop the elements from fj_from on
            vector, start = "  idx_t fj_from = 0;\n" + vector + (tiles or halves or stream or pieces or columns), "fj_from"
        min_blocks = 1 if len(self.body) > LONG_BODY_LINES else MIN_BLOCKS
        source = fill_kernel(
            self, "elementwise_rows.cu.in" if inner else "elementwise.cu.in",
            f"{len(spec.outputs)} output(s) of shape {list(spec.shape)}, "
            f"{self.loads} load(s) and {len(spec.outputs)} store(s) per element"
            + (f", {width} per thread and step on the vector path" if width > 1 else ""),
            block, params, min_blocks, body=indent(element_body if inner else self.body, 2 + bool(inner)),
            row_body=indent(row_body, 2), vector=vector, start=start,
            stream_end=(f"#endif  // {tiles.split(None, 2)[1]}\n" if tiles else
                        "#endif  // FJ_HALF_TILES\n" if halves else
                        "#endif  // FJ_STREAM_STORES\n" if stream else
                        "#endif  // FJ_COLUMN_PIECES\n" if pieces else
                        "#endif  // FJ_COLUMN_VALUES\n" if columns else ""))
        return RenderedKernel(spec, source, tuple(params), self.index64,
                              self.loads, len(spec.outputs), block, Layout("map", n, width))

    def buffer_params(self) -> list:
        """The kernel's buffer parameters: its sources, then its outputs."""
        spec = self.spec
        return ([Param("in", f"in{k}", f"const {ops.ctype(v.dtype)}*", v) for k, v in enumerate(spec.sources)]
                + [Param("out", f"out{k}", f"{ops.ctype(v.dtype)}*", v) for k, v in enumerate(spec.outputs)])

    def fused_summary(self) -> str:
        """The fused primitives with their counts, for the kernel's header comment."""
        fused = collections.Counter(e.primitive for e in self.spec.eqns)
        return ", ".join(f"{p} x{c}" if c > 1 else p for p, c in fused.items()) or "(copy)"

    def read_output(self, out: Var, idx) -> str:
        """A stored value is computed from its producer even when other kernels load it."""
        if id(out) in self.source_names:  # a cut: computed here, loaded by later kernels
            eqn, pos = self.producers[id(out)]
            return RULES[eqn.primitive](self, eqn, pos, tuple(aff(e) for e in idx))
        return self.read(out, idx)


# Blocks per multiprocessor the launch bounds promise ptxas: with 256 threads, at most 128
# registers a thread, so fused code keeps its values in registers (no spills to local memory)
# and half the GPU's threads still fit (bandwidth-bound kernels need no more).
MIN_BLOCKS = 2
# A map kernel of more body lines than this promises one block per multiprocessor (255
# registers a thread): a long fused body (a special function's loop body) spilled at 128.
LONG_BODY_LINES = 64


def fill_kernel(w, template_name: str, description: str, block: int, params, min_blocks: int = MIN_BLOCKS,
                fix_scalars: bool = True, **sections) -> str:
    """Fill the slots every kernel template shares; `sections` are the template's own slots.
    `min_blocks` 1: a kernel whose occupancy matters less than its registers (a persistent row
    family, whose blocks hold rows in shared memory; a block loop, one block in all).
    `fix_scalars`: declare the scalars the specialization fixes as constants (fixed_scalars)."""
    fixed = fixed_scalars(params) if fix_scalars else []
    return fill(template_name, name=w.spec.name, description=description, fused=w.fused_summary(),
                block=block, min_blocks=min_blocks, params=render_params(params, fix_scalars),
                index_type=w.index_ctype, prologue=indent(fixed + w.prologue, 1), **sections)


def render_params(params, fix_scalars: bool) -> str:
    """The kernel's parameter list.  With `fix_scalars`, a scalar the specialization fixes
    (element and row counts) is still passed, so that every launch has one argument list, but
    unnamed: the kernel reads the constant that fixed_scalars declares."""
    return ", ".join(f"const {p.ctype} {p.name}" if p.kind == "scalar" and (p.value is None or not fix_scalars) else
                     f"const {p.ctype} /* {p.name} */" if p.kind == "scalar" else
                     f"{p.ctype} {p.name}" if p.kind == "scratch" else f"{p.ctype} FJ_RESTRICT {p.name}"
                     for p in params)


def fixed_scalars(params) -> list[str]:
    """Constants for the scalars the specialization fixes: loop bounds the compiler knows, which
    takes a quarter off the host's compile of a column reduction or a device loop.  Row
    reductions keep them as arguments: with the row length known, GCC's code for a two-phase
    row family (mean and variance) ran half as fast."""
    return [f"const {p.ctype} {p.name} = {p.value};  // fixed by the specialization"
            for p in params if p.kind == "scalar" and p.value is not None]


def render_kernel(spec: KernelSpec, producers, block: int, force_index64: bool = False) -> RenderedKernel:
    index64 = force_index64 or needs_index64(spec)
    if spec.kind == "scan":
        rendered = render_scan(KernelWriter(spec, producers, index64), block)
    elif spec.kind == "top_k":
        rendered = render_top_k(KernelWriter(spec, producers, index64), block)
    elif spec.kind == "scatter":
        rendered = render_scatter(KernelWriter(spec, producers, index64), block)
    elif spec.kind == "reduce":
        rendered = render_reduction(lambda: KernelWriter(spec, producers, index64), block)
    else:
        rendered = KernelWriter(spec, producers, index64).render(block)
    work = math.prod(spec.in_shape) if spec.kind in ("reduce", "top_k") else spec.size
    return dataclasses.replace(rendered, small=True) if work <= SMALL_KERNEL_ELEMENTS else rendered


def render_module(kernels) -> str:
    """One module of `kernels`; with several, each kernel and its host launcher sit in an
    `#if FJ_IN_PART(k)` block, so that the host can compile them in parts."""
    launchers, array_launchers, table, sources = [], [], [], []
    parted = len(kernels) > 1
    for k, kernel in enumerate(kernels):
        unpack = ", ".join(f"*({p.ctype}*)args[{j}]" for j, p in enumerate(kernel.params))
        unpack_arrays = ", ".join(
            f"*({p.ctype}*)args[{j}]" if p.kind == "scalar" else
            f"*({p.ctype}*)((char*)*(void**)args[{j}] + data_offset)" for j, p in enumerate(kernel.params))
        launchers.append(fill("launcher.cpp.in", name=kernel.name, unpack=unpack))
        array_launcher = fill("launcher_arrays.cpp.in", name=kernel.name, unpack_arrays=unpack_arrays)
        array_launchers.append(f"#if FJ_IN_PART({k})\n{array_launcher}#endif\n" if parted else array_launcher)
        table.append(f'  {{"{kernel.name}", {kernel.name}_launch}},\n')
        source = fill("small_kernel.cu.in", source=kernel.source) if kernel.small else kernel.source
        sources.append(f"#if FJ_IN_PART({k})\n{source}#endif\n" if parted else source)
    return fill("module.cu.in", count=len(kernels), parts=fill("module_parts.cu.in") if parted else "",
                kernels="\n".join(sources), launchers="".join(launchers),
                array_launchers="".join(array_launchers), table="".join(table))
