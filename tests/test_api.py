"""The decorator: forms, specialization and retracing, pytrees, errors, check, as_text."""
import functools
import os
import re
import warnings

import jax
import jax.numpy as jnp
from jax import lax
import numpy as np
import pytest

import fusejit
from fusejit import ops
from helpers import rand


def rng(seed=0):
    return np.random.default_rng(seed)


def test_decorator_forms():
    x = rand(rng(), (5,), np.float32)

    @fusejit.jit
    def bare(x):
        return x * 2

    @fusejit.jit(static_argnums=(1,))
    def with_kwargs(x, k):
        return x * k

    from fusejit import fusejit as alias

    @alias
    def aliased(x):
        return x + 1

    np.testing.assert_array_equal(bare(x), x * 2)
    np.testing.assert_array_equal(with_kwargs(x, 3), x * 3)
    np.testing.assert_array_equal(aliased(x), x + 1)
    assert bare.__name__ == "bare" and isinstance(bare(x), np.ndarray)


def test_donation_is_accepted_and_changes_nothing():
    """donate_argnums/donate_argnames, as jax.jit takes them, so that a decorator switches over
    unchanged; fusejit writes into no argument, so the donated array stays valid."""
    x = rand(rng(2), (6,), np.float32)
    before = x.copy()
    step = fusejit.jit(lambda p, g: p - 0.1 * g, donate_argnums=0)
    named = fusejit.jit(lambda p, g: p - 0.1 * g, donate_argnames="p")
    assert fusejit.check(step, x, x).ok and fusejit.check(named, x, x).ok
    np.testing.assert_array_equal(named(x, x), step(x, x))
    np.testing.assert_array_equal(x, before)


def test_retrace_exactly_when_jax_would():
    @fusejit.jit(static_argnames=("power",))
    def f(x, power=2):
        return x ** power

    x32, x64_in = rand(rng(1), (4,), np.float32), rand(rng(2), (4,), np.float32)
    f(x32)
    f(x64_in)                       # same shape and dtype: no retrace
    assert f.trace_count == 1
    f(x32, power=3)                 # new static value
    assert f.trace_count == 2
    f(x32, power=3)
    f(jnp.asarray(x32), power=3)    # a jax.Array with the same aval: no retrace
    assert f.trace_count == 2
    f(rand(rng(3), (5,), np.float32))   # new shape
    f(rand(rng(4), (4,), np.int32))     # new dtype
    assert f.trace_count == 4
    f(np.float32(2.0))              # strong-typed scalar
    f(2.0)                          # weak-typed Python scalar: a different aval, as in jax.jit
    assert f.trace_count == 6


def test_pytrees_in_and_out_and_kwargs():
    @fusejit.jit
    def f(params, x, *, scale):
        return {"y": params["w"] * x + params["b"], "parts": [x * scale, None, (x - 1,)]}

    p = {"w": rand(rng(5), (3,), np.float32), "b": np.float32(0.5)}
    x = rand(rng(6), (3,), np.float32)
    report = fusejit.check(f, p, x, scale=2.0)
    assert report.ok, str(report)
    out = f(p, x, scale=2.0)
    assert out["parts"][1] is None and isinstance(out["parts"][2], tuple)


def test_methods_and_static_self():
    class Model:
        def __init__(self):
            self.y = jnp.array(1.0)

        @functools.partial(fusejit.jit, static_argnums=(0,))
        def method(self, x):
            return x + self.y

        @fusejit.jit
        def not_static(self, x):
            return x + self.y

    m = Model()
    np.testing.assert_allclose(m.method(jnp.array(2.0)), 3.0)
    with pytest.raises(TypeError, match="not marked as static"):
        m.not_static(jnp.array(2.0))


