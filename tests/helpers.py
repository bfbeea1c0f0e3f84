"""The one helper that compares fusejit with jax.jit on every verification path.

verify(f, *args) runs f through
  1. the host backend (host fast mode),
  2. the emulate backend (the exact CUDA source, real grid/block sizes, one OS thread per
     CUDA thread, under AddressSanitizer and UBSan),
and diffs each against jax.jit (shape and dtype exactly, values by the dtype tolerance in
fusejit.check.TOLERANCES, deliberate differences in OVERRIDES below), checks that both
backends compiled the same CUDA source and that the inputs were not modified,
  3. compiles that source with NVRTC for sm_80 and sm_90, and
  4. runs the graph in the interpreter (the first calls' tier, fusejit/interpret.py) where
     it covers the graph: its results must equal the host kernels' bit for bit, or, where
     a reduction or library call orders its arithmetic differently, match jax.jit; a map
     graph also runs block by block (fusejit/chunked.py), to the same bits.
"""
from __future__ import annotations

import functools
import os

import ml_dtypes
import numpy as np

import fusejit
from fusejit import backends, chunked, halves, interpret, nvrtc, ops, ufuncs
from fusejit.check import compare

ARCHS = ("sm_80", "sm_90")

# Deliberate differences from jax.jit: primitive -> tolerance override, with the reason.
OVERRIDES = {
    # XLA and the C library use different approximations near the poles and zeros.
    "lgamma": dict(rtol=1e-4, atol=1e-5),
    "digamma": dict(rtol=1e-4, atol=2e-5),
    # XLA's float32 erf_inv is a polynomial good to a few ULP; CUDA/our host version are tighter.
    "erf_inv": dict(rtol=1e-4, atol=1e-5),
    # tan, pow and the inverse hyperbolics lose digits near poles/cancellation in both libraries.
    "tan": dict(rtol=1e-4, atol=1e-5),
    "pow": dict(rtol=1e-4, atol=1e-6),
    # A running sum passes near zero: XLA's float32 accumulation error (eps * sum|x|) is absolute.
    "cumsum": dict(atol=2e-5),
}

FLOATS = (np.float32, np.float64)
HALVES = (np.float16, np.dtype(ml_dtypes.bfloat16).type)  # computed in float32 (fusejit/halves.py)
SIGNED = (np.int8, np.int16, np.int32, np.int64)
UNSIGNED = (np.uint8, np.uint16, np.uint32, np.uint64)
INTS = SIGNED + UNSIGNED
ALL_DTYPES = FLOATS + INTS + (np.bool_,)


@functools.lru_cache(maxsize=None)
def nvrtc_compile(source: str, arch: str) -> dict:
    """Compile `source` to a cubin for `arch` with NVRTC; ptxas's resources of each kernel."""
    return nvrtc.resource_usage(source, arch)


def element_loop(source: str) -> str:
    """A map kernel's element loop (after its GPU vector path, which repeats the body)."""
    return source[source.index("FJ_GRID_LOOP_FROM("):]


def without_host_paths(source: str) -> str:
    """The kernel source as the GPU compiles it: without the host-only paths that replace the
    element or team loop there (`#if FJ_ROW_GROUPS`, `#if FJ_COLUMN_PIECES`, ... `#else`)."""
    for flag in ("FJ_ROW_GROUPS", "FJ_COLUMN_PIECES", "FJ_TRANSPOSE_TILES", "FJ_PERIODIC_ROWS"):
        while f"#if {flag}\n" in source:
            start = source.index(f"#if {flag}\n")
            source = source[:start] + source[source.index("#else\n", start) + len("#else\n"):]
    return source


