"""What a reduction accumulates: its register type and identity (accumulator_dtype,
identity), its combine step and lanes as C text (Reduction), the reductions of a kernel's phase
(reductions_of), and which float32 sums may add float32 terms before their float64 lanes:
those whose terms the kernel's own producers show are never negative (nonnegative), along a
short row (SHORT_ROW: float32 lanes) or in blocks of FJ_SUM_BLOCK terms (blocks_sum)."""
from __future__ import annotations

import dataclasses

import numpy as np

from . import ops
from .ir import Eqn, Literal, Var
from .templates import fill, indent

# primitive -> (combine functor, identity kind)
COMBINE = {
    "reduce_sum": ("fj_op_sum", "zero"), "reduce_prod": ("fj_op_prod", "one"),
    "reduce_max": ("fj_op_max", "lowest"), "reduce_min": ("fj_op_min", "highest"),
    "reduce_and": ("fj_op_and", "ones"), "reduce_or": ("fj_op_or", "zero"),
    "reduce_xor": ("fj_op_xor", "zero"),
}
SHORT_ROW = 1024       # non-negative float32 terms along rows up to this long sum in float32


def reduce_count(spec) -> int:
    return int(np.prod(spec.reduce_shape, dtype=np.int64))


def accumulator_dtype(primitive: str, dtype: np.dtype, short_row: bool = False) -> np.dtype:
    """The register type: float32 sums in float64 (README: accuracy), except `short_row` ones
    (non-negative terms along a row of at most SHORT_ROW elements, summed in FJ_LANES lanes per
    thread: no lane adds more than 64 terms and nothing cancels, so float32 registers keep
    the relative error below 64 ULP, within the float32 tolerance, and need no conversion per
    element); narrow ints and bools in 32 bits (warp shuffles move 32 or 64 bits), unsigned
    where the result wraps."""
    dtype = np.dtype(dtype)
    if dtype == np.float32 and primitive == "reduce_sum" and not short_row:
        return np.dtype(np.float64)
    if dtype.kind == "b":
        return np.dtype(np.int32)
    if dtype.kind in "iu" and dtype.itemsize < 4:
        wraps = primitive in ("reduce_sum", "reduce_prod")
        return np.dtype(np.uint32 if wraps or dtype.kind == "u" else np.int32)
    return dtype


def identity(kind: str, out: np.dtype, acc: np.dtype) -> str:
    out = np.dtype(out)
    if kind == "zero":
        return ops.c_literal(0, acc)
    if kind == "one":
        return ops.c_literal(1, acc)
    if kind == "ones":
        return ops.c_literal(1 if out.kind == "b" else np.iinfo(acc).max if acc.kind == "u" else -1, acc)
    if out.kind == "f":
        return ops.c_literal(-np.inf if kind == "lowest" else np.inf, acc)
    if out.kind == "b":
        return ops.c_literal(0 if kind == "lowest" else 1, acc)
    info = np.iinfo(out)
    return ops.c_literal(info.min if kind == "lowest" else info.max, acc)