def test_errors_match_jax_jit():
    @fusejit.jit(static_argnums=(1,))
    def f(x, s):
        return x + len(s)

    with pytest.raises(ValueError, match="Non-hashable static arguments are not supported"):
        f(np.ones(2), [1, 2])
    with pytest.raises(TypeError):
        fusejit.jit(lambda x: x)(np.ones(2), np.ones(2))  # wrong number of arguments
    with pytest.raises(TypeError, match="not marked as static"):
        fusejit.jit(lambda x: x)("a string")
    with pytest.raises(jax.errors.TracerBoolConversionError):
        fusejit.jit(lambda x: x if x > 0 else -x)(np.float32(1.0))
    with pytest.raises(ValueError, match="static_argnums"):
        fusejit.jit(lambda x: x, static_argnums=(3,))


def mul_add(a, b):
    """A reduction's own combining function: lax.reduce of it is the generic `reduce`
    primitive, which fusejit does not support."""
    return a * b + 1


def test_unsupported_primitive_names_it_and_the_source_line():
    def uses_reduce(x):
        return lax.reduce(x, np.float32(0), mul_add, (0,)) + 1

    with pytest.raises(fusejit.UnsupportedError) as info:
        fusejit.jit(uses_reduce)(np.ones(4, np.float32))
    message = str(info.value)
    assert "'reduce'" in message and "host" in message
    assert re.search(r"test_api\.py:\d+", message) and "lax.reduce(x, np.float32(0), mul_add, (0,))" in message
    assert info.value.primitive == "reduce"


def test_unsupported_primitive_inside_a_loop_body_is_named_before_anything_runs():
    def body(c, x):
        return c + lax.reduce(x[:1], np.float32(0), mul_add, (0,)), c

    with pytest.raises(fusejit.UnsupportedError) as info:
        fusejit.jit(lambda xs: lax.scan(body, xs[0, :1], xs))(np.ones((5, 4), np.float32))
    assert info.value.primitive == "reduce" and "lax.reduce(x[:1], np.float32(0), mul_add, (0,))" in str(info.value)


def test_a_loop_body_without_user_frames_takes_the_loop_equations_line(monkeypatch):
    """Equations of a jnp function's own jaxpr carry no user frame (jnp.searchsorted's scan
    body, for one): an error inside such a loop body names the user line of the loop."""
    from fusejit import jaxcompat
    real = jaxcompat.source_of
    monkeypatch.setattr(jaxcompat, "source_of", lambda eqn: real(eqn) if eqn.primitive.name == "scan" else "")

    def body(c, x):
        return c + lax.reduce(x[:1], np.float32(0), mul_add, (0,)), c

    with pytest.raises(fusejit.UnsupportedError) as info:
        fusejit.jit(lambda xs: lax.scan(body, xs[0, :1], xs))(np.ones((5, 4), np.float32))
    assert info.value.primitive == "reduce" and "lax.scan(body, xs[0, :1], xs)" in str(info.value)


def test_a_jax_function_jitted_directly_names_the_callers_line():
    """When no frame of the equation's traceback is the user's (a JAX function handed to
    fusejit.jit as it is), the error names the line that called it, never fusejit's own."""
    reduce = functools.partial(lax.reduce, init_values=np.float32(0), computation=mul_add, dimensions=(0,))
    with pytest.raises(fusejit.UnsupportedError) as info:
        fusejit.jit(reduce)(np.ones(3, np.float32))
    message = str(info.value)
    assert "fusejit.jit(reduce)(np.ones(3, np.float32))" in message, message
    assert "fusejit/" not in message.split("\n  at ", 1)[1]


def branch_on_a_value(params, scale, x, *, offset, bias):
    """Python control flow on traced values: the error names the argument it depends on."""
    if offset == "bad" and bias.sum() > 0:
        return x
    return x * scale if params["w"][0] > 0 else x


