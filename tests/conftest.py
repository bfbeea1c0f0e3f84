import os
import tempfile

import jax
import numpy as np
import pytest

# Each test session compiles into its own kernel cache unless the caller chose one.
os.environ.setdefault("FUSEJIT_CACHE_DIR", tempfile.mkdtemp(prefix="fusejit-test-cache-"))
# Every call runs the compiled kernels, the first one included: helpers.verify runs the
# interpreter (which would otherwise take the first calls) on its own, and test_tiered.py
# tests the switch from one to the other.
os.environ.setdefault("FUSEJIT_TIERED", "0")


@pytest.fixture
def x64():
    """Run the test with jax_enable_x64 on, restoring the previous setting after."""
    before = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", True)
    try:
        yield
    finally:
        jax.config.update("jax_enable_x64", before)


@pytest.fixture
def wide(request):
    """jax_enable_x64 on for a test whose `dtype` parameter is a 64-bit type."""
    dtype = request.node.callspec.params.get("dtype")
    if dtype is not None and np.dtype(dtype).itemsize == 8:
        request.getfixturevalue("x64")


@pytest.fixture
def host_defines(monkeypatch):
    """define(NAME=value, ...): compile the test's host kernels with these -D switches (the
    kernels' own, such as FJ_ROW_WINDOWS, which the CPU decides by default), so that each
    path runs on every machine; returns the flags, for helpers.run_host_under_asan."""
    from fusejit.backends import host

    def define(**names):
        flags = [f"-D{name}={value}" for name, value in names.items()]
        monkeypatch.setattr(host, "HOST_FLAGS", [*host.HOST_FLAGS, *flags])
        return flags
    return define


# Every module source a test renders is also compiled by NVRTC for sm_80 and sm_90 when the
# test ends, and ptxas's report must show no register spills to local memory: a failure is the
# test's (tests that go through helpers.verify have checked already; helpers.nvrtc_compile's
# cache makes the second compile free).
_rendered: list = []


def pytest_configure(config):
    import fusejit.codegen as codegen
    original = codegen.render_module

    def recording(kernels):
        source = original(kernels)
        _rendered.append(source)
        return source

    codegen.render_module = recording


@pytest.fixture(autouse=True)
def nvrtc_compiles_every_rendered_module():
    first = len(_rendered)
    yield
    from fusejit.errors import CompileError
    from helpers import ARCHS, nvrtc_compile, spills
    problems = []
    for source in dict.fromkeys(_rendered[first:]):
        if 'extern "C" __global__' not in source:
            continue
        for arch in ARCHS:
            try:
                usage = nvrtc_compile(source, arch)
            except CompileError as e:
                problems.append(f"{arch}: NVRTC fails: {e}")
                continue
            problems += [f"{arch} {name} spills registers to local memory: {r}" for name, r in spills(usage).items()]
    del _rendered[first:]
    if problems:
        pytest.fail("a module this test rendered fails the GPU code checks:\n" + "\n".join(problems))
