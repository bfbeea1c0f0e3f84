"""The GPU code, checked without a GPU by reading NVRTC's output: vector loads and stores in
the PTX, launch bounds, no register spills in ptxas's report (conftest.py checks that for
every module the suite renders), grids sized from the multiprocessor count; and the errors a
GPU user meets (out of memory)."""
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

import fusejit
from fusejit import launch, nvrtc
from fusejit.backends.cuda import CudaBackend
from helpers import ARCHS, nvrtc_compile, rand, spills, verify


def ptx(compiled, arch="sm_90") -> str:
    (source,) = compiled.modules()
    text = nvrtc.compile_source(source, arch, "ptx")
    return text.decode() if isinstance(text, bytes) else text


def memory_ops(text: str) -> set:
    return set(re.findall(r"\b((?:ld|st)\.global(?:\.nc)?(?:\.v[24])?\.[a-z]\d+)", text))


@pytest.mark.parametrize("arch", ARCHS)
def test_float32_map_kernel_moves_16_byte_vectors(arch):
    x, y = rand(np.random.default_rng(0), (4099,), np.float32), rand(np.random.default_rng(1), (4099,), np.float32)
    compiled = verify(lambda x, y: (x * y + jnp.float32(1.5), x > y), x, y)
    ops = memory_ops(ptx(compiled, arch))
    assert {"ld.global.nc.v4.f32", "st.global.v4.f32"} <= ops, ops
    assert "st.global.v4.u8" in ops or "st.global.u32" in ops, ops  # four bools at once


def test_float64_map_kernel_moves_pairs(x64):
    x = rand(np.random.default_rng(2), (1001,), np.float64)
    compiled = verify(lambda x: jnp.sqrt(jnp.abs(x)) * 2.0, x)
    ops = memory_ops(ptx(compiled))
    assert {"ld.global.nc.v2.f64", "st.global.v2.f64"} <= ops, ops


def test_shifted_and_broadcast_reads_stay_scalar_beside_vectors():
    """diff-like shifted reads and a broadcast row are element loads; the array read at the
    kernel's own index and the output are vectors."""
    m, r = rand(np.random.default_rng(3), (64, 256), np.float32), rand(np.random.default_rng(4), (256,), np.float32)
    compiled = verify(lambda m, r: m * r[None, :] + 1.0, m, r)
    source = compiled.rendered[0].source
    assert "fj_load_pack<4>(in0 + i0)" in source and "fj_load_pack<4>(in1" not in source
    ops = memory_ops(ptx(compiled))
    assert {"ld.global.nc.v4.f32", "ld.global.nc.f32", "st.global.v4.f32"} <= ops, ops


def vector_loop(text: str) -> list[str]:
    """The instructions of the first loop that loads a 16-byte vector (its label to the
    branch back), inline-assembly markers left out."""
    lines = text.splitlines()
    load = next(k for k, line in enumerate(lines) if "ld.global.nc.v4" in line)
    start = max(k for k in range(load) if lines[k].startswith("$L"))
    label = lines[start].rstrip(":")
    end = next(k for k in range(load, len(lines)) if lines[k].strip().endswith(f"bra \t{label};")
               or lines[k].split()[-1:] == [f"{label};"])
    return [line.strip() for line in lines[start + 1:end + 1] if line.strip() and not line.strip().startswith("//")]


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_half_type_map_kernels_convert_with_cvt_and_move_16_byte_vectors(arch, dtype):
    """A half-type map kernel converts each way with one cvt instruction, not the ~30
    integer instructions of the host's conversions (which kept a float16 `x * 2 + 1` bound
    by its arithmetic, at about half the memory's speed on an H100), and loads and stores 8
    elements, 16 bytes, at a time."""
    x = jnp.asarray(rand(np.random.default_rng(6), (4099,), np.float32)).astype(dtype)
    compiled = verify(lambda x: x * 2 + 1, x)
    text = ptx(compiled, arch)
    assert {"ld.global.nc.v4.u32", "st.global.v4.u32"} <= memory_ops(text), memory_ops(text)
    name = "f16" if dtype == "float16" else "bf16"
    assert f"cvt.rn.{name}.f32" in text
    if dtype == "float16":
        assert "cvt.f32.f16" in text
    loop = vector_loop(text)
    # No selects (the integer code chose among its cases with selp, ~10 an element); per
    # element about 12 PTX instructions, 65 with the integer code: the widening (bfloat16's
    # three for a shift), the multiply, the rounding (two cvts), the add, the narrowing, and
    # a share of the addressing, the loop's test and the vectors' (un)packing.
    assert not [op for op in loop if op.startswith("selp")] and len(loop) / 8 <= 13, "\n".join(loop)