@pytest.mark.parametrize("case", ["a leaf of a dict", "a keyword argument"])
def test_a_tracing_error_names_the_function_and_argument_as_jax_jit_does(case):
    """fusejit traces a function of the flat dynamic arguments; JAX's message still names the
    user's function, its line and the argument (`params['w']`, `bias`), word for word as
    jax.jit's does."""
    r = rng(13)
    params = {"w": rand(r, (3,), np.float32), "b": rand(r, (2,), np.float32)}
    args = (params, 2.0, rand(r, (4,), np.float32))
    kwargs = dict(offset="bad" if case == "a keyword argument" else "good", bias=rand(r, (2,), np.float32))
    messages = []
    for jit in (fusejit.jit, jax.jit):
        with pytest.raises(jax.errors.TracerBoolConversionError) as info:
            jit(branch_on_a_value, static_argnums=1, static_argnames="offset")(*args, **kwargs)
        messages.append(str(info.value))
    assert messages[0] == messages[1]
    assert "while tracing the function branch_on_a_value at" in messages[0]
    assert ("argument params['w']" if case == "a leaf of a dict" else "argument bias") in messages[0]


def test_unsupported_dtypes_are_clear_errors():
    with pytest.raises(fusejit.UnsupportedError, match="float8_e4m3fn"):
        fusejit.jit(lambda x: x * 2)(np.ones(3, jnp.float8_e4m3fn))
    with pytest.raises(fusejit.UnsupportedError, match="float8_e5m2"):
        fusejit.jit(lambda x: x.astype(jnp.float8_e5m2))(np.ones(3, np.float32))
    with pytest.raises(fusejit.UnsupportedError, match="complex64"):
        fusejit.jit(lambda x: x * 2)(np.ones(3, np.complex64))
    with pytest.raises(fusejit.UnsupportedError, match="complex"):
        fusejit.jit(lambda x: x * 1j)(np.ones(3, np.float32))


def test_check_report_fields_and_table():
    x = rand(rng(7), (9,), np.float32)
    report = fusejit.check(lambda x: (jnp.sin(x) + jnp.cos(x), x > 0), x)
    assert report.ok and len(report.outputs) == 2
    row = report.outputs[0]
    assert (row.shape, row.dtype) == ((9,), "float32")
    assert row.max_abs < 1e-5 and row.max_ulp < 64
    text = str(report)
    assert "max ULP" in text and "pass" in text


@pytest.fixture
def broken_sin(monkeypatch):
    """A deliberately wrong codegen rule: sin emitted as cos."""
    monkeypatch.setitem(ops.ELEMENTWISE, "sin", ops._math("cos"))


def test_check_catches_a_wrong_kernel(broken_sin):
    x = rand(rng(8), (33,), np.float32)
    report = fusejit.check(lambda x: jnp.sin(x) * 3, x)
    assert not report.ok and "beyond" in report.outputs[0].problem
    with pytest.raises(fusejit.MismatchError):
        fusejit.jit(lambda x: jnp.sin(x) * 2, check=True)(x)


def test_fusejit_check_env_diffs_every_call(broken_sin, monkeypatch):
    monkeypatch.setenv("FUSEJIT_CHECK", "1")
    with pytest.raises(fusejit.MismatchError):
        fusejit.jit(lambda x: jnp.sin(x) - 1)(rand(rng(9), (5,), np.float32))


def test_check_flags_nan_and_inf_positions():
    from fusejit.check import diff_arrays
    want = np.array([1.0, np.nan, np.inf, 2.0], np.float32)
    assert not diff_arrays("o", want, np.array([1.0, 0.0, np.inf, 2.0], np.float32)).ok
    assert not diff_arrays("o", want, np.array([1.0, np.nan, -np.inf, 2.0], np.float32)).ok
    assert not diff_arrays("o", want, np.array([1.0, np.nan, np.inf, 2.0], np.float64)).ok
    assert diff_arrays("o", want, want.copy()).ok
    assert diff_arrays("o", want, np.array([1.0, np.nan, np.inf, 2.0000002], np.float32)).max_ulp == 1


