"""The elementwise library: ops.ELEMENTWISE's C expressions as precompiled loops.

One loop per (primitive, operand dtypes, params) in CATALOGUE, generated from the same rules
the kernels' code comes from and compiled with the host backend's flags against the same
prelude, so each loop computes exactly what a kernel computes for that primitive.  The
library is built once per machine into the toolchain directory (as the precompiled prelude
is), in the background when the host backend starts; the interpreter uses it once it is
ready.  `apply` runs one loop over NumPy arrays.
"""
from __future__ import annotations

import ctypes
import concurrent.futures
import os
import tempfile
import threading
import warnings

import numpy as np

from . import cache, config, ops
from .templates import fill, kernels_dir

FLOATS = ("float32", "float64")
INTS = ("int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64")
NUMERIC = FLOATS + INTS
ALL = NUMERIC + ("bool",)
HALVES = ("float16", "bfloat16")  # storage types: converted to and from only (fusejit/halves.py)

FLOAT_UNARY = ("floor", "ceil", "exp", "exp2", "log", "log1p", "expm1", "sin", "cos", "tan", "asin", "acos",
               "atan", "sinh", "cosh", "tanh", "asinh", "acosh", "atanh", "sqrt", "rsqrt", "cbrt", "logistic",
               "erf", "erfc", "erf_inv", "lgamma", "digamma", "bessel_i1e")


def _catalogue() -> list[tuple[str, tuple[str, ...], str, tuple]]:
    """(primitive, operand dtypes, result dtype, params as sorted items) of every loop."""
    rows = []

    def same(prims, dtypes, arity, out=None, params=()):
        for p in prims:
            for d in dtypes:
                rows.append((p, (d,) * arity, out or d, params))

    same(("add", "sub", "mul", "div", "rem"), NUMERIC, 2)
    same(("max", "min"), ALL, 2)
    same(("atan2", "nextafter", "zeta", "polygamma"), FLOATS, 2)
    same(("and", "or", "xor"), INTS + ("bool",), 2)
    same(("shift_left", "shift_right_arithmetic", "shift_right_logical"), INTS, 2)
    same(("eq", "ne", "lt", "le", "gt", "ge", "eq_to", "lt_to", "le_to"), ALL, 2, out="bool")
    for d in FLOATS:
        for e in (d, "int32", "int64"):
            rows.append(("pow", (d, e), d, ()))
    same(("neg", "abs", "sign", "square"), NUMERIC, 1)
    same(("not",), INTS + ("bool",), 1)
    same(("population_count", "clz"), INTS, 1)
    same(FLOAT_UNARY, FLOATS, 1)
    same(("round",), FLOATS, 1, params=(("rounding_method", 0),))
    same(("round",), FLOATS, 1, params=(("rounding_method", 1),))
    same(("is_finite",), FLOATS, 1, out="bool")
    for half in HALVES:
        rows.append(("round_to_half", ("float32",), "float32", (("dtype", half),)))
    for src in ALL + HALVES:
        for dst in ALL + HALVES:
            if src != dst:
                rows.append(("convert_element_type", (src,), dst, (("new_dtype", dst),)))
    return rows


CATALOGUE = _catalogue()
INDEX = {row: k for k, row in enumerate(CATALOGUE)}
# The scatters' loops: (the elementwise primitive that combines, dtype).
SCATTERS = {"scatter": "set", "scatter-add": "add", "scatter-mul": "mul", "scatter-max": "max", "scatter-min": "min"}
SCATTER_CATALOGUE = [(combine, d) for combine in SCATTERS.values()
                     for d in (NUMERIC if combine in ("add", "mul") else ALL)]


