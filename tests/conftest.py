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