def test_check_reports_differences_beyond_the_largest_double_without_warnings():
    """Opposite float64 values near the largest double differ by more than a double holds:
    the report says inf, and NumPy's overflow warning (seen once in the fuzz test) is not raised."""
    from fusejit.check import diff_arrays
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        report = diff_arrays("o", np.array([1.7e308, 1.0]), np.array([-1.7e308, 1.0]))
    assert not report.ok and report.max_abs == np.inf and report.max_rel == np.inf


@pytest.mark.parametrize("shape", [(37, 65), (100, 1000), (16, 5000)])
def test_check_judges_a_products_elements_near_zero_against_float64(shape):
    """A float32 product's elements near zero: jax.jit and fusejit (BLAS) sum in different
    orders, each farther from the exact value than float32's tolerance allows there.  The
    float64 judge accepts them; without it the report fails on at least one of the inputs."""
    f = fusejit.jit(lambda a, b: (jnp.einsum("ij,kj->ik", a, b), a.sum(0)))
    plain_failures = 0
    for seed in range(3):
        x = rand(rng(seed), shape, np.float32)
        report = fusejit.check(f, x, x)
        assert report.ok, report
        plain = fusejit.check(f, x, x, float64=False)
        plain_failures += not plain.ok
        if not plain.ok:
            assert "accepted against float64" in report.outputs[0].note, report
            assert "beyond rtol" in plain.outputs[0].problem, plain
    assert plain_failures, "no input needed the judge: the test tests nothing"


def test_the_float64_judge_accepts_only_values_as_close_as_jax_jits():
    """diff_arrays with an `exact` evaluation: fusejit's value is accepted beyond the tolerance
    of jax.jit's only where it is as close to the exact value as jax.jit's rounding allows,
    only where the evaluation is jax.jit's computation, and never past another problem."""
    from fusejit.check import diff_arrays
    r = rng(11)
    exact = r.standard_normal(1000) * 10.0 ** r.integers(-3, 3, 1000)
    unit = 1e-6 + 2e-5 * np.abs(exact)  # float32's tolerance at the exact values
    want = (exact + unit * r.uniform(-0.5, 0.5, 1000)).astype(np.float32)
    want[:5] = exact[:5] + 3 * unit[:5]  # five elements where jax.jit is 3 tolerances off
    closer = want.copy()
    closer[:5] = exact[:5].astype(np.float32)  # fusejit exact there: beyond jax.jit's tolerance
    assert not diff_arrays("o", want, closer).ok
    row = diff_arrays("o", want, closer, exact=exact)
    assert row.ok and row.note.startswith("5 element(s)"), row
    # 1 + 2q tolerances with q = 3: fusejit within 7 is accepted, at 9 is not
    within, beyond = want.copy(), want.copy()
    within[5] = exact[5] + 6.5 * unit[5]
    beyond[5] = exact[5] + 9 * unit[5]
    assert diff_arrays("o", want, within, exact=exact).ok
    row = diff_arrays("o", want, beyond, exact=exact)
    assert not row.ok and row.problem.startswith("1 element(s) beyond"), row
    # an evaluation that is not jax.jit's computation judges nothing
    assert not diff_arrays("o", want, closer, exact=r.standard_normal(1000)).ok
    # nor does the judge pass an output with a NaN in another place
    nan = closer.copy()
    nan[-1] = np.nan
    row = diff_arrays("o", want, nan, exact=exact)
    assert not row.ok and "NaN" in row.problem and "beyond" in row.problem


def test_check_says_when_the_function_has_no_float64_evaluation(broken_sin):
    def f(x):
        assert x.dtype == jnp.float32, "float32 only"
        return jnp.sin(x) * 3
    report = fusejit.check(f, rand(rng(12), (33,), np.float32))
    assert not report.ok
    assert "no float64 evaluation to judge them: AssertionError: float32 only" in report.outputs[0].problem