def key_of(primitive: str, in_dtypes, out_dtype, params: dict) -> tuple:
    """The catalogue row for an equation (its params reduced to those the rule reads)."""
    if primitive == "round":
        kept = (("rounding_method", int(params.get("rounding_method", 0))),)
    elif primitive == "convert_element_type":
        kept = (("new_dtype", np.dtype(out_dtype).name),)
    elif primitive == "round_to_half":
        kept = (("dtype", np.dtype(params["dtype"]).name),)
    else:
        kept = ()
    return primitive, tuple(np.dtype(d).name for d in in_dtypes), np.dtype(out_dtype).name, kept


def function_source(k: int, row) -> str:
    primitive, ins, out, params = row
    names = ("x", "y")[:len(ins)]
    expr = ops.ELEMENTWISE[primitive](list(names), [np.dtype(d) for d in ins], np.dtype(out), dict(params))
    c = [ops.ctype(d) for d in ins]
    if len(ins) == 1:
        return f"FJ_UFUNC1(fj_uf_{k}, {c[0]}, {ops.ctype(out)}, ({expr}))  // {primitive}"
    return f"FJ_UFUNC2(fj_uf_{k}, {c[0]}, {c[1]}, {ops.ctype(out)}, ({expr}))  // {primitive}"


def scatter_source(k: int, row) -> str:
    combine, d = row
    expr = "y" if combine == "set" else ops.ELEMENTWISE[combine](["x", "y"], [np.dtype(d)] * 2, np.dtype(d), {})
    return f"FJ_USCATTER(fj_us_{k}, {ops.ctype(d)}, ({expr}))  // {combine}"


def library_source(part: int = 0, parts: int = 1) -> str:
    rows = [function_source(k, row) for k, row in enumerate(CATALOGUE) if k % parts == part]
    rows += [scatter_source(k, row) for k, row in enumerate(SCATTER_CATALOGUE) if k % parts == part]
    definitions = 'extern "C" int fj_uf_threads = 0;\n' if part == 0 else ""
    return fill("ufuncs.cpp.in", definitions=definitions, functions="\n".join(rows))


class Library:
    """The loaded library: `apply(row, inputs, out)` runs one loop."""

    def __init__(self, path: str):
        self.dll = ctypes.CDLL(path)
        self.functions = {}
        signature = [ctypes.c_longlong, ctypes.c_void_p, ctypes.c_longlong, ctypes.c_void_p, ctypes.c_longlong,
                     ctypes.c_void_p]
        for k in range(len(CATALOGUE)):
            fn = getattr(self.dll, f"fj_uf_{k}")
            fn.argtypes, fn.restype = signature, None
            self.functions[k] = fn
        self.scatters = {}  # (primitive, dtype) -> loop
        for k, (combine, d) in enumerate(SCATTER_CATALOGUE):
            fn = getattr(self.dll, f"fj_us_{k}")
            fn.argtypes = [ctypes.c_longlong, ctypes.c_longlong] + [ctypes.c_void_p] * 4
            fn.restype = None
            for primitive in [p for p, c in SCATTERS.items() if c == combine]:
                self.scatters[(primitive, np.dtype(d))] = fn

    def set_threads(self, count: int) -> None:
        """The threads each loop may use (0: OpenMP's default)."""
        ctypes.c_int.in_dll(self.dll, "fj_uf_threads").value = count

    def function(self, row: tuple):
        return self.functions[INDEX[row]]

    def apply(self, row: tuple, inputs: list[np.ndarray], out: np.ndarray) -> np.ndarray:
        """out[...] = the row's expression of `inputs`, each contiguous of out's size, or of size 1."""
        return self.call(self.functions[INDEX[row]], inputs, out)

    def has_scatter(self, primitive: str, dtype: np.dtype) -> bool:
        return (primitive, dtype) in self.scatters

    def scatter(self, primitive: str, out: np.ndarray, base: np.ndarray, offsets: np.ndarray | None,
                values: np.ndarray) -> None:
        """In place, in update order: out.flat[base[b] + offsets[w]] = combine(that, values[b, w])
        for every window b whose base is not negative; `offsets` None: 0, 1, ...  `out` and
        `values` C-contiguous of one dtype, `base` and `offsets` C-contiguous int64."""
        assert out.flags.c_contiguous and values.flags.c_contiguous and values.dtype == out.dtype
        assert base.dtype == np.int64 and base.flags.c_contiguous and values.shape == (base.size, values.shape[1])
        assert offsets is None or (offsets.dtype == np.int64 and offsets.flags.c_contiguous
                                   and offsets.size == values.shape[1])
        fn = self.scatters[(primitive, out.dtype)]
        fn(base.size, values.shape[1], base.ctypes.data, None if offsets is None else offsets.ctypes.data,
           values.ctypes.data, out.ctypes.data)

    @staticmethod
    def call(fn, inputs: list[np.ndarray], out: np.ndarray) -> np.ndarray:
        a = inputs[0]
        b = inputs[1] if len(inputs) > 1 else a
        fn(out.size, a.ctypes.data, 1 if a.size == out.size else 0, b.ctypes.data,
           1 if b.size == out.size else 0, out.ctypes.data)
        return out


