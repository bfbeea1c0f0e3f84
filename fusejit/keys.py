"""PRNG keys: fusejit holds a key array as its data (uint32[..., 2] for threefry keys) and
lowers the PRNG primitives by tracing JAX's own implementation of each on that data."""
from __future__ import annotations

import jax
import numpy as np

from .errors import UnsupportedError
from .jaxcompat import source_of, traced_body


def is_key_dtype(dtype) -> bool:
    """Whether a dtype is a PRNG key type (an extended dtype, key<fry>)."""
    return jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key)


def is_key(x) -> bool:
    """Whether an aval or an array holds PRNG keys."""
    return is_key_dtype(x.dtype)


def physical_aval(aval):
    """A key aval's data: uint32[*shape, 2] for threefry keys; other avals as they are."""
    if not is_key(aval):
        return aval
    from jax._src import core
    return core.physical_aval(aval)


# random_wrap and random_unwrap turn key data into keys and back, and random_clone copies keys:
# fusejit holds keys as their data, so each is the value itself.
KEY_IDENTITIES = {"random_wrap", "random_unwrap", "random_clone"}


def random_body(eqn):
    """(jaxpr, consts, invars) of a PRNG primitive as JAX's own implementation computes it on
    key data (the function its lowering traces), or None for other primitives:
    random_seed/split/fold_in/bits through the key's implementation, threefry2x32 unrolled
    (as XLA's GPU lowering does), iota_2x32_shape as an iota."""
    name = eqn.primitive.name
    if name not in ("random_seed", "random_split", "random_fold_in", "random_bits", "threefry2x32",
                    "iota_2x32_shape"):
        return None
    from jax._src.random import prng, threefry2x32
    p = eqn.params
    keys = eqn.invars[0].aval if eqn.invars else None
    impl = keys.dtype._impl if keys is not None and is_key(keys) else p.get("impl")
    if name == "random_seed":
        def fun(seeds):
            return prng.random_seed_impl_base(seeds, impl=impl)
    elif name == "random_split":
        def fun(base):
            return prng.random_split_impl_base(impl, base, keys.ndim, shape=p["shape"])
    elif name == "random_fold_in":
        def fun(base, msgs):
            return prng.random_fold_in_impl_base(impl, base, msgs, keys.shape)
    elif name == "random_bits":
        def fun(base):
            return prng.random_bits_impl_base(impl, base, keys.ndim, bit_width=p["bit_width"], shape=p["shape"])
    elif name == "threefry2x32":
        def fun(*args):
            return threefry2x32._threefry2x32_lowering(*args, use_rolled_loops=False)
    else:
        shape = tuple(p["shape"])
        size = int(np.prod(shape))
        if size >= 2 ** 32:
            return None  # (the caller names the primitive as unsupported)

        def fun():
            return (jax.numpy.zeros(shape, np.uint32),
                    jax.lax.iota(np.uint32, size).reshape(shape))
    return traced_body(fun, eqn, [physical_aval(v.aval) for v in eqn.invars])


def key_body(eqn):
    """(jaxpr, consts, invars) of an equation that moves PRNG keys (slice, squeeze, reshape,
    concatenate, gather, select_n, ...: any primitive but the PRNG ones), computed on key data
    one data word at a time, or None when no operand or result is a key.

    A key moves as a unit, so the primitive with its own (logical) params applied to each word
    of the data, the words stacked last again, is the primitive on keys."""
    if not any(is_key(v.aval) for v in [*eqn.invars, *eqn.outvars]):
        return None
    word_shape = {tuple(physical_aval(v.aval).shape[v.aval.ndim:]) for v in [*eqn.invars, *eqn.outvars]
                  if is_key(v.aval)}
    if len(word_shape) != 1 or len(next(iter(word_shape))) != 1:
        raise UnsupportedError(f"fusejit holds PRNG keys whose data is a vector of words; these are "
                               f"{', '.join(str(v.aval.dtype) for v in eqn.invars if is_key(v.aval))}",
                               primitive=eqn.primitive.name, source=source_of(eqn))
    words = next(iter(word_shape))[0]
    keyed_in = [is_key(v.aval) for v in eqn.invars]
    keyed_out = [is_key(v.aval) for v in eqn.outvars]

    def fun(*args):
        per_word = []
        for w in range(words):
            outs = eqn.primitive.bind(*(a[..., w] if k else a for a, k in zip(args, keyed_in)), **eqn.params)
            per_word.append(outs if eqn.primitive.multiple_results else [outs])
        return [jax.numpy.stack([p[i] for p in per_word], axis=-1) if k else per_word[0][i]
                for i, k in enumerate(keyed_out)]

    return traced_body(fun, eqn, [physical_aval(v.aval) for v in eqn.invars])