def run_host_under_asan(compiled, args, tmp_path, defines=()) -> None:
    """Run the host Compiled's kernels (the host fast mode, with its host-only paths: pieces,
    row groups, stream stores) in an executable of their own built with AddressSanitizer:
    every buffer exactly its size, the inputs' values, each launch as the program makes it
    (`defines`: the -D switches the module was compiled with, conftest.host_defines).
    (The emulation runs the GPU's code under ASan; these paths are compiled out there.)"""
    import subprocess
    from fusejit.backends import cxx
    from fusejit.launch import Launch
    from fusejit.templates import kernels_dir
    program = compiled.program
    assert all(isinstance(step, Launch) for step in program.steps), "only kernel launches"
    buffers = {slot: np.ascontiguousarray(a, dtype) for slot, dtype, a in
               zip(program.input_slots, program.input_dtypes, args)}
    buffers |= {slot: np.zeros(shape, dtype) for slot, shape, dtype, _ in program.allocs}
    buffers |= {slot: np.ascontiguousarray(arr) for slot, arr in program.consts}
    lines = [compiled.source, "#include <cstdio>", "#include <cstdlib>", "int main() {",
             f'  FILE* f = fopen("{tmp_path / "buffers.bin"}", "rb");']
    for slot, arr in buffers.items():  # malloc'd apart, so ASan guards each one's ends
        lines += [f"  void* b{slot} = malloc({max(arr.nbytes, 1)});",
                  f"  if (fread(b{slot}, 1, {arr.nbytes}, f) != {arr.nbytes}) return 2;",
                  f"  void* h{slot} = &b{slot};"]  # the launcher reads a buffer's address from here
    for k, step in enumerate(program.steps):
        params = []
        for j, a in enumerate(step.args):
            if a.slot is None:
                lines.append(f"  {ops.ctype(a.dtype)} s{k}_{j} = {a.value};")
            params.append(f"(void*)&h{a.slot}" if a.slot is not None else f"(void*)&s{k}_{j}")
        lines += [f"  void* args{k}[] = {{{', '.join(params)}}};",
                  f"  {step.kernel}_launch_arrays({step.grid}, 1, args{k}, 0);"]
    lines += ["  return 0;", "}"]
    with open(tmp_path / "buffers.bin", "wb") as f:
        for arr in buffers.values():
            f.write(arr.tobytes())
    (tmp_path / "driver.cpp").write_text("\n".join(lines))
    compiler, _ = cxx.compiler()
    build = subprocess.run([compiler, "-O0", "-g", "-std=c++17", "-fopenmp", "-march=native", "-fsanitize=address",
                            *defines, "-x", "c++", "-I", kernels_dir(), str(tmp_path / "driver.cpp"), "-o",
                            str(tmp_path / "driver")], capture_output=True, text=True)
    assert build.returncode == 0, build.stderr[-3000:]
    run = subprocess.run([str(tmp_path / "driver")], capture_output=True, text=True,
                         env={**os.environ, "ASAN_OPTIONS": "detect_leaks=0"})
    assert run.returncode == 0, f"the host kernels under AddressSanitizer:\n{run.stderr[-3000:]}"


def spills(usage: dict) -> dict:
    """The kernels of an nvrtc_compile report that spill registers to local memory."""
    return {name: r for name, r in usage.items() if r.spill_stores or r.spill_loads}


def verify(fun, *args, static_argnums=(), rtol=None, atol=None, backends=("host", "emulate"), scan=None,
           **kwargs):
    """Assert that fun under fusejit matches jax.jit on every path; returns the host Compiled."""
    backends_ = backends
    before = [np.array(a, copy=True) if isinstance(a, np.ndarray) else None for a in args]
    sources, first = [], None
    for backend in backends:
        jitted = fusejit.jit(fun, static_argnums=static_argnums, backend=backend, scan=scan)
        report = fusejit.check(jitted, *args, rtol=rtol, atol=atol, **kwargs)
        assert report.ok, f"{backend} backend differs from jax.jit:\n{report}"
        compiled = jitted.lower(*args, **kwargs)
        sources.append(list(compiled.modules()))  # the program's module and its loop bodies'
        first = first or compiled
    if first is not None and "host" in backends_ and not static_argnums and not kwargs:
        verify_interpreter(fun, first, args, rtol, atol)
    for b, a in zip(before, args):
        if b is not None:
            np.testing.assert_array_equal(a, b, err_msg="fusejit modified an input")
    assert all(s == sources[0] for s in sources), "backends compiled different CUDA source"
    for source in sources[0]:
        for arch in ARCHS:
            usage = nvrtc_compile(source, arch)
            assert usage, f"NVRTC reported no kernel for {arch}"
            assert not spills(usage), f"kernels spill registers on {arch}: {spills(usage)}"
    return first


# Primitives whose interpreted values may differ from the kernels' in the last bits: the
# interpreter sums and multiplies in NumPy's order (and a library call may see other strides).
REORDERED = {"reduce_sum", "reduce_prod", "cumsum", "cumprod", "cumlogsumexp"}


