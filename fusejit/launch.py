"""Launch: the plan every backend shares up to the final call.

A `Program` is what a specialization compiles to: buffer slots, the outputs to
allocate, and a list of `Launch`es (kernel name, grid, block, typed argument
list).  `Program.run` is the one executor; a backend supplies only array
conversion, allocation and the final `launch` call.
"""
from __future__ import annotations

import dataclasses
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

    def grid(self, n: int) -> int:
        per_block = max(self.block, self.min_chunk)
        return max(1, min(-(-n // per_block), self.multiprocessors * self.blocks_per_unit))

    def reduce_grid(self, rows: int, reduce_n: int) -> int:
        """Blocks for a block-per-row reduction: every row its own block, up to the cap; on the
        host, no more blocks than there is work for min_chunk elements each."""
        blocks = min(rows, self.multiprocessors * self.blocks_per_unit)
        if self.min_chunk > 1:
            blocks = min(blocks, -(-(rows * max(reduce_n, 1)) // self.min_chunk))
        return max(1, blocks)


CUDA_BLOCK = 256  # threads per block of every elementwise kernel (its __launch_bounds__)


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
    outputs: tuple[int, ...]  # slots written


@dataclasses.dataclass(frozen=True, eq=False)
class Program:
    n_slots: int
    input_slots: tuple[int, ...]
    input_dtypes: tuple[np.dtype, ...]
    consts: tuple[tuple[int, np.ndarray], ...]
    allocs: tuple[tuple[int, tuple, np.dtype], ...]
    launches: tuple[Launch, ...]
    outputs: tuple[tuple, ...]  # ('slot', k) | ('input', k) | ('literal', value, dtype)

    def run(self, backend, module, flat_args, const_arrays):
        env: list = [None] * self.n_slots
        for slot, dtype, x in zip(self.input_slots, self.input_dtypes, flat_args):
            env[slot] = backend.asarray(x, dtype)
        for (slot, _), arr in zip(self.consts, const_arrays):
            env[slot] = arr
        for slot, shape, dtype in self.allocs:
            env[slot] = backend.empty(shape, dtype)
        debug = config.debug_level() >= 1
        for launch in self.launches:
            if debug:
                config.debug(1, f"launch {launch.kernel} grid={launch.grid} block={launch.block} n={launch.n} "
                                f"on {backend.name}")
            backend.launch(module, launch, [a.resolve(env) for a in launch.args])
        results = []
        for out in self.outputs:
            if out[0] == "slot":
                results.append(env[out[1]])
            elif out[0] == "input":
                results.append(backend.copy(env[out[1]]))
            else:
                _, value, dtype = out
                results.append(backend.full((), value, dtype))
        return results


def build_program(graph, plan, rendered, device: DeviceInfo) -> Program:
    """Assign buffer slots and build each kernel's launch from the rendered kernels."""
    slots: dict[int, int] = {}

    def slot(v) -> int:
        if id(v) not in slots:
            slots[id(v)] = len(slots)
        return slots[id(v)]

    input_slots = tuple(slot(v) for v in graph.inputs)
    consts = tuple((slot(v), arr) for v, arr in graph.consts)
    allocs, launches = [], []
    by_name = {k.name: k for k in rendered}
    for spec in plan.kernels:
        for v in spec.outputs:
            allocs.append((slot(v), v.shape, v.dtype))
        k = by_name.get(spec.name)
        if k is None:  # an empty iteration space: outputs are allocated, nothing runs
            continue
        n = spec.size
        if spec.reduce_axes is None:
            grid = device.grid(n)
        else:
            reduce_n = int(np.prod(spec.reduce_shape, dtype=np.int64))
            rows = n if spec.scan_reverse is None else n // max(reduce_n, 1)
            grid = device.reduce_grid(rows, reduce_n)
        block = 1 if device.kind == "host" else k.block
        args = []
        for p in k.params:
            if p.kind == "scalar":
                args.append(Arg(dtype=np.dtype(np.int64 if k.index64 else np.int32), value=p.value))
            else:
                args.append(Arg(slot=slot(p.var)))
        launches.append(Launch(spec.name, grid, block, tuple(args), n,
                               tuple(slot(v) for v in spec.outputs)))
    outputs = []
    input_ids = {id(v): k for k, v in enumerate(graph.inputs)}
    const_ids = {id(v) for v, _ in graph.consts}
    for o in graph.outputs:
        if isinstance(o, Literal):
            outputs.append(("literal", o.value, o.dtype))
        elif id(o) in input_ids or id(o) in const_ids:
            outputs.append(("input", slot(o)))
        else:
            outputs.append(("slot", slot(o)))
    return Program(len(slots), input_slots, tuple(v.dtype for v in graph.inputs), consts,
                   tuple(allocs), tuple(launches), tuple(outputs))