def test_bfloat16_rounds_with_integer_code_before_compute_capability_8():
    """cvt.rn.bf16.f32 needs compute capability 8.0: a module built for a Turing GPU (sm_75)
    rounds bfloat16 with the integer code instead, and compiles."""
    x = jnp.asarray(rand(np.random.default_rng(7), (1000,), np.float32)).astype(jnp.bfloat16)
    compiled = verify(lambda x: x * 3 - 1, x)
    (source,) = compiled.modules()
    text = nvrtc.compile_source(source, "sm_75", "ptx")
    text = text.decode() if isinstance(text, bytes) else text
    assert "cvt.rn.bf16.f32" not in text and "ld.global" in text
    assert "cvt.rn.bf16.f32" in ptx(compiled, "sm_80")


@pytest.mark.parametrize("offset", [1, 2, 3])
@pytest.mark.parametrize("n", [1, 3, 4, 5, 1027])
def test_misaligned_views_and_odd_tails_on_the_vector_path(n, offset):
    """Views that start 4, 8 or 12 bytes into a buffer fail the alignment test and run
    element by element; sizes that are not a multiple of the vector width finish in the
    element loop.  The emulation runs the vector path with the real grid."""
    base = rand(np.random.default_rng(n), (n + 8,), np.float32)
    x, y = base[offset:offset + n], base[:n]
    assert x.flags.c_contiguous and x.ctypes.data % 16 != y.ctypes.data % 16
    verify(lambda x, y: (x - 2 * y, jnp.exp(x)), x, y)


@pytest.mark.parametrize("cols", [16, 17, 36, 37, 64, 1000, 1001])
def test_rows_kernels_vectorise_when_the_row_length_allows(cols):
    """A map over rows (of any length, powers of two too: an operand broadcast along the rows
    is read at the column, contiguous, not gathered at a flat index modulo the row): vectors
    of 4 elements for rows of 4 or more, one division per vector; where 4 does not divide
    the row a vector's lanes may pass into the next row (a compare and two selects per
    lane)."""
    rng = np.random.default_rng(cols)
    m, r = rand(rng, (65, cols), np.float32), rand(rng, (cols,), np.float32)
    compiled = verify(lambda m, r: jnp.tanh(m * r + 1.0) - r[None, :] * 0.5, m, r)
    (kernel,) = compiled.rendered
    assert "FJ_ROW_SEGMENTS(" in kernel.source and "in1[col]" in kernel.source
    assert "fj_load_pack<4>(in0 + i0)" in kernel.source
    assert ("fj_next" in kernel.source) == (cols % 4 != 0)
    assert {"ld.global.nc.v4.f32", "st.global.v4.f32"} <= memory_ops(ptx(compiled))
    misaligned = rand(rng, (65 * cols + 1,), np.float32)[1:].reshape(65, cols)
    verify(lambda m, r: m * r - 1.0, misaligned, r)


def shared_ops(text: str) -> set:
    return set(re.findall(r"\b((?:ld|st)\.shared(?:\.v[24])?\.[a-z]\d+)", text))


@pytest.mark.parametrize("cols", [100, 128, 1000, 1001, 4096])
def test_row_kernels_move_16_byte_vectors_when_the_row_length_allows(cols):
    """A softmax over rows: the input's loads, the output's stores and the exponentials kept
    in shared memory between passes move as vectors of 4 floats when 4 divides the row and
    each thread of the row's team has a vector (rows of 128 or more: a warp's team up to
    1024, the block's beyond), element by element otherwise.  The emulation runs the vector
    path with the real grid and block (verify); a misaligned view runs the element loops in
    every pass."""
    rng = np.random.default_rng(cols)
    x = rand(rng, (37, cols), np.float32)
    compiled = verify(lambda x: jax.nn.softmax(x, -1), x)
    text = ptx(compiled)
    ops = memory_ops(text) | shared_ops(text)
    vectors = {"ld.global.nc.v4.f32", "st.global.v4.f32", "ld.shared.v4.f32", "st.shared.v4.f32"}
    assert (vectors <= ops) == (cols % 4 == 0 and cols >= 128), ops
    assert not vectors & ops or cols % 4 == 0
    (kernel,) = compiled.rendered
    conditions = set(re.findall(r"if \((fj_aligned.*)\) \{", kernel.source))
    assert len(conditions) == (cols % 4 == 0 and cols >= 128), conditions  # one for every pass
    misaligned = rand(rng, (37 * cols + 1,), np.float32)[1:].reshape(37, cols)
    verify(lambda x: jax.nn.softmax(x, -1), misaligned)