def test_make_graph_prints_like_make_jaxpr():
    graph = fusejit.make_graph(lambda x: jnp.diff(jnp.sin(x)))(np.ones(5, np.float32))
    text = str(graph)
    assert text.startswith("{ lambda ; a:f32[5]. let")
    assert "sin a" in text and "slice" in text and "pjit" not in text and "jit[" not in text


def test_lower_as_text_shows_graph_plan_and_source():
    x = rand(rng(10), (100,), np.float32)
    text = fusejit.jit(lambda x: jnp.sin(x) + jnp.cos(x)).lower(x).as_text()
    for needle in ("=== fusejit graph ===", "=== fusion plan: 1 kernel(s) ===", "fuses 3 eqns (sin, cos, add)",
                   "// fused: sin, cos, add", "fj_sin(x0)", "fj_cos(x0)", "out0[i] = v2;"):
        assert needle in text, needle


def test_inputs_from_jax_arrays_and_python_scalars():
    x = jnp.arange(6.0, dtype=jnp.float32)
    report = fusejit.check(lambda x, a, b: x * a + b, x, 2, 0.5)
    assert report.ok, str(report)


def test_nested_jit_is_inlined():
    inner = fusejit.jit(lambda x: x * 2)
    outer = fusejit.jit(lambda x: inner(x) + jax.jit(lambda y: y - 1)(x))
    x = rand(rng(11), (4,), np.float32)
    assert fusejit.check(outer, x).ok
    assert outer.lower(x).kernel_count == 1


def test_debug_and_dump_source(monkeypatch, capfd):
    monkeypatch.setenv("FUSEJIT_DEBUG", "1")
    monkeypatch.setenv("FUSEJIT_DUMP_SOURCE", "1")
    monkeypatch.setenv("FUSEJIT_CACHE", "0")
    fusejit.jit(lambda x: x * 7.25)(np.ones(3, np.float32))
    err = capfd.readouterr().err
    assert "launch fj_lambda_k0 grid=1" in err
    assert "7.25f" in err  # the module source was printed


def test_backend_selection(monkeypatch):
    from fusejit import backends
    assert backends.resolve_name(None) in ("host", "cuda")
    monkeypatch.setenv("FUSEJIT_BACKEND", "emulate")
    assert backends.resolve_name(None) == "emulate"
    assert backends.resolve_name("host") == "host"  # backend= wins over the environment
    with pytest.raises(fusejit.FusejitError, match="unknown fusejit backend"):
        backends.resolve_name("tpu")


@pytest.mark.skipif(__import__("fusejit.backends", fromlist=["x"]).gpu_available(), reason="a GPU is present")
def test_cuda_backend_without_gpu_is_a_clear_error():
    with pytest.raises(fusejit.ToolchainError, match="needs CuPy and a CUDA GPU"):
        fusejit.jit(lambda x: x + 1, backend="cuda")(np.ones(2))


def test_missing_cxx_compiler_says_what_to_install(monkeypatch):
    from fusejit import backends
    from fusejit.backends import cxx
    monkeypatch.setenv("PATH", "")
    monkeypatch.delenv("FUSEJIT_CXX", raising=False)
    monkeypatch.delenv("CXX", raising=False)
    monkeypatch.setenv("FUSEJIT_CACHE", "0")
    cxx.compiler.cache_clear()
    backends._instances.clear()
    try:
        with pytest.raises(fusejit.ToolchainError, match="install g\\+\\+"):
            fusejit.jit(lambda x: x * 1.0625)(np.ones(2, np.float32))
    finally:
        monkeypatch.undo()
        cxx.compiler.cache_clear()
        backends._instances.clear()


def test_missing_nvrtc_says_what_to_install(monkeypatch):
    import sys

    import cupy_backends.cuda.libs as libs
    from fusejit import nvrtc
    monkeypatch.delattr(libs, "nvrtc")
    monkeypatch.setitem(sys.modules, "cupy_backends.cuda.libs.nvrtc", None)
    with pytest.raises(fusejit.ToolchainError, match="nvidia-cuda-nvrtc"):
        nvrtc.compile_source('extern "C" __global__ void k() {}', "sm_90")