def build(backend, output: str) -> None:
    """Compile the library into `output`: in parts, in parallel, then one link."""
    from .backends import cxx
    from .backends.host import compile_jobs, link_flags
    link, libs = link_flags()
    flags = [f for f in backend.flags if f not in link]
    parts = max(1, min(compile_jobs(), 8))
    with tempfile.TemporaryDirectory(prefix="fusejit-ufuncs-") as tmp:
        def compile_part(p):
            source = library_source(p, parts)
            src = os.path.join(tmp, f"part{p}.cpp")
            with open(src, "w") as f:
                f.write(source)
            obj = os.path.join(tmp, f"part{p}.o")
            cxx.compile_files([src], obj, [*flags, "-c", "-I", kernels_dir()], source)
            return obj
        with concurrent.futures.ThreadPoolExecutor(parts) as pool:
            objects = list(pool.map(compile_part, range(parts)))
        cxx.compile_files(objects, output, ["-fopenmp", *link], library_source(), libs)


_lock = threading.Lock()
_future: concurrent.futures.Future | None = None
_library: Library | None = None  # the future's result once it has one (loaded() reads it on every scatter)


def _load(backend) -> Library:
    key = backend.compile_key(library_source())  # the flags, the compiler, kernels/ and every loop
    root = config.toolchain_dir()
    path = cache.lookup("ufuncs", key, ".so", root)
    if path is None:
        config.debug(1, f"building fusejit's elementwise library ({len(CATALOGUE)} loops, once per machine)")
        path = cache.store("ufuncs", key, ".so", lambda out: build(backend, out), root)
    return Library(path)


def start(backend) -> concurrent.futures.Future:
    """The library's future: loaded from the toolchain directory, or built there in a thread
    (which Python waits for when it exits, so a build once begun is kept)."""
    global _future
    with _lock:
        if _future is None:
            _future = concurrent.futures.Future()
            threading.Thread(target=_resolve, args=(_future, backend), name="fusejit-ufuncs").start()
        return _future


def _resolve(future, backend) -> None:
    global _library
    try:
        library = _load(backend)
        _library = library
        future.set_result(library)
    except BaseException as e:  # reported by whoever asks for the library (ready/wait)
        future.set_exception(e)


_warned = False


def ready(backend) -> Library | None:
    """The library if it is loaded now, else None: its build is under way, or failed (with a
    warning, once: first calls then wait for the compiler)."""
    global _warned
    future = start(backend)
    if not future.done():
        return None
    error = future.exception()
    if error is None:
        return future.result()
    if not _warned:
        _warned = True
        warnings.warn(f"fusejit: the interpreter's elementwise library could not be built, so first calls wait for "
                      f"the compiler: {error}", stacklevel=3)
    return None


def loaded() -> Library | None:
    """The library if it has been loaded in this process (by `start`), else None; starts nothing."""
    return _library


def wait(backend) -> Library:
    return start(backend).result()
