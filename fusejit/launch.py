"""Launch: the plan every backend shares up to the final call.

A `Program` is what a specialization compiles to: buffer slots, the outputs to
allocate, and a list of `Launch`es (kernel name, grid, block, typed argument
list).  `Program.run` is the one executor; a backend supplies only array
conversion, allocation and the final `launch` call.
"""
from __future__ import annotations

import collections
import dataclasses
import functools
from typing import Any

import numpy as np

from . import config
from .ir import Literal


@dataclasses.dataclass(frozen=True)
class DeviceInfo:
    kind: str                   # 'cuda' | 'host' | 'emulate'
    arch: str                   # 'sm_90', 'x86_64', ...
    multiprocessors: int        # SMs on a GPU, cores on the host
    block: int                  # threads per block for elementwise kernels
    blocks_per_unit: int        # grid cap = multiprocessors * blocks_per_unit
    min_chunk: int = 1          # fewest elements per block (host: keeps tiny launches on one thread)
    columns: int = 32           # outputs per block of a column reduction (FJ_COLUMNS of its prelude)

    def grid(self, n: int, per_thread: int = 1) -> int:
        """Blocks for a map over n elements, `per_thread` at a time per GPU thread (the host's
        one thread per block takes a contiguous chunk, whatever `per_thread`)."""
        per_block = max(self.block * (1 if self.kind == "host" else per_thread), self.min_chunk)
        return max(1, min(-(-n // per_block), self.multiprocessors * self.blocks_per_unit))

    def reduce_grid(self, units: int, work: int, per_block: int = 1) -> int:
        """Blocks for a kernel whose blocks take `per_block` units (rows, tiles) at a time, each
        of `work` elements: every block busy, up to the cap; on the host (one thread per block,
        one unit at a time), no more blocks than there is work for min_chunk elements each."""
        if self.kind == "host":
            per_block = 1
        blocks = min(-(-units // per_block), self.multiprocessors * self.blocks_per_unit)
        if self.min_chunk > 1:
            blocks = min(blocks, -(-(units * max(work, 1)) // self.min_chunk))
        return max(1, blocks)

    def segments(self, rows: int, reduce_n: int) -> int:
        """Segments per row of a split reduction: enough blocks to fill the device, each segment
        at least `SEGMENT_MIN` elements (the host: `min_chunk`)."""
        least = max(self.min_chunk, SEGMENT_MIN)
        return max(1, min(self.segments_to_fill(rows), reduce_n // least))

    def segments_to_fill(self, units: int) -> int:
        """Segments per unit that give the device blocks enough: one per core on the host,
        about four per SM on a GPU."""
        return -(-self.multiprocessors * (1 if self.kind == "host" else 4) // max(units, 1))

    def column_segments(self, outputs: int, reduce_n: int) -> int:
        """Segments of the reduced rows of a column reduction: blocks enough to fill the device
        (as `segments`) over its tiles of `columns` outputs, each segment at least
        SEGMENT_MIN_ROWS rows and `min_chunk` elements."""
        width = max(1, min(outputs, self.columns))
        least = max(SEGMENT_MIN_ROWS, -(-self.min_chunk // width))
        return max(1, min(self.segments_to_fill(-(-outputs // self.columns)), reduce_n // least))


CUDA_BLOCK = 256  # threads per block of every kernel (its __launch_bounds__)
SEGMENT_MIN = 4096  # fewest elements per segment of a split reduction
SEGMENT_MIN_ROWS = 64  # fewest rows per segment of a column reduction


@dataclasses.dataclass(frozen=True)
class Layout:
    """How a kernel's work maps onto blocks, for sizing its grid.

    kind   'map': `units` elements, a grid-stride loop, `work` of them per thread and step; 'rows': `units` rows, `per_block`
           of them per block on a GPU (a team of threads each); 'columns': `units` outputs
           reducing `work` rows, in tiles of DeviceInfo.columns outputs, the rows cut into
           segments; 'split': `units` rows of `work` elements, each cut into segments; 'scan':
           `units` rows, one per block."""
    kind: str
    units: int
    work: int = 1
    per_block: int = 1


def cuda_device_info(arch: str, multiprocessors: int) -> DeviceInfo:
    return DeviceInfo("cuda", arch, multiprocessors, block=CUDA_BLOCK, blocks_per_unit=8)


# The GPU the emulation reproduces when no GPU is present: the grid and block sizes of an H100.
EMULATED_GPU = cuda_device_info("sm_90", 132)


@dataclasses.dataclass(frozen=True)
class Arg:
    """One kernel argument: a buffer slot, or a scalar of an explicit dtype."""
    slot: int | None = None
    dtype: np.dtype | None = None
    value: Any = None

    def resolve(self, env):
        return env[self.slot] if self.slot is not None else self.dtype.type(self.value)


@dataclasses.dataclass(frozen=True)
class Launch:
    kernel: str
    grid: int
    block: int
    args: tuple[Arg, ...]
    n: int
    outputs: tuple[int, ...]  # slots written (outputs and scratch buffers)


@dataclasses.dataclass(frozen=True, eq=False)
class Call:
    """A step that is not a kernel (a library call, a loop, a branch): `op.run(backend, arrays)`
    returns its results.  An input is a slot or ('literal', value, dtype)."""
    op: Any
    inputs: tuple
    outputs: tuple[int, ...]

    def run(self, backend, env) -> None:
        arrays = [env[i] if isinstance(i, int) else backend.full((), i[1], i[2]) for i in self.inputs]
        for slot, result in zip(self.outputs, self.op.run(backend, arrays)):
            env[slot] = result


# Steps run by every Program of this process: kernel launches and library calls (the
# benchmark reads it to count launches per call).
counter = collections.Counter()


@dataclasses.dataclass(frozen=True, eq=False)
class Program:
    n_slots: int
    input_slots: tuple[int, ...]
    input_dtypes: tuple[np.dtype, ...]
    consts: tuple[tuple[int, np.ndarray], ...]
    allocs: tuple[tuple[int, tuple, np.dtype, bool], ...]  # slot, shape, dtype, zeroed
    steps: tuple  # Launch | Call, in order
    outputs: tuple[tuple, ...]  # ('slot', k) | ('input', k) | ('literal', value, dtype)

    @property
    def launches(self) -> tuple[Launch, ...]:
        return tuple(s for s in self.steps if isinstance(s, Launch))

    @functools.cached_property
    def kernel_launches(self) -> int:
        return len(self.launches)

    def workspace(self, backend) -> dict:
        """A buffer for every value the program allocates, for a loop to pass to every
        iteration's `run` (scratch buffers that start zeroed are left zeroed by their kernel)."""
        return {slot: backend.zeros(shape, dtype) if zero else backend.empty(shape, dtype)
                for slot, shape, dtype, zero in self.allocs}

    def bind(self, backend, module) -> tuple:
        """One callable per step, `call(env)`: kernels bound to the backend's compiled module
        once, so a call does no lookups."""
        return tuple(backend.bind(module, s) if isinstance(s, Launch) else functools.partial(s.run, backend)
                     for s in self.steps)

    @functools.cached_property
    def output_slots(self):
        """The outputs' slots when every output is a value the program computes, else None."""
        return [o[1] for o in self.outputs] if all(o[0] == "slot" for o in self.outputs) else None

    def runner(self, backend, bound, const_arrays):
        """`run(backend, bound, flat_args, const_arrays)` without `out`, `workspace` or debug
        output, as one straight-line function of `flat_args` (what a steady-state call runs):
        no loops over slots, the allocators chosen per buffer size, the input check inline."""
        scope, body, env = self._begin_runner(backend, const_arrays)
        for k, (slot, shape, dtype, zero) in enumerate(self.allocs):
            scope[f"new{k}"] = backend.zeros if zero else backend.allocator(shape, dtype)
            scope[f"shape{k}"], scope[f"t{k}"] = shape, dtype
            env[slot] = f"new{k}(shape{k}, t{k})"
        body.append(f"env = [{', '.join(env)}]")
        body += self._steps_code(scope, backend, bound)
        body.append(f"return [{', '.join(self._results_code(scope))}]")
        return _define(scope, "def run(flat_args):", body)

    def loop_runner(self, backend, bound, const_arrays):
        """`run(backend, bound, flat_args, const_arrays, out, workspace)` for a loop's
        iteration, as one straight-line function of (flat_args, out, workspace): `workspace`
        holds the program's buffers (Program.workspace), `out` is None or an array for every
        output (written in place).  What a host loop calls once per iteration, where the
        general `run`'s loops over slots cost several microseconds."""
        scope, body, env = self._begin_runner(backend, const_arrays)
        placed: dict = {}
        for k, o in enumerate(self.outputs):
            if o[0] == "slot":
                placed.setdefault(o[1], k)
        given = list(env)
        for slot, *_ in self.allocs:
            env[slot] = f"ws[{slot}]"
            given[slot] = f"out[{placed[slot]}]" if slot in placed else f"ws[{slot}]"
        body += ["if out is None:", f"    env = [{', '.join(env)}]", "else:", f"    env = [{', '.join(given)}]"]
        body += self._steps_code(scope, backend, bound)
        scope["copyto"] = backend.copyto
        body += ["if out is None:", f"    return [{', '.join(self._results_code(scope))}]"]
        for k, o in enumerate(self.outputs):
            if o[0] == "slot":
                body.append(f"if env[{o[1]}] is not out[{k}]: copyto(out[{k}], env[{o[1]}])")
            elif o[0] == "input":
                body.append(f"copyto(out[{k}], env[{o[1]}])")
            else:
                body.append(f"copyto(out[{k}], full((), v{k}, vt{k}))")
        body.append("return list(out)")
        return _define(scope, "def run(flat_args, out, ws):", body)

    def _begin_runner(self, backend, const_arrays):
        """A runner's scope, its first lines (the inputs, checked) and its env (the text of
        each slot's value: inputs and constants, None for the rest)."""
        scope: dict = {"counter": counter, "asarray": backend.asarray, "copy": backend.copy,
                       "full": backend.full, "launches": self.kernel_launches}
        array_type = getattr(backend, "array_type", None)
        scope["array_type"] = array_type
        env = ["None"] * self.n_slots
        body = []
        inputs = [f"a{k}" for k in range(len(self.input_slots))]
        if inputs:
            body.append(f"{', '.join(inputs)}, = flat_args")
        for k, (slot, dtype) in enumerate(zip(self.input_slots, self.input_dtypes)):
            a = inputs[k]
            scope[f"d{k}"] = dtype
            if array_type is None:
                body.append(f"{a} = asarray({a}, d{k})")
            else:  # an array the kernels take as it is (see the backend's asarray) is not converted
                body.append(f"if type({a}) is not array_type or {a}.dtype is not d{k} or "
                            f"not {a}.flags.c_contiguous or not {a}.flags.aligned:")
                body.append(f"    {a} = asarray({a}, d{k})")
            env[slot] = a
        for k, ((slot, _), arr) in enumerate(zip(self.consts, const_arrays)):
            scope[f"c{k}"] = arr
            env[slot] = f"c{k}"
        return scope, body, env

    def _steps_code(self, scope, backend, bound) -> list[str]:
        """The lines running every step on `env`."""
        body = []
        if self.kernel_launches:
            body.append("counter['kernels'] += launches")
        # Steps of arrays alone (library calls, views) are called with their results unpacked
        # into env; library calls under one np.errstate for the whole program (inf, NaN and
        # integer wrap-around are results).
        steps, calls = [], 0
        for k, (call, step) in enumerate(zip(bound, self.steps)):
            prepare = getattr(step.op, "prepare", None) if isinstance(step, Call) else None
            if prepare is not None and all(isinstance(i, int) for i in step.inputs):
                scope[f"step{k}"] = prepare(backend)
                targets = "".join(f"env[{o}], " for o in step.outputs)
                steps.append(f"{targets}= step{k}({', '.join(f'env[{i}]' for i in step.inputs)})")
                calls += bool(getattr(step.op, "library_call", False))
            else:
                scope[f"step{k}"] = call
                steps.append(f"step{k}(env)")
        if calls:
            scope["errstate"], scope["library_calls"] = np.errstate, calls
            body += ["counter['library'] += library_calls", "with errstate(all='ignore'):"]
            body += [f"    {line}" for line in steps]
        else:
            body += steps
        return body

    def _results_code(self, scope) -> list[str]:
        """The outputs' expressions (an input's a copy, a literal's a new array)."""
        results = []
        for k, o in enumerate(self.outputs):
            if o[0] == "slot":
                results.append(f"env[{o[1]}]")
            elif o[0] == "input":
                results.append(f"copy(env[{o[1]}])")
            else:
                scope[f"v{k}"], scope[f"vt{k}"] = o[1], o[2]
                results.append(f"full((), v{k}, vt{k})")
        return results

    def run(self, backend, bound, flat_args, const_arrays, out=None, workspace=None, debug=None):
        """Run every step and return the outputs.  `out` (a loop body's): one preallocated array
        (or None) per output; kernels write those in place, other results are copied in.
        `workspace`: buffers for the other values (Program.workspace), instead of allocating.
        `debug`: the FUSEJIT_DEBUG level when the caller has it at hand."""
        env: list = [None] * self.n_slots
        asarray = backend.asarray
        for slot, dtype, x in zip(self.input_slots, self.input_dtypes, flat_args):
            env[slot] = asarray(x, dtype)
        for (slot, _), arr in zip(self.consts, const_arrays):
            env[slot] = arr
        if out is None and workspace is None:
            empty, zeros = backend.empty, backend.zeros
            for slot, shape, dtype, zero in self.allocs:
                env[slot] = zeros(shape, dtype) if zero else empty(shape, dtype)
        else:
            placed: dict = {}
            for o, buf in zip(self.outputs, out or ()):
                if buf is not None and o[0] == "slot":
                    placed.setdefault(o[1], buf)
            for slot, shape, dtype, zero in self.allocs:
                if slot in placed:
                    env[slot] = placed[slot]
                elif workspace is not None:
                    env[slot] = workspace[slot]
                else:
                    env[slot] = backend.zeros(shape, dtype) if zero else backend.empty(shape, dtype)
        if (config.call_options().debug if debug is None else debug) >= 1:
            for step in self.launches:
                config.debug(1, f"launch {step.kernel} grid={step.grid} block={step.block} n={step.n} "
                                f"on {backend.name}")
        counter["kernels"] += self.kernel_launches
        for call in bound:
            call(env)
        if out is None and self.output_slots is not None:
            return [env[slot] for slot in self.output_slots]
        results = []
        for k, o in enumerate(self.outputs):
            buf = out[k] if out is not None else None
            if o[0] == "slot":
                value = env[o[1]]
                if buf is not None and value is not buf:
                    backend.copyto(buf, value)
                    value = buf
            elif o[0] == "input":
                if buf is not None:
                    backend.copyto(buf, env[o[1]])
                    value = buf
                else:
                    value = backend.copy(env[o[1]])
            else:
                value = backend.full((), o[1], o[2])
                if buf is not None:
                    backend.copyto(buf, value)
                    value = buf
            results.append(value)
        return results


def _define(scope: dict, signature: str, body: list[str]):
    """The function `signature` with `body`, compiled in `scope`; its text as `.source`."""
    source = signature + "\n" + "".join(f"    {line}\n" for line in body)
    exec(compile(source, "<fusejit runner>", "exec"), scope)
    run = scope["run"]
    run.source = source
    return run


def build_program(graph, plan, rendered, device: DeviceInfo, ops: dict | None = None) -> Program:
    """Assign buffer slots and build each kernel's launch from the rendered kernels; `ops` maps
    the id of each other step's equation to the object that runs it."""
    slots: dict[int, int] = {}

    def slot(v) -> int:
        """A value's buffer slot; a scratch buffer's key is (kernel name, parameter name)."""
        key = v if isinstance(v, tuple) else id(v)
        if key not in slots:
            slots[key] = len(slots)
        return slots[key]

    input_slots = tuple(slot(v) for v in graph.inputs)
    consts = tuple((slot(v), arr) for v, arr in graph.consts)
    allocs, steps = [], []
    by_name = {k.name: k for k in rendered}
    for spec in plan.steps:
        if not hasattr(spec, "kind"):  # an equation run by an op
            inputs = tuple(("literal", a.value, a.dtype) if isinstance(a, Literal) else slot(a) for a in spec.inputs)
            steps.append(Call(ops[id(spec)], inputs, tuple(slot(v) for v in spec.outputs)))
            continue
        for v in spec.outputs:
            allocs.append((slot(v), v.shape, v.dtype, False))
        k = by_name.get(spec.name)
        if k is None:  # an empty iteration space: outputs are allocated, nothing runs
            continue
        lay = k.layout
        segments = 1
        if lay.kind == "map":
            grid = device.grid(lay.units, lay.work)
        elif lay.kind == "split":
            segments = device.segments(lay.units, lay.work)
            grid = device.reduce_grid(lay.units * segments, -(-lay.work // segments))
        elif lay.kind == "columns":
            segments = device.column_segments(lay.units, lay.work)
            width = min(lay.units, device.columns)
            grid = device.reduce_grid(-(-lay.units // device.columns) * segments, width * -(-lay.work // segments))
        else:
            grid = device.reduce_grid(lay.units, lay.work, lay.per_block)
        block = 1 if device.kind == "host" else k.block
        index_dtype = np.dtype(np.int64 if k.index64 else np.int32)
        args, written = [], [slot(v) for v in spec.outputs]
        for p in k.params:
            if p.kind == "scalar":
                args.append(Arg(dtype=index_dtype, value=segments if p.value is None else p.value))
            elif p.kind == "scratch":
                s = slot((spec.name, p.name))
                length = {"partials": lay.units * segments, "tiles": -(-lay.units // device.columns)}.get(
                    p.extent, lay.units)
                if lay.kind == "columns" and segments == 1:
                    length = 0  # one segment: each block stores its tile's results itself
                allocs.append((s, (length,), p.dtype, p.zero))
                args.append(Arg(slot=s))
                written.append(s)
            else:
                args.append(Arg(slot=slot(p.var)))
        steps.append(Launch(spec.name, grid, block, tuple(args), spec.size, tuple(written)))
    outputs = []
    input_ids = {id(v): k for k, v in enumerate(graph.inputs)}
    const_ids = {id(v) for v, _ in graph.consts}
    returned: set[int] = set()
    for o in graph.outputs:
        if isinstance(o, Literal):
            outputs.append(("literal", o.value, o.dtype))
        elif id(o) in input_ids or id(o) in const_ids or slot(o) in returned:
            # an input, a constant or a value already returned: the caller gets its own copy
            # (two outputs of `return y, y` are two arrays, as jax.jit's are)
            outputs.append(("input", slot(o)))
        else:
            outputs.append(("slot", slot(o)))
            returned.add(slot(o))
    return Program(len(slots), input_slots, tuple(v.dtype for v in graph.inputs), consts,
                   tuple(allocs), tuple(steps), tuple(outputs))
