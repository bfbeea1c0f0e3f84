"""Codegen of reduction kernels: the operand's producers fused into the reduction loop.

Three strategies, chosen from the shapes (kernels/reduce_*.cu.in):
  rows     the operand's innermost axis is reduced: a team of threads per row, a few lanes
           of a warp for short rows, a warp for rows up to 1024 elements, the whole block
           for longer ones.  A row family's phases (softmax: max, then the sum of
           exponentials, then the quotients) run one after another in the same kernel;
           inputs read in several phases are kept in shared memory, so each element is
           read from global memory once.
  columns  the innermost axis is kept: a block owns a tile of consecutive outputs (32 on a
           GPU, 4096 on the host) and a segment of the reduced rows; its threads walk down
           the tile's columns (coalesced loads) and the partials of the block's slices meet
           in shared memory.  With fewer tiles than the device needs blocks, the rows are cut
           into segments whose partials the last block of a tile combines in segment order.
  split    a few long rows (a full reduction): each row is cut into segments, a block
           reduces a segment to a partial, and the last block of a row to finish combines
           the row's partials in segment order, so the result is the same run after run.
Every strategy combines in a fixed order, so a launch with the same grid and block sizes is
bit-for-bit deterministic.  The host fast mode runs the same code with one thread per block.
"""
from __future__ import annotations

import collections
import dataclasses

import numpy as np

from . import ops
from .accumulators import blocks_sum, reduce_count, reductions_of, sum_blocks
from .fusion import NotPersistent
from .indexing import Sym, aff, delinearize, linearize
from .ir import Var
from .launch import Layout
from .periodic import periodic_columns
from .rowgroups import group_path
from .rowvectors import rewrite_pass, vector_paths
from .templates import fill

WARP = 32
SPLIT_ROWS = 64        # fewer rows than this ...
SPLIT_MIN = 8192       # ... of at least this many elements: each row is split across blocks
TILE = 32              # outputs per block of a column reduction on a GPU (FJ_COLUMNS)
CACHE_BYTES = 32 * 1024  # shared memory a row kernel may use for cached inputs, per block
SHARED_BYTES = 48 * 1024  # static shared memory a block may declare (every CUDA architecture)
GPU_LANES = 4          # FJ_LANES of the GPU (cuda_prelude.h)
LANE_REGISTERS = 64    # 32-bit registers a GPU thread may give its lanes of accumulators


@dataclasses.dataclass
class Indices:
    """The symbolic indices of a reduction kernel: row `i`, reduced position `r`, and the
    operand element they name."""
    out: tuple
    element: tuple
    row_address: object

    @staticmethod
    def of(spec) -> "Indices":
        rows = spec.size
        reduce_n = reduce_count(spec)
        out = delinearize(aff(Sym("loop", ("i",), 0, max(rows - 1, 0))), spec.shape)
        red = iter(delinearize(aff(Sym("loop", ("r",), 0, max(reduce_n - 1, 0))), spec.reduce_shape))
        it_out = iter(out)
        element = tuple(next(red) if d in spec.reduce_axes else next(it_out) for d in range(len(spec.in_shape)))
        return Indices(out, element, linearize(out, spec.shape))


def epilogue_index(ix: Indices, out: Var) -> tuple:
    """An epilogue output's index at the current row: it has one element per row, in a
    shape of its own (keepdims), at the same flat position."""
    return delinearize(ix.row_address, out.shape)


def lane_bodies(w, reds, ix, results) -> list[list[str]]:
    """The loop bodies accumulating one element into lane `l` (the main loop, FJ_LANES elements
    a step) and into the tail's accumulator (the rest); where a reduction is `blocked`, a third:
    the blocks' loop, whose blocked sums add into their float32 partials `part{k}[l]` (the
    others into their lanes).  Loads are counted once: per element."""
    bodies, counted = [], None
    for lane in ("l", "tail") + (("part",) if any(red.blocked for red in reds) else ()):
        w.new_scope(results, keep_row=lane != "l")  # row-level values: before the loops
        w.body = []
        for red in reds:
            if lane == "part" and red.blocked:
                w.body.append(red.step(f"part{red.k}[l]", "", w.read(red.operand, ix.element)))
                continue
            w.body.append(red.step(*(red.lane("l") if lane in ("l", "part") else red.tail()), red.read(w, ix.element)))
        if w.cache is not None:
            w.cache.flush(w)
        bodies.append(w.body)
        counted = w.loads if counted is None else counted
    w.loads = counted  # the rest loads the same elements' values as the main loop
    return bodies