def test_host_launches_with_and_without_the_direct_call(monkeypatch):
    """Launches go through kernels/host_call.c (built once per machine) or, where it cannot be
    built, through ctypes, with the array objects' data pointers or (an unknown array layout)
    cells holding the addresses: the same results, and a kernel argument that is not a NumPy
    array is refused either way."""
    from fusejit.backends import host as host_mod
    x = np.random.default_rng(40).random((3, 5)).astype(np.float32)
    fun = lambda x, y: (jnp.sin(x) * y, x.sum(1))  # noqa: E731
    direct = fusejit.jit(fun, backend="host")
    assert fusejit.check(direct, x, x[0, 0]).ok
    launch = direct.lower(x, x[0, 0]).bound[0]
    import sysconfig
    has_headers = os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h"))
    assert (launch.call is not None) == has_headers
    env = [np.float32(1.0)] * 8
    with pytest.raises(TypeError, match="must be a NumPy array"):
        launch(env)
    monkeypatch.setattr(host_mod, "host_extension", lambda: None)
    through_ctypes = fusejit.jit(lambda x, y: (jnp.sin(x) * y, x.sum(1) + 0.0), backend="host")
    assert through_ctypes.lower(x, x[0, 0]).bound[0].call is None
    assert fusejit.check(through_ctypes, x, x[0, 0]).ok
    with pytest.raises(TypeError, match="must be a NumPy array"):
        through_ctypes.lower(x, x[0, 0]).bound[0](env)
    # Arrays of a layout the backend does not know: each buffer's address goes through a cell.
    monkeypatch.setattr(host_mod, "DATA_OFFSET", None)
    by_address = fusejit.jit(lambda x, y: (jnp.sin(x) * y, x.sum(1) - 0.0), backend="host")
    assert all(cell is not None for _, cell, _ in by_address.lower(x, x[0, 0]).bound[0].buffers)
    assert fusejit.check(by_address, x, x[0, 0]).ok
    assert fusejit.check(by_address, x[:2], x[1, 1]).ok


def test_host_modules_hold_one_launcher_per_kernel():
    """Each kernel is compiled into one host launcher (the array-object one); the emulation's
    launchers and table are compiled only there: a second launcher would inline the kernel
    again and double its compile."""
    x = np.random.default_rng(42).random((5, 7)).astype(np.float32)
    f = fusejit.jit(lambda x: (jnp.tanh(x) + x.max(1, keepdims=True), jnp.cumsum(x, 0)), backend="host")
    compiled = f.lower(x)
    names = [k.name for k in compiled.rendered]
    assert len(names) >= 2
    emulation, host_part = compiled.source.split("#elif !defined(__CUDACC__)")
    for name in names:
        assert host_part.count(f"void {name}_launch_arrays(") == 1 and f"{name}_launch(" not in host_part
        assert emulation.count(f"void {name}_launch(") == 1 and f'{{"{name}", {name}_launch}}' in emulation
        assert not hasattr(compiled.module.lib, f"{name}_launch")
    assert not hasattr(compiled.module.lib, "fj_kernel_table")
    assert fusejit.check(f, x).ok


