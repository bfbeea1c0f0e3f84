import os
import tempfile

import jax
import pytest

# Each test session compiles into its own kernel cache unless the caller chose one.
os.environ.setdefault("FUSEJIT_CACHE_DIR", tempfile.mkdtemp(prefix="fusejit-test-cache-"))


@pytest.fixture
def x64():
    """Run the test with jax_enable_x64 on, restoring the previous setting after."""
    before = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", True)
    try:
        yield
    finally:
        jax.config.update("jax_enable_x64", before)


# Every module source any test renders is also compiled by NVRTC for sm_80 and sm_90 at the
# end of the session (tests that go through helpers.verify have done so already; the cache in
# helpers.nvrtc_compile makes the second compile free).
_rendered: set = set()


def pytest_configure(config):
    import fusejit.codegen as codegen
    original = codegen.render_module

    def recording(kernels):
        source = original(kernels)
        _rendered.add(source)
        return source

    codegen.render_module = recording


def pytest_sessionfinish(session, exitstatus):
    from fusejit.errors import CompileError
    from helpers import ARCHS, nvrtc_compile
    failures = []
    for source in sorted(_rendered):
        if 'extern "C" __global__' not in source:
            continue
        for arch in ARCHS:
            try:
                nvrtc_compile(source, arch)
            except CompileError as e:
                failures.append(f"{arch}: {e}")
    if failures:
        print(f"\n{len(failures)} module(s) rendered by the tests fail to compile with NVRTC:\n" + "\n".join(failures))
        session.exitstatus = 1