@dataclasses.dataclass(frozen=True)
class Reduction:
    """One reduction of a kernel: its number k among the kernel's reductions, the output
    parameter it is stored to (None: read only inside the kernel), accumulator type and
    combine step.  argmax/argmin carry a (value, index) pair: `acc{k}` and `arg{k}`."""
    k: int
    out: Var
    eqn: Eqn
    store: int | None
    short_row: bool = False  # a row strategy's row of at most SHORT_ROW elements
    blocked: bool = False  # float32 partials of FJ_SUM_BLOCK terms before the float64 lanes

    @property
    def is_arg(self) -> bool:
        return self.eqn.primitive in ("argmax", "argmin")

    @property
    def operand(self) -> Var:
        return self.eqn.inputs[0]

    @property
    def acc_dtype(self) -> np.dtype:
        if self.is_arg:
            dtype = self.operand.dtype
            return np.dtype(np.int32) if dtype.kind == "b" or (dtype.kind in "iu" and dtype.itemsize < 4) else dtype
        return accumulator_dtype(self.eqn.primitive, self.out.dtype, self.short_row)

    @property
    def acc_t(self) -> str:
        return ops.ctype(self.acc_dtype)

    @property
    def arg_t(self) -> str:
        return ops.ctype(self.out.dtype)

    @property
    def flag(self) -> str:
        return "true" if self.eqn.primitive == "argmax" else "false"

    @property
    def functor(self) -> str:
        return COMBINE[self.eqn.primitive][0]

    @property
    def ident(self) -> str:
        if self.is_arg:
            return identity("lowest" if self.eqn.primitive == "argmax" else "highest", self.operand.dtype,
                            self.acc_dtype)
        return identity(COMBINE[self.eqn.primitive][1], self.out.dtype, self.acc_dtype)

    @property
    def arg_ident(self) -> str:
        return ops.c_literal(np.iinfo(self.out.dtype).max, self.out.dtype)

    @property
    def itemsize(self) -> int:
        """Bytes of one (value, index) partial."""
        return self.acc_dtype.itemsize + (self.out.dtype.itemsize if self.is_arg else 0)

    def declare(self, value: str = "acc", arg: str = "arg") -> list[str]:
        """Registers holding the identity."""
        lines = [f"{self.acc_t} {value}{self.k} = {self.ident};"]
        if self.is_arg:
            lines.append(f"{self.arg_t} {arg}{self.k} = {self.arg_ident};")
        return lines

    def declare_lanes(self, count: str = "FJ_LANES", tail: bool = False) -> list[str]:
        """`count` accumulators per thread (`lanes{k}`), each holding the identity; `tail`: and
        one for the elements past the last whole step of lanes (`tail{k}`, see fold_lanes)."""
        lines = [f"{self.acc_t} lanes{self.k}[{count}];"]
        fill = [f"  lanes{self.k}[l] = {self.ident};"]
        if self.is_arg:
            lines.append(f"{self.arg_t} lanes_arg{self.k}[{count}];")
            fill.append(f"  lanes_arg{self.k}[l] = {self.arg_ident};")
        lines += [f"for (int l = 0; l < {count}; ++l) {{"] + fill + ["}"]
        return lines + (self.declare("tail", "tail_arg") if tail else [])

    def lane(self, l: str) -> tuple[str, str]:
        return f"lanes{self.k}[{l}]", f"lanes_arg{self.k}[{l}]"

    def declare_parts(self, count: str) -> list[str]:
        """A blocked sum's float32 partials (`part{k}`) for one block of steps, each zero."""
        return [f"{ops.ctype(self.out.dtype)} part{self.k}[{count}];",
                f"for (int l = 0; l < {count}; ++l) part{self.k}[l] = {identity('zero', self.out.dtype, self.out.dtype)};"]

    def flush_parts(self, count: str) -> list[str]:
        """A blocked sum's partials added into its lanes, in the lanes' type."""
        return [f"for (int l = 0; l < {count}; ++l) "
                f"lanes{self.k}[l] = {self.functor}()(lanes{self.k}[l], ({self.acc_t})part{self.k}[l]);"]

    def tail(self) -> tuple[str, str]:
        return f"tail{self.k}", f"tail_arg{self.k}"

    def fold_lanes(self, count: str = "FJ_LANES", tail: bool = False) -> list[str]:
        """`acc{k}` (and `arg{k}`): the thread's `count` lanes (a power of two) combined pairwise
        (fj_fold, kernels/block_reduce.h), then `tail{k}`.  The tail has its own register
        because on the host the lanes are one vector in memory: a scalar update of one lane
        between the vector steps and the fold stalled each row's fold on the store (a sum
        over rows of 33 floats took three times as long as over rows of 32)."""
        if self.is_arg:
            lines = [f"fj_fold_arg<{self.flag}>(lanes{self.k}, lanes_arg{self.k});",
                     f"{self.acc_t} acc{self.k} = lanes{self.k}[0];",
                     f"{self.arg_t} arg{self.k} = lanes_arg{self.k}[0];"]
            return lines + ([self.merge(f"acc{self.k}", f"arg{self.k}", *self.tail())] if tail else [])
        folded = f"fj_fold(lanes{self.k}, {self.functor}())"
        if tail:
            folded = f"{self.functor}()({folded}, tail{self.k})"
        return [f"{self.acc_t} acc{self.k} = {folded};"]

    def read(self, w, index) -> str:
        """The operand's element at `index`, in the accumulator's type."""
        value = w.read(self.operand, index)
        return value if self.acc_dtype == self.operand.dtype else f"({self.acc_t}){value}"

    def step(self, acc: str, arg: str, value: str, position: str = "r") -> str:
        """Combine one element (and its position along the reduced axes) into (acc, arg)."""
        if self.is_arg:
            return f"fj_arg_combine<{self.flag}>({acc}, {arg}, {value}, ({self.arg_t}){position});  // {self.eqn.primitive}"
        return f"{acc} = {self.functor}()({acc}, {value});  // {self.eqn.primitive}"

    def merge(self, acc: str, arg: str, other: str, other_arg: str) -> str:
        """Combine another partial into (acc, arg)."""
        if self.is_arg:
            return f"fj_arg_combine<{self.flag}>({acc}, {arg}, {other}, {other_arg});"
        return f"{acc} = {self.functor}()({acc}, {other});"

    def result(self) -> list[str]:
        """`res{k}`: the reduction's value in the output type, from acc/arg."""
        if self.is_arg:
            return [f"const {self.arg_t} res{self.k} = arg{self.k};"]
        out_t = ops.ctype(self.out.dtype)
        return [f"const {out_t} res{self.k} = fj_convert<{out_t}>(acc{self.k});"]


