"""The host's pool of large buffers (fusejit/backends/pool.py): reuse, and never while an
array or a view still uses the memory."""
import os

import numpy as np
import pytest

from fusejit.backends.pool import MIN_BYTES, BufferPool


def address(a) -> int:
    return a.__array_interface__["data"][0]


def test_a_freed_buffer_serves_the_next_request_of_its_size():
    pool = BufferPool()
    a = pool.empty((MIN_BYTES // 4,), np.float32)
    assert type(a) is np.ndarray and a.flags.c_contiguous and a.flags.writeable
    first = address(a)
    del a
    b = pool.empty((MIN_BYTES // 8,), np.float64)  # the same bytes, another dtype and shape
    assert address(b) == first


def test_a_view_keeps_its_buffer_out_of_the_pool():
    pool = BufferPool()
    a = pool.empty((1024, 1024), np.float32)
    a[:] = 7.0
    view = a[::2, 3:]
    first = address(a)
    del a
    b = pool.empty((1024, 1024), np.float32)
    assert address(b) != first  # the view still owns it
    b[:] = -1.0
    assert np.all(view == 7.0)
    second = address(b)
    del view, b
    assert pool.free_bytes == 2 * 1024 * 1024 * 4  # both back once nothing uses them
    assert {address(pool.empty((1024, 1024), np.float32)) for _ in range(1)} <= {first, second}


def test_small_arrays_and_the_capacity(monkeypatch):
    pool = BufferPool()
    small = pool.empty((10,), np.float32)
    assert small.base is None  # plain NumPy below MIN_BYTES
    monkeypatch.setenv("FUSEJIT_POOL_BYTES", "0")
    a = pool.empty((MIN_BYTES,), np.uint8)
    del a
    assert pool.free_bytes == 0  # over capacity: freed, not kept


def mapping_flags(a) -> list[str]:
    """The VmFlags of the mapping holding `a`'s first byte (/proc/self/smaps)."""
    start = address(a)
    inside = False
    with open("/proc/self/smaps") as f:
        for line in f:
            head = line.split()[0]
            if "-" in head and all(c in "0123456789abcdef-" for c in head):
                lo, hi = (int(x, 16) for x in head.split("-"))
                inside = lo <= start < hi
            elif inside and head == "VmFlags:":
                return line.split()[1:]
    raise AssertionError("no mapping holds the buffer")


@pytest.mark.skipif(not os.path.exists("/proc/self/smaps"), reason="Linux only: reads /proc/self/smaps")
def test_a_new_buffer_is_private_memory_without_huge_page_advice():
    """A pitfall: NumPy advises huge pages for the inside of a large array, whose first touch
    took up to 1.5 s for 160 MB on a virtual machine; the pool maps its buffers itself,
    private (a forked child's writes stay its own), writable, page-aligned and without that
    advice anywhere."""
    pool = BufferPool()
    a = pool.empty((16 << 20,), np.float32)
    assert a.flags.writeable and address(a) % 4096 == 0
    for offset in (0, 4 << 20, 8 << 20, (16 << 20) - 1):
        flags = mapping_flags(a[offset:])
        assert "hg" not in flags and "sh" not in flags and "wr" in flags, (offset, flags)
    a[:] = 3.0
    assert np.all(a == 3.0)


def test_library_products_take_their_buffers_from_the_pool():
    """A matrix product's output and its operand's rearranged copy come from the pool, so a
    program of products does not fault fresh pages in on every call."""
    import jax.numpy as jnp

    import fusejit
    from fusejit.backends.pool import pool

    rng = np.random.default_rng(5)
    x, y = rng.standard_normal((4, 512, 600), np.float32), rng.standard_normal((4, 600, 512), np.float32)
    # jnp.einsum contracts j, then k: x's contracted axes (2, 0) are not adjacent and y's
    # (1, 0) are reversed, so BLAS can read neither as it is: both are copied into order.
    product = fusejit.jit(lambda x, y: jnp.einsum("kij,kjl->il", x, y), backend="host")
    want = np.einsum("kij,kjl->il", x.astype(np.float64), y.astype(np.float64))
    pool.clear()
    first = product(x, y)
    np.testing.assert_allclose(first, want, rtol=1e-3, atol=1e-2)
    del first
    free = {address(block) for blocks in pool.free.values() for block in blocks}
    assert len(free) == 3  # the output and both copies went back
    second = product(x, y)
    assert address(second) in free
    np.testing.assert_allclose(second, want, rtol=1e-3, atol=1e-2)