def test_modules_link_as_the_driver_does_with_compilers_other_than_gcc(tmp_path, monkeypatch):
    """GCC links a module against libgomp, libm and libc only (-nostdlib); another compiler's
    driver (clang's names no OpenMP runtime under -nostdlib) links with its defaults."""
    from fusejit import backends, cache
    from fusejit.backends import cxx
    monkeypatch.setenv("FUSEJIT_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("FUSEJIT_TOOLCHAIN_DIR", str(tmp_path / "toolchain"))
    x = np.random.default_rng(43).random((6, 5)).astype(np.float32)
    fun = lambda x: (jnp.exp(x) * 2.0, x.sum(0))  # noqa: E731
    backends._instances.clear()
    try:
        gnu = backends.get("host")
        assert ("-nostdlib" in gnu.flags) == cxx.is_gnu()
        assert fusejit.check(fusejit.jit(fun, backend="host"), x).ok
        monkeypatch.setattr(cxx, "is_gnu", lambda: False)
        backends._instances.clear()
        other = backends.get("host")
        assert "-nostdlib" not in other.flags and other.libs == [] and "-shared" in other.flags
        compiles = cache.stats["compiles"]
        assert fusejit.check(fusejit.jit(fun, backend="host"), x).ok
        assert cache.stats["compiles"] == compiles + 1  # its own module: the flags are in the key
    finally:
        backends._instances.clear()


@pytest.mark.parametrize("jobs", [1, 2, 3, 8])
def test_a_module_of_several_kernels_compiles_in_parts_in_parallel(jobs, tmp_path, monkeypatch):
    """A host module of several kernels compiles as up to FUSEJIT_COMPILE_JOBS parts, each
    a contiguous range of its kernels, at once, then links them: the same results."""
    from fusejit import backends
    from fusejit.backends import cxx, host as host_mod
    monkeypatch.setenv("FUSEJIT_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("FUSEJIT_COMPILE_JOBS", str(jobs))
    backends._instances.clear()
    backends.get("host").precompiled_header()  # built (once per machine) before counting
    calls = []
    compile_files = cxx.compile_files
    monkeypatch.setattr(cxx, "compile_files", lambda sources, output, flags, *rest: (
        calls.append(([os.path.basename(s) for s in sources], [f for f in flags if f.startswith("-DFJ_PART")])),
        compile_files(sources, output, flags, *rest))[1])
    x = np.random.default_rng(44).standard_normal((6, 9)).astype(np.float32)
    f = fusejit.jit(lambda x: (jnp.cumsum(x, 0), jnp.tanh(x) + x.max(1, keepdims=True), x.sum(0) * 2.0,
                               jnp.cumsum(x, 1) - 1.0), backend="host")
    compiled = f.lower(x)
    kernels = len(compiled.rendered)
    assert kernels == 5
    parts = min(jobs, kernels)
    if parts == 1:
        assert calls == [(["module.cu"], [])]
    else:
        compiles, link = calls[:-1], calls[-1]
        assert len(compiles) == parts and link == ([f"part{p}.o" for p in range(parts)], [])
        ranges = [tuple(int(flag.split("=")[1]) for flag in part) for _, part in compiles]
        assert sorted(ranges) == host_mod.part_ranges(compiled.source, kernels, jobs)
        covered = sorted(k for begin, end in ranges for k in range(begin, end))
        assert covered == list(range(kernels)) and all(end > begin for begin, end in ranges)
    assert fusejit.check(f, x).ok
    backends._instances.clear()


def test_compile_jobs_must_be_a_positive_integer(monkeypatch):
    from fusejit.backends import host as host_mod
    for bad in ("0", "two", "-1"):
        monkeypatch.setenv("FUSEJIT_COMPILE_JOBS", bad)
        with pytest.raises(fusejit.FusejitError, match=f"FUSEJIT_COMPILE_JOBS must be a positive integer, not '{bad}'"):
            host_mod.compile_jobs()
    monkeypatch.setenv("FUSEJIT_COMPILE_JOBS", "4")
    assert host_mod.compile_jobs() == 4


def test_init_starts_a_backend_once_before_the_first_call():
    """fusejit.init() creates and starts a backend (on the host: the launch extension and the
    OpenMP worker threads, one per core the process may use), once; later calls use it."""
    from fusejit import backends
    from fusejit.backends import host as host_mod
    backends._instances.clear()
    assert fusejit.init("host") == "host"
    started = backends.get("host")
    assert fusejit.init("host") == "host" and backends.get("host") is started
    extension = host_mod.host_extension()
    if extension is not None:
        cores = int(os.environ.get("OMP_NUM_THREADS") or len(os.sched_getaffinity(0)))
        assert extension.start_threads() == cores
    x = np.random.default_rng(41).random(7).astype(np.float32)
    assert fusejit.check(fusejit.jit(lambda x: jnp.exp(x) - 1.0, backend="host"), x).ok
    with pytest.raises(fusejit.FusejitError, match="unknown fusejit backend 'tpu'"):
        fusejit.init("tpu")


def test_a_kernel_with_hundreds_of_parameters_launches():
    """More buffers than the direct host call takes (kernels/host_call.c): through ctypes."""
    xs = [np.full((3,), k, np.float32) for k in range(300)]
    f = fusejit.jit(lambda *xs: jnp.concatenate(xs) * 2.0)
    compiled = f.lower(*xs)
    assert max(len(k.params) for k in compiled.rendered) > 256
    assert fusejit.check(f, *xs).ok


@pytest.mark.parametrize("env, expect", [({}, "1000"), ({"OMP_WAIT_POLICY": "active"}, "None"),
                                         ({"GOMP_SPINCOUNT": "7"}, "7")])
def test_openmp_workers_spin_briefly_unless_the_user_chose(env, expect):
    """fusejit's host backend shortens the OpenMP runtime's spin after each kernel (GOMP_SPINCOUNT,
    set when fusejit is imported, before the runtime loads), so BLAS threads of library calls
    between kernels get the cores; a wait policy or spin count the user set stays as it is."""
    import subprocess
    import sys
    clean = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    out = subprocess.run([sys.executable, "-c", "import os, fusejit; print(os.environ.get('GOMP_SPINCOUNT'))"],
                         env={**clean, **env}, capture_output=True, text=True, check=True).stdout.split()
    assert out[-1] == expect


def test_steady_calls_run_the_straight_line_runner(monkeypatch):
    """A call without debug output runs the program's generated runner (Program.runner), which
    must do what Program.run does: inputs converted where the kernels cannot take them as they
    are (another dtype, strides, an unaligned address), constants, buffers, library
    calls, and outputs that are inputs or literals."""
    from fusejit import launch
    r = rng(41)
    w = r.random((7, 5)).astype(np.float32)

    def fun(x, y):
        return x, jnp.float32(2.5), jnp.sin(x) @ w + y.sum(), (x * y).max(0), jnp.cumsum(y[0])

    g = fusejit.jit(fun, backend="host")
    x = r.random((3, 7)).astype(np.float32)
    y = r.random((3, 7)).astype(np.float32)
    compiled = g.lower(x, y)
    program = compiled.program
    assert program.consts and any(not hasattr(s, "kernel") for s in program.steps)
    assert [o[0] for o in program.outputs] == ["input", "literal", "slot", "slot", "slot"]
    assert "for " not in compiled.runner.source
    unaligned = np.frombuffer(bytes(1) + y.tobytes(), np.float32, offset=1).reshape(3, 7)
    assert not unaligned.flags.aligned
    cases = [(x, y), (np.asfortranarray(x), y[:, ::-1].copy()[:, ::-1]), (x, unaligned),
             (x.astype(np.float64), y)]
    for args in cases:
        flat = list(args)
        by_runner = compiled.run(flat, debug=0)
        by_program = program.run(compiled.backend, compiled.bound, flat, compiled.consts)
        assert by_runner[0] is not args[0]  # an input returned as an output is a copy
        for a, b in zip(by_runner, by_program):
            assert a.dtype == b.dtype and a.shape == b.shape
            np.testing.assert_array_equal(a, b)
        assert fusejit.check(g, *args).ok
    # A call goes through the runner unless debug output is asked for.
    calls = []
    monkeypatch.setattr(launch.Program, "run", lambda *a, **k: calls.append(1) or [])
    g(x, y)
    assert calls == []
    monkeypatch.setenv("FUSEJIT_DEBUG", "1")
    with pytest.raises(Exception):
        g(x, y)  # the patched run returns no outputs
    assert calls == [1]