def reductions_of(spec, phase, rows: bool = False) -> list[Reduction]:
    """The reductions of `phase`; `rows`: computed by the row strategy (a row per team, each
    thread in FJ_LANES lanes)."""
    number = {id(v): k for k, v in enumerate(v for p in spec.phases for v in p)}
    position = {id(v): k for k, v in enumerate(spec.outputs)}
    short = rows and reduce_count(spec) <= SHORT_ROW
    reds = []
    for v in phase:
        eqn = spec_producer(spec, v)
        reds.append(Reduction(number[id(v)], v, eqn, position.get(id(v)), short and nonnegative(spec, eqn.inputs[0])))
    return reds


# Primitives whose result is never negative (or is NaN), whatever their operands.
NONNEGATIVE = {"exp", "exp2", "abs", "sqrt", "rsqrt", "logistic", "square"}
# Primitives whose result is never negative when no operand is.
CLOSED = {"add", "mul", "div", "max", "min", "select_n", "reduce_max", "reduce_min", "reduce_sum",
          "broadcast_in_dim", "reshape", "squeeze", "expand_dims", "transpose", "slice", "copy",
          "integer_pow", "convert_element_type"}


def nonnegative(spec, v, depth: int = 8) -> bool:
    """Whether every value of `v` is >= 0 or NaN, as its producers in the kernel show (a
    kernel input is not known to be)."""
    if isinstance(v, Literal):
        return not (v.value < 0)
    eqn = next((e for e in spec.eqns if any(o is v for o in e.outputs)), None)
    if eqn is None or depth == 0:
        return False
    if eqn.primitive in NONNEGATIVE:
        return True
    if eqn.primitive == "integer_pow" and eqn.params["y"] % 2 == 0:
        return True
    if eqn.primitive == "mul" and eqn.inputs[0] is eqn.inputs[1]:
        return True
    operands = eqn.inputs[1:] if eqn.primitive == "select_n" else eqn.inputs
    return eqn.primitive in CLOSED and all(nonnegative(spec, x, depth - 1) for x in operands)


def blocks_sum(spec, red) -> bool:
    """Whether `red` sums its float32 terms in float32 partials of FJ_SUM_BLOCK terms before its
    float64 lanes (kernels/common.h): a sum whose terms are never negative (a 2-norm's squares),
    so that each partial is within FJ_SUM_BLOCK - 1 float32 roundings of its exact value and the
    result within as many of the float64 sum's (README: Reductions)."""
    return (red.eqn.primitive == "reduce_sum" and red.out.dtype == np.float32
            and red.acc_dtype == np.float64 and nonnegative(spec, red.operand))


def sum_blocks(reds, bodies, rest: str, lanes: str, end: str, stride: str) -> str:
    """The loop over blocks of FJ_SUM_BLOCK steps of a thread's elements (kernels/
    reduce_blocks.cu.in) where some of `reds` are blocked, before the element loop of steps
    (`rest`: its position, `lanes` its accumulators, `end` the row's end, `stride` between a
    thread's lanes); `bodies` from lane_bodies."""
    blocked = [red for red in reds if red.blocked]
    if not blocked:
        return ""
    return fill("reduce_blocks.cu.in", sums=", ".join(f"acc{red.k}" for red in blocked), rest=rest, lanes=lanes,
                end=end, stride=stride, declare=indent([line for red in blocked for line in red.declare_parts(lanes)], 3),
                body=indent(bodies[2], 5), flush=indent([line for red in blocked for line in red.flush_parts(lanes)], 3))


def spec_producer(spec, v) -> Eqn:
    for e in spec.eqns:
        if any(o is v for o in e.outputs):
            return e
    raise KeyError("reduction without its equation")
