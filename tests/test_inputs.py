"""Inputs as users hand them over: views, strides, orders, read-only, aliasing, scalars."""
import jax
import jax.numpy as jnp
import pytest
from jax import lax
import numpy as np

import fusejit
from helpers import rand, verify


def f(a, b):
    return jnp.sin(a) * 2 + b, a - b.T.T


def test_non_contiguous_and_negative_strides():
    base = rand(np.random.default_rng(1), (20, 30), np.float32)
    a = base[::2, 1::3]            # strided view
    b = base[-1:-21:-2, ::-3]      # negative strides
    assert not a.flags.c_contiguous and b.strides[0] < 0
    verify(f, a, b)


def test_fortran_order_and_read_only():
    a = np.asfortranarray(rand(np.random.default_rng(2), (7, 9), np.float64))
    b = rand(np.random.default_rng(3), (7, 9), np.float64)
    b.setflags(write=False)
    verify(f, a, b)


def test_misaligned_views_are_copied_before_a_kernel_reads_them():
    """A float view of bytes from an odd offset: the emulation's sanitizer stops at a load of a
    misaligned address, so every path gets an aligned copy."""
    r = np.random.default_rng(9)
    a = np.zeros(4 * 1001 + 1, np.uint8)[1:].view(np.float32)
    a[:] = rand(r, (1001,), np.float32)
    b = np.zeros(8 * 1000 + 3, np.uint8)[3:].view(np.float64).reshape(40, 25)
    b[:] = rand(r, (40, 25), np.float64)
    assert not a.flags.aligned and not b.flags.aligned
    verify(lambda a: a * 3 + 1, a)
    verify(lambda b: jnp.sum(b, axis=1), b)


def test_same_array_passed_twice():
    a = rand(np.random.default_rng(4), (5, 5), np.float32)
    verify(f, a, a)


def test_zero_d_arrays_numpy_scalars_and_python_scalars():
    verify(f, np.array(1.5, np.float32), np.float32(-2.0))
    verify(lambda a, b, c: (a * b + c, a > b), 3, 2.5, True)


def test_inputs_are_never_modified():
    a = rand(np.random.default_rng(5), (64,), np.float32)
    snapshot = a.copy()
    for backend in ("host", "emulate"):
        fusejit.jit(lambda x: (x * 3, jnp.flip(x)), backend=backend)(a)
    np.testing.assert_array_equal(a, snapshot)


def test_wrong_dtype_inputs_are_converted_like_jax():
    """A float64 array with x64 off runs as float32, as jax.jit does; a list is a pytree."""
    a = np.linspace(0, 1, 9)
    out = fusejit.jit(lambda x: x * 2)(a)
    assert out.dtype == np.float32
    assert fusejit.check(lambda xs: xs[0] * xs[1] + xs[2], [1.5, 2, np.float32(3)]).ok


def test_zero_d_input_returned_unchanged_keeps_its_shape():
    """A 0-d input passed straight through (a scan of length 0) comes back 0-d."""
    for x in (np.float32(0.5), np.array(2, np.int16), 3.0):
        got = fusejit.jit(lambda x: (x, lax.scan(lambda c, _: (c * 2, c), x, None, length=0)[0]))(x)
        assert all(g.shape == () for g in got)


@pytest.mark.parametrize("wide", [False, True])
def test_a_python_int_beyond_its_weak_type_is_jax_jits_overflow_error(wide, request):
    """A Python int argument becomes a weak int32 (int64 with 64-bit types on): one beyond it
    is jax.jit's OverflowError, word for word, naming the argument's path."""
    if wide:
        request.getfixturevalue("x64")
    bits = 64 if wide else 32
    r = np.random.default_rng(bits)
    big = int(r.integers(1, 1 << 20)) << (bits - 1)  # 2^(bits-1) or more
    for value in (big, -big - 1):
        args = (rand(r, (3,), np.float32), {"n": value})
        messages = []
        for jit in (fusejit.jit, jax.jit):
            with pytest.raises(OverflowError) as info:
                jit(lambda x, d: x * d["n"])(*args)
            messages.append(str(info.value))
        assert messages[0] == messages[1] and "argument path is d['n']" in messages[0]
    small = (1 << (bits - 1)) - 1  # the largest that fits
    verify(lambda x, n: x + n, rand(r, (3,), np.float32), small)