@pytest.mark.parametrize("dtype, width", [("float16", 8), ("float32", 4), ("float64", 2), ("int8", 8)])
def test_row_vector_path_keeps_every_reduction_exact(x64, dtype, width):
    """Sums, products, extrema, argmax and argmin with ties (the first index wins, whichever
    lane holds it) and a row operand read at the column, on the row vector path: 16-byte
    vectors of the widest type (8 float16, 2 float64; 8 bytes of int8), checked against jax.jit on the
    emulation, which runs that path."""
    rng = np.random.default_rng(width)
    x = jnp.asarray(rng.integers(-3, 4, (19, 256))).astype(dtype)  # many ties
    w = jnp.asarray(rand(rng, (256,), np.float32)).astype(dtype)

    def f(x, w):
        y = x * w
        return (jnp.sum(y, 1), jnp.max(y, 1), jnp.min(x, 1), jnp.argmax(x, 1), jnp.argmin(y, 1),
                jnp.prod(jnp.where(x > 0, 1, x), 1))
    compiled = verify(f, x, w)
    sources = "".join(k.source for k in compiled.rendered)
    assert f"fj_load_pack<{width}>(in0 + (i * 256 + fj_r0))" in sources
    assert f"fj_load_pack<{width}>(in1 + fj_r0)" in sources
    ops = memory_ops(ptx(compiled))
    assert any(re.match(r"ld\.global\.nc\.v[24]\.", op) for op in ops), ops


@pytest.mark.parametrize("shape", [(100_003,), (3, 40_000), (3, 40_001)])
def test_split_reductions_move_16_byte_vectors_in_segments_that_start_on_one(shape):
    """A few long rows, each cut into segments across blocks: each segment starts on a vector
    (its length a multiple of 4), the last one's odd end goes through the element loops, and
    rows start on vectors when 4 divides their length (a single row always does).  The
    emulation runs the segments with the real grid; a misaligned view runs the element loops."""
    rng = np.random.default_rng(shape[-1])
    x = rand(rng, shape, np.float32)

    def f(x):
        return jnp.sum(x * x, -1), jnp.argmax(x, -1), jnp.min(x, -1)
    compiled = verify(f, x)
    sources = "".join(k.source for k in compiled.rendered)
    vectors = len(shape) == 1 or shape[-1] % 4 == 0
    assert "rows split across blocks" in sources
    assert ("fj_load_pack<4>(in0" in sources) == vectors
    assert ("ld.global.nc.v4.f32" in memory_ops(ptx(compiled))) == vectors
    misaligned = rand(rng, (x.size + 1,), np.float32)[1:].reshape(shape)
    verify(f, misaligned)


def loop_containing(text: str, needle: str) -> list[str]:
    """The instructions of the innermost loop (label to branch back) around the first line
    holding `needle`."""
    lines = [line.strip() for line in text.splitlines()]
    at = next(k for k, line in enumerate(lines) if needle in line)
    for start in range(at, -1, -1):
        if lines[start].startswith("$L"):
            label = lines[start].rstrip(":")
            end = next((k for k in range(at, len(lines)) if lines[k].endswith(f"{label};")), None)
            if end is not None:
                return lines[start + 1:end + 1]
    raise AssertionError(f"no loop around {needle}")


@pytest.mark.parametrize("dtype", [np.float32, np.int32])
def test_column_reductions_keep_partials_in_registers_with_four_loads_in_flight(dtype):
    """A sum (and argmax) down the columns: each GPU thread walks its column into FJ_LANES
    registers, 4 rows a step, so its loop holds 4 independent loads and no shared memory
    (the partials went through shared memory per element before: one load in flight per
    thread, a load-add-store chain).  The emulation runs that loop (verify)."""
    x = np.abs(rand(np.random.default_rng(9), (1001, 300), dtype))  # sums without cancellation
    compiled = verify(lambda x: (jnp.sum(x * 2, 0), jnp.argmax(x, 0)), x)
    (source,) = compiled.modules()
    assert "#if FJ_COLUMN_REGISTERS" in source
    loop = loop_containing(ptx(compiled), "ld.global.nc")
    loads = [op for op in loop if op.startswith("ld.global")]
    assert len(loads) == 4 and not [op for op in loop if ".shared" in op], "\n".join(loop)


def test_column_reductions_with_too_many_partials_for_registers_accumulate_in_shared_memory(x64):
    """Twelve float64 reductions down the columns would hold 96 registers of partials: the
    kernel keeps only the loop that accumulates in shared memory, and spills nothing."""
    x = rand(np.random.default_rng(10), (77, 40), np.float64)
    compiled = verify(lambda x: [jnp.sum(x * k, 0) for k in range(1, 13)], x)
    sources = list(compiled.modules())
    assert not any("#if FJ_COLUMN_REGISTERS" in s for s in sources)