def verify_interpreter(fun, compiled, args, rtol=None, atol=None):
    """The interpreter on the host Compiled's graph (when it covers it): equal to the host
    kernels bit for bit, or within jax.jit's tolerance where arithmetic is reordered."""
    graph = compiled.graph
    if compiled.key_inputs or not interpret.interpretable(graph):
        return
    lib = ufuncs.wait(backends.get("host"))
    flat = [np.asarray(a) for a in jax_leaves(args)]
    if len(flat) != len(graph.inputs):
        return
    got = interpret.run(graph, lib, flat)
    kernels = compiled.run(flat)
    reordered = any(e.primitive in REORDERED or e.primitive in library_primitives() for e in graph.eqns)
    for k, (a, b) in enumerate(zip(got, kernels)):
        b = np.asarray(b)
        assert a.shape == b.shape and a.dtype == b.dtype, f"interpreter result {k}: {a.dtype}{a.shape} vs {b.dtype}{b.shape}"
        if not reordered:
            assert bitwise_equal(a, b), f"interpreter result {k} differs from the host kernels':\n{a}\n{b}"
    if reordered:
        report = compare(fusejit.jit(fun).reference(*args), compiled.unflatten(got), rtol=rtol, atol=atol)
        assert report.ok, f"interpreter differs from jax.jit:\n{report}"
    plan = chunked.plan(graph)
    if plan is not None:  # a map graph: block by block (small blocks here, a short last one) too
        before = chunked.CHUNK_ELEMENTS
        chunked.CHUNK_ELEMENTS = max(1, plan.shape[0] // 3) * (int(np.prod(plan.shape[1:])) or 1)
        try:
            blocks = chunked.run(plan, graph, lib, flat)
        finally:
            chunked.CHUNK_ELEMENTS = before
        for k, (a, b) in enumerate(zip(blocks, got)):
            assert a.shape == b.shape and a.dtype == b.dtype and bitwise_equal(a, b), \
                f"interpreter result {k}, block by block, differs from the whole-array interpreter's"


def bitwise_equal(a: np.ndarray, b: np.ndarray) -> bool:
    """Equal bits, except that a NaN equals any NaN (its sign and payload are not a value)."""
    if a.dtype.kind == "f" or halves.is_half(a.dtype):  # (ml_dtypes' bfloat16 is of kind "V")
        nan = np.isnan(a)
        if not np.array_equal(nan, np.isnan(b)):
            return False
        a, b = np.where(nan, 0, a), np.where(nan, 0, b)
    return np.array_equal(np.ascontiguousarray(a).view(np.uint8), np.ascontiguousarray(b).view(np.uint8))


@functools.lru_cache(maxsize=None)
def library_primitives() -> frozenset:
    from fusejit import library
    return frozenset(library.LIBRARY)


def jax_leaves(args):
    import jax
    return jax.tree_util.tree_leaves(args)


def rand(rng, shape, dtype, special=False, denormals=False, scale=3.0):
    """Fresh random values of any supported dtype (floats: normal, times `scale`); `special`
    mixes in NaN, inf, -0.0, the largest float and extreme integers; `denormals` adds values
    below the smallest normal (XLA's CPU backend flushes those to zero and fusejit does not:
    see test_footguns.py)."""
    dtype = np.dtype(dtype)
    if dtype.kind == "b":
        return rng.random(shape) < 0.5
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        lo, hi = (max(info.min, -1000), min(info.max, 1000)) if not special else (info.min, info.max)
        x = rng.integers(lo, hi, size=shape, dtype=dtype, endpoint=True)
        return x
    x = (rng.standard_normal(shape) * scale).astype(dtype)
    if special and x.size:
        flat = x.reshape(-1)
        info = ml_dtypes.finfo(dtype)  # (NumPy's finfo has no bfloat16)
        picks = [np.nan, np.inf, -np.inf, -0.0, 0.0, float(info.max), -float(info.max)]
        if denormals:
            picks += [float(info.tiny) / 4, -float(info.tiny) / 8]
        idx = rng.choice(flat.size, size=min(flat.size, len(picks)), replace=False)
        flat[idx] = np.array(picks[: len(idx)]).astype(dtype)
    return x