def lane_words(red) -> int:
    """32-bit registers a GPU thread holds for one reduction's GPU_LANES accumulators (and
    their positions, for argmax and argmin)."""
    return GPU_LANES * (-(-red.acc_dtype.itemsize // 4) + (-(-red.out.dtype.itemsize // 4) if red.is_arg else 0)
                        + (1 if red.blocked else 0))


def check_registers(spec, reds) -> None:
    """Raise NotPersistent when the reductions' accumulator lanes would not stay in a GPU
    thread's registers (ptxas would spill them to local memory): the planner then gives the
    kernel fewer reductions."""
    total = sum(lane_words(red) for red in reds)
    if total <= LANE_REGISTERS:
        return
    fit, used = 0, 0
    for red in reds:
        used += lane_words(red)
        if used > LANE_REGISTERS:
            break
        fit += 1
    raise NotPersistent(spec.family, f"{len(reds)} reductions need {total} registers of accumulators",
                        fit=max(1, fit) if len(spec.phases) == 1 else None)


def check_shared(spec, reds, slots: int, fixed: int = 0) -> None:
    """Raise NotPersistent when `slots` partials per reduction (and `fixed` more bytes) exceed
    a block's shared memory; the planner then gives the kernel fewer reductions."""
    total = fixed + sum(slots * red.itemsize for red in reds)
    if total <= SHARED_BYTES:
        return
    fit, used = 0, fixed
    for red in reds:
        used += slots * red.itemsize
        if used > SHARED_BYTES:
            break
        fit += 1
    raise NotPersistent(spec.family, f"{len(reds)} reductions need {total} bytes of shared memory",
                        fit=max(1, fit))


def row_stores(w, spec, reds, ix: Indices) -> list[str]:
    """Statements storing the reductions' results and the epilogue outputs of one row."""
    lines = []
    for red in reds:
        lines += red.result()
    results = {(id(red.out), ix.out): f"res{red.k}" for red in reds}
    body, w.body = w.body, lines
    w.new_scope(results)
    address = w.index(ix.row_address)
    for red in reds:
        if red.store is not None:
            lines.append(f"out{red.store}[{address}] = res{red.k};")
    for k, out in enumerate(spec.outputs):
        if id(out) in spec.epilogue:
            lines.append(f"out{k}[{address}] = {w.read_output(out, epilogue_index(ix, out))};")
    w.body = body
    return lines


def scalar_params(w, spec, extra=()) -> list:
    from .codegen import Param
    return (w.buffer_params() + [Param("scalar", "n", w.index_ctype, value=spec.size),
                                 Param("scalar", "reduce_n", w.index_ctype, value=reduce_count(spec))]
            + list(extra))


def describe(spec, w, strategy: str) -> str:
    return (f"{len(spec.outputs)} output(s) of {len(spec.phases)} phase(s) reducing axes {list(spec.reduce_axes)} "
            f"of {list(spec.in_shape)} ({strategy}), {w.loads} load(s) per element")


# ---------------- strategy: a team of threads per row ----------------

class RowCache:
    """Values of the operand's shape that several passes of a row kernel read at the row's own
    elements (inputs, and values that a phase reduces), kept in shared memory: the first pass
    to compute them writes the cache, later passes read it instead of loading or recomputing
    (softmax's final pass reads exp(x - max) from the sum's phase).  With `names` empty it
    only records which passes read what."""

    def __init__(self, element: tuple, in_shape: tuple, names: dict, row_len: int, position: str | None = None):
        self.element = element     # the symbolic index of the row's element
        self.in_shape = in_shape
        self.names = names         # value id -> shared array name
        self.row_len = row_len
        # The element's place in an array (the host's row groups keep each position's values
        # of the group's rows together instead: rowgroups.py).
        self.position = position or f"slot * {row_len}u + r"
        self.passes = collections.defaultdict(set)
        self.pass_no = 0
        self.filled: set[int] = set()   # written by an earlier pass: read from the cache
        self.pending: set[int] = set()  # written by this pass (in each of its loops)
        self.stores: list[str] = []     # this loop body's writes, made after all its reads

    def flush(self, w) -> None:
        """End a loop body: its cache writes go last, after every read of the body, so values
        whose lives do not overlap can share an array (cache_slots)."""
        w.body += self.stores
        self.stores = []

    def begin_pass(self, number: int) -> None:
        self.pass_no = number
        self.filled |= self.pending
        self.pending = set()

    def at_element(self, var, idx) -> bool:
        return isinstance(var, Var) and var.shape == self.in_shape and tuple(idx) == self.element

    def load(self, w, var, idx):
        if not self.at_element(var, idx):
            return None
        self.passes[id(var)].add(self.pass_no)
        if id(var) in self.filled:
            return w.emit("x", ops.ctype(var.dtype), f"{self.names[id(var)]}[{self.position}]")
        return None

    def loaded(self, w, var, idx, name):
        if id(var) in self.names and id(var) not in self.filled and self.at_element(var, idx):
            self.stores.append(f"{self.names[id(var)]}[{self.position}] = {name};")
            self.pending.add(id(var))


def team_width(row_len: int, block: int) -> int:
    """Threads per row: the next power of two up to a warp for short rows, a warp up to
    1024 elements, the whole block beyond."""
    if row_len <= WARP:
        width = 1
        while width < row_len:
            width *= 2
        return width
    return WARP if row_len <= 1024 else block


def cache_slots(values, passes) -> list[list]:
    """The shared arrays for the cached values, as [dtype, last pass read, value ids]: a value
    first computed in a pass no earlier than the last pass that reads another of its dtype
    takes over that one's array (in that pass its writes follow the other's reads)."""
    slots: list[list] = []
    for v in sorted(values, key=lambda v: min(passes[id(v)])):
        first, last = min(passes[id(v)]), max(passes[id(v)])
        for slot in slots:
            if slot[0] == v.dtype and slot[1] <= first:
                slot[1] = last
                slot[2].append(id(v))
                break
        else:
            slots.append([v.dtype, last, [id(v)]])
    return slots


def render_rows(w, block: int, team: int, slots: list, check: bool = True):
    """The row strategy; `slots` (cache_slots) are the shared arrays that keep values between
    passes.  `check`: whether they must fit (a counting render need not)."""
    from .codegen import MIN_BLOCKS, RenderedKernel, fill_kernel, indent
    spec = w.spec
    w.var_by_id = {id(v): v for e in spec.eqns for v in e.outputs}
    ix = Indices.of(spec)
    row_len = reduce_count(spec)
    teams = block // team
    cache_names = {i: f"cache{k}" for k, (_, _, ids) in enumerate(slots) for i in ids}
    cache = RowCache(tuple(ix.element), spec.in_shape, cache_names, row_len)
    w.cache = cache
    all_reds = [red for phase in spec.phases for red in reductions_of(spec, phase, rows=True)]
    w.results = {id(red.out) for red in all_reds}
    if check:
        check_shared(spec, all_reds, WARP + 1, sum(teams * row_len * dtype.itemsize for dtype, _, _ in slots))
    # (aligned for the GPU's vector path: rowvectors.py)
    shared = [f"alignas(16) __shared__ {ops.ctype(dtype)} cache{k}[{teams * row_len}];"
              for k, (dtype, _, _) in enumerate(slots)]
    w.cache_dtypes = {f"cache{k}": dtype for k, (dtype, _, _) in enumerate(slots)}
    results: dict = {}
    passes, phase_reds, vectors = [], [], []  # passes: (template, slots) filled at the end
    for p, phase in enumerate(spec.phases):
        reds = [dataclasses.replace(red, blocked=blocks_sum(spec, red)) for red in reductions_of(spec, phase, rows=True)]
        phase_reds.append(reds)
        if check:
            check_registers(spec, reds)
        cache.begin_pass(p)
        w.row_body = []
        bodies = lane_bodies(w, reds, ix, results)
        init, finish = w.row_body, []
        w.row_body = None
        for red in reds:
            init += red.declare_lanes("lanes", tail=True)
            finish += red.fold_lanes("lanes", tail=True)
            shared.append(f"__shared__ {red.acc_t} smem{red.k}[{WARP + 1}];")
            if red.is_arg:
                shared.append(f"__shared__ {red.arg_t} smem_arg{red.k}[{WARP + 1}];")
                finish.append(f"fj_team_argallreduce<{team}u, {red.flag}>(acc{red.k}, arg{red.k}, "
                              f"({red.acc_t}){red.ident}, ({red.arg_t}){red.arg_ident}, smem{red.k}, smem_arg{red.k});")
            else:
                finish.append(f"acc{red.k} = fj_team_allreduce<{team}u>(acc{red.k}, ({red.acc_t}){red.ident}, "
                              f"smem{red.k}, {red.functor}());")
            finish += red.result()
            results[(id(red.out), ix.out)] = f"res{red.k}"
        vectors.append(rewrite_pass(w, bodies[0], row_len, "lanes"))
        passes.append(("reduce_rows_phase.cu.in", dict(
            phase=str(p), primitives=", ".join(red.eqn.primitive for red in reds), init=indent(init, 2),
            blocks=sum_blocks(reds, bodies, f"rest{p}", "lanes", "row_n", "(idx_t)team"), body=indent(bodies[0], 4),
            tail=indent(bodies[1], 3), finish=indent(finish, 2))))
    if spec.full:
        cache.begin_pass(len(spec.phases))
        w.new_scope(results)
        w.body, w.row_body = [], []
        for k, out in enumerate(spec.outputs):
            if id(out) in spec.full:
                value = w.read_output(out, ix.element)
                w.body.append(f"out{k}[{w.index(linearize(ix.element, out.shape))}] = {value};")
        cache.flush(w)
        vectors.append(rewrite_pass(w, w.body, row_len, None))
        passes.append(("reduce_rows_final.cu.in", dict(row=indent(w.row_body, 2), body=indent(w.body, 3))))
        w.row_body = None
    # The vector path: a row of whole vectors, one at least for each thread of the team.
    skips = [f"rest{p}" for p in range(len(spec.phases))] + ["rest_final"]
    _, texts = vector_paths(vectors, lambda width: row_len % width == 0 and row_len >= team * width,
                            lambda width, k: dict(first=f"(idx_t)lane * {width}", end="row_n",
                                                  step=f"(idx_t)team * {width}",
                                                  after=f"{skips[k]} = row_n;  // the element loops find nothing left"))
    passes = [fill(name, vector=vector, **slots) for (name, slots), vector in zip(passes, texts)]
    cache.begin_pass(len(spec.phases) + 1)
    w.new_scope(results)
    w.body = []
    address = w.index(ix.row_address)
    for red in all_reds:
        if red.store is not None:
            w.body.append(f"out{red.store}[{address}] = res{red.k};")
    for k, out in enumerate(spec.outputs):
        if id(out) in spec.epilogue:
            w.body.append(f"out{k}[{address}] = {w.read_output(out, epilogue_index(ix, out))};")
    stores = w.body
    groups = group_path(w, spec, ix, phase_reds, [(dtype, ids) for dtype, _, ids in slots]) if check else ""
    source = fill_kernel(
        w, "reduce_rows.cu.in", describe(spec, w, f"a team of {team} per row"), block, scalar_params(w, spec),
        min_blocks=1 if len(spec.phases) > 1 else MIN_BLOCKS, fix_scalars=False, team=str(team),
        teams=str(teams), row_len=str(row_len), shared=indent(shared, 1), passes="".join(passes),
        stores=indent(stores, 3), groups=groups, groups_end="#endif  // FJ_ROW_GROUPS\n" if groups else "")
    layout = Layout("rows", spec.size, row_len, teams)
    return RenderedKernel(spec, source, tuple(scalar_params(w, spec)), w.index64, w.loads, len(spec.outputs),
                          block, layout), cache


def begin_one_phase(w):
    """(spec, indices, reductions) of a one-phase kernel, its writer told which values are the
    reductions' results (read only after the loop)."""
    spec = w.spec
    w.var_by_id = {id(v): v for e in spec.eqns for v in e.outputs}
    reds = reductions_of(spec, spec.phases[0])
    w.results = {id(red.out) for red in reds}
    return spec, Indices.of(spec), reds


def segment_partials(red, publish_at: str, first_at: str, segment_at: str, declare: bool):
    """What a strategy whose blocks each reduce one segment needs for `red`: its scratch
    buffers of partials, the statements publishing this block's partial (at `publish_at`), and
    the statements of the finishing block that combine the segments' partials in order (the
    first at `first_at`, segment `s` at `segment_at`); `declare`: the finish declares acc/arg."""
    from .codegen import Param
    k, decl = red.k, (lambda t: f"{t} " if declare else "")
    scratch = [Param("scratch", f"partial{k}", f"{red.acc_t}*", dtype=red.acc_dtype, extent="partials")]
    publish = [f"partial{k}[{publish_at}] = acc{k};"]
    finish = [f"{decl(red.acc_t)}acc{k} = fj_load_cg(&partial{k}[{first_at}]);"]
    if red.is_arg:
        scratch.append(Param("scratch", f"partial_arg{k}", f"{red.arg_t}*", dtype=red.out.dtype, extent="partials"))
        publish.append(f"partial_arg{k}[{publish_at}] = arg{k};")
        finish.append(f"{decl(red.arg_t)}arg{k} = fj_load_cg(&partial_arg{k}[{first_at}]);")
    finish.append("for (idx_t s = 1; s < segments; ++s) "
                  + red.merge(f"acc{k}", f"arg{k}", f"fj_load_cg(&partial{k}[{segment_at}])",
                              f"fj_load_cg(&partial_arg{k}[{segment_at}])"))
    return scratch, publish, finish


# ---------------- strategy: tiles of output columns ----------------

def render_columns(w, block: int):
    from .codegen import Param, RenderedKernel, fill_kernel, indent
    spec, ix, reds = begin_one_phase(w)
    slices = block // TILE
    check_shared(spec, reds, slices * TILE, 1)
    shared, init, combine, publish, finish, scratch = [], [], [], [], [], []
    w.body = []
    for red in reds:
        k = red.k
        shared.append(f"__shared__ {red.acc_t} part{k}[FJ_COLUMN_SLICES][FJ_COLUMNS];")
        init.append(f"part{k}[ty][c] = {red.ident};")
        cell, arg_cell = f"part{k}[ty][c]", f"part_arg{k}[ty][c]"
        if red.is_arg:
            shared.append(f"__shared__ {red.arg_t} part_arg{k}[FJ_COLUMN_SLICES][FJ_COLUMNS];")
            init.append(f"{arg_cell} = {red.arg_ident};")
        parts = segment_partials(red, "segment * n + i", "i", "s * n + i", declare=True)
        scratch += parts[0]
        publish += parts[1]
        finish += parts[2]
        w.body.append(red.step(cell, arg_cell, red.read(w, ix.element)))
        combine.append(f"{red.acc_t} acc{k} = part{k}[0][c];")
        if red.is_arg:
            combine.append(f"{red.arg_t} arg{k} = part_arg{k}[0][c];")
        combine.append("for (unsigned y = 1; y < ny; ++y) "
                       + red.merge(f"acc{k}", f"arg{k}", f"part{k}[y][c]", f"part_arg{k}[y][c]"))
    body = w.body
    periodic = periodic_columns(w, spec, reds, body)
    registers = column_registers(w, spec, reds, ix)
    stores = row_stores(w, spec, reds, ix)
    params = scalar_params(w, spec, [Param("scalar", "segments", w.index_ctype, value=None)] + scratch
                           + [Param("scratch", "tickets", "unsigned int*", dtype=np.dtype(np.uint32), extent="tiles",
                                    zero=True)])
    source = fill_kernel(
        w, "reduce_columns.cu.in", describe(spec, w, "tiles of outputs, segments of rows"), block, params,
        shared=indent(shared, 1), init=indent(init, 3), body=indent(body, 4), combine=indent(combine, 3),
        publish=indent(publish, 4), finish=indent(finish, 5), stores=indent(stores, 4),
        finish_stores=indent(stores, 5), periodic=periodic,
        periodic_end="#endif  // FJ_PERIODIC_ROWS\n" if periodic else "",
        registers=registers, registers_end="#endif  // FJ_COLUMN_REGISTERS\n" if registers else "")
    layout = Layout("columns", spec.size, reduce_count(spec))
    return RenderedKernel(spec, source, tuple(params), w.index64, w.loads, len(spec.outputs), block, layout)


def column_registers(w, spec, reds, ix) -> str:
    """The GPU's loop of a column reduction with each thread's partials in registers, FJ_LANES
    of them per reduction (kernels/column_registers.cu.in); '' where they would not fit a
    thread's registers (the loop that accumulates in shared memory then runs)."""
    from .codegen import indent
    if sum(lane_words(red) for red in reds) > LANE_REGISTERS:
        return ""
    body, tail = lane_bodies(w, reds, ix, {})
    init, finish = [], []
    for red in reds:
        init += red.declare_lanes(tail=True)
        finish += red.fold_lanes(tail=True)
        finish.append(f"part{red.k}[ty][c] = acc{red.k};")
        if red.is_arg:
            finish.append(f"part_arg{red.k}[ty][c] = arg{red.k};")
    return fill("column_registers.cu.in", init=indent(init, 3), body=indent(body, 5), tail=indent(tail, 4),
                finish=indent(finish, 3))


# ---------------- strategy: rows split across blocks ----------------

def render_split(w, block: int):
    from .codegen import Param, RenderedKernel, fill_kernel, indent
    spec, ix, reds = begin_one_phase(w)
    reds = [dataclasses.replace(red, blocked=blocks_sum(spec, red)) for red in reds]
    check_shared(spec, reds, WARP + 1, 1)
    check_registers(spec, reds)
    shared, init, combine, publish, finish = [], [], [], [], []
    scratch = []
    bodies = lane_bodies(w, reds, ix, {})
    for red in reds:
        k = red.k
        init += red.declare_lanes("FJ_SPLIT_LANES", tail=True)
        combine += red.fold_lanes("FJ_SPLIT_LANES", tail=True)
        shared.append(f"__shared__ {red.acc_t} smem{k}[{WARP + 1}];")
        if red.is_arg:
            shared.append(f"__shared__ {red.arg_t} smem_arg{k}[{WARP + 1}];")
            combine.append(f"fj_block_argreduce<{red.flag}>(acc{k}, arg{k}, ({red.acc_t}){red.ident}, "
                           f"({red.arg_t}){red.arg_ident}, smem{k}, smem_arg{k});")
        else:
            combine.append(f"acc{k} = fj_block_reduce(acc{k}, ({red.acc_t}){red.ident}, smem{k}, {red.functor}());")
        parts = segment_partials(red, "work", "first", "first + s", declare=False)
        scratch += parts[0]
        publish += parts[1]
        finish += parts[2]
    # The vector path: segments of whole vectors (the last one's rest in the element loops),
    # each starting on one where a row does.
    rows, row_len = spec.size, reduce_count(spec)
    width, (vector,) = vector_paths(
        [rewrite_pass(w, bodies[0], row_len, "FJ_SPLIT_LANES")], lambda width: rows == 1 or row_len % width == 0,
        lambda width, k: dict(before=f"const idx_t fj_end = end > begin ? begin + (end - begin) / {width} * {width} : begin;",
                              first=f"begin + (idx_t)threadIdx.x * {width}", end="fj_end",
                              step=f"(idx_t)blockDim.x * {width}",
                              after="rest = fj_end + (idx_t)threadIdx.x;  // the element loops take the rest"))
    blocks = sum_blocks(reds, bodies, "rest", "FJ_SPLIT_LANES", "end", "(idx_t)blockDim.x")
    stores = row_stores(w, spec, reds, ix)
    params = scalar_params(w, spec, [Param("scalar", "segments", w.index_ctype, value=None)] + scratch
                           + [Param("scratch", "tickets", "unsigned int*", dtype=np.dtype(np.uint32), extent="rows",
                                    zero=True)])
    source = fill_kernel(
        w, "reduce_split.cu.in", describe(spec, w, "rows split across blocks"), block, params,
        shared=indent(shared, 1), init=indent(init, 2), width=str(width), vector=vector, blocks=blocks,
        body=indent(bodies[0], 4),
        tail=indent(bodies[1], 3),
        combine=indent(combine, 2),
        publish=indent(publish, 3), finish=indent(finish, 3), stores=indent(stores, 3))
    layout = Layout("split", spec.size, reduce_count(spec))
    return RenderedKernel(spec, source, tuple(params), w.index64, w.loads, len(spec.outputs), block, layout)


def render_reduction(make_writer, block: int):
    """Render a reduction kernel with the strategy its shapes call for."""
    w = make_writer()
    spec = w.spec
    rows, row_len = spec.size, reduce_count(spec)
    persistent = len(spec.phases) > 1 or bool(spec.full)
    inner = (len(spec.in_shape) - 1) in spec.reduce_axes
    if persistent and not inner:
        raise NotPersistent(spec.family, "a row family needs the operand's innermost axis reduced")
    if not persistent and inner and rows < SPLIT_ROWS and row_len >= SPLIT_MIN:
        return render_split(w, block)
    if not inner:
        return render_columns(w, block)
    team = team_width(row_len, block)
    rendered, cache = render_rows(w, block, team, [])
    # Cache what later passes read again: inputs, and the values a phase reduces.
    candidates = list(spec.sources) + [red.operand for p in spec.phases for red in reductions_of(spec, p)]
    reread = {id(v): v for v in candidates if isinstance(v, Var) and len(cache.passes.get(id(v), ())) > 1}
    if not reread or row_len == 0:
        return rendered
    # Once a reduced value is cached, later passes no longer read what it was computed from:
    # count again with everything cached, and keep what is still read in several passes.
    _, cache = render_rows(make_writer(), block, team, [[v.dtype, 0, [i]] for i, v in reread.items()], False)
    reread = {i: v for i, v in reread.items() if len(cache.passes.get(i, ())) > 1}
    slots = cache_slots(reread.values(), cache.passes)
    row_bytes = row_len * sum(dtype.itemsize for dtype, _, _ in slots)
    if (block // team) * row_bytes > CACHE_BYTES:
        team = block
    if row_bytes > CACHE_BYTES and rows >= SPLIT_ROWS:
        # A row too long for shared memory: the block's later phases read it again from
        # global memory (from the cache levels its first pass filled: a 64 KB row stays in a
        # host core's L2 and a GPU's), still one kernel with no intermediate arrays; a kernel
        # per phase would take a block per row as well.  (Fewer rows: those kernels split
        # each row across blocks, which a GPU needs.)
        return render_rows(make_writer(), block, block, [])[0]
    if row_bytes > CACHE_BYTES:
        raise NotPersistent(spec.family, f"a row of {row_bytes} bytes does not fit in shared memory")
    return render_rows(make_writer(), block, team, slots)[0]