KINDS = {
    "map": (lambda x: x * 2 + 1, (1000,)),
    "rows": (lambda x: jax.nn.softmax(x, -1), (8, 100)),
    "columns": (lambda x: jnp.sum(x, 0), (300, 64)),
    "split": (lambda x: jnp.sum(jnp.exp(x)), (100_000,)),
    "scan": (lambda x: jnp.cumsum(x, 0), (50, 3)),
    "block loop": (lambda x: lax.scan(lambda c, _: (jnp.tanh(c @ x[:8, :8]), c.sum()), x[0, :8], None, length=5),
                   (8, 8)),
}


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_every_kernel_kind_declares_its_launch_bounds(kind):
    fun, shape = KINDS[kind]
    x = rand(np.random.default_rng(5), shape, np.float32) * 0.1
    compiled = fusejit.jit(fun, scan="loop").lower(x)
    sources = list(compiled.modules())
    assert sources
    for source in sources:
        text = nvrtc.compile_source(source, "sm_90", "ptx")
        text = text.decode() if isinstance(text, bytes) else text
        entries = re.findall(r"\.entry (\w+)", text)
        assert entries and len(re.findall(r"\.maxntid 256, 1, 1", text)) == len(entries)
        assert len(re.findall(r"\.minnctapersm [12]\b", text)) == len(entries)


def test_many_reductions_are_spread_over_kernels_whose_accumulators_fit_registers(x64):
    """72 reductions of one operand's rows would need hundreds of registers of accumulator
    lanes per thread (ptxas would spill them): the plan gives them to several kernels."""
    xs = [rand(np.random.default_rng(6 + k), (9, 33), dtype, special=True)
          for k, dtype in enumerate((np.int64, np.uint64, np.int32, np.int8))]

    def f(*xs):
        return [(jnp.sum(x, 1), jnp.prod(x, 1), jnp.max(x, 1), jnp.min(x, 1), jnp.argmax(x, 1), jnp.argmin(x, 1),
                 jnp.bitwise_xor.reduce(x, 1) if hasattr(jnp.bitwise_xor, "reduce") else jnp.sum(x ^ 1, 1))
                for x in xs]
    compiled = verify(f, *xs)
    assert compiled.kernel_count > 1
    for arch in ARCHS:
        assert not spills(nvrtc_compile(compiled.source, arch))


class FakeCuPy:
    """What CudaBackend.device_info reads from CuPy: the current device and its properties."""

    class cuda:
        class Device:
            id = 0
            compute_capability = "90"

        class runtime:
            @staticmethod
            def getDeviceProperties(device):
                return {"multiProcessorCount": 114}


def test_cuda_grid_is_sized_from_the_multiprocessor_count_at_run_time():
    backend = CudaBackend.__new__(CudaBackend)
    backend.cp = FakeCuPy
    info = backend.device_info()
    assert (info.arch, info.multiprocessors) == ("sm_90", 114)
    assert info.grid(10**9) == 114 * info.blocks_per_unit  # capped at blocks per multiprocessor
    assert info.grid(4096, per_thread=4) == 4  # 256 threads of 4 elements a block
    assert launch.EMULATED_GPU.grid(4096, per_thread=4) == 4


def test_out_of_memory_names_the_call_and_what_to_do(monkeypatch):
    x = rand(np.random.default_rng(7), (1000,), np.float32)
    f = fusejit.jit(lambda x: (x * 2, jnp.sin(x)))
    f(x)
    backend = f.lower(x).backend

    def empty(shape, dtype):
        raise MemoryError("out of memory to allocate 4000 bytes")
    monkeypatch.setattr(backend, "empty", empty)
    monkeypatch.setattr(backend, "allocator", lambda shape, dtype: empty)
    message = r"host memory ran out of memory running '<lambda>'.*4000 bytes.*8,000 bytes per call"
    monkeypatch.setenv("FUSEJIT_DEBUG", "1")
    with pytest.raises(fusejit.DeviceMemoryError, match=message):
        f(x)  # with debug output: Program.run allocates
    monkeypatch.delenv("FUSEJIT_DEBUG")
    # A steady call's runner takes its allocators when the program is built.
    g = fusejit.jit(lambda x: (x * 3, jnp.cos(x)))
    with pytest.raises(fusejit.DeviceMemoryError, match=message):
        g(x)


def test_an_allocation_beyond_the_address_space_is_a_clear_error():
    """An output of 2^48 bytes (more than a process's address space, whatever the system's
    overcommit policy): the host pool's mapping fails, and the call says what and how much."""
    f = fusejit.jit(lambda x: jnp.zeros((1 << 23, 1 << 23), np.float32) + x)
    message = r"host memory ran out of memory running '<lambda>': could not map 281,474,976,710,656 bytes"
    with pytest.raises(fusejit.DeviceMemoryError, match=message):
        f(np.float32(1))
